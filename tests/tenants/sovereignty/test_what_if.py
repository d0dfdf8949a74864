"""The what-if asks what the real write asks: a draft that would deny an asset on its next
write is listed, with every action it would deny, before it is activated."""

from tenants.sovereignty.models import ProtectedAsset
from tests.support.sovereignty import RULES

ASSETS = "/api/v1/sovereignty/assets/"


def keep(fleet, site, name, kind):
    created = fleet.client("alpha_operator").post(
        ASSETS,
        {
            "tenant": fleet.alpha.pk,
            "name": name,
            "kind": kind,
            "classification": "secret",
            "site": site.pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    return ProtectedAsset.objects.get(pk=created.json()["id"])


def draft(fleet, kind, **params):
    created = fleet.client("alpha_admin").post(
        RULES,
        {"tenant": fleet.alpha.pk, "name": kind, "kind": kind, "params": params},
        format="json",
    )
    assert created.status_code == 201, created.content
    return created.json()


def what_if(fleet, rule):
    answer = fleet.client("alpha_admin").post(f"{RULES}{rule['id']}/what-if/")
    assert answer.status_code == 200, answer.content
    return sorted((d["repr"], d["action"]) for d in answer.json()["would_deny"])


def rewrite(fleet, asset):
    """The asset's next write that asks again (a changed label), as the real operation."""
    return fleet.client("alpha_operator").patch(
        f"{ASSETS}{asset.pk}/", {"labels": ["touched"]}, format="json"
    )


def test_a_residency_rule_without_a_kind_filter_lists_replicas_as_the_write_denies_them(
    fleet, us_site
):
    keep(fleet, us_site, "weights", "model")
    replica = keep(fleet, us_site, "weights-copy", "replica")
    rule = draft(fleet, "residency", allowed=["EU"])
    # Before: a replica was judged only as a replication, which a residency rule does not
    # cover, so it was missing here although keeping it is a placement too.
    assert what_if(fleet, rule) == [("weights", "place_asset"), ("weights-copy", "place_asset")]

    activated = fleet.client("alpha_admin").post(
        f"{RULES}{rule['id']}/activate/", {"confirm": True}, format="json"
    )
    assert activated.status_code == 200, activated.content
    refused = rewrite(fleet, replica)
    assert refused.status_code == 403, refused.content


def test_a_replica_residency_rule_lists_replicas_only_as_replications(fleet, us_site):
    keep(fleet, us_site, "weights", "model")
    keep(fleet, us_site, "weights-copy", "backup")
    rule = draft(fleet, "replica_residency", allowed=["EU"])
    assert what_if(fleet, rule) == [("weights-copy", "replicate_asset")]


def test_an_asset_the_draft_allows_is_not_listed(fleet):
    keep(fleet, fleet.sites["alpha"], "weights-copy", "replica")
    rule = draft(fleet, "residency", allowed=["EU"])
    assert what_if(fleet, rule) == []
