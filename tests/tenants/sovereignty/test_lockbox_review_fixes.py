"""Review fixes to the lockbox (issue 14 item 5): break-glass cannot be chained while an
earlier one for the same person and site is live or unreviewed."""

import pytest

from tests.tenants.sovereignty.test_break_glass import BREAK_GLASS, allow_break_glass, emergency

pytestmark = pytest.mark.django_db


def test_a_second_break_glass_waits_for_the_review_of_the_first(fleet):
    allow_break_glass(fleet)
    provider = fleet.client("provider_admin")
    first = provider.post(BREAK_GLASS, emergency(fleet), format="json")
    assert first.status_code == 201, first.content
    again = provider.post(BREAK_GLASS, emergency(fleet), format="json")
    assert again.status_code == 409, again.content
    assert again.json()["code"] == "break_glass_pending_review"
