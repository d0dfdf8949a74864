"""The agent's Redfish client against real simulated BMCs of both flavours: a session per
device (DSP0266 §13.3), renewed when the device drops it, deleted on shutdown; Basic where a
device has no session service; HTTPS verified by the site's CA or a pinned certificate."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from factory import wire
from factory.simulator import tls
from factory.siteagent.__main__ import load_devices
from factory.siteagent.agent import Agent
from factory.siteagent.commands import system_uri
from factory.siteagent.devices import MAX_CONNECTIONS, Device, DeviceError, TlsPolicy
from factory.siteagent.outbox import Outbox
from tests.factory.siteagent.sites import FLAVOURS, PASSWORD, USERNAME, device, listed, site

SESSIONS = "/redfish/v1/SessionService/Sessions"
BASIC = (USERNAME, PASSWORD)


def sessions(url: str) -> list[str]:
    """The device's open sessions, as an administrator lists them."""
    body = requests.get(f"{url}{SESSIONS}", auth=BASIC, timeout=5, verify=False).json()
    return [m["@odata.id"] for m in body["Members"]]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_agent_logs_in_once_and_sends_its_token(flavour):
    with site(flavour) as server:
        bmc = device(server)
        system = system_uri(bmc)  # where this vendor serves it
        with ThreadPoolExecutor(8) as pool:
            systems = list(pool.map(lambda _: bmc.get(system), range(24)))
        assert {s["SerialNumber"] for s in systems} == {bmc.serial}
        assert (bmc.auth, bmc.logins) == ("session", 1)
        assert sessions(bmc.url) == [bmc.session_uri]
        # The token alone is the credential (no Basic sent): the device takes it...
        alone = requests.get(f"{bmc.url}{system}", headers={"X-Auth-Token": bmc.token}, timeout=5)
        assert alone.status_code == 200
        # ...and a request with neither is refused, so the agent's succeed by the token.
        assert requests.get(f"{bmc.url}{system}", timeout=5).status_code == 401
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_dropped_session_is_renewed_on_401(flavour):
    with site(flavour) as server:
        bmc = device(server)
        system = system_uri(bmc)
        old_token, old_session = bmc.token, bmc.session_uri
        # The device forgets the session (an administrator ends it; a timeout does the same).
        dropped = requests.delete(f"{bmc.url}{old_session}", auth=BASIC, timeout=5)
        assert dropped.status_code in (200, 204)
        assert (
            requests.get(
                f"{bmc.url}{system}", headers={"X-Auth-Token": old_token}, timeout=5
            ).status_code
            == 401
        )
        with ThreadPoolExecutor(4) as pool:  # several threads meet the 401: one new login
            list(pool.map(lambda _: bmc.get(system), range(8)))
        assert bmc.logins == 2
        assert bmc.token != old_token
        assert sessions(bmc.url) == [bmc.session_uri]
        bmc.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_shutdown_deletes_every_devices_session(flavour, tmp_path):
    with site(flavour) as server:
        devices = load_devices(
            str(_listing_file(server, tmp_path)), USERNAME, PASSWORD, allow_plain_http=True
        )
        agent = Agent(
            control_plane="http://127.0.0.1:9",
            token="unused",
            devices=devices,
            outbox=Outbox(str(tmp_path / "outbox.sqlite3")),
        )
        agent.poll_once()
        assert all(d.auth == "session" for d in devices)
        assert all(sessions(d.url) == [d.session_uri] for d in devices)
        agent.shutdown()
        assert all(sessions(d.url) == [] for d in devices)


def test_wrong_credentials_are_a_clear_device_error():
    with site() as server:
        entry = listed(server)
        bmc = Device("bmc", entry["serial"], entry["url"], USERNAME, "not-the-password")
        with pytest.raises(DeviceError, match="login refused: 401"):
            bmc.get(wire.SYSTEM_PATH)


# --- a device without sessions: another vendor's small BMC ---------------------------------


