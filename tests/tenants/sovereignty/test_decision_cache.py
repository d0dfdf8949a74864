"""Decision facts cached in memory, never used stale once a change commits; batch decisions.

The cross-connection tests commit for real (``transaction=True``): a second psycopg connection
stands for another process of the control plane writing facts."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.sql import InsertQuery
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.inventory.models import Site
from tenants.models import Tenant
from tenants.sovereignty import services
from tenants.sovereignty.core import cedar
from tenants.sovereignty.core.model import Action, PersonFacts, Request
from tenants.sovereignty.models import (
    DecisionRecord,
    JurisdictionGroup,
    ProtectedAsset,
    RuleStatus,
    SovereigntyRule,
)
from tests.support.fleet import CTX
from tests.tenants.sovereignty.test_differential import requests, rule_sets

PERSON = PersonFacts("tech", "DE", "DE", "secret")


def _tenant(slug: str) -> Tenant:
    return Tenant.objects.create(
        name=slug, slug=slug, kind="government", country="DE", contact_email=f"o@{slug}.example"
    )


def _site(tenant: Tenant, code: str, country: str = "DE") -> Site:
    return Site.objects.create(
        tenant=tenant,
        code=code,
        name=code,
        country=country,
        time_zone="Europe/Berlin",
        contracted_power_kw=100,
        contracted_cooling_kw=100,
        status="active",
    )


def _asset(tenant: Tenant, site: Site, **kw) -> ProtectedAsset:
    fields = {"name": "a", "kind": "dataset", "classification": "secret", "labels": ["pii"]}
    return ProtectedAsset.objects.create(tenant=tenant, site=site, **(fields | kw))


def _other_connection() -> psycopg.Connection:
    """A second connection to the same (test) database: another process, as far as we know."""
    settings_dict = connection.settings_dict
    return psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        password=settings_dict["PASSWORD"] or None,
        autocommit=True,
    )


class Elsewhere:
    """Rows written and committed by another connection, which this test's transaction sees
    the moment they commit (READ COMMITTED), and deleted by it at the end. Built as model
    instances and inserted with Django's own INSERT, so the columns follow the models."""

    def __init__(self) -> None:
        self.conn = _other_connection()
        self.created: list[Model] = []

    def insert(self, obj: Model) -> Model:
        table = obj._meta.db_table
        row = self.conn.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")
        obj.pk = row.fetchone()[0]
        query = InsertQuery(type(obj))
        query.insert_values(obj._meta.concrete_fields, [obj])
        for sql, params in query.get_compiler(using="default").as_sql():
            self.conn.execute(sql, params)
        self.created.append(obj)
        return obj

    def close(self) -> None:
        for obj in reversed(self.created):
            self.conn.execute(f"DELETE FROM {obj._meta.db_table} WHERE id = %s", [obj.pk])
        self.conn.close()


@pytest.fixture
def elsewhere():
    other = Elsewhere()
    yield other
    other.close()


@pytest.fixture(autouse=True)
def _fresh_caches():
    services.clear_caches()
    yield
    services.clear_caches()


@pytest.mark.django_db
def test_a_cached_decision_reads_only_the_revision_rows():
    tenant = _tenant("cache-a")
    site = _site(tenant, "CA1")
    asset = _asset(tenant, site)
    first = services.decision_context(site.pk, asset.pk)
    with CaptureQueriesContext(connection) as queries:
        again = services.decision_context(site.pk, asset.pk)
        policies = services.active_policies(tenant.pk)
    assert again is first and policies is first.policies
    assert len(queries) == 2
    for query in queries:
        assert "FROM sovereignty_revision" in query["sql"] and "inventory_site" not in query["sql"]


