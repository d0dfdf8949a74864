"""What `make up` runs, for real: the embedded default (SQLite + filesystem broker, no servers)
serves the API with the demo fleet, each demo site's simulated hardware reports through its own
site agent within a minute, and Ctrl-C stops everything it started."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from tests.support.processes import children_of

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def get(url: str, token: str | None = None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def post(url: str, body: dict):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_embedded_control_plane_serves_demo_fleet_and_stops_cleanly(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    port = free_port()
    env.update(FACTORY_VAR_DIR=str(tmp_path / "var"), FACTORY_PORT=str(port))
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (
        ["migrate", "--noinput"],
        ["collectstatic", "--noinput", "-v0"],
        ["load_demo_fleet"],
    ):
        subprocess.run(manage + command, env=env, cwd=ROOT, check=True, capture_output=True)
    assert (tmp_path / "var" / "factory.sqlite3").exists()
    log = open(tmp_path / "up.log", "w+")  # noqa: SIM115 - open for the supervisor's lifetime
    supervisor = subprocess.Popen(
        [*manage, "runfactory"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                status, body = get(f"{base}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert supervisor.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.5)
        assert body["checks"] == {"database": "ok", "broker": "ok"}
        # The beat holds the scheduler lease (on SQLite too, by the database's clock).
        while True:
            try:
                status, scheduler = get(f"{base}/readyz/scheduler")
            except urllib.error.HTTPError as exc:
                status, scheduler = exc.code, json.loads(exc.read())
            if status == 200:
                break
            assert time.monotonic() < deadline, (scheduler, Path(log.name).read_text())
            time.sleep(0.5)
        assert scheduler == {"status": "ok", "check": "scheduler"}
        # README's first API call: log in as a demo person for a token, then list.
        status, issued = post(
            f"{base}/api/v1/auth/token/",
            {"username": "anna.schneider", "password": "factory-demo", "name": "laptop"},
        )
        assert status == 201 and issued["scope"] == "write"
        _, sites = get(f"{base}/api/v1/sites/", issued["token"])
        assert [s["code"] for s in sites["results"]] == ["FRA1"]  # bsia's own site
        token = subprocess.run(  # the admin tool, for a provider admin
            [*manage, "issue_token", "admin"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        _, sites = get(f"{base}/api/v1/sites/", token)
        assert sorted(s["code"] for s in sites["results"]) == ["FRA1", "IAD1"]
        # On SQLite too: numbers past 64 bits are never a 500 (its driver cannot bind them).
        big = "99999999999999999999"
        for path in (f"racks/?tenant={big}", f"racks/{big}/", f"chips/?index={big}"):
            request = urllib.request.Request(f"{base}/api/v1/{path}")
            request.add_header("Authorization", f"Bearer {token}")
            try:
                status = urllib.request.urlopen(request, timeout=5).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status in (200, 400, 404), (path, status)
        # HEAD then GET on one kept-alive connection (gunicorn's gthread worker).
        with requests.Session() as session:
            for path in ("/healthz", "/api/v1/", "/admin/login/", "/console/login/"):
                head, again = session.head(f"{base}{path}"), session.get(f"{base}{path}")
                assert head.status_code == again.status_code == 200, path
                assert head.content == b"" and again.content, path
            pool = next(iter(session.adapters["http://"].poolmanager.pools._container.values()))
            assert pool.num_connections == 1
        admin = urllib.request.urlopen(f"{base}/admin/login/", timeout=5)
        assert admin.status == 200
        # What people type first: / leads to the console's log-in, /api/v1/ lists the API.
        front = urllib.request.urlopen(f"{base}/", timeout=5)
        assert front.status == 200 and front.url.startswith(f"{base}/console/login/")
        status, api_root = get(f"{base}/api/v1/")
        assert status == 200 and api_root["endpoints"]["sites"] == f"{base}/api/v1/sites/"
        icon = urllib.request.urlopen(f"{base}/favicon.ico", timeout=5)
        assert icon.status == 200 and icon.headers["Content-Type"] == "image/x-icon"
        css = urllib.request.urlopen(f"{base}/static/admin/css/base.css", timeout=5)
        assert css.status == 200
        # The worker and beat came up on the filesystem broker.
        deadline = time.monotonic() + 60
        while not all(w in Path(log.name).read_text() for w in ("ready.", "beat: Starting")):
            assert time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.5)
        # Telemetry flows from every demo site's simulated hardware through its site agent.
        _, servers = get(f"{base}/api/v1/ultraservers/?limit=200", token)
        by_site = {}
        for server in servers["results"]:
            by_site.setdefault(server["site"], server["id"])
        assert len(by_site) == 2
        deadline = time.monotonic() + 60
        for server_id in by_site.values():
            while True:
                _, health = get(f"{base}/api/v1/ultraservers/{server_id}/chip-health/", token)
                if health["ts"] is not None:
                    break
                assert time.monotonic() < deadline, Path(log.name).read_text()[-5000:]
                time.sleep(1)
            assert health["chips"][0]["power_w"] > 0
        children = children_of(supervisor.pid)
        # web, worker, beat, the demo's firmware image server; a simulator and an agent per site
        assert len(children) == 4 + 2 * 2
    finally:
        supervisor.send_signal(signal.SIGINT)  # Ctrl-C
        supervisor.wait(timeout=30)
    time.sleep(0.5)
    assert not [pid for pid in children if alive(pid)], Path(log.name).read_text()
    assert "Stopped web, worker, beat, simulators and agents." in Path(log.name).read_text()
