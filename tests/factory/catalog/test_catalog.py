from decimal import Decimal

import pytest

from factory.catalog.models import UltraServerModel


@pytest.mark.django_db
def test_trn3_aggregates_reproduce_the_seed_figures():
    trn3 = UltraServerModel.objects.select_related("chip_model").get(slug="trn3-ultraserver")
    assert trn3.chip_count == 144
    assert trn3.fp8_dense_pflops == Decimal("362.880")
    assert trn3.hbm_tb == Decimal("20.736")
    assert trn3.hbm_tbps == Decimal("705.60")


@pytest.mark.django_db
def test_catalog_has_the_three_systems_and_flags_estimates():
    systems = {m.slug: m for m in UltraServerModel.objects.select_related("chip_model")}
    assert set(systems) == {"trn3-ultraserver", "trn2-ultraserver", "gb300-nvl72"}
    assert systems["trn2-ultraserver"].chip_count == 64
    assert systems["trn2-ultraserver"].fp8_dense_pflops == Decimal("83.200")
    assert systems["gb300-nvl72"].chip_count == 72
    assert systems["gb300-nvl72"].fp8_dense_pflops is None  # not published: not guessed
    assert all(
        m.chip_model.power_is_estimate and "estimate" in m.chip_model.source_note
        for m in systems.values()
    )
    assert 150_000 <= systems["trn3-ultraserver"].max_power_w <= 200_000


def test_catalog_api_is_read_only_and_derives_aggregates(fleet):
    client = fleet.client("alpha_viewer")
    body = client.get("/api/v1/catalog/ultraserver-models/?slug=trn3-ultraserver").json()
    trn3 = body["results"][0]
    assert (trn3["fp8_dense_pflops"], trn3["hbm_tb"], trn3["hbm_tbps"]) == (362.88, 20.736, 705.6)
    admin = fleet.client("provider_admin")
    assert admin.post("/api/v1/catalog/chip-models/", {"name": "X"}).status_code == 405
    assert admin.delete(f"/api/v1/catalog/ultraserver-models/{trn3['id']}/").status_code == 405
