"""Where assets are placed, replicated, moved and processed: the enforcement points for
placement, replication, transfer, co-location and key custody."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Q
from django.utils import timezone

from tenants.services.changes import ChangeContext, save_object
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

if TYPE_CHECKING:
    pass
from tenants.sovereignty.services.decisions import (
    SiteLike,
    SovereigntyDenied,
    _asset_subject,
    asset_facts,
    decide,
    decision_context,
)


class KeyStoreFacts(TypedDict, total=False):
    """Where a site keeps keys, as ``Request`` fields (none given: the request's defaults)."""

    key_store_country: str
    key_store_customer_controlled: bool


def key_store_facts(site: SiteLike) -> KeyStoreFacts:
    """Keys placed at a site live in its key store: in-country by construction, and customer
    controlled where the site holds the ``customer-hsm`` accreditation."""
    country = getattr(site.country, "code", site.country) or ""
    return {
        "key_store_country": country,
        "key_store_customer_controlled": "customer-hsm" in (site.accreditations or []),
    }


def check_asset_at_site(
    asset: ProtectedAsset,
    site: SiteLike,
    ctx: ChangeContext,
    *,
    action: Action = Action.PLACE_ASSET,
) -> Decision:
    context = decision_context(site.pk)
    request = Request(
        action,
        None,
        context.site,
        asset=asset_facts(asset),
        legal_bases=bases_on_record(site.tenant_id, context.site)
        if action == Action.TRANSFER_ASSET
        else frozenset(),
        **(key_store_facts(site) if action == Action.PLACE_ASSET else {}),
    )
    return decide(
        request,
        tenant_id=site.tenant_id,
        subject=_asset_subject(asset),
        ctx=ctx,
        site_id=site.pk,
        policies=context.policies,
    )


def bases_on_record(tenant_id: int, destination: SiteFacts) -> frozenset[str]:
    """The kinds of legal basis the tenant has on record, still valid, for this destination."""
    today = timezone.now().date()
    records = TransferBasis.objects.filter(
        Q(valid_until__isnull=True) | Q(valid_until__gte=today),
        tenant_id=tenant_id,
        destination__in=destination.jurisdictions,
    )
    return frozenset(records.values_list("kind", flat=True))


def save_asset(asset: ProtectedAsset, ctx: ChangeContext) -> ProtectedAsset:
    """Create or change an asset; placing or moving it to a site is checked first.

    The decision is taken, and recorded, before the write transaction opens: a denial must stay
    in the transparency log even though the change it refused is never made."""
    stored_site = None
    if asset.pk:
        stored_site = (
            ProtectedAsset.objects.filter(pk=asset.pk).values_list("site_id", flat=True).first()
        )
    if asset.site_id and asset.site_id != stored_site:
        asset.full_clean()
        site = asset.site
        assert site is not None  # its id is set (and full_clean() found the row)
        check_asset_at_site(asset, site, ctx)
    return save_object(asset, ctx)


def check_workload(
    inputs: Iterable[ProtectedAsset], site: SiteLike, ctx: ChangeContext
) -> Decision:
    """Allocating capacity at ``site`` to a workload reading ``inputs``: every input must be
    allowed to be processed there (co-location). One decision per input is recorded."""
    denied_ids: list[str] = []
    reasons: list[str] = []
    allowed_ids: list[str] = []
    context = decision_context(site.pk)
    for asset in inputs:
        d = decide(
            Request(Action.PROCESS_ASSET, None, context.site, asset=asset_facts(asset)),
            tenant_id=site.tenant_id,
            subject=_asset_subject(asset),
            ctx=ctx,
            site_id=site.pk,
            raise_on_deny=False,
            policies=context.policies,
        )
        if d.allowed:
            allowed_ids += d.rule_ids
        else:
            denied_ids += d.rule_ids
            reasons += [f"{asset.name}: {r}" for r in d.reasons]
    if reasons:
        raise SovereigntyDenied(Decision(False, tuple(sorted(set(denied_ids))), tuple(reasons)))
    return Decision(True, tuple(sorted(set(allowed_ids))), ())