@pytest.mark.django_db
def test_every_kind_of_fact_write_invalidates_in_the_same_transaction():
    tenant = _tenant("cache-b")
    site = _site(tenant, "CB1")
    asset = _asset(tenant, site)
    before = services.decision_context(site.pk, asset.pk)

    Site.objects.filter(pk=site.pk).update(country="FR")  # no save(): the trigger still sees it
    assert services.decision_context(site.pk, asset.pk).site.country == "FR"

    ProtectedAsset.objects.filter(pk=asset.pk).update(classification="internal")
    assert services.decision_context(site.pk, asset.pk).asset.classification == "internal"

    JurisdictionGroup.objects.create(tenant=tenant, code="FRX", name="FRX", countries=["FR"])
    assert "FRX" in services.decision_context(site.pk, asset.pk).site.jurisdictions

    SovereigntyRule.objects.create(
        tenant=tenant,
        name="r",
        kind="residency",
        params={"allowed": ["DE"]},
        status=RuleStatus.ACTIVE,
    )
    after = services.decision_context(site.pk, asset.pk)
    assert after.policies is not before.policies
    assert len(after.policies.deciders) > len(before.policies.deciders)
    assert services.active_policies(tenant.pk) is after.policies


@pytest.mark.django_db
def test_another_tenants_write_keeps_the_cache_and_a_builtin_group_write_clears_it():
    tenant, other = _tenant("cache-c"), _tenant("cache-c2")
    site = _site(tenant, "CC1")
    first = services.decision_context(site.pk)
    _site(other, "CC2")
    assert services.decision_context(site.pk) is first  # another scope
    JurisdictionGroup.objects.filter(tenant__isnull=True, code="EU").update(countries=["FR"])
    assert "EU" not in services.decision_context(site.pk).site.jurisdictions


def _unsaved_site(tenant: Tenant, code: str) -> Site:
    return Site(
        tenant=tenant,
        code=code,
        name=code,
        country="DE",
        time_zone="Europe/Berlin",
        contracted_power_kw=100,
        contracted_cooling_kw=100,
        status="active",
    )


def _unsaved_tenant(slug: str) -> Tenant:
    return Tenant(
        name=slug, slug=slug, kind="government", country="DE", contact_email=f"o@{slug}.example"
    )


@pytest.mark.django_db
def test_a_change_committed_by_another_connection_is_seen_at_once_and_not_before(elsewhere):
    tenant = elsewhere.insert(_unsaved_tenant("cache-d"))
    site = elsewhere.insert(_unsaved_site(tenant, "CD1"))
    asset = elsewhere.insert(
        ProtectedAsset(tenant=tenant, site=site, name="a", kind="dataset", classification="secret")
    )
    rule = elsewhere.insert(
        SovereigntyRule(tenant=tenant, name="only FR", kind="residency", params={"allowed": ["FR"]})
    )
    request = lambda c: Request(Action.PLACE_ASSET, None, c.site, asset=c.asset)  # noqa: E731
    context = services.decision_context(site.pk, asset.pk)
    assert cedar.evaluate(context.policies, request(context)).allowed

    with elsewhere.conn.transaction():
        elsewhere.conn.execute(
            "UPDATE sovereignty_sovereigntyrule SET status = 'active' WHERE id = %s", [rule.pk]
        )
        elsewhere.conn.execute(
            "UPDATE inventory_site SET air_gapped = true WHERE id = %s", [site.pk]
        )
        # Not committed yet: this process keeps deciding on what is committed.
        uncommitted = services.decision_context(site.pk, asset.pk)
        assert uncommitted is context and not uncommitted.site.air_gapped
        assert services.active_policies(tenant.pk) is context.policies

    committed = services.decision_context(site.pk, asset.pk)
    assert committed.site.air_gapped
    denied = cedar.evaluate(committed.policies, request(committed))
    assert not denied.allowed and denied.rule_ids == (rule.cedar_id,)
    assert services.active_policies(tenant.pk) is committed.policies


