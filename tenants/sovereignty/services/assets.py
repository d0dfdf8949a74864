"""Where assets are placed, replicated, moved and processed: the enforcement points for
placement, replication, transfer, co-location and key custody.

Every decision about an asset is taken by the asset owner's active rules and filed in the
owner's log (``DecisionRecord.tenant_id``); the site's owner is recorded beside it
(``site_owner_id``) and sees the record only as far as it concerns its premises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict, cast

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.errors import Conflict
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty import revision
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import (
    Action,
    Decision,
    Request,
    SiteFacts,
)
from tenants.sovereignty.models import (
    ProtectedAsset,
    TransferBasis,
)
from tenants.sovereignty.services.decisions import (
    Ask,
    DecisionContext,
    SiteLike,
    SovereigntyDenied,
    _asset_subject,
    active_policies,
    asset_facts,
    context_memo,
    decide_many,
    decision_context,
)

#: Asset kinds that are copies of another asset: keeping one is a replication.
REPLICA_KINDS = frozenset({"replica", "backup"})
#: The fields whose change can change a decision about an asset where it is.
DECIDING_FIELDS = ("site_id", "kind", "classification", "labels")


class KeyStoreFacts(TypedDict, total=False):
    """Where a site keeps keys, as ``Request`` fields (none given: the request's defaults)."""

    key_store_country: str
    key_store_customer_controlled: bool
    key_stores: frozenset[str]
    key_stores_disconnected: frozenset[str]


class TenantChanged(Conflict):
    """409: an asset belongs to its tenant for good; another tenant's copy is a new asset."""

    def __init__(self) -> None:
        super().__init__(
            "an asset's tenant cannot change; create the asset under the other tenant instead",
            code="immutable",
            field="tenant",
        )


def key_store_facts(
    site: SiteLike, tenant_id: int | None = None, context: DecisionContext | None = None
) -> KeyStoreFacts:
    """Keys placed at a site live in its key store: in-country by construction, and customer
    controlled where the site holds the ``customer-hsm`` accreditation — or in the external
    stores the tenant (default: the site's) holds for the site (``services/keys.py``).

    Given the site's ``context`` (``decision_context(site.pk)``), the external stores are read
    once and reused while the revisions that context was checked at are current: a key store's
    row bumps its tenant's scope, a store's site link scope 0 (migration 0010), so a placement
    costs no query of its own. Without a context (or for another site's), read every time."""
    from tenants.sovereignty.services.keys import external_key_facts

    tenant = tenant_id or site.tenant_id
    country = getattr(site.country, "code", site.country) or ""

    def load() -> KeyStoreFacts:
        return cast(KeyStoreFacts, external_key_facts(tenant, site))

    if context is None or context.site.id != str(site.pk):
        external = load()
    else:  # the site's country is in the key: the store chosen depends on it
        key = ("key_store_facts", tenant, site.pk, country)
        external = context_memo(context, key, (revision.GLOBAL, tenant), load)
    return {
        "key_store_country": country,
        "key_store_customer_controlled": "customer-hsm" in (site.accreditations or []),
        **external,
    }


def bases_on_record(tenant_id: int, destination: SiteFacts) -> frozenset[str]:
    """The kinds of legal basis the tenant has on record, still valid, for this destination.
    Matched on the destination's country against the countries each basis pinned when it was
    recorded (from the basis owner's groups): never on the site's group codes, which the site
    owner defines and a group revision changes."""
    if not destination.country:
        return frozenset()
    today = timezone.now().date()
    records = TransferBasis.objects.filter(
        Q(valid_until__isnull=True) | Q(valid_until__gte=today),
        tenant_id=tenant_id,
        countries__contains=[destination.country],
    )
    return frozenset(records.values_list("kind", flat=True))


def _owner_policies(tenant_id: int, context: DecisionContext) -> cedar.CompiledPolicies:
    """The asset owner's compiled rules: the context's when the owner is the site's tenant."""
    return context.policies if context.tenant_id == tenant_id else active_policies(tenant_id)


def asset_request(
    action: Action,
    asset: ProtectedAsset,
    site: SiteLike,
    facts: SiteFacts,
    context: DecisionContext | None = None,
) -> Request:
    """The question ``action`` of ``asset`` at ``site`` asks, with the facts that action needs:
    the owner's legal bases for a transfer, the site's key store for a placement (from memory
    with the site's ``context``: ``key_store_facts``). The evaluate endpoint asks the same
    question, so that both answer alike."""
    return Request(
        action,
        None,
        facts,
        asset=asset_facts(asset),
        legal_bases=bases_on_record(asset.tenant_id, facts)
        if action == Action.TRANSFER_ASSET
        else frozenset(),
        **(key_store_facts(site, asset.tenant_id, context) if action == Action.PLACE_ASSET else {}),
    )


def _country(site: SiteLike | None) -> str:
    if site is None:
        return ""
    return getattr(site.country, "code", site.country) or ""


def actions_for(asset: ProtectedAsset, origin: SiteLike | None, site: SiteLike) -> list[Action]:
    """Every action that keeping ``asset`` at ``site`` (coming from ``origin``) amounts to:
    a placement always (key custody is judged with it, for keys); a replication for replicas
    and backups; a transfer when it crosses into another country."""
    actions = [Action.PLACE_ASSET]
    if asset.kind in REPLICA_KINDS:
        actions.append(Action.REPLICATE_ASSET)
    if origin is not None and origin.pk != site.pk and _country(origin) != _country(site):
        actions.append(Action.TRANSFER_ASSET)
    return actions


def check_asset_at_site(
    asset: ProtectedAsset,
    site: SiteLike,
    ctx: ChangeContext,
    *,
    action: Action = Action.PLACE_ASSET,
) -> Decision:
    """One action of ``asset`` at ``site``, decided by the asset owner's rules (403 on deny)."""
    return check_asset_actions(asset, site, ctx, [action])


def check_asset_actions(
    asset: ProtectedAsset, site: SiteLike, ctx: ChangeContext, actions: Iterable[Action]
) -> Decision:
    """Ask every action, record each decision in the owner's log, then refuse (403) naming
    every rule that denied: a caller learns all that stands in the way at once. The actions are
    evaluated together and recorded in one insert (``decide_many``), in the order given."""
    context = decision_context(site.pk)
    policies = _owner_policies(asset.tenant_id, context)
    actions = list(actions)
    subject = _asset_subject(asset)
    asks = [
        Ask(asset_request(action, asset, site, context.site, context), subject, site.pk)
        for action in actions
    ]
    decisions = decide_many(
        asks, tenant_id=asset.tenant_id, ctx=ctx, raise_on_deny=False, policies=policies
    )
    denied_ids: list[str] = []
    reasons: list[str] = []
    allowed_ids: list[str] = []
    errors: list[str] = []
    for action, d in zip(actions, decisions, strict=True):
        if d.allowed:
            allowed_ids += d.rule_ids
        else:
            denied_ids += d.rule_ids
            reasons += d.reasons if d.rule_ids else [f"{action}: {r}" for r in d.reasons]
            errors += d.errors
    if reasons:
        if len(denied_ids) == len(reasons):  # one reason per rule: each pair once
            pairs = dict.fromkeys(zip(denied_ids, reasons, strict=True))
            denied_ids, reasons = [i for i, _ in pairs], [r for _, r in pairs]
        else:  # some failed closed: every reason, no pairs
            denied_ids = []
        raise SovereigntyDenied(Decision(False, tuple(denied_ids), tuple(reasons), tuple(errors)))
    return Decision(True, tuple(sorted(set(allowed_ids))), ())


def _site_model() -> type[models.Model]:
    model = ProtectedAsset._meta.get_field("site").related_model
    assert isinstance(model, type)  # a model class, not "self" nor None
    return model


def save_asset(asset: ProtectedAsset, ctx: ChangeContext) -> ProtectedAsset:
    """Create or change an asset. Where it is kept is checked first, as every action it amounts
    to, whenever the site or a fact the rules match on (kind, classification, labels) changes.
    Its tenant never changes (409 naming ``tenant``).

    The decisions are taken, and recorded, before the write transaction opens: a denial must
    stay in the transparency log even though the change it refused is never made."""
    stored = None
    if asset.pk:
        stored = ProtectedAsset.objects.filter(pk=asset.pk).values(*DECIDING_FIELDS, "tenant_id")
        stored = stored.first()
    if stored is not None and stored["tenant_id"] != asset.tenant_id:
        raise TenantChanged()
    changed = stored is None or any(
        stored[name] != getattr(asset, name) for name in DECIDING_FIELDS
    )
    if asset.site_id and changed:
        asset.full_clean()
        site = cast(SiteLike, asset.site)
        origin = None
        if stored is not None and stored["site_id"] and stored["site_id"] != asset.site_id:
            origin = cast(SiteLike, _site_model()._default_manager.get(pk=stored["site_id"]))
        check_asset_actions(asset, site, ctx, actions_for(asset, origin, site))
    return save_object(asset, ctx)


def check_workload(
    inputs: Iterable[ProtectedAsset], site: SiteLike, ctx: ChangeContext
) -> Decision:
    """Allocating capacity at ``site`` to a workload reading ``inputs``: every input must be
    allowed to be processed there (co-location, residency). One decision per input is
    recorded, in its owner's log, by its owner's rules: the inputs of one owner are evaluated
    together and recorded in one insert (``decide_many``); reasons keep the inputs' order."""
    denied_ids: list[str] = []
    reasons: list[str] = []
    allowed_ids: list[str] = []
    context = decision_context(site.pk)
    inputs = list(inputs)
    by_owner: dict[int, list[int]] = {}  # owner -> indexes into inputs, in order
    for index, asset in enumerate(inputs):
        by_owner.setdefault(asset.tenant_id, []).append(index)
    decided: dict[int, Decision] = {}
    for owner, indexes in by_owner.items():
        asks = [
            Ask(
                Request(Action.PROCESS_ASSET, None, context.site, asset=asset_facts(inputs[i])),
                _asset_subject(inputs[i]),
                site.pk,
            )
            for i in indexes
        ]
        made = decide_many(
            asks,
            tenant_id=owner,
            ctx=ctx,
            raise_on_deny=False,
            policies=_owner_policies(owner, context),
        )
        decided.update(zip(indexes, made, strict=True))
    for index, asset in enumerate(inputs):
        d = decided[index]
        if d.allowed:
            allowed_ids += d.rule_ids
        else:
            denied_ids += d.rule_ids
            reasons += [f"{asset.name}: {r}" for r in d.reasons]
    if reasons:
        raise SovereigntyDenied(Decision(False, tuple(sorted(set(denied_ids))), tuple(reasons)))
    return Decision(True, tuple(sorted(set(allowed_ids))), ())


def check_workload_inputs(asset_ids: Iterable[int], site: SiteLike, ctx: ChangeContext) -> Decision:
    """``check_workload`` for inputs named by id (a workflow's spec). An id that is not one of
    the site tenant's assets fails closed: a workload may not read what cannot be checked."""
    wanted = sorted(set(asset_ids))
    inputs = list(ProtectedAsset.objects.filter(pk__in=wanted, tenant_id=site.tenant_id))
    unknown = sorted(set(wanted) - {a.pk for a in inputs})
    if unknown:
        ids = ", ".join(str(i) for i in unknown)
        raise SovereigntyDenied(
            Decision(False, (), (f"denied: inputs {ids} are not assets of this site's tenant",))
        )
    if not inputs:
        return Decision(True, (), ())
    return check_workload(inputs, site, ctx)
