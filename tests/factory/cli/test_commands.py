"""factoryctl's commands, run as the installed script against a live server (Django's
``live_server``; tests/e2e/test_cli.py runs the whole thing on gunicorn and Celery): log-in and
its config file, which token goes where, every output format, filters and pages, workflow
specs and steering, the tenant's decisions, the event stream, and readable refusals."""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
from types import SimpleNamespace

import pytest
import yaml
from django.utils import timezone

from factory.inventory.models import Site
from tenants.services.changes import save_object
from tenants.sovereignty.models import AccessRequest
from tests.factory.cli.ctl import Ctl, finished
from tests.support.fleet import CTX, build_fleet
from tests.support.processes import free_port
from tests.support.sovereignty import active_rule
from tests.support.workflows import always_open, make_releases, put_in_service

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def world(live_server, tmp_path):
    fleet = build_fleet()
    make_releases()
    server = put_in_service(fleet.servers["alpha"])
    return SimpleNamespace(fleet=fleet, url=live_server.url, server=server, tmp=tmp_path)


def logged_in(world, username: str) -> Ctl:
    ctl = Ctl(world.tmp / username, world.url)
    result = ctl.login(username)
    assert result.code == 0, result.err
    return ctl


def test_login_keeps_the_token_for_its_owner_alone_and_logout_revokes_it(world):
    ctl = Ctl(world.tmp / "laptop", world.url)
    result = ctl.login("padmin")
    assert result.code == 0 and "Logged in" in result.err and "padmin" in result.err
    assert stat.S_IMODE(ctl.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(ctl.config_file.parent.stat().st_mode) == 0o700
    stored = json.loads(ctl.config_file.read_text())
    assert stored["url"] == world.url and stored["username"] == "padmin"
    assert stored["token"].startswith("afc_") and stored["token_id"]

    assert ctl("whoami").out.startswith(f"padmin at {world.url}")
    # a token you already have is checked, then kept the same way
    desk = Ctl(world.tmp / "desk", world.url)
    assert desk("login", "--url", world.url, "--token-stdin", stdin="afc_wrong\n").code == 1
    kept = desk("login", "--url", world.url, "--token-stdin", stdin=stored["token"] + "\n")
    assert kept.code == 0 and stat.S_IMODE(desk.config_file.stat().st_mode) == 0o600
    assert len(desk("get", "sites", "-o", "json").json()) == 2

    assert ctl("logout").code == 0
    assert not json.loads(ctl.config_file.read_text())["token"]
    again = Ctl(world.tmp / "other")("--url", world.url, "--token", stored["token"], "get", "sites")
    assert again.code == 1 and again.err.startswith("Error: 401 invalid_token")


def test_refusals_and_silence_are_sentences_with_exit_codes(world):
    ctl = Ctl(world.tmp / "laptop", world.url)
    wrong = ctl.login("padmin", password="not-it")
    assert wrong.code == 1 and wrong.err.startswith("Error: 401")
    assert not ctl.config_file.exists()

    nobody = ctl("--url", f"http://127.0.0.1:{free_port()}", "get", "sites")
    assert nobody.code == 3 and "cannot reach" in nobody.err and "connection refused" in nobody.err
    nowhere = ctl("get", "sites")
    assert nowhere.code == 2 and "no server" in nowhere.err
    bad_url = ctl("--url", "ftp://x", "get", "sites")
    assert bad_url.code == 2 and "not an http(s) URL" in bad_url.err


def test_the_stored_token_goes_only_to_its_server_and_flags_win(world):
    ctl = logged_in(world, "alpha-admin")
    mine = ctl("get", "sites", "-o", "json").json()
    assert [s["code"] for s in mine] == ["ALP1"]  # a tenant's people see their own

    provider = logged_in(world, "padmin")
    token = json.loads(provider.config_file.read_text())["token"]
    by_env = ctl("get", "sites", "-o", "json", FACTORY_TOKEN=token).json()
    assert sorted(s["code"] for s in by_env) == ["ALP1", "BET1"]
    by_flag = ctl("--token", token, "get", "sites", "-o", "json").json()
    assert len(by_flag) == 2

    # the same server under another name is another server: the stored token is not sent
    elsewhere = world.url.replace("localhost", "127.0.0.1")
    assert elsewhere != world.url
    refused = ctl("--url", elsewhere, "get", "sites")
    assert refused.code == 1 and "401" in refused.err and "factoryctl login" in refused.err


def test_get_and_show_in_every_format_with_filters_and_pages(world):
    ctl = logged_in(world, "padmin")
    assert "workflows" in ctl("resources").out

    table = ctl("get", "ultraservers", "-f", "site=ALP1")
    header, *rows = table.out.splitlines()
    assert header.split()[:2] == ["id", "serial"] and "lifecycle_state" in header
    assert len(rows) == 1 and "ALP1-SRV1" in rows[0] and "in-service" in rows[0]
    as_json = ctl("get", "ultraserver", "-f", "site=ALP1", "-o", "json").json()
    as_yaml = yaml.safe_load(ctl("get", "ultraservers", "-f", "site=ALP1", "-o", "yaml").out)
    assert as_json == as_yaml and [s["serial"] for s in as_json] == ["ALP1-SRV1"]
    ored = ctl("get", "sites", "-f", "code=ALP1", "-f", "code=BET1", "-o", "json").json()
    assert len(ored) == 2

    first = ctl("get", "sites", "--limit", "1", "-o", "table")
    assert len(first.out.splitlines()) == 2 and "1 of 2 sites shown" in first.err
    paged = ctl("get", "sites", "-f", "limit=1", "--all", "-o", "json").json()  # two pages
    assert sorted(s["code"] for s in paged) == ["ALP1", "BET1"]
    picked = ctl("get", "sites", "--columns", "code,country").out.splitlines()
    assert picked[0].split() == ["code", "country"] and picked[1].split() == ["ALP1", "DE"]

    shown = ctl("show", "ultraservers", str(world.server.pk), "-o", "json").json()
    assert shown["serial"] == "ALP1-SRV1"
    detail = ctl("show", "site", str(world.fleet.sites["alpha"].pk)).out
    assert any(line.split() == ["code", "ALP1"] for line in detail.splitlines())

    unknown = ctl("get", "sites", "-f", "colour=blue")
    assert unknown.code == 1 and "unknown_filter" in unknown.err and "colour" in unknown.err
    missing = ctl("show", "sites", "999999")
    assert missing.code == 1 and "404" in missing.err
    assert ctl("get", "nonsense").code == 2
    assert ctl("get", "sites", "-f", "nokey").code == 2


def test_workflows_start_with_typed_specs_and_are_steered(world):
    ctl = logged_in(world, "padmin")
    refused = ctl(
        "workflow", "start", "upgrade", "-u", "ALP1-SRV1", "-p", "firmware_version=2.0",
        "-p", "batch_size=0",
    )  # fmt: skip
    assert refused.code == 1 and "spec.batch_size" in refused.err

    started = ctl(
        "workflow", "start", "upgrade", "-u", "ALP1-SRV1", "-p", "firmware_version=2.0",
        "-p", "batch_size=1", "-p", "rollback=no", "--reason", "from the cli", "-o", "json",
    ).json()  # fmt: skip
    assert started["state"] == "running" and started["reason"] == "from the cli"
    # 2.0 reads as a number, but the schema declares a version string: sent as one
    assert started["spec"]["firmware_version"] == "2.0"
    assert started["spec"]["batch_size"] == 1 and started["spec"]["rollback"] is False
    wid = str(started["id"])

    held = ctl("workflow", "start", "upgrade", "--site", "ALP1", "-p", "firmware_version=2.0")
    assert held.code == 1 and "409" in held.err  # the server is in a workflow already

    paused = ctl("workflow", "pause", wid, "--reason", "lunch", "-o", "json").json()
    assert paused["state"] == "paused" and paused["state_reason"] == "lunch"
    waiting = ctl("workflow", "watch", wid, "--timeout", "2", "--interval", "0.5")
    assert waiting.code == 4 and "paused" in waiting.out and "gave up" in waiting.err
    assert ctl("workflow", "resume", wid, "--max-failures", "2", "-o", "json").json()["state"] == (
        "running"
    )
    assert ctl("workflow", "cancel", wid, "--reason", "done", "-o", "json").json()["state"] in (
        "cancelling",
        "cancelled",
    )
    kinds = [e["kind"] for e in ctl("workflow", "history", wid, "-o", "json").json()]
    assert kinds[:4] == ["created", "paused", "resumed", "cancelling"]
    assert [t["serial"] for t in ctl("workflow", "targets", wid, "-o", "json").json()] == [
        "ALP1-SRV1"
    ]
    assert "drain" in ctl("workflow", "steps", wid).out
    assert "firmware_version" in ctl("workflow", "params", "upgrade").out
    assert ctl("workflow", "watch", "abc").code == 2
    wrong_step = ctl("workflow", "input", wid, "--step", "dispatch", "-d", "technician=7")
    assert wrong_step.code == 1 and wrong_step.err.startswith("Error: 4")
    stream = ctl("get", "events/watch")
    assert stream.code == 2 and "events tail" in stream.err


def test_a_tenant_admin_decides_access_and_windows_and_asks_the_engine(world):
    fleet = world.fleet
    active_rule(fleet, "customer_approval")
    site, tech = fleet.sites["alpha"], fleet.people["technician"]
    now = timezone.now()

    def access_request(reason: str) -> str:
        request = AccessRequest(
            tenant=fleet.alpha,
            site=site,
            person=tech,
            requested_by=fleet.people["provider_admin"],
            reason=reason,
            starts_at=now - dt.timedelta(minutes=5),
            ends_at=now + dt.timedelta(hours=4),
        )
        return str(save_object(request, CTX).pk)

    first, second = access_request("replace a pump"), access_request("swap a PSU")
    ask = ("sovereignty", "evaluate", "access_site", "--site", "ALP1", "--person", str(tech.pk))
    admin = logged_in(world, "alpha-admin")
    denied = admin(*ask, "--from-country", "DE")
    assert denied.code == 1 and denied.out.startswith("denied")
    assert "access request approved" in denied.out  # the rule's sentence

    operator = logged_in(world, "alpha-operator")
    refused = operator("access", "approve", first)
    assert refused.code == 1 and refused.err.startswith("Error: 403")
    other_tenant = logged_in(world, "beta-admin")
    assert "404" in other_tenant("access", "approve", first).err

    assert admin("access", "approve", first, "-o", "json").json()["status"] == "approved"
    allowed = admin(*ask, "--from-country", "DE", "-o", "json")
    assert allowed.code == 0 and allowed.json()["allowed"] is True
    assert admin("access", "deny", second, "-o", "json").json()["status"] == "rejected"

    window = always_open(site, status="proposed")
    proposed = admin("get", "maintenance-windows", "-f", "status=proposed", "-o", "json").json()
    assert [w["id"] for w in proposed] == [window.pk]
    assert admin("window", "approve", str(window.pk), "-o", "json").json()["status"] == "approved"
    assert admin("window", "reject", str(window.pk), "-o", "json").json()["status"] == "rejected"
    assert Site.objects.get(pk=site.pk).maintenance_windows.get().status == "rejected"


def test_events_tail_follows_across_reconnects_without_a_gap_or_a_repeat(world):
    ctl = logged_in(world, "padmin")
    started = ctl(
        "workflow", "start", "upgrade", "-u", "ALP1-SRV1", "-p", "firmware_version=2.0",
        "-o", "json",
    ).json()  # fmt: skip
    wid = str(started["id"])
    # Each stream lasts a second: between the events below the tail reconnects, with
    # Last-Event-ID, several times.
    tail = ctl.start(
        "events", "tail", "--after", "0", "--stream-seconds", "1", "--count", "3",
        "--timeout", "90", "-o", "json",
    )  # fmt: skip
    time.sleep(2.5)
    assert ctl("workflow", "pause", wid, "--reason", "lunch").code == 0
    time.sleep(2.5)
    assert ctl("workflow", "resume", wid).code == 0
    result = finished(tail, timeout=120)
    assert result.code == 0, result.err
    seen = [json.loads(line) for line in result.out.splitlines()]
    ids = [e["id"] for e in seen]
    assert ids == sorted(set(ids)), ids  # in order, none twice
    changes = [
        (e["kind"], e["data"].get("to"))
        for e in seen
        if e["subject"]["type"] == "workflow" and str(e["subject"]["id"]) == wid
    ]
    assert changes == [
        ("workflow.created", None),
        ("workflow.state_changed", "paused"),
        ("workflow.state_changed", "running"),
    ]
    assert "reconnecting" not in result.err  # the streams ended on time, nothing broke

    # Without --after: the newest events first (here: the last one), then what comes.
    newest = ctl("events", "tail", "-n", "1", "--count", "1", "--timeout", "5", "-o", "json")
    assert newest.code == 0 and json.loads(newest.out)["id"] == ids[-1]
    text = ctl("events", "tail", "-n", "2", "--count", "2", "--timeout", "5").out.splitlines()
    assert len(text) == 2 and "workflow.state_changed" in text[-1] and "running" in text[-1]
    shy = ctl("events", "tail", "-n", "0", "--count", "1", "--timeout", "2")
    assert shy.code == 4 and not shy.out  # nothing new in time
