"""Questions put to the engine (``POST /sovereignty/evaluate/``): the same request the real
operation would make, decided by the same rules, and recorded as a question.

A question is filed in the transparency log (asking is itself worth knowing), but with
``resource_type`` ``question:<asset|site>`` so that nobody reading the log — a customer's auditor,
the console — takes a what-if for a placement or an access that happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tenants.services.changes import ChangeContext
from tenants.sovereignty.core.model import Action, ArtifactFacts, Decision, Request
from tenants.sovereignty.services.access import approved_access
from tenants.sovereignty.services.assets import bases_on_record, key_store_facts
from tenants.sovereignty.services.decisions import (
    Subject,
    asset_facts,
    decide,
    person_facts,
    site_facts,
)

if TYPE_CHECKING:
    from factory.inventory.models import Site
    from tenants.models.people import User
    from tenants.sovereignty.models import ProtectedAsset

#: Record type prefix of a question (see the module docstring).
QUESTION = "question:"

#: What each action cannot be asked without (the field the 400 names).
NEEDS = {
    "asset": (
        Action.PLACE_ASSET,
        Action.PROCESS_ASSET,
        Action.REPLICATE_ASSET,
        Action.TRANSFER_ASSET,
    ),
    "person": (Action.ACCESS_SITE,),
    "destination": (Action.EGRESS_TELEMETRY,),
    "artifact_origin": (Action.ACCEPT_ARTIFACT,),
}


@dataclass(frozen=True)
class Question:
    """``POST /sovereignty/evaluate/``'s body, validated."""

    action: Action
    site: Site
    asset: ProtectedAsset | None = None
    person: User | None = None
    from_country: str = ""
    remote: bool = False
    destination: Site | None = None
    telemetry_category: str = ""
    artifact_origin: str = ""
    artifact_signed: bool = False
    artifact_roots: frozenset[str] = field(default_factory=frozenset)

    def missing(self) -> list[str]:
        """The fields this action needs and the question lacks."""
        return [
            name
            for name, actions in NEEDS.items()
            if self.action in actions and not getattr(self, name)
        ]


def evaluate(question: Question, ctx: ChangeContext) -> Decision:
    """Decide ``question`` as the real operation would: about an asset, by its **owner's**
    rules, with the owner's legal bases and the owner's key stores; otherwise by the site
    tenant's. Recorded (never raised) as a question."""
    site, asset, person = question.site, question.asset, question.person
    owner = asset.tenant_id if asset is not None else site.tenant_id
    facts = site_facts(site)
    request = Request(
        question.action,
        person_facts(person) if person is not None else None,
        facts,
        asset=asset_facts(asset) if asset is not None else None,
        artifact=ArtifactFacts(
            "query",
            question.artifact_origin,
            question.artifact_signed,
            question.artifact_roots,
        ),
        legal_bases=bases_on_record(owner, facts)
        if question.action == Action.TRANSFER_ASSET
        else frozenset(),
        from_country=question.from_country,
        remote=question.remote,
        # As the dispatch asks it: a grant for this scope, now, from where the person is.
        approved=person is not None
        and approved_access(
            person,
            site,
            scope="remote_hands" if question.remote else "physical_repair",
            physical_country=question.from_country,
        ),
        telemetry_category=question.telemetry_category,
        destination=site_facts(question.destination) if question.destination else None,
        **(key_store_facts(site, owner) if question.action == Action.PLACE_ASSET else {}),
    )
    kind = "asset" if asset is not None else "site"
    subject = Subject(
        QUESTION + kind,
        str(asset.pk if asset is not None else site.pk),
        asset.name if asset is not None else str(site),
    )
    return decide(
        request,
        tenant_id=owner,
        subject=subject,
        ctx=ctx,
        site_id=site.pk,
        raise_on_deny=False,
    )
