"""The demo fleet: a German government tenant in Frankfurt and a US enterprise in Ashburn, each
site with its EFA fabric (a spine over leaves; Ashburn's is the larger, ``demo_fabric_site``).

Built through the same services as the API, so the demo obeys every placement rule. Loading is
idempotent: a second run finds the fleet and changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from factory.catalog.models import UltraServerModel
from factory.inventory.choices import LifecycleState, RackStatus, SiteStatus
from factory.inventory.fabric import replace_fabric
from factory.inventory.models import PowerFeed, Rack, Site, UltraServer
from factory.inventory.services import save_ultraserver, transition
from factory.wire import Category
from tenants.access import SYSTEM
from tenants.choices import AuditSource, Clearance, Role, TenantKind
from tenants.models import Membership, Tenant
from tenants.services.changes import ChangeContext, save_object

DEMO_PASSWORD = "factory-demo"
DEMO_FIRMWARE = "2026.09.1"

PEOPLE = [
    # username, first, last, nationality, residency, clearance, role, tenant slug
    ("admin", "Fleet", "Admin", "DE", "DE", Clearance.SECRET, Role.PROVIDER_ADMIN, None),
    (
        "sofia.lindqvist",
        "Sofia",
        "Lindqvist",
        "SE",
        "DE",
        Clearance.SECRET,
        Role.PROVIDER_ADMIN,
        None,
    ),
    (
        "lukas.hoffmann",
        "Lukas",
        "Hoffmann",
        "DE",
        "DE",
        Clearance.SECRET,
        Role.PROVIDER_TECHNICIAN,
        None,
    ),
    (
        "daniel.reyes",
        "Daniel",
        "Reyes",
        "US",
        "US",
        Clearance.CONFIDENTIAL,
        Role.PROVIDER_TECHNICIAN,
        None,
    ),
    (
        "anna.schneider",
        "Anna",
        "Schneider",
        "DE",
        "DE",
        Clearance.SECRET,
        Role.TENANT_ADMIN,
        "bsia",
    ),
    (
        "jonas.weber",
        "Jonas",
        "Weber",
        "DE",
        "DE",
        Clearance.CONFIDENTIAL,
        Role.TENANT_OPERATOR,
        "bsia",
    ),
    ("lea.fischer", "Lea", "Fischer", "DE", "DE", Clearance.RESTRICTED, Role.TENANT_VIEWER, "bsia"),
    ("emily.carter", "Emily", "Carter", "US", "US", Clearance.NONE, Role.TENANT_ADMIN, "meridian"),
    (
        "marcus.johnson",
        "Marcus",
        "Johnson",
        "US",
        "US",
        Clearance.NONE,
        Role.TENANT_OPERATOR,
        "meridian",
    ),
    ("priya.raman", "Priya", "Raman", "IN", "US", Clearance.NONE, Role.TENANT_VIEWER, "meridian"),
]


def _feeds(rack: Rack, ctx: ChangeContext, amperage: int) -> None:
    for path in ("A", "B"):
        save_object(
            PowerFeed(
                rack=rack,
                name=f"{rack.name}-{path}1",
                path=path,
                voltage=400,
                amperage=Decimal(amperage),
                phase="three",
            ),
            ctx,
        )


def _site(ctx, tenant, *, racks, **fields) -> Site:
    site = save_object(Site(tenant=tenant, status=SiteStatus.ACTIVE, **fields), ctx)
    for index, (model_slug, per_rack, cooling, cooling_kw, amperage) in enumerate(racks, start=1):
        rack = save_object(
            Rack(
                site=site,
                name=f"{site.code}-R{index:02d}",
                u_height=48,
                status=RackStatus.ACTIVE,
                cooling_type=cooling,
                cooling_capacity_kw=Decimal(cooling_kw),
            ),
            ctx,
        )
        _feeds(rack, ctx, amperage)
        model = UltraServerModel.objects.get(slug=model_slug)
        family = model.slug.split("-")[0].upper()
        for slot in range(per_rack):
            server = save_ultraserver(
                UltraServer(
                    serial=f"{site.code}-{family}-{index:02d}{slot + 1:02d}",
                    model=model,
                    rack=rack,
                    position=1 + slot * model.rack_units,
                    tenant=tenant,
                    firmware_version=DEMO_FIRMWARE,
                    runtime_version="neuron-2.26" if "trn" in model.slug else "cuda-13.0",
                ),
                ctx,
            )
            for state in (
                LifecycleState.INSTALLING,
                LifecycleState.BURN_IN,
                LifecycleState.READY,
                LifecycleState.IN_SERVICE,
            ):
                transition(server.pk, state, ctx)
    return site


@transaction.atomic
def load_demo_fleet(stdout=None) -> bool:
    """Returns False when the fleet was already there."""
    if Tenant.objects.filter(slug="bsia").exists():
        return False
    ctx = ChangeContext(SYSTEM, AuditSource.COMMAND)
    bsia = save_object(
        Tenant(
            name="Bundesagentur für Souveräne KI",
            slug="bsia",
            kind=TenantKind.GOVERNMENT,
            country="DE",
            contact_email="betrieb@bsia.example.de",
        ),
        ctx,
    )
    meridian = save_object(
        Tenant(
            name="Meridian Health Systems",
            slug="meridian",
            kind=TenantKind.ENTERPRISE,
            country="US",
            contact_email="platform@meridianhealth.example.com",
        ),
        ctx,
    )
    tenants = {"bsia": bsia, "meridian": meridian}
    User = get_user_model()
    for username, first, last, nationality, residency, clearance, role, slug in PEOPLE:
        user = User(
            username=username,
            first_name=first,
            last_name=last,
            email=f"{username}@example.org",
            nationality=nationality,
            residency=residency,
            clearance=clearance,
            is_staff=role == Role.PROVIDER_ADMIN,
            is_superuser=role == Role.PROVIDER_ADMIN,
        )
        user.set_password(DEMO_PASSWORD)
        user.save()
        save_object(Membership(user=user, tenant=tenants.get(slug), role=role), ctx)

    _site(
        ctx,
        bsia,
        code="FRA1",
        name="Frankfurt Rechenzentrum 1",
        country="DE",
        city="Frankfurt am Main",
        time_zone="Europe/Berlin",
        contracted_power_kw=Decimal("1000"),
        contracted_cooling_kw=Decimal("1000"),
        racks=[("trn3-ultraserver", 1, "liquid", "200", 400)] * 4,
    )
    _site(
        ctx,
        meridian,
        code="IAD1",
        name="Ashburn Data Hall 1",
        country="US",
        city="Ashburn, VA",
        time_zone="America/New_York",
        # 2 × 120.8 kW (GB300) + 10 × 44.4 kW (Trn2) = 685.6 kW committed, A+B on every rack.
        contracted_power_kw=Decimal("800"),
        contracted_cooling_kw=Decimal("800"),
        racks=[
            ("gb300-nvl72", 1, "liquid", "140", 250),
            ("gb300-nvl72", 1, "liquid", "140", 250),
            *[("trn2-ultraserver", 2, "air", "100", 200)] * 5,
        ],
    )
    for code, leaves in DEMO_FABRICS.items():
        _fabric(ctx, code, leaves)
    _sovereignty(ctx, bsia, meridian)
    return True


#: Per site, its EFA fabric: one spine, and each leaf with the racks whose servers hang under it.
DEMO_FABRICS = {
    "FRA1": {"FRA1-LEAF-1": ["FRA1-R01", "FRA1-R02"], "FRA1-LEAF-2": ["FRA1-R03", "FRA1-R04"]},
    "IAD1": {
        "IAD1-LEAF-1": ["IAD1-R01", "IAD1-R02"],  # the GB300 NVL72s
        "IAD1-LEAF-2": ["IAD1-R03", "IAD1-R04", "IAD1-R05"],  # 6 Trn2 UltraServers
        "IAD1-LEAF-3": ["IAD1-R06", "IAD1-R07"],  # 4 Trn2 UltraServers
    },
}


def demo_fabric_site() -> str:
    """The demo site that shows a fabric: several racks, leaves under a spine, every server
    attached. The demo's reservation and running unit go there (RESERVE adds them)."""
    return "IAD1"


