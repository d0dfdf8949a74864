"""The simulator's Redfish protocol (DSP0266) over real HTTP: sessions and tokens, Basic, 401,
HEAD, 405 with Allow, ETags and If-Match, ``$metadata`` and the OData document, accounts and
roles, privileges, the event log of injected faults, streams, TLS (pure: no database)."""

from __future__ import annotations

import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests

from factory.simulator.__main__ import demo_layout
from factory.simulator.devices import build_site
from factory.simulator.faults import FaultRates
from factory.simulator.redfish import management
from factory.simulator.redfish.common import SERVICES, Reply, Stream, Tree
from factory.simulator.server import SiteServer
from factory.wire import EventKind

ROOT = "/redfish/v1"
SESSIONS = f"{ROOT}/SessionService/Sessions"
ADMIN = ("admin", "factory-sim")
EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"


@pytest.fixture(scope="module")
def site_server() -> Iterator[SiteServer]:
    site = build_site(demo_layout(1, 1, "trn2"), rates=FaultRates(scale=0.0))
    server = SiteServer(site, tick_seconds=0.2).start()
    yield server
    server.stop()


def url_of(server: SiteServer, kind: str) -> str:
    return next(d["url"] for d in server.devices if d["kind"] == kind)


@pytest.fixture(scope="module")
def bmc(site_server: SiteServer) -> str:
    return url_of(site_server, "bmc")


def login(base: str, user: str = "admin", password: str = "factory-sim") -> requests.Response:
    return requests.post(f"{base}{SESSIONS}", json={"UserName": user, "Password": password})


def token_of(base: str, user: str = "admin", password: str = "factory-sim") -> dict[str, str]:
    answer = login(base, user, password)
    assert answer.status_code == 201, answer.text
    return {"X-Auth-Token": answer.headers["X-Auth-Token"]}


# --- sessions and authentication -------------------------------------------------------------


def test_a_session_is_created_without_credentials_in_headers_and_its_token_works(bmc):
    answer = login(bmc)
    assert answer.status_code == 201
    token, location = answer.headers["X-Auth-Token"], answer.headers["Location"]
    assert location.startswith(f"{SESSIONS}/")
    assert answer.json()["UserName"] == "admin"
    auth = {"X-Auth-Token": token}
    session = requests.get(f"{bmc}{location}", headers=auth)
    assert session.status_code == 200
    assert session.json()["@odata.type"].startswith("#Session.")
    members = requests.get(f"{bmc}{SESSIONS}", headers=auth).json()
    assert {"@odata.id": location} in members["Members"]
    assert members["Members@odata.count"] == len(members["Members"])
    assert requests.get(f"{bmc}{ROOT}/Systems", headers=auth).status_code == 200
    service = requests.get(f"{bmc}{ROOT}/SessionService", headers=auth).json()
    assert service["ServiceEnabled"] is True


def test_deleting_a_session_ends_its_token(bmc):
    answer = login(bmc)
    auth, location = {"X-Auth-Token": answer.headers["X-Auth-Token"]}, answer.headers["Location"]
    assert requests.delete(f"{bmc}{location}", headers=auth).status_code == 204
    refused = requests.get(f"{bmc}{ROOT}/Systems", headers=auth)
    assert refused.status_code == 401
    assert "WWW-Authenticate" in refused.headers
    assert requests.get(f"{bmc}{location}", auth=ADMIN).status_code == 404


def test_a_session_idle_past_the_timeout_stops_working(site_server, bmc):
    tree = next(iter(site_server.trees.values()))
    auth = token_of(bmc)
    mgmt = management.state(tree)
    before = mgmt.session_timeout
    mgmt.session_timeout = 1  # below the API's bound of 30 s, to keep the test short
    try:
        assert requests.get(f"{bmc}{ROOT}/Systems", headers=auth).status_code == 200
        time.sleep(1.5)
        assert requests.get(f"{bmc}{ROOT}/Systems", headers=auth).status_code == 401
    finally:
        mgmt.session_timeout = before


