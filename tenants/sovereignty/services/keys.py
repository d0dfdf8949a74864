"""Customer key custody: external key stores the tenant holds, and what their state means.

What depends on a store is kept simple and strict: every asset of the store's tenant at a site the
store serves (keys held in it; datasets, models, backups and replicas encrypted under them). When
the customer disconnects a store, those assets are unavailable and a ``key_custody`` rule naming
the store denies new placements at those sites until the customer reconnects it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal, TypedDict

from django.db import transaction
from django.utils import timezone

from tenants.choices import Role
from tenants.errors import Conflict, Denied
from tenants.events.kinds import EventKind, timestamp
from tenants.events.services import emit
from tenants.services.changes import ChangeContext, save_object
from tenants.sovereignty.models import ExternalKeyStore, KeyStoreState, ProtectedAsset

Availability = Literal["available", "unavailable"]


class StoreFacts(TypedDict):
    """Which of the tenant's stores serve a site, split by whether the customer has them
    connected: what a key-custody rule naming stores decides on (``Request`` fields)."""

    key_stores: frozenset[str]
    key_stores_disconnected: frozenset[str]


def stores_serving(tenant_id: int, site_id: Any) -> list[ExternalKeyStore]:
    return list(ExternalKeyStore.objects.filter(tenant_id=tenant_id, sites__id=site_id))


class ExternalKeyFacts(StoreFacts, total=False):
    key_store_country: str
    key_store_customer_controlled: bool


def external_key_facts(tenant_id: int, site: Any) -> ExternalKeyFacts:
    """``store_facts``, and where a connected store serves the site, the keys are in it: customer
    controlled, in the store's country (one in the site's country, if the tenant has one)."""
    stores = stores_serving(tenant_id, site.pk)
    facts: ExternalKeyFacts = {
        "key_stores": frozenset(s.name for s in stores if s.connected),
        "key_stores_disconnected": frozenset(s.name for s in stores if not s.connected),
    }
    live = [s for s in stores if s.connected]
    if live:
        site_country = getattr(site.country, "code", site.country) or ""
        countries = [getattr(s.country, "code", s.country) for s in live]
        facts["key_store_country"] = site_country if site_country in countries else countries[0]
        facts["key_store_customer_controlled"] = True
    return facts


def disconnected_at(tenant_ids: Iterable[int]) -> dict[tuple[int, int], list[str]]:
    """(tenant, site) → names of that tenant's disconnected stores serving the site: what makes
    the tenant's assets there unavailable (one query, for a page of assets)."""
    through = ExternalKeyStore.sites.through
    rows = through.objects.filter(
        externalkeystore__tenant_id__in=set(tenant_ids),
        externalkeystore__state=KeyStoreState.DISCONNECTED,
    ).values_list("externalkeystore__tenant_id", "site_id", "externalkeystore__name")
    out: dict[tuple[int, int], list[str]] = defaultdict(list)
    for tenant_id, site_id, name in rows:
        out[(tenant_id, site_id)].append(name)
    return {key: sorted(names) for key, names in out.items()}


def availability(
    asset: ProtectedAsset, down: dict[tuple[int, int], list[str]] | None = None
) -> tuple[Availability, str]:
    """Whether the asset can be read now, and why not (its keys are in a disconnected store)."""
    if not asset.site_id:
        return "available", ""
    if down is None:
        down = disconnected_at([asset.tenant_id])
    names = down.get((asset.tenant_id, asset.site_id))
    if not names:
        return "available", ""
    return "unavailable", (
        f"the customer disconnected the key store {', '.join(names)} that holds its keys"
    )


def availability_cached(asset: ProtectedAsset, cache: dict) -> tuple[Availability, str]:
    """``availability`` for many assets of few tenants (an API page): one query per tenant."""
    if asset.tenant_id not in cache:
        cache[asset.tenant_id] = disconnected_at([asset.tenant_id])
    return availability(asset, cache[asset.tenant_id])


def dependent_assets(store: ExternalKeyStore) -> list[ProtectedAsset]:
    site_ids = list(store.sites.values_list("pk", flat=True))
    return list(ProtectedAsset.objects.filter(tenant_id=store.tenant_id, site_id__in=site_ids))


def set_connected(store: ExternalKeyStore, connected: bool, ctx: ChangeContext) -> ExternalKeyStore:
    """The customer connects or disconnects its store: only the tenant's own admins may (the
    provider never can, whatever its role). Audited and announced to the tenant, in one
    transaction; asking for the state it already has is a 409."""
    if ctx.actor.tenant_roles.get(store.tenant_id) != Role.TENANT_ADMIN:
        raise Denied(
            "Only the tenant's admins connect or disconnect its key stores.",
            code="key_store_customer_only",
            field="state",
        )
    wanted = KeyStoreState.CONNECTED if connected else KeyStoreState.DISCONNECTED
    with transaction.atomic():
        store = ExternalKeyStore.objects.select_for_update().get(pk=store.pk)
        if store.state == wanted:
            raise Conflict(f"key store {store.name} is already {wanted}", code="already_" + wanted)
        store.state = wanted
        store.state_changed_at, store.state_changed_by = timezone.now(), ctx.actor.username
        store = save_object(store, ctx)
        affected = dependent_assets(store)
        emit(
            EventKind.KEY_STORE_CONNECTED if connected else EventKind.KEY_STORE_DISCONNECTED,
            store,
            tenant=store.tenant_id,
            data={
                "key_store": store.name,
                "state": store.state,
                "changed_by": store.state_changed_by,
                "changed_at": timestamp(store.state_changed_at),
                "sites": sorted(store.sites.values_list("code", flat=True)),
                "assets": sorted(a.name for a in affected),
            },
        )
    return store