def _fabric(ctx: ChangeContext, code: str, leaves: dict[str, list[str]]) -> None:
    """The site's fabric through the same service as the API and ``import_fabric``."""
    site = Site.objects.get(code=code)
    spine = f"{code}-SPINE-1"
    replace_fabric(
        site,
        {
            "layers": ["spine", "leaf"],
            "nodes": [
                {"name": spine, "layer": "spine", "parent": None},
                *({"name": leaf, "layer": "leaf", "parent": spine} for leaf in leaves),
            ],
            "attachments": {
                serial: leaf
                for leaf, racks in leaves.items()
                for serial in UltraServer.objects.filter(
                    rack__site=site, rack__name__in=racks
                ).values_list("serial", flat=True)
            },
        },
        ctx,
    )


def _sovereignty(ctx: ChangeContext, bsia, meridian) -> None:
    """Rules, assets and a pending lockbox request, so the engine has something to decide."""
    import datetime as dt

    from django.utils import timezone

    from tenants.sovereignty.models import (
        AccessRequest,
        LockboxPolicy,
        ProtectedAsset,
        SovereigntyRule,
    )
    from tenants.sovereignty.services import (
        activate_rule,
        request_access,
        save_asset,
        save_policy,
    )

    fra = Site.objects.get(code="FRA1")
    fra.accreditations = ["vs-nfd", "bsi-c5", "customer-hsm"]
    save_object(fra, ctx)
    rules = {
        bsia: [
            (
                "Personal data stays in Germany",
                "residency",
                {"labels": ["personenbezogen"], "allowed": ["DE"]},
            ),
            (
                "Models and data in the EU",
                "residency",
                {
                    "asset_kinds": ["dataset", "model"],
                    "min_classification": "confidential",
                    "allowed": ["EU"],
                },
            ),
            (
                "Cleared German staff on site",
                "personnel",
                {"nationalities": ["DE"], "min_clearance": "secret", "in_country": True},
            ),
            ("Lockbox for provider access", "customer_approval", {}),
            (
                "Signed firmware from known vendors",
                "artifact_provenance",
                {"origins": ["aws-neuron", "nvidia"], "require_signature": True},
            ),
            (
                "Only facility and health telemetry leaves, to the EU (not utilization)",
                "telemetry_egress",
                {
                    "categories": [Category.POWER, Category.THERMAL, Category.RELIABILITY],
                    "destinations": ["EU"],
                },
            ),
            (
                "Keys in the customer's HSM",
                "key_custody",
                {"in_country": True, "customer_controlled": True},
            ),
        ],
        meridian: [
            ("Health data stays in the US", "residency", {"labels": ["phi"], "allowed": ["US"]}),
        ],
    }
    for tenant, specs in rules.items():
        for name, kind, params in specs:
            rule = save_object(
                SovereigntyRule(tenant=tenant, name=name, kind=kind, params=params), ctx
            )
            activate_rule(rule, ctx)
    for name, kind, classification, labels in [
        ("Bürgerdaten-Korpus 2026", "dataset", "confidential", ["personenbezogen"]),
        ("Verwaltungs-LLM 70B", "model", "restricted", []),
        ("Schlüssel Mandant BSIA", "key", "secret", []),
    ]:
        save_asset(
            ProtectedAsset(
                tenant=bsia,
                name=name,
                kind=kind,
                classification=classification,
                labels=labels,
                site=fra,
            ),
            ctx,
        )
    # bsia's keys at FRA1 are in an external key store it runs (XKS); connected.
    from tenants.sovereignty.models import ExternalKeyStore

    xks = save_object(
        ExternalKeyStore(
            tenant=bsia,
            name="bsia-xks-fra",
            endpoint_url="https://xks.bsia.example/kms/xks/v1",
            country="DE",
        ),
        ctx,
    )
    xks.sites.set([fra])
    save_asset(
        ProtectedAsset(
            tenant=meridian,
            name="Claims 2019-2026",
            kind="dataset",
            classification="restricted",
            labels=["phi"],
            site=Site.objects.get(code="IAD1"),
        ),
        ctx,
    )
    now = timezone.now()
    # bsia's lockbox (issue 14): legal requests never; break-glass for a leak or a production
    # alert, two hours at most; the technician must be in Germany.
    save_policy(
        LockboxPolicy(
            tenant=bsia,
            emergency_codes=["safety_hazard", "production_alert"],
            break_glass_minutes=120,
        ),
        ctx,
    )
    request_access(
        AccessRequest(
            tenant=bsia,
            site=fra,
            person=get_user_model().objects.get(username="lukas.hoffmann"),
            requested_by=get_user_model().objects.get(username="sofia.lindqvist"),
            reason="Replace CDU pump in FRA1-R02",
            justification="provider_maintenance",
            scope="physical_repair",
            office_country="DE",
            physical_country="DE",
            starts_at=now + dt.timedelta(hours=1),
            ends_at=now + dt.timedelta(hours=5),
        ),
        ctx,
    )
