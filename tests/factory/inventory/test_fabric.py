"""A site's EFA fabric as data: the document's validation (every problem by field path, nothing
written), replace semantics, attaching one server, the API (provider admins only), the command,
the admin, the simulator's layout and the demo fleet's fabric. Real PostgreSQL throughout."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from factory.inventory import fabric
from factory.inventory.models import NetworkNode, Site, UltraServer
from factory.telemetry.layout import site_layout
from tenants.models import AuditEvent
from tests.support.admin import admin_form_data
from tests.support.api import assert_error_body
from tests.support.fleet import CTX, make_rack, make_server


@pytest.fixture
def hall(fleet):
    """alpha's site ALP1 with three racks of one Trn3 each (ALP1-SRV1, -SRV2, -SRV3)."""
    site = fleet.sites["alpha"]
    servers = [fleet.servers["alpha"]]
    for i in (2, 3):
        rack = make_rack(site, f"{site.code}-R0{i}")
        servers.append(make_server(f"{site.code}-SRV{i}", rack=rack))
    return site, servers


def document(**attachments):
    return {
        "layers": ["spine", "leaf"],
        "nodes": [
            {"name": "SPINE-1", "layer": 1, "parent": None},
            {"name": "LEAF-1", "layer": "leaf", "parent": "SPINE-1"},
            {"name": "LEAF-2", "layer": 2, "parent": "SPINE-1"},
        ],
        "attachments": {k.replace("_", "-"): v for k, v in attachments.items()},
    }


def codes(exc: ValidationError) -> dict[str, set[str]]:
    return {path: {e.code for e in errors} for path, errors in exc.error_dict.items()}


def node_of(serial: str) -> str | None:
    node = UltraServer.objects.get(serial=serial).network_node
    return node.name if node else None


def test_import_then_export_round_trips_and_a_second_import_writes_nothing(hall):
    site, _ = hall
    stored = fabric.replace_fabric(
        site, document(ALP1_SRV1="LEAF-1", ALP1_SRV2="LEAF-1", ALP1_SRV3="LEAF-2"), CTX
    )
    assert stored == fabric.export_fabric(site)
    assert stored["layers"] == ["spine", "leaf"]
    assert [(n["name"], n["layer"], n["parent"]) for n in stored["nodes"]] == [
        ("SPINE-1", 1, None),
        ("LEAF-1", 2, "SPINE-1"),
        ("LEAF-2", 2, "SPINE-1"),
    ]
    assert stored["attachments"] == {
        "ALP1-SRV1": "LEAF-1",
        "ALP1-SRV2": "LEAF-1",
        "ALP1-SRV3": "LEAF-2",
    }
    events = AuditEvent.objects.count()
    assert fabric.replace_fabric(site, stored, CTX) == stored
    assert AuditEvent.objects.count() == events  # nothing changed, nothing recorded


def test_node_changes_are_audited_for_the_provider_only(hall, fleet):
    site, _ = hall
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX)
    new = AuditEvent.objects.filter(id__gt=last)
    nodes = new.filter(object_type="inventory.networknode")
    assert nodes.count() == 3 and set(nodes.values_list("tenant_id", flat=True)) == {None}
    (server,) = new.filter(object_type="inventory.ultraserver")
    assert server.tenant_id == fleet.alpha.pk and server.object_repr == "ALP1-SRV1"
    assert server.after["network_node_id"] == NetworkNode.objects.get(name="LEAF-1").pk
    assert new.count() == 4
    # The tenant's own log never names a switch.
    log = fleet.client("alpha_admin").get("/api/v1/audit-events/?limit=1000").content.decode()
    assert "ALP1-SRV1" in log
    assert "LEAF-1" not in log and "SPINE-1" not in log


