"""Demo data for provisioning: firmware releases (a baseline and a newer build per model in the
demo fleet) and maintenance windows (one approved, one awaiting the tenant). Idempotent."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from factory.catalog.models import UltraServerModel
from factory.inventory.demo import DEMO_FIRMWARE, demo_fabric_site
from factory.inventory.models import Site, UltraServer
from provisioning.choices import WindowStatus
from provisioning.models import FirmwareRelease, MaintenanceWindow
from provisioning.placement import services as placement
from provisioning.placement.models import CapacityReservation, WorkloadUnit
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext
from tenants.sovereignty import services as sovereignty
from tenants.sovereignty.core import signing
from tenants.sovereignty.core.model import RuleKind
from tenants.sovereignty.models import RuleStatus, SovereigntyRule, TrustRoot

NEXT_FIRMWARE = "2026.11.0"

#: DEVELOPMENT ONLY, NOT SECRET: the demo's firmware signing key, derived from a published
#: phrase so every demo load signs the same way. Its public key is registered as a provider
#: trust root ("demo-dev-<origin>"); never register it anywhere real.
DEMO_SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"aifactory demo firmware signing key - DEVELOPMENT ONLY, NOT SECRET").digest()
)


def firmware_dir() -> Path:
    """Where the demo's images are written, and served from by ``runfactory``."""
    return settings.VAR_DIR / "firmware"


def demo_image(origin: str, version: str) -> bytes:
    """The demo's stand-in for a firmware image (what the agent fetches and checks)."""
    return f"AI factory DEMO firmware image\norigin={origin}\nversion={version}\n".encode() * 64


def write_demo_images() -> None:
    """Write every demo-signed release's image under ``firmware_dir()`` (for runfactory)."""
    demo_key_id = signing.key_id(signing.parse_public_key(signing.public_key_of(DEMO_SIGNING_KEY)))
    for release in FirmwareRelease.objects.filter(key_id=demo_key_id):
        path = firmware_dir() / release.origin / f"{release.version}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(demo_image(release.origin, release.version))


def _sign_demo_release(release: FirmwareRelease, slug: str) -> None:
    """Give a demo release its digest and signature by the demo key (once)."""
    if release.signature:
        return
    image = demo_image(release.origin, release.version)
    release.sha256 = signing.image_digest(image)
    release.key_id = signing.key_id(
        signing.parse_public_key(signing.public_key_of(DEMO_SIGNING_KEY))
    )
    release.signature = signing.sign(
        DEMO_SIGNING_KEY, signing.message(slug, release.version, release.origin, release.sha256)
    )
    release.save(update_fields=["sha256", "key_id", "signature"])


def firmware_origin(model_slug: str) -> str:
    """The vendor's release channel: what the demo tenants' provenance rules accept."""
    return "nvidia" if model_slug.startswith("gb") else "aws-neuron"


@transaction.atomic
def load_demo_provisioning() -> None:
    ctx = ChangeContext(SYSTEM, AuditSource.COMMAND)
    models = set(UltraServer.objects.values_list("model_id", "model__slug"))
    for model_id, slug in models:
        origin = firmware_origin(slug)
        if not TrustRoot.objects.filter(tenant=None, name=f"demo-dev-{origin}").exists():
            sovereignty.register_trust_root(
                TrustRoot(
                    tenant=None,
                    name=f"demo-dev-{origin}",
                    origin=origin,
                    public_key=signing.public_key_of(DEMO_SIGNING_KEY),
                    description="The demo's development signing key (not secret; demo only).",
                ),
                ctx,
            )
        baseline, _ = FirmwareRelease.objects.get_or_create(
            model_id=model_id,
            version=DEMO_FIRMWARE,
            defaults={"origin": origin, "baseline": True},
        )
        upgrade, _ = FirmwareRelease.objects.get_or_create(
            model_id=model_id, version=NEXT_FIRMWARE, defaults={"origin": origin}
        )
        for release in (baseline, upgrade):
            _sign_demo_release(release, slug)
    # The demo tenants take the demo keys into their provenance rules, as a tenant re-activates
    # a rule to take a provider root registered after it (a rule pins the roots it trusts).
    for rule in SovereigntyRule.objects.filter(
        status=RuleStatus.ACTIVE, kind=RuleKind.ARTIFACT_PROVENANCE
    ):
        if rule.pins_roots and rule.current_roots() != rule.pinned_roots:
            sovereignty.repin_rule(rule, ctx, confirm=True)
    for site in Site.objects.all():
        MaintenanceWindow.objects.get_or_create(
            site=site,
            name="Sunday early",
            defaults={
                "weekdays": [6],
                "start_time": dt.time(2, 0),
                "duration_minutes": 240,
                "status": WindowStatus.APPROVED,
                "proposed_by": "admin",
                "decided_by": "demo",
            },
        )
        MaintenanceWindow.objects.get_or_create(
            site=site,
            name="Weeknights",
            defaults={
                "weekdays": [0, 1, 2, 3],
                "start_time": dt.time(22, 0),
                "duration_minutes": 360,
                "proposed_by": "admin",
            },
        )
    load_demo_placement()


#: The demo's capacity block and the unit running in it (on ``demo_fabric_site()``).
DEMO_RESERVATION = "rufus-block"
DEMO_UNIT = "rufus"


def load_demo_placement() -> None:
    """An active reservation of 4 Trn2 UltraServers under one leaf on the fabric site, and a
    running unit of 4 in it, made through the placement services (chosen by the solver,
    audited). Idempotent: nothing is made twice."""
    site = Site.objects.filter(code=demo_fabric_site()).select_related("tenant").first()
    if site is None:
        return
    ctx = ChangeContext(SYSTEM, AuditSource.COMMAND)
    reservation = CapacityReservation.objects.filter(
        site=site, name=DEMO_RESERVATION, state__in=["scheduled", "active"]
    ).first()
    if reservation is None:
        now = timezone.now()
        reservation = placement.reserve(
            site.tenant,
            site,
            UltraServerModel.objects.get(slug="trn2-ultraserver"),
            4,
            now,
            now + dt.timedelta(days=90),
            "same_node",
            None,
            ctx,
            name=DEMO_RESERVATION,
        )
    if (
        not WorkloadUnit.objects.filter(tenant=site.tenant, name=DEMO_UNIT)
        .exclude(state="released")
        .exists()
    ):
        placement.place_unit(
            site.tenant,
            site,
            DEMO_UNIT,
            4,
            "same_node",
            None,
            "none",
            [],
            ctx,
            reservation=reservation,
            max_unavailable=1,
            model=reservation.model,
        )