def test_session_timeout_is_patchable_within_the_schema_bounds(bmc):
    path = f"{bmc}{ROOT}/SessionService"
    bad = requests.patch(path, json={"SessionTimeout": 5}, auth=ADMIN)
    assert bad.status_code == 400
    assert "SessionTimeout" in bad.json()["error"]["message"]
    good = requests.patch(path, json={"SessionTimeout": 900}, auth=ADMIN)
    assert good.status_code == 200 and good.json()["SessionTimeout"] == 900
    requests.patch(path, json={"SessionTimeout": 600}, auth=ADMIN)


def test_basic_still_works_and_bad_credentials_get_401_with_www_authenticate(bmc):
    assert requests.get(f"{bmc}{ROOT}/Systems", auth=ADMIN).status_code == 200
    for kwargs in ({}, {"auth": ("admin", "wrong")}, {"headers": {"X-Auth-Token": "nope"}}):
        refused = requests.get(f"{bmc}{ROOT}/Systems", **kwargs)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert refused.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"].startswith("Base.")
    assert login(bmc, "admin", "wrong").status_code == 401
    missing = requests.post(f"{bmc}{SESSIONS}", json={"UserName": "admin"})
    assert missing.status_code == 400
    assert "Password" in missing.json()["error"]["message"]
    # The service root and the OData documents are open to all.
    for path in (f"{ROOT}/", f"{ROOT}/$metadata", f"{ROOT}/odata"):
        assert requests.get(f"{bmc}{path}").status_code == 200


# --- HTTP semantics --------------------------------------------------------------------------


def test_head_answers_headers_without_a_body(bmc):
    get = requests.get(f"{bmc}{ROOT}/Systems", auth=ADMIN)
    head = requests.head(f"{bmc}{ROOT}/Systems", auth=ADMIN)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"].startswith("application/json")
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Link"] == get.headers["Link"]