def test_replace_moves_servers_updates_and_deletes_nodes(hall):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1", ALP1_SRV2="LEAF-2"), CTX)
    spine_id = NetworkNode.objects.get(name="SPINE-1").pk
    fabric.replace_fabric(
        site,
        {
            "nodes": [
                {"name": "SPINE-1", "layer": 1, "parent": None},
                {"name": "SPINE-2", "layer": 1, "parent": None},
                {"name": "LEAF-2", "layer": 2, "parent": "SPINE-2"},  # moved to another spine
                {"name": "LEAF-3", "layer": 2, "parent": "SPINE-1"},
            ],
            "attachments": {"ALP1-SRV1": "LEAF-3", "ALP1-SRV3": "LEAF-3"},  # LEAF-1 emptied
        },
        CTX,
    )
    assert sorted(NetworkNode.objects.filter(site=site).values_list("name", flat=True)) == [
        "LEAF-2",
        "LEAF-3",
        "SPINE-1",
        "SPINE-2",
    ]
    assert NetworkNode.objects.get(name="SPINE-1").pk == spine_id  # kept, not recreated
    assert NetworkNode.objects.get(name="LEAF-2").parent.name == "SPINE-2"
    assert (node_of("ALP1-SRV1"), node_of("ALP1-SRV2"), node_of("ALP1-SRV3")) == (
        "LEAF-3",
        "LEAF-2",  # not named: kept its node
        "LEAF-3",
    )
    assert fabric.server_paths(UltraServer.objects.filter(serial="ALP1-SRV2")) == {
        UltraServer.objects.get(serial="ALP1-SRV2").pk: ("SPINE-2", "LEAF-2")
    }


def test_removing_a_node_servers_hang_under_is_refused_unless_they_move(hall):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX)
    without_leaf_1 = document()
    without_leaf_1["nodes"] = without_leaf_1["nodes"][:1] + without_leaf_1["nodes"][2:]
    with pytest.raises(ValidationError) as refused:
        fabric.replace_fabric(site, without_leaf_1, CTX)
    assert codes(refused.value) == {"nodes": {"node_in_use"}}
    assert "ALP1-SRV1" in str(refused.value)
    assert NetworkNode.objects.filter(name="LEAF-1").exists()
    # Re-attached in the same document, or detached: then it goes.
    without_leaf_1["attachments"] = {"ALP1-SRV1": None}
    fabric.replace_fabric(site, without_leaf_1, CTX)
    assert not NetworkNode.objects.filter(name="LEAF-1").exists()
    assert node_of("ALP1-SRV1") is None


def test_a_node_with_servers_cannot_gain_children_unless_they_move(hall):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX)
    deeper = document()
    deeper["layers"] = ["spine", "leaf", "tor"]
    deeper["nodes"].append({"name": "TOR-1", "layer": "tor", "parent": "LEAF-1"})
    with pytest.raises(ValidationError) as refused:
        fabric.replace_fabric(site, deeper, CTX)
    assert codes(refused.value) == {"nodes[1]": {"servers_attached"}}
    deeper["attachments"] = {"ALP1-SRV1": "TOR-1"}
    fabric.replace_fabric(site, deeper, CTX)
    assert fabric.server_paths(UltraServer.objects.filter(serial="ALP1-SRV1")).popitem()[1] == (
        "SPINE-1",
        "LEAF-1",
        "TOR-1",
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["nodes"].append({"name": "X", "layer": 2, "parent": "NOPE"}),
         {"nodes[3].parent": {"unknown_parent"}}),
        (lambda d: d["nodes"].extend([{"name": "A", "layer": 2, "parent": "B"},
                                      {"name": "B", "layer": 2, "parent": "A"}]),
         {"nodes[3].parent": {"cycle"}, "nodes[4].parent": {"cycle"}}),
        (lambda d: d["nodes"][2].update(layer=1),
         {"nodes[2].parent": {"top_has_parent"}}),
        (lambda d: d["nodes"][2].update(parent=None),
         {"nodes[2].parent": {"parent_required"}}),
        (lambda d: d["nodes"].append({"name": "X", "layer": 3, "parent": "SPINE-1"}),
         {"nodes[3].layer": {"layer_unknown"}}),  # layers has two
        (lambda d: (d.pop("layers"), d["nodes"][1].update(layer=2), d["nodes"].append(
            {"name": "X", "layer": 3, "parent": "SPINE-1"})),
         {"nodes[3].parent": {"parent_layer"}}),
        (lambda d: d["nodes"].append({"name": "LEAF-1", "layer": 2, "parent": "SPINE-1"}),
         {"nodes[3].name": {"duplicate"}}),
        (lambda d: d["nodes"][1].update(layer="tor"), {"nodes[1].layer": {"layer_unknown"}}),
        (lambda d: d["nodes"][1].update(layer=True), {"nodes[1].layer": {"invalid"}}),
        (lambda d: d["nodes"][1].update(name=" LEAF "), {"nodes[1].name": {"invalid"}}),
        (lambda d: d["nodes"][1].update(colour="red"), {"nodes[1].colour": {"unknown_field"}}),
        (lambda d: d.update(nodes="all"), {"nodes": {"required"}}),
        (lambda d: d.update(layers=["spine", "spine"]),
         {"layers[1]": {"duplicate"}, "nodes[1].layer": {"layer_unknown"}}),
        (lambda d: d.update(extra=1), {"extra": {"unknown_field"}}),
        (lambda d: d.update(attachments=["ALP1-SRV1"]), {"attachments": {"invalid"}}),
        (lambda d: d["attachments"].update({"ALP1-SRV1": "SPINE-1"}),
         {"attachments.ALP1-SRV1": {"not_lowest"}}),
        (lambda d: d["attachments"].update({"ALP1-SRV1": "LEAF-9"}),
         {"attachments.ALP1-SRV1": {"unknown_node"}}),
        (lambda d: d["attachments"].update({"NO-SUCH": "LEAF-1"}),
         {"attachments.NO-SUCH": {"unknown_server"}}),
        (lambda d: d["attachments"].update({"BET1-SRV1": "LEAF-1"}),
         {"attachments.BET1-SRV1": {"server_other_site"}}),
    ],
)  # fmt: skip
def test_each_problem_is_refused_by_its_field_path_and_nothing_is_written(hall, change, expected):
    site, _ = hall
    data = document()
    change(data)
    nodes, events = NetworkNode.objects.count(), AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        fabric.replace_fabric(site, data, CTX)
    assert codes(refused.value) == expected
    assert (NetworkNode.objects.count(), AuditEvent.objects.count()) == (nodes, events)


