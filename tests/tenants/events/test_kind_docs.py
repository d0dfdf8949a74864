"""The OpenAPI description of an event's ``data`` names every kind there is, so that a client
reading the schema learns the keys of each one (a new kind must be described when it is added)."""

from tenants.events.api.serializers import DATA_HELP
from tenants.events.kinds import EventKind


def test_every_event_kind_is_described_in_the_data_help():
    missing = [kind.value for kind in EventKind if f"`{kind.value}`" not in DATA_HELP]
    assert missing == []