class BasicOnlyBmc:
    """A BMC that predates sessions: POST Sessions is 405, every resource wants Basic; it
    answers slowly and counts requests in flight, to show the agent's per-device limit."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.in_flight = self.most = 0
        self.lock = threading.Lock()
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: dict, **headers: str) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer(405, {"error": {"message": "no sessions"}}, Allow="GET")

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    return self.answer(401, {"error": {"message": "Basic required"}})
                with outer.lock:
                    outer.in_flight += 1
                    outer.most = max(outer.most, outer.in_flight)
                time.sleep(outer.delay_s)
                with outer.lock:
                    outer.in_flight -= 1
                self.answer(200, {"@odata.id": self.path, "Id": "x"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_device_without_sessions_is_reached_with_basic_and_at_most_max_connections():
    bmc_server = BasicOnlyBmc(delay_s=0.05)
    try:
        bmc = Device("bmc", "OLD-1", bmc_server.url, USERNAME, PASSWORD)
        with ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(lambda n: bmc.get(f"/redfish/v1/Things/{n}"), range(32)))
        assert [b["@odata.id"] for b in bodies] == [f"/redfish/v1/Things/{n}" for n in range(32)]
        assert bmc.auth == "basic"
        assert bmc.token is None
        assert bmc_server.most == MAX_CONNECTIONS
        bmc.close()  # nothing to delete: no error
    finally:
        bmc_server.stop()


# --- HTTPS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def material() -> tls.TlsMaterial:
    return tls.issue("TEST", ["127.0.0.1", "localhost"])


@pytest.fixture
def ca_file(material, tmp_path) -> Path:
    path = tmp_path / "site-ca.pem"
    path.write_bytes(material.ca_pem)
    return path


def test_https_is_verified_against_the_sites_ca(material, ca_file):
    with site(ssl_context=material.server_context()) as server:
        assert listed(server)["url"].startswith("https://")
        bmc = device(server, tls={"ca": str(ca_file)})
        assert bmc.get(wire.SYSTEM_PATH)["SerialNumber"] == bmc.serial
        assert bmc.auth == "session"
        bmc.close()


def test_https_with_another_ca_is_refused(material, tmp_path):
    other = tmp_path / "other-ca.pem"
    other.write_bytes(tls.issue("ELSEWHERE", ["127.0.0.1"]).ca_pem)
    with site(ssl_context=material.server_context()) as server:
        for trust in ({"ca": str(other)}, None):  # another site's CA; the system's CAs
            bmc = device(server, tls=trust)
            with pytest.raises(DeviceError, match=r"TLS to .* refused"):
                bmc.get(wire.SYSTEM_PATH)


def test_a_pinned_certificate_is_trusted_and_no_other(material):
    with site(ssl_context=material.server_context()) as server:
        bmc = device(server, tls={"pin": material.fingerprint})
        assert bmc.get(wire.SYSTEM_PATH)["SerialNumber"] == bmc.serial
        bmc.close()
        wrong = tls.issue("TEST", ["127.0.0.1"]).fingerprint
        bmc = device(server, tls={"pin": wrong})
        with pytest.raises(DeviceError, match=r"TLS to .* refused"):
            bmc.get(wire.SYSTEM_PATH)


def test_the_operators_trust_wins_over_the_listings(tmp_path):
    """A listing (fetched from a device network) cannot loosen what the operator said: the
    --pin first, then the --ca-bundle, and the listing's own ``tls`` only without either."""
    pin = "sha256:" + "ab" * 32
    listing = wire.DeviceListing(
        site="FRA1",
        devices=[
            wire.Device(kind="bmc", serial="A", url="https://10.0.0.1", tls={"ca": "/own.pem"}),
            wire.Device(kind="bmc", serial="B", url="https://10.0.0.2", tls={"ca": "/own.pem"}),
            wire.Device(kind="bmc", serial="C", url="https://10.0.0.3"),
        ],
    )
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(listing))
    a, b, c = load_devices(str(path), USERNAME, PASSWORD, ca_bundle="/site.pem", pins={"A": pin})
    assert (a.tls, b.tls, c.tls) == (
        TlsPolicy(pin=pin),
        TlsPolicy(ca="/site.pem"),
        TlsPolicy(ca="/site.pem"),
    )
    assert c.extra == {}
    (alone,) = load_devices(str(path), USERNAME, PASSWORD)[:1]
    assert alone.tls == TlsPolicy(ca="/own.pem")  # no word from the operator: the listing's
    with pytest.raises(ValueError, match="sha256"):
        TlsPolicy.of({"pin": "md5:00"})


def _listing_file(server, tmp_path) -> Path:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps(server.listing()))
    return path