def test_every_problem_is_reported_at_once(hall):
    site, _ = hall
    data = document(ALP1_SRV1="SPINE-1")
    data["nodes"].append({"name": "X", "layer": 2, "parent": "NOPE"})
    with pytest.raises(ValidationError) as refused:
        fabric.replace_fabric(site, data, CTX)
    assert set(codes(refused.value)) == {"nodes[3].parent", "attachments.ALP1-SRV1"}


def test_a_document_that_is_not_an_object_is_refused(hall):
    site, _ = hall
    with pytest.raises(ValidationError) as refused:
        fabric.replace_fabric(site, ["nodes"], CTX)
    assert codes(refused.value) == {"__all__": {"invalid"}}


def test_an_empty_document_clears_a_fabric_without_servers(hall):
    site, _ = hall
    fabric.replace_fabric(site, document(), CTX)
    assert fabric.replace_fabric(site, {"nodes": []}, CTX) == {
        "layers": [],
        "nodes": [],
        "attachments": {},
    }
    assert not NetworkNode.objects.filter(site=site).exists()


# --- one server -----------------------------------------------------------------------------


def test_attach_and_detach_one_server(hall, fleet):
    site, (server, *_) = hall
    fabric.replace_fabric(site, document(), CTX)
    leaf = NetworkNode.objects.get(site=site, name="LEAF-2")
    fabric.attach_server(server, leaf, CTX)
    assert node_of(server.serial) == "LEAF-2"
    with pytest.raises(ValidationError) as refused:
        fabric.attach_server(server, NetworkNode.objects.get(site=site, name="SPINE-1"), CTX)
    assert codes(refused.value) == {"network_node": {"not_lowest"}}
    fabric.replace_fabric(fleet.sites["beta"], document(), CTX)
    with pytest.raises(ValidationError) as refused:
        other = NetworkNode.objects.get(site=fleet.sites["beta"], name="LEAF-1")
        fabric.attach_server(server, other, CTX)
    assert codes(refused.value) == {"network_node": {"node_other_site"}}
    fabric.attach_server(server, None, CTX)
    assert node_of(server.serial) is None


def test_a_server_taken_out_of_its_rack_leaves_its_leaf(hall):
    """Its old leaf is no longer its switch: saved through the one save path, it is detached."""
    from tenants.services.changes import save_object

    site, (*_, server) = hall
    fabric.replace_fabric(site, document(ALP1_SRV3="LEAF-2"), CTX)
    server.refresh_from_db()
    rack, position = server.rack, server.position
    server.rack, server.position = None, None
    save_object(server, CTX)
    assert node_of(server.serial) is None
    # Back in its rack, attached again, then moved to another rack of the same site: detached.
    server.rack, server.position = rack, position
    save_object(server, CTX)
    fabric.attach_server(server, NetworkNode.objects.get(site=site, name="LEAF-2"), CTX)
    server.refresh_from_db()
    server.rack, server.position = make_rack(site, f"{site.code}-R09"), 1
    save_object(server, CTX)
    assert node_of(server.serial) is None
    # A save that does not move it keeps its leaf.
    fabric.attach_server(server, NetworkNode.objects.get(site=site, name="LEAF-1"), CTX)
    server.refresh_from_db()
    server.firmware_version = "9.9"
    save_object(server, CTX)
    assert node_of(server.serial) == "LEAF-1"