def test_unsupported_methods_get_405_with_allow(bmc):
    root = requests.get(f"{bmc}{ROOT}/", auth=ADMIN)
    assert root.headers["Allow"] == "GET, HEAD"
    assert "no-cache" in root.headers["Cache-Control"]
    assert root.headers["OData-Version"] == "4.0"
    assert "rel=describedby" in root.headers["Link"]
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        answer = requests.request(method, f"{bmc}{ROOT}/", auth=ADMIN, json={})
        assert answer.status_code == 405, method
        assert answer.headers["Allow"] == "GET, HEAD"
        assert answer.json()["error"]["code"].endswith("OperationNotAllowed")
    sessions = requests.get(f"{bmc}{SESSIONS}", auth=ADMIN)
    assert set(sessions.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert requests.get(f"{bmc}{ROOT}/Nowhere", auth=ADMIN).status_code == 404


def test_unknown_dollar_query_is_501_and_unknown_odata_version_412(bmc):
    assert requests.get(f"{bmc}{ROOT}/?$rpvunknown", auth=ADMIN).status_code == 501
    assert requests.get(f"{bmc}{ROOT}/?whatever=1", auth=ADMIN).status_code == 200
    assert requests.get(f"{bmc}{ROOT}/", headers={"OData-Version": "4.1"}).status_code == 412


def test_etag_and_if_match(bmc):
    path = f"{bmc}{ROOT}/Managers/BMC/NetworkProtocol"
    first = requests.get(path, auth=ADMIN)
    etag = first.headers["ETag"]
    assert first.json()["@odata.etag"] == etag
    stale = requests.patch(
        path, json={"HostName": "bmc-a"}, headers={"If-Match": etag + "x"}, auth=ADMIN
    )
    assert stale.status_code == 412
    assert requests.get(path, auth=ADMIN).json()["HostName"] == first.json()["HostName"]
    changed = requests.patch(
        path, json={"HostName": "bmc-a"}, headers={"If-Match": etag}, auth=ADMIN
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["HostName"] == "bmc-a"
    assert changed.headers["ETag"] != etag
    # The old ETag is stale now.
    again = requests.patch(path, json={"HostName": "bmc-b"}, headers={"If-Match": etag}, auth=ADMIN)
    assert again.status_code == 412
    not_modified = requests.get(
        path, headers={"If-None-Match": changed.headers["ETag"]}, auth=ADMIN
    )
    assert not_modified.status_code == 304


def test_patch_names_unknown_properties_and_follows_array_rules(bmc):
    path = f"{bmc}{ROOT}/Managers/BMC/NetworkProtocol"
    bogus = requests.patch(path, json={"BogusProp": 1}, auth=ADMIN)
    assert bogus.status_code == 400 and "BogusProp" in bogus.text
    mixed = requests.patch(path, json={"HostName": "bmc-c", "BogusProp": 1}, auth=ADMIN)
    assert mixed.status_code == 200
    assert mixed.json()["HostName"] == "bmc-c"
    assert "BogusProp" in str(mixed.json()["@Message.ExtendedInfo"])
    servers = ["a.example", "b.example"]
    requests.patch(path, json={"NTP": {"NTPServers": servers}}, auth=ADMIN)
    kept = requests.patch(path, json={"NTP": {"NTPServers": [{}, None]}}, auth=ADMIN)
    assert kept.json()["NTP"]["NTPServers"] == ["a.example"]
    nothing = requests.patch(path, json={"@odata.id": "x"}, auth=ADMIN)
    assert nothing.status_code == 400 and "NoOperation" in nothing.text


# --- OData documents -------------------------------------------------------------------------


def test_metadata_is_csdl_naming_the_types_served(bmc):
    answer = requests.get(f"{bmc}{ROOT}/$metadata")
    assert answer.headers["Content-Type"].startswith("application/xml")
    document = ET.fromstring(answer.content)
    included = {element.get("Namespace") for element in document.iter(f"{EDMX}Include")}
    for namespace in (
        "ServiceRoot.v1_20_0",
        "ComputerSystem",
        "Processor",
        "SessionService.v1_2_0",
        "Session.v1_8_0",
        "ManagerAccount.v1_14_1",
        "Manager.v1_24_0",
        "LogEntry.v1_21_0",
        "RedfishExtensions.v1_0_0",
    ):
        assert namespace in included, namespace
    assert document.find(f"{EDMX}DataServices") is not None
    # Every type the tree serves is named.
    systems = requests.get(f"{bmc}{ROOT}/Systems/UltraServer", auth=ADMIN).json()
    assert systems["@odata.type"].lstrip("#").rsplit(".", 1)[0] in included


def test_odata_service_document(bmc):
    document = requests.get(f"{bmc}{ROOT}/odata").json()
    assert document["@odata.context"] == f"{ROOT}/$metadata"
    urls = {entry["name"]: entry["url"] for entry in document["value"]}
    assert urls["Service"] == f"{ROOT}/"
    assert urls["Managers"] == f"{ROOT}/Managers"
    assert urls["AccountService"] == f"{ROOT}/AccountService"


# --- accounts, roles, privileges -------------------------------------------------------------


def test_roles_are_the_standard_ones(bmc):
    roles = requests.get(f"{bmc}{ROOT}/AccountService/Roles", auth=ADMIN).json()
    ids = [m["@odata.id"].rsplit("/", 1)[-1] for m in roles["Members"]]
    assert ids == ["Administrator", "Operator", "ReadOnly"]
    read_only = requests.get(f"{bmc}{ROOT}/AccountService/Roles/ReadOnly", auth=ADMIN).json()
    assert read_only["AssignedPrivileges"] == ["Login", "ConfigureSelf"]
    assert read_only["IsPredefined"] is True


def test_accounts_are_created_used_changed_and_deleted(bmc):
    accounts = f"{bmc}{ROOT}/AccountService/Accounts"
    listing = requests.get(accounts, auth=ADMIN).json()
    admin = requests.get(f"{bmc}{listing['Members'][0]['@odata.id']}", auth=ADMIN).json()
    assert (admin["UserName"], admin["RoleId"]) == ("admin", "Administrator")
    created = requests.post(
        accounts,
        json={"UserName": "viewer", "Password": "viewer-pass-1", "RoleId": "ReadOnly"},
        auth=ADMIN,
    )
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert (
        requests.post(
            accounts, json={"UserName": "viewer", "Password": "viewer-pass-1"}, auth=ADMIN
        ).status_code
        == 409
    )
    viewer = token_of(bmc, "viewer", "viewer-pass-1")
    assert requests.get(f"{bmc}{ROOT}/Systems", headers=viewer).status_code == 200
    # ReadOnly: no writes, except its own password.
    for method, path, body in (
        ("POST", f"{ROOT}/Systems/UltraServer/Actions/ComputerSystem.Reset", {"ResetType": "On"}),
        ("PATCH", f"{ROOT}/Managers/BMC/NetworkProtocol", {"HostName": "x"}),
        ("POST", f"{ROOT}/AccountService/Accounts", {"UserName": "x", "Password": "xxxxxxxx1"}),
        ("DELETE", location.replace(location.rsplit("/", 1)[-1], "1"), None),
    ):
        refused = requests.request(method, f"{bmc}{path}", json=body, headers=viewer)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"]["code"].endswith("InsufficientPrivilege")
    own = requests.patch(f"{bmc}{location}", json={"Password": "viewer-pass-2"}, headers=viewer)
    assert own.status_code == 200, own.text
    assert login(bmc, "viewer", "viewer-pass-1").status_code == 401
    promoted = requests.patch(f"{bmc}{location}", json={"RoleId": "Operator"}, auth=ADMIN)
    assert promoted.json()["RoleId"] == "Operator"
    assert promoted.json()["Links"]["Role"]["@odata.id"].endswith("/Roles/Operator")
    assert requests.delete(f"{bmc}{location}", auth=ADMIN).status_code == 204
    assert login(bmc, "viewer", "viewer-pass-2").status_code == 401
    assert requests.get(f"{bmc}{ROOT}/Systems", headers=viewer).status_code == 401


# --- managers and the event log --------------------------------------------------------------


def test_each_device_has_its_own_manager(site_server):
    for kind, manager_type in (("bmc", "BMC"), ("pdu", "ManagementController")):
        base = url_of(site_server, kind)
        manager = requests.get(f"{base}{ROOT}/Managers/BMC", auth=ADMIN).json()
        assert manager["ManagerType"] == manager_type
        assert manager["Manufacturer"] == "Factory Simulated Systems"
        assert manager["ServiceEntryPointUUID"] == requests.get(f"{base}{ROOT}/").json()["UUID"]
    bmc_manager = requests.get(f"{url_of(site_server, 'bmc')}{ROOT}/Managers/BMC", auth=ADMIN)
    links = bmc_manager.json()["Links"]
    assert links["ManagerForServers"] == [{"@odata.id": f"{ROOT}/Systems/UltraServer"}]


def test_the_event_log_records_this_devices_faults_only(site_server, bmc):
    entries = f"{bmc}{ROOT}/Managers/BMC/LogServices/EventLog/Entries"
    serial = next(d["serial"] for d in site_server.devices if d["kind"] == "bmc")
    cdu = next(d for d in site_server.devices if d["kind"] == "cdu")
    before = requests.get(entries, auth=ADMIN).json()["Members@odata.count"]
    requests.post(
        f"{site_server.control_url}/sim/faults",
        json={"kind": EventKind.CHIP_FAILURE, "target": serial, "chip": 3},
    ).raise_for_status()
    requests.post(
        f"{site_server.control_url}/sim/faults",
        json={"kind": EventKind.COOLANT_EXCURSION, "target": cdu["serial"]},
    ).raise_for_status()
    listing = requests.get(entries, auth=ADMIN).json()
    assert listing["Members@odata.count"] == before + 1
    entry = requests.get(f"{bmc}{listing['Members'][-1]['@odata.id']}", auth=ADMIN).json()
    assert entry["Severity"] == "Critical"
    assert entry["MessageId"] == "ResourceEvent.1.4.ResourceStatusChangedCritical"
    # About chip 3's Processor (the fourth member: the Ids' digits are the vendor's), in the
    # registry's own words with its own arguments.
    origin = entry["Links"]["OriginOfCondition"]["@odata.id"]
    systems = requests.get(f"{bmc}{ROOT}/Systems", auth=ADMIN).json()
    system = requests.get(f"{bmc}{systems['Members'][0]['@odata.id']}", auth=ADMIN).json()
    chips = requests.get(f"{bmc}{system['Processors']['@odata.id']}", auth=ADMIN).json()
    assert origin == chips["Members"][3]["@odata.id"]
    assert entry["MessageArgs"] == [origin, "Critical"]
    assert entry["Message"] == f"The health of resource '{origin}' has changed to Critical."
    cdu_log = requests.get(
        f"{cdu['url']}{ROOT}/Managers/BMC/LogServices/EventLog/Entries", auth=ADMIN
    ).json()
    assert cdu_log["Members@odata.count"] >= 1
    cleared = requests.post(
        f"{bmc}{ROOT}/Managers/BMC/LogServices/EventLog/Actions/LogService.ClearLog",
        json={},
        auth=ADMIN,
    )
    assert cleared.status_code == 204
    assert requests.get(entries, auth=ADMIN).json()["Members"] == []


# --- streams ---------------------------------------------------------------------------------


class Ticker:
    """A service of this test only: a stream of three chunks, slow enough to see them arrive
    one by one, and the proof that ``close`` ran."""

    PATH = f"{ROOT}/TestTicker"

    def __init__(self) -> None:
        self.closed = threading.Event()

    def root_links(self, tree: Tree) -> dict[str, str]:
        return {}

    def resource(self, tree: Tree, path: str) -> dict | Stream | None:
        if path != self.PATH:
            return None

        def chunks() -> Iterator[bytes]:
            for n in range(3):
                yield f"id: {n}\ndata: tick {n}\n\n".encode()
                time.sleep(0.3)

        return Stream(chunks(), close=self.closed.set)

    def post(self, tree: Tree, path: str, body: dict) -> Reply | None:
        return None

    def delete(self, tree: Tree, path: str) -> Reply | None:
        return None


def test_a_stream_is_written_chunk_by_chunk_and_closed(bmc):
    ticker = Ticker()
    SERVICES.insert(0, ticker)
    try:
        host, port = bmc.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                f"GET {Ticker.PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                "YWRtaW46ZmFjdG9yeS1zaW0=\r\n\r\n".encode()
            )
            received, stamps = b"", []
            while chunk := sock.recv(4096):
                received += chunk
                stamps.append(time.monotonic())
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"200 OK" in head and b"text/event-stream" in head
        assert b"Content-Length" not in head
        assert body == b"".join(f"id: {n}\ndata: tick {n}\n\n".encode() for n in range(3))
        assert stamps[-1] - stamps[0] > 0.4  # the chunks came as they were made
        assert ticker.closed.wait(2)
    finally:
        SERVICES.remove(ticker)


def test_a_stream_is_closed_when_the_client_goes_away(bmc):
    ticker = Ticker()
    SERVICES.insert(0, ticker)
    try:
        with requests.get(f"{bmc}{Ticker.PATH}", auth=ADMIN, stream=True, timeout=5) as answer:
            assert answer.headers["Content-Type"] == "text/event-stream"
            first = next(answer.iter_content(chunk_size=None))
            assert first.startswith(b"id: 0")
        assert ticker.closed.wait(3)
    finally:
        SERVICES.remove(ticker)


# --- TLS -------------------------------------------------------------------------------------


def test_tls_serves_every_device_over_https_trusting_the_site_ca(tmp_path):
    tls = pytest.importorskip("factory.simulator.tls")
    material = tls.issue("TLS1", ["127.0.0.1"])
    site = build_site(demo_layout(1, 1, "trn2"), rates=FaultRates(scale=0.0))
    server = SiteServer(site, ssl_context=material.server_context()).start()
    try:
        ca = tmp_path / "ca.pem"
        ca.write_bytes(material.ca_pem)
        assert all(d["url"].startswith("https://") for d in server.devices)
        for device in server.devices:
            answer = requests.post(
                f"{device['url']}{SESSIONS}",
                json={"UserName": "admin", "Password": "factory-sim"},
                verify=str(ca),
            )
            assert answer.status_code == 201
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{server.devices[0]['url']}{ROOT}/", verify=True)
        protocol = requests.get(
            f"{server.devices[0]['url']}{ROOT}/Managers/BMC/NetworkProtocol",
            auth=ADMIN,
            verify=str(ca),
        ).json()
        assert protocol["HTTPS"]["ProtocolEnabled"] is True
        assert protocol["HTTP"]["ProtocolEnabled"] is False
    finally:
        server.stop()