@pytest.mark.django_db
def test_facts_read_inside_a_rolled_back_transaction_never_look_current(elsewhere):
    tenant = elsewhere.insert(_unsaved_tenant("cache-e"))
    site = elsewhere.insert(_unsaved_site(tenant, "CE1"))
    services.decision_context(site.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        Site.objects.filter(pk=site.pk).update(country="AT")
        assert services.decision_context(site.pk).site.country == "AT"  # cached, uncommitted
        raise RuntimeError("roll back")
    assert services.decision_context(site.pk).site.country == "DE"
    # Another process's write: the revision moves on to a value never used before.
    elsewhere.conn.execute("UPDATE inventory_site SET country = 'NL' WHERE id = %s", [site.pk])
    assert services.decision_context(site.pk).site.country == "NL"


@pytest.mark.django_db
def test_decide_many_records_every_decision_in_one_insert_then_raises_the_first_deny():
    tenant = _tenant("batch-a")
    de, us = _site(tenant, "BA1", "DE"), _site(tenant, "BA2", "US")
    SovereigntyRule.objects.create(
        tenant=tenant,
        name="DE only",
        kind="residency",
        params={"allowed": ["DE"]},
        status=RuleStatus.ACTIVE,
    )
    assets = [_asset(tenant, de, name=f"a{i}") for i in range(5)]
    asks = []
    for site in (de, us):
        context = services.decision_context(site.pk)
        for asset in assets:
            request = Request(
                Action.PLACE_ASSET, None, context.site, asset=services.asset_facts(asset)
            )
            asks.append(
                services.Ask(request, services.Subject("asset", str(asset.pk), "a"), site.pk)
            )
        asks.append(
            services.Ask(
                Request(Action.ACCESS_SITE, PERSON, context.site, from_country="DE"),
                services.Subject("site", str(site.pk), site.code),
                site.pk,
            )
        )
    one_by_one = [cedar.evaluate(services.active_policies(tenant.pk), a.request) for a in asks]
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(services.SovereigntyDenied) as denied,
    ):
        services.decide_many(asks, tenant_id=tenant.pk, ctx=CTX)
    inserts = [
        q for q in queries if q["sql"].startswith('INSERT INTO "sovereignty_decisionrecord"')
    ]
    assert len(inserts) == 1
    assert denied.value.decision == next(d for d in one_by_one if not d.allowed)
    records = list(DecisionRecord.objects.filter(tenant_id=tenant.pk).order_by("pk"))
    assert [(r.allowed, tuple(r.rule_ids)) for r in records] == [
        (d.allowed, d.rule_ids) for d in one_by_one
    ]
    assert [r.site_id for r in records] == [a.site_id for a in asks]
    assert sum(not r.allowed for r in records) == 5  # every US placement, none of the rest

    again = services.decide_many(asks, tenant_id=tenant.pk, ctx=CTX, raise_on_deny=False)
    assert again == one_by_one
    assert services.decide_many([], tenant_id=tenant.pk, ctx=CTX) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rule_sets(), batch=st.lists(requests(), min_size=1, max_size=8))
def test_batch_evaluation_answers_like_one_by_one(rules, batch):
    compiled = cedar.compile_rules(rules)
    assert cedar.evaluate_many(compiled, batch) == [cedar.evaluate(compiled, r) for r in batch]


def test_one_bad_request_in_a_batch_denies_only_itself():
    from dataclasses import replace

    from tenants.sovereignty.core.model import AssetFacts, SiteFacts

    site = SiteFacts("S1", "1", "DE", frozenset({"DE", "EU"}))
    good = Request(Action.PLACE_ASSET, None, site, asset=AssetFacts("A1", "1", "model", "secret"))
    missing = replace(good, asset=None)
    off_schema = replace(good, asset=AssetFacts("A2", "1", 7, "secret"))  # type: ignore[arg-type]
    compiled = cedar.compile_rules([])
    decisions = cedar.evaluate_many(compiled, [good, missing, off_schema, good])
    assert [d.allowed for d in decisions] == [True, False, False, True]
    assert decisions[1].reasons == ("denied: no asset named",)
    assert decisions[2].errors and not decisions[0].errors and not decisions[3].errors


@pytest.mark.django_db
def test_a_context_memo_is_loaded_once_per_revision_of_its_scopes():
    tenant, other = _tenant("memo-a"), _tenant("memo-b")
    site = _site(tenant, "MA1")
    loads = []

    def load():
        loads.append(1)
        return Site.objects.get(pk=site.pk).air_gapped

    def memo(scopes):
        context = services.decision_context(site.pk)
        return services.context_memo(context, ("air_gapped", site.pk), scopes, load)

    assert memo((0, tenant.pk)) is False and memo((0, tenant.pk)) is False
    assert len(loads) == 1
    Site.objects.filter(pk=site.pk).update(air_gapped=True)
    assert memo((0, tenant.pk)) is True and len(loads) == 2
    assert memo((0, other.pk)) is True and len(loads) == 3  # a scope the context does not cover