def test_the_model_refuses_a_child_under_a_node_with_servers(hall):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX)
    child = NetworkNode(
        site=site, name="TOR-1", layer=3, parent=NetworkNode.objects.get(name="LEAF-1")
    )
    with pytest.raises(ValidationError) as refused:
        child.full_clean()
    assert codes(refused.value) == {"layer": {"below_servers"}}


# --- the API --------------------------------------------------------------------------------


def test_provider_admins_read_and_replace_a_sites_fabric(hall, fleet):
    site, _ = hall
    client = fleet.client("provider_admin")
    url = f"/api/v1/sites/{site.pk}/fabric/"
    assert client.get(url).json() == {"layers": [], "nodes": [], "attachments": {}}
    put = client.put(url, document(ALP1_SRV2="LEAF-2"), format="json")
    assert put.status_code == 200, put.content
    assert put.json()["attachments"] == {"ALP1-SRV2": "LEAF-2"}
    assert client.get(url).json() == put.json()
    event = AuditEvent.objects.filter(object_type="inventory.networknode").first()
    assert event.source == "api" and event.actor_username == "padmin"


def test_bad_documents_are_400s_naming_the_field_path(hall, fleet):
    site, _ = hall
    client = fleet.client("provider_admin")
    url = f"/api/v1/sites/{site.pk}/fabric/"
    bad = document(ALP1_SRV1="SPINE-1")
    body = assert_error_body(client.put(url, bad, format="json"), 400)
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("attachments.ALP1-SRV1", "not_lowest")
    ]
    for nonsense in (
        [1, 2],
        "fabric",
        {"nodes": [None]},
        {"nodes": [{"layer": {}}]},
        {"nodes": [{"name": "A\u0000", "layer": 1}]},
        {"nodes": [], "attachments": {"X\u0000": None, "Y": 5}},
        {"nodes": [{"name": "A", "layer": 10**30}], "layers": "spine"},
    ):
        assert_error_body(client.put(url, nonsense, format="json"), 400)
    assert not NetworkNode.objects.exists()


@pytest.mark.parametrize("who", ["alpha_admin", "alpha_operator", "alpha_viewer", "technician"])
def test_nobody_but_provider_admins_sees_or_changes_a_fabric(hall, fleet, who):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX)
    client = fleet.client(who)
    url = f"/api/v1/sites/{site.pk}/fabric/"
    read = client.get(url)
    assert_error_body(read, 403)
    assert "LEAF" not in read.content.decode()
    assert_error_body(client.put(url, {"nodes": []}, format="json"), 403)
    assert NetworkNode.objects.filter(site=site).count() == 3
    # The site itself, and its servers, say nothing about the fabric either.
    assert "LEAF" not in client.get(f"/api/v1/sites/{site.pk}/").content.decode()
    assert "LEAF" not in client.get("/api/v1/ultraservers/").content.decode()


def test_an_unknown_site_is_a_404(fleet):
    assert_error_body(fleet.client("provider_admin").get("/api/v1/sites/999999/fabric/"), 404)


# --- the command ----------------------------------------------------------------------------


def test_the_command_imports_and_exports(hall, tmp_path):
    site, _ = hall
    source = tmp_path / "fabric.json"
    source.write_text(json.dumps(document(ALP1_SRV3="LEAF-1")))
    out = StringIO()
    call_command("import_fabric", site.code, str(source), stdout=out)
    assert "3 nodes, 1 servers attached" in out.getvalue()
    exported = tmp_path / "out.json"
    call_command("import_fabric", site.code, str(exported), "--export")
    assert json.loads(exported.read_text()) == fabric.export_fabric(site)
    event = AuditEvent.objects.filter(object_type="inventory.networknode").first()
    assert event.source == "command"


