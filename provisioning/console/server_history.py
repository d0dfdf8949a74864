"""The server page's "what touched this server": the newest entries of the same history the
API answers (``factory.inventory.history``), each with who, on whose behalf, why and what."""

from __future__ import annotations

from factory.inventory.history import changes, server_history
from factory.inventory.models import UltraServer
from tenants.access import Actor

#: Entries on the page; the API's ``history/`` pages through all of them.
SHOWN = 30


def touches(server: UltraServer, actor: Actor) -> list[dict]:
    """One query: the newest ``SHOWN`` entries ``actor`` may see, newest first."""
    events = server_history(server, actor).order_by("-occurred_at", "-id")[:SHOWN]
    return [
        {
            "at": e.occurred_at,
            "what": (e.after or {}).get("verb") or e.action,
            "object": e.object_repr,
            "who": e.actor_username,
            "for": e.on_behalf_of,
            "cause": f"{e.get_cause_type_display()} {e.cause_id}".strip() if e.cause_type else "",
            "reason": e.reason,
            "changes": changes(e),
        }
        for e in events
    ]
