"""The enforcement matrix: every rule kind × every operation it governs × {allowed, denied}.

Rows are generated from the rule catalogue (``RuleKind``): a kind without operations is a row
that fails, so a new kind cannot land without its proof. Each row activates a real rule through
the API as the tenant, does the real operation (asset POST/PATCH, workload deploy, dispatch,
upgrade creation, telemetry config poll, key placement) and checks that ``POST /evaluate/``, the
rule's what-if and the operation agree; on a deny: 403 (or the workflow step refused), nothing
written, and a denied ``DecisionRecord`` naming the rule in the owner's log.

A row's operation is one small ``act`` function per kind/operation (``OPERATIONS``); the other
parts of issue 14 change some operations (lockbox at dispatch, signed releases, key stores):
adapt the ``act`` (and the setup it needs), not the matrix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from factory import wire
from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.inventory.models import Site
from provisioning import services as provisioning
from provisioning.models import Step, Workflow
from tenants.services.changes import save_object
from tenants.sovereignty import services
from tenants.sovereignty.core.model import RuleKind
from tenants.sovereignty.core.rules import SCHEMA
from tenants.sovereignty.models import AccessRequest, DecisionRecord, ProtectedAsset
from tests.support.admin import admin_form_data
from tests.support.api import gateway
from tests.support.fleet import CTX, make_person, make_rack, make_server
from tests.support.hardware import SimHardware
from tests.support.harness import drive
from tests.support.schema import assert_conforms
from tests.support.sovereignty import RULES
from tests.support.telemetry import agent_client
from tests.support.workflows import always_open, make_releases, put_in_service

pytestmark = pytest.mark.django_db
ASSETS = "/api/v1/sovereignty/assets/"
EVALUATE = "/api/v1/sovereignty/evaluate/"
DECISIONS = "/api/v1/sovereignty/decisions/"
FIRMWARE_ORIGIN = "https://firmware.provider.example"  # make_releases()


# --- The world every row starts from ---------------------------------------------------------


@dataclass
class World:
    """Tenant alpha with sites in DE (the fleet's), FR, US and an accredited DE vault
    (``bsi-c5``, ``customer-hsm``); firmware releases; the fleet's people."""

    fleet: Any
    de: Site
    fr: Site
    us: Site
    vault: Site
    hw: SimHardware = field(default_factory=SimHardware)

    @property
    def tenant(self):
        return self.fleet.alpha

    def client(self, who: str = "alpha_operator"):
        return self.fleet.client(who)


def alpha_site(fleet, code: str, country: str, accreditations: tuple[str, ...] = ()) -> Site:
    return save_object(
        Site(
            tenant=fleet.alpha,
            code=code,
            name=f"Alpha {code}",
            country=country,
            time_zone="Europe/Berlin",
            contracted_power_kw=Decimal(2000),
            contracted_cooling_kw=Decimal(2000),
            status="active",
            accreditations=list(accreditations),
        ),
        CTX,
    )


@pytest.fixture
def world(fleet) -> World:
    make_releases()
    return World(
        fleet,
        de=fleet.sites["alpha"],
        fr=alpha_site(fleet, "ALPFR", "FR"),
        us=alpha_site(fleet, "ALPUS", "US"),
        vault=alpha_site(fleet, "ALPVLT", "DE", ("bsi-c5", "customer-hsm")),
    )


# --- One case: what a row needs --------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the real operation did: allowed, its HTTP status (API operations), and whether
    its effect was written (an asset stored or moved, capacity given, a workflow created)."""

    allowed: bool
    written: bool
    status: int | None = None


@dataclass(frozen=True)
class Case:
    """A row, built in the world before the rule exists.

    ``evaluate``: the ``POST /evaluate/`` body asking the operation's question. ``probe``: the
    (type, id) the rule's what-if must list exactly when the row is a deny (an existing
    placement or standing access like the one the operation makes); ``None`` where the what-if
    does not look at this operation (transfers, workloads, artifacts, telemetry: it judges the
    live fleet's placements and standing accesses only)."""

    params: dict[str, Any]
    evaluate: dict[str, Any]
    act: Callable[[], Outcome]
    probe: tuple[str, str] | None = None


def new_asset(world: World, site: Site | None, name: str, **attrs) -> ProtectedAsset:
    """An asset stored through the service, before any rule is active (a probe, a start)."""
    values = {"kind": "dataset", "classification": "internal", **attrs}
    return services.save_asset(
        ProtectedAsset(tenant=world.tenant, name=name, site=site, **values), CTX
    )


def asset_body(world: World, name: str, site: Site, **attrs) -> dict[str, Any]:
    return {
        "tenant": world.tenant.pk,
        "name": name,
        "kind": "dataset",
        "classification": "internal",
        "site": site.pk,
        **attrs,
    }


# --- The operations (one small function each) ------------------------------------------------


def post_asset(world: World, body: dict[str, Any]) -> Outcome:
    response = world.client().post(ASSETS, body, format="json")
    written = ProtectedAsset.objects.filter(tenant=world.tenant, name=body["name"]).exists()
    return Outcome(response.status_code == 201, written, response.status_code)


def patch_asset(world: World, asset: ProtectedAsset, site: Site) -> Outcome:
    response = world.client().patch(f"{ASSETS}{asset.pk}/", {"site": site.pk}, format="json")
    written = ProtectedAsset.objects.get(pk=asset.pk).site_id == site.pk
    return Outcome(response.status_code == 200, written, response.status_code)


def deploy_workload(world: World, site: Site, inputs: list[ProtectedAsset]) -> Outcome:
    """A deploy workflow for a server at ``site`` reading ``inputs``: its preflight decides;
    capacity is given (the server racked, an install command sent) only after an allow."""
    server = make_server(f"{site.code}-WL1", rack=make_rack(site, f"{site.code}-WL"))
    agent, _ = agents.issue_agent(site, f"agent-{site.code}-wl", CTX)
    workflow, _ = provisioning.create_workflow(
        "deploy", [server], CTX, spec={"poll_seconds": 1, "inputs": [a.pk for a in inputs]}
    )
    drive(workflow, agent, world.hw, rounds=3)  # to preflight, through it, to install
    preflight = Step.objects.get(workflow=workflow, name="preflight")
    server.refresh_from_db()
    capacity = (
        AgentCommand.objects.filter(ultraserver=server).exists()
        or server.lifecycle_state != "planned"
    )
    return Outcome(preflight.state == "succeeded", capacity)


def dispatch(world: World, technician, from_country: str) -> Outcome:
    """A maintain workflow on alpha's in-service server reaches dispatch; ``technician`` is
    assigned. Allowed: the step is done; denied: it waits for someone who may."""
    site = world.de
    server = put_in_service(world.fleet.servers["alpha"])
    agent, _ = agents.issue_agent(site, "agent-dispatch", CTX)
    _, workflow = provisioning.report_fault(server, "HBM ECC storm on chip 9", CTX)
    assert workflow is not None
    workflow = drive(workflow, agent, world.hw, rounds=4)
    provisioning.provide_input(
        workflow, "dispatch", None, {"technician": technician.pk, "from_country": from_country}, CTX
    )
    drive(workflow, agent, world.hw, rounds=2)
    step = Step.objects.get(workflow=workflow, name="dispatch")
    done = step.state == "succeeded"
    return Outcome(done, done and step.output.get("technician") == technician.username)


def create_upgrade(world: World) -> Outcome:
    """A firmware upgrade of alpha's in-service server, created through the API."""
    server = world.fleet.servers["alpha"]
    body = {
        "kind": "upgrade",
        "targets": {"ultraservers": [server.pk]},
        "spec": {"firmware_version": "2.0", "soak_seconds": 0},
    }
    response = world.fleet.client("provider_admin").post("/api/v1/workflows/", body, format="json")
    written = Workflow.objects.filter(kind="upgrade").exists()
    return Outcome(response.status_code == 201, written, response.status_code)


def poll_config(client, category: str) -> Outcome:
    """The site agent's config poll: may ``category`` leave the site?"""
    config = client.get(gateway(wire.CONFIG_PATH))
    assert config.status_code == 200, config.content
    sent = category in config.json()["telemetry_categories"]
    return Outcome(sent, sent)  # the poll itself is never refused: the category is dropped


def approved_access(world: World, technician, site: Site) -> AccessRequest:
    """A standing access for ``technician`` at ``site``: asked by the provider, approved by
    the tenant's admin, through the API."""
    now = timezone.now()
    asked = world.fleet.client("provider_admin").post(
        "/api/v1/sovereignty/access-requests/",
        {
            "site": site.pk,
            "person": technician.pk,
            "reason": "replace CDU pump",
            "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
            "ends_at": (now + dt.timedelta(hours=4)).isoformat(),
        },
        format="json",
    )
    assert asked.status_code == 201, asked.content
    rid = asked.json()["id"]
    approved = world.client("alpha_admin").post(
        f"/api/v1/sovereignty/access-requests/{rid}/approve/"
    )
    assert approved.status_code == 200, approved.content
    return AccessRequest.objects.get(pk=rid)


# --- The cases, kind by kind -----------------------------------------------------------------

# residency: placements and processing only in the allowed places.


def residency_asset_post(world: World, allowed: bool) -> Case:
    target = world.fr if allowed else world.us
    probe = new_asset(world, target, "probe")
    return Case(
        {"asset_kinds": ["dataset"], "allowed": ["EU"]},
        {"action": "place_asset", "site": target.pk, "asset": probe.pk},
        lambda: post_asset(world, asset_body(world, "patients", target)),
        ("asset", str(probe.pk)),
    )


def residency_asset_patch(world: World, allowed: bool) -> Case:
    target = world.fr if allowed else world.us
    asset, probe = new_asset(world, world.de, "patients"), new_asset(world, target, "probe")
    return Case(
        {"asset_kinds": ["dataset"], "allowed": ["EU"]},
        {"action": "place_asset", "site": target.pk, "asset": asset.pk},
        lambda: patch_asset(world, asset, target),
        ("asset", str(probe.pk)),
    )


def residency_workload(world: World, allowed: bool) -> Case:
    site = world.de if allowed else world.us
    data = new_asset(world, world.de, "corpus")
    return Case(
        {"asset_kinds": ["dataset"], "allowed": ["EU"]},
        {"action": "process_asset", "site": site.pk, "asset": data.pk},
        lambda: deploy_workload(world, site, [data]),
    )


# colocation: processed only where stored.


def colocation_workload(world: World, allowed: bool) -> Case:
    site = world.de if allowed else world.fr
    data = new_asset(world, world.de, "corpus")
    return Case(
        {},
        {"action": "process_asset", "site": site.pk, "asset": data.pk},
        lambda: deploy_workload(world, site, [data]),
    )


# replica_residency: replicas and backups only in the allowed places.


def replica_asset_post(world: World, allowed: bool) -> Case:
    """Issue 14: the replica POST at a US site, a 201 before, is a 403."""
    target = world.fr if allowed else world.us
    probe = new_asset(world, target, "probe", kind="replica")
    return Case(
        {"allowed": ["EU"]},
        {"action": "replicate_asset", "site": target.pk, "asset": probe.pk},
        lambda: post_asset(world, asset_body(world, "patients-r1", target, kind="replica")),
        ("asset", str(probe.pk)),
    )


def replica_asset_patch(world: World, allowed: bool) -> Case:
    target = world.fr if allowed else world.us
    backup = new_asset(world, world.de, "patients-b1", kind="backup")
    probe = new_asset(world, target, "probe", kind="backup")
    return Case(
        {"allowed": ["EU"]},
        {"action": "replicate_asset", "site": target.pk, "asset": backup.pk},
        lambda: patch_asset(world, backup, target),
        ("asset", str(probe.pk)),
    )


# transfer: across a border only within the allowed places or with a legal basis on record.


def transfer_asset_patch(world: World, allowed: bool) -> Case:
    """Issue 14: moving an asset FR -> US without a legal basis, a 200 before, is a 403."""
    asset = new_asset(world, world.fr, "claims", classification="confidential")
    if allowed:
        basis = world.client("alpha_admin").post(
            "/api/v1/sovereignty/transfer-bases/",
            {"tenant": world.tenant.pk, "kind": "scc", "destination": "US", "reference": "SCC"},
            format="json",
        )
        assert basis.status_code == 201, basis.content
    return Case(
        {"asset_kinds": ["dataset"], "allowed": ["EEA"], "legal_bases": ["scc"]},
        {"action": "transfer_asset", "site": world.us.pk, "asset": asset.pk},
        lambda: patch_asset(world, asset, world.us),
    )


# accreditation: classified assets only on accredited sites.


def accreditation_asset_post(world: World, allowed: bool) -> Case:
    target = world.vault if allowed else world.de
    probe = new_asset(world, target, "probe", classification="confidential")
    return Case(
        {"min_classification": "confidential", "accreditations": ["bsi-c5"]},
        {"action": "place_asset", "site": target.pk, "asset": probe.pk},
        lambda: post_asset(world, asset_body(world, "contracts", target, classification="secret")),
        ("asset", str(probe.pk)),
    )


def accreditation_asset_patch(world: World, allowed: bool) -> Case:
    """Raising the classification in place asks again (the rule matches on it)."""
    site = world.vault if allowed else world.de
    asset = new_asset(world, site, "contracts", classification="public")
    probe = new_asset(world, site, "probe", classification="secret")

    def act() -> Outcome:
        response = world.client().patch(
            f"{ASSETS}{asset.pk}/", {"classification": "secret"}, format="json"
        )
        written = ProtectedAsset.objects.get(pk=asset.pk).classification == "secret"
        return Outcome(response.status_code == 200, written, response.status_code)

    return Case(
        {"min_classification": "confidential", "accreditations": ["bsi-c5"]},
        {"action": "place_asset", "site": site.pk, "asset": probe.pk},
        act,
        ("asset", str(probe.pk)),
    )


# personnel and customer_approval: people acting on a site, at dispatch.


def personnel_dispatch(world: World, allowed: bool) -> Case:
    if allowed:
        person = world.fleet.people["technician"]  # DE national and resident
    else:
        person = make_person("far-tech", "provider-technician", nationality="US", residency="US")
    standing = approved_access(world, person, world.de)
    return Case(
        {"nationalities": ["DE"]},
        {"action": "access_site", "site": world.de.pk, "person": person.pk, "from_country": "DE"},
        lambda: dispatch(world, person, "DE"),
        ("access-request", str(standing.pk)),
    )


def customer_approval_dispatch(world: World, allowed: bool) -> Case:
    person = world.fleet.people["technician"]
    standing = approved_access(world, person, world.de) if allowed else None
    return Case(
        {},
        {"action": "access_site", "site": world.de.pk, "person": person.pk, "from_country": "DE"},
        lambda: dispatch(world, person, "DE"),
        # The what-if judges standing (approved) accesses only: a missing approval it cannot see.
        ("access-request", str(standing.pk)) if standing else None,
    )


# telemetry_egress: which categories leave a site, to where.


def telemetry_config_poll(world: World, allowed: bool) -> Case:
    category = "power" if allowed else "thermal"
    client, _ = agent_client(world.de)
    assert poll_config(client, category).allowed  # before the rule: everything leaves
    return Case(
        {"categories": ["power"], "destinations": ["EU"]},
        {
            "action": "egress_telemetry",
            "site": world.de.pk,
            "destination": world.de.pk,
            "telemetry_category": category,
        },
        # The next poll after activation sees the rule: no cache to wait out.
        lambda: poll_config(client, category),
    )


# artifact_provenance: firmware only from the origins the rule names.


def artifact_upgrade_create(world: World, allowed: bool) -> Case:
    put_in_service(world.fleet.servers["alpha"])
    always_open(world.de)
    origin = FIRMWARE_ORIGIN if allowed else "https://mirror.alpha.example"
    return Case(
        {"origins": [origin], "require_signature": True},
        {
            "action": "accept_artifact",
            "site": world.de.pk,
            "artifact_origin": FIRMWARE_ORIGIN,
            "artifact_signed": True,
            "artifact_roots": ["provider:provider-release"],  # make_releases() signs with it
        },
        lambda: create_upgrade(world),
    )


# key_custody: keys only in customer-controlled (in-country) key stores.


def key_custody_key_placement(world: World, allowed: bool) -> Case:
    target = world.vault if allowed else world.de  # the vault holds a customer HSM
    probe = new_asset(world, target, "probe-key", kind="key", classification="secret")
    return Case(
        {"customer_controlled": True, "in_country": True},
        {"action": "place_asset", "site": target.pk, "asset": probe.pk},
        lambda: post_asset(
            world, asset_body(world, "kek-1", target, kind="key", classification="secret")
        ),
        ("asset", str(probe.pk)),
    )


#: The operations each rule kind governs, each with its case builder.
OPERATIONS: dict[RuleKind, dict[str, Callable[[World, bool], Case]]] = {
    RuleKind.RESIDENCY: {
        "asset-post": residency_asset_post,
        "asset-patch": residency_asset_patch,
        "workload-deploy": residency_workload,
    },
    RuleKind.COLOCATION: {"workload-deploy": colocation_workload},
    RuleKind.REPLICA_RESIDENCY: {
        "replica-post": replica_asset_post,
        "backup-patch": replica_asset_patch,
    },
    RuleKind.TRANSFER: {"asset-patch": transfer_asset_patch},
    RuleKind.ACCREDITATION: {
        "asset-post": accreditation_asset_post,
        "classification-patch": accreditation_asset_patch,
    },
    RuleKind.PERSONNEL: {"dispatch": personnel_dispatch},
    RuleKind.CUSTOMER_APPROVAL: {"dispatch": customer_approval_dispatch},
    RuleKind.TELEMETRY_EGRESS: {"config-poll": telemetry_config_poll},
    RuleKind.ARTIFACT_PROVENANCE: {"upgrade-create": artifact_upgrade_create},
    RuleKind.KEY_CUSTODY: {"key-placement": key_custody_key_placement},
}
MISSING = "no-operation"
ROWS = [
    pytest.param(kind, operation, allowed, id=f"{kind}-{operation}-{verdict}")
    for kind in RuleKind  # the catalogue, not OPERATIONS: a new kind is a failing row
    for operation in OPERATIONS.get(kind) or [MISSING]
    for allowed, verdict in ((True, "allowed"), (False, "denied"))
]


# --- The rule, through the API as the tenant -------------------------------------------------


def draft_rule(world: World, kind: RuleKind, params: dict[str, Any]) -> dict[str, Any]:
    created = world.client("alpha_admin").post(
        RULES,
        {"tenant": world.tenant.pk, "name": f"{kind} rule", "kind": kind, "params": params},
        format="json",
    )
    assert created.status_code == 201, created.content
    return created.json()


def what_if(world: World, rule: dict[str, Any]) -> set[tuple[str, str]]:
    answer = world.client("alpha_admin").post(f"{RULES}{rule['id']}/what-if/")
    assert answer.status_code == 200, answer.content
    return {(d["type"], d["id"]) for d in answer.json()["would_deny"]}


def activate(world: World, rule: dict[str, Any]) -> None:
    # ``confirm``: a rule that would deny existing placements (the probes) is activated knowingly.
    activated = world.client("alpha_admin").post(
        f"{RULES}{rule['id']}/activate/", {"confirm": True}, format="json"
    )
    assert activated.status_code == 200, activated.content


# --- The matrix --------------------------------------------------------------------------------


def test_the_catalogue_and_the_matrix_cover_the_same_kinds():
    assert set(SCHEMA) == set(RuleKind)
    assert set(OPERATIONS) == set(RuleKind), "every rule kind needs its operations here"
    assert all(OPERATIONS[kind] for kind in RuleKind)


@pytest.mark.parametrize(("kind", "operation", "allowed"), ROWS)
def test_rule_kind_operation(world, kind, operation, allowed):
    assert operation != MISSING, f"rule kind {kind!r} has no row in the enforcement matrix"
    case = OPERATIONS[kind][operation](world, allowed)
    rule = draft_rule(world, kind, case.params)
    if case.probe is not None:
        assert (case.probe in what_if(world, rule)) is (not allowed), "the what-if disagrees"
    activate(world, rule)
    cedar_id = rule["cedar_id"]

    evaluated = world.client("alpha_viewer").post(EVALUATE, case.evaluate, format="json")
    assert evaluated.status_code == 200, evaluated.content
    assert evaluated.json()["allowed"] is allowed, evaluated.json()
    if not allowed:
        assert cedar_id in evaluated.json()["rule_ids"]

    logged = DecisionRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
    outcome = case.act()
    assert outcome.allowed is allowed, outcome
    assert outcome.written is allowed, outcome
    if allowed:
        assert outcome.status in (None, 200, 201), outcome
        return
    assert outcome.status in (None, 403), outcome
    denials = DecisionRecord.objects.filter(
        id__gt=logged, tenant_id=world.tenant.pk, allowed=False, rule_ids__contains=[cedar_id]
    )
    assert denials.exists(), "no denied decision naming the rule in the owner's log"


# --- What the rows do not show on their own ----------------------------------------------------


def test_a_denied_move_names_every_rule_in_its_way_and_writes_nothing(world):
    """A replica moved FR -> US under a replica-residency and a transfer rule: both deny, the
    403 names both, the asset stays, and both denials are in the owner's log."""
    replica = new_asset(world, world.fr, "claims-r1", kind="replica")
    rules = []
    for kind, params in (
        (RuleKind.REPLICA_RESIDENCY, {"allowed": ["EU"]}),
        (RuleKind.TRANSFER, {"allowed": ["EEA"]}),
    ):
        rules.append(draft_rule(world, kind, params))
        activate(world, rules[-1])
    moved = patch_asset(world, replica, world.us)
    assert (moved.status, moved.written) == (403, False)
    response = world.client().patch(f"{ASSETS}{replica.pk}/", {"site": world.us.pk}, format="json")
    messages = " ".join(e["message"] for e in response.json()["errors"])
    assert all(rule["cedar_id"] in messages for rule in rules), messages
    denied = DecisionRecord.objects.filter(resource_id=str(replica.pk), allowed=False)
    assert {"replicate_asset", "transfer_asset"} <= set(denied.values_list("action", flat=True))


def test_an_assets_tenant_cannot_change(world):
    asset = new_asset(world, world.de, "patients")
    provider = world.fleet.client("provider_admin")
    response = provider.patch(
        f"{ASSETS}{asset.pk}/", {"tenant": world.fleet.beta.pk}, format="json"
    )
    assert response.status_code == 409, response.content
    assert response.json()["errors"][0]["field"] == "tenant"
    assert_conforms(response, "PATCH")
    assert ProtectedAsset.objects.get(pk=asset.pk).tenant_id == world.tenant.pk
    asset.tenant = world.fleet.beta
    with pytest.raises(services.TenantChanged):
        services.save_asset(asset, CTX)


def test_a_decision_is_filed_under_the_assets_owner_and_shown_redacted_to_the_site_owner(world):
    """Issue 14: a provider placing beta's asset at alpha's site filed beta's asset name in
    alpha's log and nothing in beta's. Now beta's rules decide and beta's log holds it; alpha
    sees that something was decided at its site, not what."""
    beta = world.fleet.beta
    placed = world.fleet.client("provider_admin").post(
        ASSETS,
        {
            "tenant": beta.pk,
            "name": "beta-secret-weights",
            "kind": "model",
            "classification": "secret",
            "site": world.de.pk,
        },
        format="json",
    )
    assert placed.status_code == 403, placed.content  # not on beta's own premises
    assert not ProtectedAsset.objects.filter(name="beta-secret-weights").exists()
    record = DecisionRecord.objects.get(resource_repr="beta-secret-weights")
    assert (record.tenant_id, record.site_owner_id, record.allowed) == (
        beta.pk,
        world.tenant.pk,
        False,
    )
    theirs = world.fleet.client("beta_admin").get(DECISIONS).json()["results"]
    assert [d["resource_repr"] for d in theirs] == ["beta-secret-weights"]
    assert theirs[0]["reasons"]
    listed = world.client("alpha_admin").get(DECISIONS)
    assert_conforms(listed)
    ours = listed.json()["results"]
    about_beta = [d for d in ours if d["redacted"]]
    assert len(about_beta) == 1
    seen = about_beta[0]
    # Whose asset it was and who asked are the other tenant's business.
    assert seen["tenant_id"] is None and seen["actor_username"] == ""
    assert all(d["tenant_id"] == world.tenant.pk for d in ours if not d["redacted"])
    assert (seen["site_id"], seen["action"], seen["allowed"]) == (world.de.pk, "place_asset", False)
    assert "beta-secret-weights" not in str(seen) and seen["reasons"] == []
    # A brief list (fewer fields) is redacted alike, and answers.
    brief = world.client("alpha_admin").get(DECISIONS, {"brief": "true"})
    assert brief.status_code == 200 and "beta-secret-weights" not in brief.content.decode()
    some = world.client("alpha_admin").get(DECISIONS, {"fields": "id,resource_repr"}).json()
    assert "beta-secret-weights" not in str(some)
    assert seen["rule_ids"] == [] and seen["resource_id"] == ""
    # Searching or filtering on what is redacted finds only the caller's own records.
    client = world.client("alpha_admin")
    for query in (
        {"q": "beta-secret"},
        {"resource_id": str(record.resource_id)},
        {"tenant_id": str(beta.pk)},
    ):
        found = client.get(DECISIONS, query).json()["results"]
        assert all(d["tenant_id"] == world.tenant.pk for d in found), query


def test_a_workload_input_that_cannot_be_checked_is_a_deny(world):
    theirs = services.save_asset(
        ProtectedAsset(
            tenant=world.fleet.beta,
            name="beta-data",
            kind="dataset",
            classification="internal",
            site=world.fleet.sites["beta"],
        ),
        CTX,
    )
    with pytest.raises(services.SovereigntyDenied):
        services.check_workload_inputs([theirs.pk], world.de, CTX)
    outcome = deploy_workload(world, world.de, [theirs])
    assert (outcome.allowed, outcome.written) == (False, False)


def test_an_egress_rule_reaches_the_agent_at_its_next_poll_and_polls_do_not_flood(world):
    client, _ = agent_client(world.de)
    everything = client.get(gateway(wire.CONFIG_PATH)).json()["telemetry_categories"]
    assert "thermal" in everything
    egress_records = DecisionRecord.objects.filter(action="egress_telemetry")
    decided = egress_records.count()
    for _ in range(3):
        assert client.get(gateway(wire.CONFIG_PATH)).json()["telemetry_categories"] == everything
    assert egress_records.count() == decided  # decided once per state of the rules, not per poll

    rule = draft_rule(world, RuleKind.TELEMETRY_EGRESS, {"categories": ["power"]})
    activate(world, rule)
    assert client.get(gateway(wire.CONFIG_PATH)).json()["telemetry_categories"] == ["power"]
    retired = world.client("alpha_admin").post(f"{RULES}{rule['id']}/retire/")
    assert retired.status_code == 200, retired.content
    assert client.get(gateway(wire.CONFIG_PATH)).json()["telemetry_categories"] == everything


def test_the_admin_neither_changes_an_assets_tenant_nor_bypasses_the_rules(world, client):
    """The admin saves assets through ``save_asset``: the tenant is read-only there, and a
    classification raised in place is decided like through the API."""
    padmin = world.fleet.people["provider_admin"]
    padmin.is_superuser = True
    padmin.save()
    client.force_login(padmin)
    asset = new_asset(world, world.de, "contracts", classification="public")
    rule = draft_rule(
        world,
        RuleKind.ACCREDITATION,
        {"min_classification": "confidential", "accreditations": ["bsi-c5"]},
    )
    activate(world, rule)
    change = f"/admin/sovereignty/protectedasset/{asset.pk}/change/"
    page = client.get(change)
    assert page.status_code == 200
    data = admin_form_data(page)
    assert "tenant" not in data  # read-only on change
    refused = client.post(
        change, {**data, "tenant": world.fleet.beta.pk, "classification": "secret"}
    )
    assert refused.status_code == 200  # the form again, with the rule's reason
    assert rule["cedar_id"] in refused.content.decode()
    stored = ProtectedAsset.objects.get(pk=asset.pk)
    assert (stored.tenant_id, stored.classification) == (world.tenant.pk, "public")
