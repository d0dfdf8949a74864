"""Seed the hardware catalog from shared/HARDWARE.md.

Per-chip figures only; system aggregates are derived (Trn3 UltraServer: 144 × 2.52 = 362.88 PFLOPs
FP8 dense, 144 × 144 GB = 20.736 TB HBM, 144 × 4.9 = 705.6 TB/s). Power figures the vendors do
not publish are estimates and flagged as such.
"""

from decimal import Decimal

from django.db import migrations

CHIPS = [
    dict(
        name="Trainium3",
        slug="trainium3",
        vendor="AWS",
        process="3 nm",
        fp8_dense_pflops=Decimal("2.52"),
        fp8_sparse_pflops=Decimal("10"),
        hbm_gb=Decimal("144"),
        hbm_type="HBM3e",
        hbm_tbps=Decimal("4.9"),
        nominal_power_w=1000,
        max_power_w=1200,
        cooling="liquid",
        power_is_estimate=True,
        source_note="FP8 dense/sparse (16:4 structured), HBM and bandwidth: project brief (seed). "
        "Power not published: ~1 kW class, liquid cooled (estimate); max 1.2 kW assumed.",
    ),
    dict(
        name="Trainium2",
        slug="trainium2",
        vendor="AWS",
        process="",
        fp8_dense_pflops=Decimal("1.3"),
        fp8_sparse_pflops=None,
        hbm_gb=Decimal("103.079"),
        hbm_type="HBM",
        hbm_tbps=Decimal("2.9"),
        nominal_power_w=500,
        max_power_w=600,
        cooling="air",
        power_is_estimate=True,
        source_note="1.3 PFLOPs FP8 = 83.2 PF / 64 chips; 96 GiB HBM (103.079 GB); 2.9 TB/s. "
        "Power ~500 W (estimate); max 600 W and air cooling assumed.",
    ),
    dict(
        name="NVIDIA GB300",
        slug="nvidia-gb300",
        vendor="NVIDIA",
        process="4NP",
        fp8_dense_pflops=None,
        fp8_sparse_pflops=None,
        hbm_gb=Decimal("288"),
        hbm_type="HBM3e",
        hbm_tbps=Decimal("8"),
        nominal_power_w=1200,
        max_power_w=1400,
        cooling="liquid",
        power_is_estimate=True,
        source_note="Blackwell Ultra: 288 GB HBM3e, 8 TB/s. FP8 figures not in HARDWARE.md, left "
        "empty rather than guessed. ~1.4 kW per GPU (estimate) taken as max; 1.2 kW nominal.",
    ),
]

SYSTEMS = [
    dict(
        name="Trn3 UltraServer",
        slug="trn3-ultraserver",
        chip="trainium3",
        chip_count=144,
        interconnect="all-to-all-switch",
        interconnect_note="NeuronSwitch-v1, all-to-all, two levels; 36 servers × 4 chips; "
        "2× Trn2's chip-to-chip bandwidth",
        rack_units=42,
        overhead_power_w=15000,
        cooling="liquid",
        source_note="Aggregates (seed): 362 PFLOPs FP8, 20.7 TB HBM3e, 706 TB/s. Rack power not "
        "published; plan ~150–200 kW (estimate): 144 × 1.2 kW + 15 kW hosts and switches.",
    ),
    dict(
        name="Trn2 UltraServer",
        slug="trn2-ultraserver",
        chip="trainium2",
        chip_count=64,
        interconnect="3d-torus",
        interconnect_note="4×4×4 3D torus; 4 servers × 16 chips",
        rack_units=20,
        overhead_power_w=6000,
        cooling="air",
        source_note="83.2 PFLOPs FP8 (seed). Power estimated from chip power plus 6 kW hosts.",
    ),
    dict(
        name="GB300 NVL72",
        slug="gb300-nvl72",
        chip="nvidia-gb300",
        chip_count=72,
        interconnect="nvlink",
        interconnect_note="NVLink switch, 72 GPUs in one domain",
        rack_units=42,
        overhead_power_w=20000,
        cooling="liquid",
        source_note="Rack ~120–142 kW (estimate): 72 × 1.4 kW + 20 kW CPUs, switches, pumps.",
    ),
]


def seed(apps, schema_editor):
    ChipModel = apps.get_model("catalog", "ChipModel")
    UltraServerModel = apps.get_model("catalog", "UltraServerModel")
    chips = {}
    for row in CHIPS:
        chips[row["slug"]], _ = ChipModel.objects.update_or_create(slug=row["slug"], defaults=row)
    for row in SYSTEMS:
        row = dict(row)
        chip = chips[row.pop("chip")]
        UltraServerModel.objects.update_or_create(
            slug=row["slug"], defaults={**row, "chip_model": chip}
        )


def unseed(apps, schema_editor):
    apps.get_model("catalog", "UltraServerModel").objects.filter(
        slug__in=[s["slug"] for s in SYSTEMS]
    ).delete()
    apps.get_model("catalog", "ChipModel").objects.filter(
        slug__in=[c["slug"] for c in CHIPS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
