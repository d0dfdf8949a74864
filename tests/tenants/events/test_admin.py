"""The event log in the admin: listed and shown, never added, changed or deleted there."""

import pytest

from tenants.events.kinds import EventKind
from tenants.events.services import emit
from tests.support.events import commit_events, defer_events

pytestmark = pytest.mark.django_db


def test_the_admin_shows_committed_events_read_only(fleet, admin_client):
    shown = emit(EventKind.WORKFLOW_CREATED, fleet.sites["alpha"], tenant=fleet.alpha)
    commit_events()
    defer_events()
    emit(EventKind.FAULT_OPENED, fleet.sites["beta"], tenant=fleet.beta, name="not committed")
    listing = admin_client.get("/admin/events/event/")
    assert listing.status_code == 200
    assert str(fleet.sites["alpha"]) in listing.content.decode()
    assert "not committed" not in listing.content.decode()
    page = admin_client.get(f"/admin/events/event/{shown.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.get("/admin/events/event/add/").status_code == 403
    assert admin_client.post(f"/admin/events/event/{shown.pk}/delete/").status_code == 403