def test_the_command_names_every_problem(hall, tmp_path):
    site, _ = hall
    source = tmp_path / "fabric.json"
    source.write_text(json.dumps(document(ALP1_SRV1="SPINE-1")))
    with pytest.raises(CommandError, match=r"attachments.ALP1-SRV1: .* \[not_lowest\]"):
        call_command("import_fabric", site.code, str(source))
    source.write_text("{not json")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_fabric", site.code, str(source))
    with pytest.raises(CommandError, match="no site"):
        call_command("import_fabric", "NOPE", str(source))


# --- the admin ------------------------------------------------------------------------------


def test_the_admin_lists_nodes_and_refuses_a_bad_parent(hall, admin_client):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX)
    listing = admin_client.get(reverse("admin:inventory_networknode_changelist") + "?layer=2")
    assert listing.status_code == 200
    assert b"LEAF-1" in listing.content and b"SPINE-1</a>" not in listing.content
    added = admin_client.post(
        reverse("admin:inventory_networknode_add"),
        {
            "site": site.pk,
            "name": "TOR-1",
            "layer": 3,
            "parent": NetworkNode.objects.get(name="LEAF-1").pk,
        },
    )
    assert added.status_code == 200  # the form again, with the reason
    assert [e.code for e in added.context["adminform"].form.errors.as_data()["layer"]] == [
        "below_servers"
    ]
    assert not NetworkNode.objects.filter(name="TOR-1").exists()


def test_the_admin_ultraserver_form_checks_its_node(hall, admin_client, fleet):
    site, (server, *_) = hall
    fabric.replace_fabric(site, document(), CTX)
    fabric.replace_fabric(fleet.sites["beta"], document(), CTX)
    url = reverse("admin:inventory_ultraserver_change", args=[server.pk])
    data = admin_form_data(admin_client.get(url))
    data["network_node"] = NetworkNode.objects.get(site=fleet.sites["beta"], name="LEAF-1").pk
    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors.as_data()["network_node"]
    assert [e.code for e in errors] == ["node_other_site"]
    data["network_node"] = NetworkNode.objects.get(site=site, name="LEAF-2").pk
    saved = admin_client.post(url, data)
    assert saved.status_code == 302, saved.context and saved.context["adminform"].form.errors
    assert node_of(server.serial) == "LEAF-2"


# --- the simulator's layout and the demo ----------------------------------------------------


def test_the_layout_carries_each_servers_nodes(hall):
    site, _ = hall
    fabric.replace_fabric(site, document(ALP1_SRV2="LEAF-2"), CTX)
    servers = {s["serial"]: s for r in site_layout(site)["racks"] for s in r["servers"]}
    assert servers["ALP1-SRV2"]["network_nodes"] == ["SPINE-1", "LEAF-2"]
    assert "network_nodes" not in servers["ALP1-SRV1"]  # hangs under no node: left out


@pytest.mark.django_db
def test_the_demo_fabric_site_shows_a_fabric_with_every_server_attached():
    from factory.inventory.demo import demo_fabric_site, load_demo_fleet

    assert load_demo_fleet()
    site = Site.objects.get(code=demo_fabric_site())
    exported = fabric.export_fabric(site)
    spines = [n["name"] for n in exported["nodes"] if n["layer"] == 1]
    leaves = [n for n in exported["nodes"] if n["layer"] == 2]
    assert len(spines) == 1 and len(leaves) >= 2
    assert {n["parent"] for n in leaves} == set(spines)
    servers = UltraServer.objects.filter(rack__site=site)
    assert servers.values("rack").distinct().count() >= 4
    assert set(exported["attachments"]) == set(servers.values_list("serial", flat=True))
    assert not load_demo_fleet()  # idempotent


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_imports_of_one_site_both_land_one_after_the_other():
    """Two imports of the same new fabric at once: the site's row lock puts one after the other
    (the second finds the nodes made and changes nothing), never a lost race on a node name."""
    import threading

    from django.db import connection

    from tests.support.fleet import build_fleet

    fleet = build_fleet()
    site = fleet.sites["alpha"]
    barrier = threading.Barrier(2)
    results: list[object] = []

    def attempt():
        try:
            barrier.wait()
            results.append(fabric.replace_fabric(site, document(ALP1_SRV1="LEAF-1"), CTX))
        except Exception as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1], results
    assert NetworkNode.objects.filter(site=site).count() == 3
    assert AuditEvent.objects.filter(object_type="inventory.networknode").count() == 3
