"""Key-store facts kept under the decision context's revision check, and the enforcement loops
that decide many things at once (``decide_many``): same records, same answers, fewer trips."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.sovereignty import services
from tenants.sovereignty.core.model import Action
from tenants.sovereignty.models import (
    DecisionRecord,
    ExternalKeyStore,
    KeyStoreState,
    RuleStatus,
    SovereigntyRule,
)
from tests.support.fleet import CTX
from tests.tenants.sovereignty.test_decision_cache import _asset, _site, _tenant


@pytest.fixture(autouse=True)
def _fresh_caches():
    services.clear_caches()
    yield
    services.clear_caches()


def _store(tenant, site, name="xks-1", country="DE") -> ExternalKeyStore:
    store = ExternalKeyStore.objects.create(
        tenant=tenant, name=name, endpoint_url="https://xks.example/v1", country=country
    )
    store.sites.add(site)
    return store


@pytest.mark.django_db
def test_key_store_facts_come_from_memory_until_a_store_or_its_site_link_changes():
    tenant = _tenant("ksm-a")
    site = _site(tenant, "KA1")
    store = _store(tenant, site)
    facts = services.key_store_facts(site, tenant.pk, services.decision_context(site.pk))
    assert facts["key_stores"] == frozenset({"xks-1"}) and facts["key_store_customer_controlled"]

    context = services.decision_context(site.pk)
    with CaptureQueriesContext(connection) as queries:
        assert services.key_store_facts(site, tenant.pk, context) == facts
    assert queries.captured_queries == []  # the context's revision check covers them

    ExternalKeyStore.objects.filter(pk=store.pk).update(state=KeyStoreState.DISCONNECTED)
    facts = services.key_store_facts(site, tenant.pk, services.decision_context(site.pk))
    assert facts["key_stores"] == frozenset() and facts["key_stores_disconnected"] == {"xks-1"}

    store.sites.remove(site)  # the link table: scope 0
    facts = services.key_store_facts(site, tenant.pk, services.decision_context(site.pk))
    assert facts["key_stores"] == frozenset() and facts["key_stores_disconnected"] == frozenset()
    assert facts == services.key_store_facts(site, tenant.pk)  # as read without a context


@pytest.mark.django_db
def test_another_owners_or_another_sites_stores_are_read_every_time():
    tenant, other = _tenant("ksm-b"), _tenant("ksm-c")
    site, elsewhere = _site(tenant, "KB1"), _site(tenant, "KB2")
    _store(other, site, name="theirs")
    context = services.decision_context(site.pk)  # scopes 0 and the site's tenant only
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            facts = services.key_store_facts(site, other.pk, context)
        assert facts["key_stores"] == {"theirs"} and len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        assert services.key_store_facts(elsewhere, tenant.pk, context)["key_stores"] == set()
    assert len(queries) == 1  # the context is another site's: no memo


@pytest.mark.django_db
def test_the_actions_of_an_asset_are_recorded_in_one_insert_in_order_and_all_reasons_raised():
    tenant = _tenant("ksm-d")
    de, us = _site(tenant, "KD1"), _site(tenant, "KD2", country="US")
    SovereigntyRule.objects.create(
        tenant=tenant,
        name="in DE",
        kind="replica_residency",
        params={"allowed": ["DE"]},
        status=RuleStatus.ACTIVE,
    )
    asset = _asset(tenant, de, kind="backup")
    actions = services.actions_for(asset, de, us)
    assert actions == [Action.PLACE_ASSET, Action.REPLICATE_ASSET, Action.TRANSFER_ASSET]
    before = DecisionRecord.objects.count()
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(services.SovereigntyDenied) as denied,
    ):
        services.check_asset_actions(asset, us, CTX, actions)
    insert = 'INSERT INTO "sovereignty_decisionrecord"'
    inserts = [q for q in queries if q["sql"].startswith(insert)]
    assert len(inserts) == 1
    records = list(DecisionRecord.objects.order_by("pk")[before:])
    assert [r.action for r in records] == [str(a) for a in actions]
    assert [r.allowed for r in records] == [True, False, True]
    assert denied.value.decision.rule_ids and len(denied.value.decision.reasons) == 1


@pytest.mark.django_db
def test_a_workload_files_each_input_under_its_owner_and_keeps_the_inputs_order_of_reasons():
    site_owner, other = _tenant("ksm-e"), _tenant("ksm-f")
    site = _site(site_owner, "KE1")
    for tenant in (site_owner, other):
        SovereigntyRule.objects.create(
            tenant=tenant,
            name="not here",
            kind="residency",
            params={"asset_kinds": ["dataset"], "labels": ["pii"], "allowed": ["FR"]},
            status=RuleStatus.ACTIVE,
        )
    inputs = [
        _asset(other, site, name="theirs 1"),
        _asset(site_owner, site, name="mine"),
        _asset(other, site, name="theirs 2"),
    ]
    with pytest.raises(services.SovereigntyDenied) as denied:
        services.check_workload(inputs, site, CTX)
    assert [r.split(":")[0] for r in denied.value.decision.reasons] == [
        "theirs 1",
        "mine",
        "theirs 2",
    ]
    records = DecisionRecord.objects.filter(action=str(Action.PROCESS_ASSET))
    filed = sorted((r.tenant_id, r.resource_repr) for r in records)
    assert filed == sorted(
        [(other.pk, "theirs 1"), (site_owner.pk, "mine"), (other.pk, "theirs 2")]
    )
    assert all(r.site_owner_id == site_owner.pk and not r.allowed for r in records)
