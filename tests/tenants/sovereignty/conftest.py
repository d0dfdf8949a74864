"""Fixtures the sovereignty tests share."""

from decimal import Decimal

import pytest

from factory.inventory.models import Site
from tenants.services.changes import save_object
from tests.support.fleet import CTX


@pytest.fixture
def us_site(fleet):
    """A second site of tenant alpha, in the US."""
    return save_object(
        Site(
            tenant=fleet.alpha,
            code="ALPUS",
            name="Alpha US",
            country="US",
            time_zone="America/New_York",
            contracted_power_kw=Decimal(100),
            contracted_cooling_kw=Decimal(100),
            status="active",
        ),
        CTX,
    )
