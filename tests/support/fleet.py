"""Test data built through the real services (validated and audited like any change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from factory.catalog.models import UltraServerModel
from factory.inventory.models import PowerFeed, Rack, Site, UltraServer
from factory.inventory.services import save_ultraserver
from tenants.access import SYSTEM
from tenants.choices import Role, TenantKind
from tenants.models import Membership, Tenant
from tenants.services.changes import ChangeContext, save_object
from tenants.services.tokens import issue_token

CTX = ChangeContext(SYSTEM)


def make_tenant(slug: str, country: str = "DE") -> Tenant:
    return save_object(
        Tenant(
            name=slug.title(),
            slug=slug,
            kind=TenantKind.GOVERNMENT,
            country=country,
            contact_email=f"ops@{slug}.example",
        ),
        CTX,
    )


def make_person(username: str, role: str, tenant: Tenant | None = None, **facts):
    user = get_user_model().objects.create_user(username=username, password="pw", **facts)
    save_object(Membership(user=user, tenant=tenant, role=role), CTX)
    return user


def make_site(tenant: Tenant, code: str, *, power_kw="2000", cooling_kw="2000") -> Site:
    return save_object(
        Site(
            tenant=tenant,
            code=code,
            name=f"Site {code}",
            country=tenant.country,
            time_zone="Europe/Berlin",
            contracted_power_kw=Decimal(power_kw),
            contracted_cooling_kw=Decimal(cooling_kw),
            status="active",
        ),
        CTX,
    )


def make_rack(
    site: Site, name: str, *, cooling="liquid", cooling_kw="250", amperage=400, paths=("A", "B")
) -> Rack:
    rack = save_object(
        Rack(site=site, name=name, cooling_type=cooling, cooling_capacity_kw=Decimal(cooling_kw)),
        CTX,
    )
    for path in paths:
        save_object(
            PowerFeed(
                rack=rack,
                name=f"{name}-{path}",
                path=path,
                voltage=400,
                amperage=Decimal(amperage),
                phase="three",
            ),
            CTX,
        )
    return rack


def make_server(
    serial: str,
    model_slug: str = "trn3-ultraserver",
    rack: Rack | None = None,
    position: int | None = None,
    tenant: Tenant | None = None,
) -> UltraServer:
    model = UltraServerModel.objects.get(slug=model_slug)
    if rack is not None and position is None:
        position = 1
    return save_ultraserver(
        UltraServer(
            serial=serial,
            model=model,
            rack=rack,
            position=position,
            tenant=tenant or (rack.site.tenant if rack else None),
        ),
        CTX,
    )


def client_for(user, scope: str = "write") -> APIClient:
    _, clear = issue_token(user, CTX, name="test", scope=scope)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {clear}")
    return client


@dataclass
class Fleet:
    """Two tenants, each with a site, a liquid-cooled rack (A+B) holding one Trn3 UltraServer,
    and one person of every role."""

    alpha: Tenant
    beta: Tenant
    people: dict[str, object] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)
    racks: dict[str, Rack] = field(default_factory=dict)
    servers: dict[str, UltraServer] = field(default_factory=dict)

    def client(self, who: str, scope: str = "write") -> APIClient:
        return client_for(self.people[who], scope)


def build_fleet() -> Fleet:
    alpha, beta = make_tenant("alpha", "DE"), make_tenant("beta", "US")
    fleet = Fleet(alpha, beta)
    fleet.people["provider_admin"] = make_person("padmin", Role.PROVIDER_ADMIN, is_staff=True)
    fleet.people["technician"] = make_person(
        "tech", Role.PROVIDER_TECHNICIAN, nationality="DE", residency="DE", clearance="secret"
    )
    for tenant in (alpha, beta):
        for role, key in (
            (Role.TENANT_ADMIN, "admin"),
            (Role.TENANT_OPERATOR, "operator"),
            (Role.TENANT_VIEWER, "viewer"),
        ):
            fleet.people[f"{tenant.slug}_{key}"] = make_person(f"{tenant.slug}-{key}", role, tenant)
        site = make_site(tenant, f"{tenant.slug.upper()[:3]}1")
        rack = make_rack(site, f"{site.code}-R01")
        fleet.sites[tenant.slug] = site
        fleet.racks[tenant.slug] = rack
        fleet.servers[tenant.slug] = make_server(f"{site.code}-SRV1", rack=rack)
    return fleet
