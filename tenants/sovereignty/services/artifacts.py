"""Firmware and software delivered to a site: the provenance rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenants.services.changes import ChangeContext
from tenants.sovereignty.core.model import (
    Action,
    ArtifactFacts,
    Decision,
    Request,
)

if TYPE_CHECKING:
    pass
from tenants.sovereignty.services.decisions import SiteLike, Subject, decide, decision_context


def check_artifact(
    site: SiteLike, *, artifact_id: str, origin: str, signed: bool, ctx: ChangeContext
) -> Decision:
    """Firmware or software about to be delivered to a site."""
    context = decision_context(site.pk)
    request = Request(
        Action.ACCEPT_ARTIFACT,
        None,
        context.site,
        artifact=ArtifactFacts(artifact_id, origin, signed),
    )
    return decide(
        request,
        tenant_id=site.tenant_id,
        ctx=ctx,
        site_id=site.pk,
        subject=Subject("artifact", artifact_id[:64], f"{artifact_id} from {origin}"),
        policies=context.policies,
    )
