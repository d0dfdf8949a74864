"""Sovereignty test helpers."""

RULES = "/api/v1/sovereignty/rules/"


def active_rule(fleet, kind, **params):
    admin = fleet.client("alpha_admin")
    created = admin.post(
        RULES,
        {"tenant": fleet.alpha.pk, "name": kind, "kind": kind, "params": params},
        format="json",
    )
    assert created.status_code == 201, created.content
    activated = admin.post(f"{RULES}{created.json()['id']}/activate/")
    assert activated.status_code == 200, activated.content
    return activated.json()
