"""factoryctl drives a live control plane: gunicorn and a Celery worker, simulated hardware
(a Redfish BMC per UltraServer) and the real site agent, all separate processes. The installed
script logs in, lists with a filter in all three formats, starts an upgrade that waits for the
tenant's window, the tenant's admin approves the window (and an access request), and the watch
follows the upgrade to its end as the hardware carries it out."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from pathlib import Path

import pytest
import yaml
from celery import Celery
from django.conf import settings
from django.utils import timezone

from factory.agents import services as agents
from factory.inventory.models import UltraServer
from factory.telemetry.layout import site_layout
from provisioning.models import FirmwareRelease
from tenants.services.changes import save_object
from tenants.sovereignty.models import AccessRequest
from tests.factory.cli.ctl import Ctl, finished
from tests.support.fleet import CTX, build_fleet, make_rack, make_server
from tests.support.processes import (
    app_env,
    gunicorn,
    site_agent,
    site_simulator,
    wait_for,
    worker_process,
)
from tests.support.signing import artifact_server, release_images
from tests.support.workflows import always_open, make_releases, put_in_service

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def tail_of(*logs: Path, lines: int = 15) -> str:
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in logs
        if log.exists()
    )


def test_factoryctl_lists_starts_an_upgrade_watches_it_to_the_end_and_approves(tmp_path):
    fleet = build_fleet()
    make_releases()
    site = fleet.sites["alpha"]
    servers = [
        put_in_service(fleet.servers["alpha"]),
        put_in_service(make_server("ALP1-SRV2", rack=make_rack(site, "ALP1-R02"))),
    ]
    window = always_open(site, status="proposed")  # the upgrade waits for the tenant's yes
    now = timezone.now()
    access = save_object(
        AccessRequest(
            tenant=fleet.alpha,
            site=site,
            person=fleet.people["technician"],
            requested_by=fleet.people["provider_admin"],
            reason="replace a coolant pump",
            starts_at=now,
            ends_at=now + dt.timedelta(hours=4),
        ),
        CTX,
    )
    _, agent_token = agents.issue_agent(site, "cli-e2e-agent", CTX)
    layout, devices = tmp_path / "layout.json", tmp_path / "devices.json"
    layout.write_text(json.dumps(site_layout(site)))

    env = app_env(settings.REDIS_URL)
    logs = [tmp_path / n for n in ("gunicorn.log", "worker.log", "simulator.log", "agent.log")]
    worker = worker_process(env, logs[1], "cli-e2e")
    hardware = site_simulator(layout, devices, logs[2])
    hints = Celery(broker=settings.REDIS_URL)
    hints.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    stop = threading.Event()

    def reconciler():  # what beat does every 10 s in production, every second here
        while not stop.is_set():
            with contextlib.suppress(Exception):
                hints.send_task("provisioning.reconcile")
            stop.wait(1.0)

    ticker = threading.Thread(target=reconciler, daemon=True)
    agent = None
    try:
        with (
            gunicorn(env, logs[0], workers=2, threads=4) as url,
            artifact_server(release_images(FirmwareRelease.objects.all())) as images,
        ):
            wait_for(devices.exists, 30, "the simulator's device list")
            agent = site_agent(
                url,
                devices,
                agent_token,
                tmp_path / "outbox.sqlite3",
                tmp_path / "agent.log",
                "--image-base",
                images,
            )
            ticker.start()

            provider = Ctl(tmp_path / "provider", url)
            assert provider.login("padmin").code == 0

            # List with a filter, in all three formats.
            table = provider("get", "ultraservers", "-f", "site=ALP1", "-f", "ordering=serial")
            header, *rows = table.out.splitlines()
            assert table.code == 0 and header.split()[:2] == ["id", "serial"], table.out
            assert [r.split()[1] for r in rows] == ["ALP1-SRV1", "ALP1-SRV2"]
            listed = provider("get", "ultraservers", "-f", "site=ALP1", "-o", "json").json()
            as_yaml = provider("get", "ultraservers", "-f", "site=ALP1", "-o", "yaml").out
            assert yaml.safe_load(as_yaml) == listed
            assert {s["firmware_version"] for s in listed} == {"1.0"}

            # Start an upgrade; the site has no approved window yet, so it waits.
            started = provider(
                "workflow", "start", "upgrade", "--site", "ALP1",
                "-p", "firmware_version=2.0", "-p", "canary_size=1", "-p", "batch_size=1",
                "-p", "soak_seconds=0", "-p", "poll_seconds=1", "-o", "json",
            )  # fmt: skip
            assert started.code == 0, started.err
            wid = str(started.json()["id"])
            watch = provider.start("workflow", "watch", wid, "--interval", "1", "--timeout", "400")

            def waiting_for_window():
                history = provider("workflow", "history", wid, "-o", "json").json()
                return "waiting-window" in [e["kind"] for e in history]

            wait_for(waiting_for_window, 60, "the upgrade to wait for the window")

            # The tenant's admin approves the window, and the provider's access request.
            tenant = Ctl(tmp_path / "tenant", url)
            assert tenant.login("alpha-admin").code == 0
            proposed = tenant("get", "maintenance-windows", "-f", "status=proposed", "-o", "json")
            assert [w["id"] for w in proposed.json()] == [window.pk]
            approved = tenant("window", "approve", str(window.pk), "-o", "json").json()
            assert approved["status"] == "approved" and approved["decided_by"] == "alpha-admin"
            granted = tenant("access", "approve", str(access.pk), "-o", "json").json()
            assert granted["status"] == "approved"

            # The watch follows the upgrade, as the hardware carries it out, to its end.
            watched = finished(watch, timeout=460)
            assert watched.code == 0, (watched.out, watched.err, tail_of(*logs))
            lines = watched.out.splitlines()
            assert lines[-1].startswith(f"workflow {wid} succeeded"), lines
            assert any("no tenant-approved maintenance window" in line for line in lines)
            progress = [line for line in lines if " steps" in line]
            done = [int(line.split(": ", 1)[1].split("/")[0]) for line in progress]
            assert done == sorted(done) and done[0] < done[-1], progress  # it moved, forward
            assert "succeeded: 8/8 steps" in progress[-1], progress[-1]

            after = provider("get", "ultraservers", "-f", "site=ALP1", "-o", "json").json()
            assert {s["firmware_version"] for s in after} == {"2.0"}
            for server in UltraServer.objects.filter(pk__in=[s.pk for s in servers]):
                assert server.firmware_version == "2.0" and server.lifecycle_state == "in-service"
            newest = tenant(
                "events", "tail", "--kind", "workflow.state_changed", "-n", "1", "--count", "1",
                "--timeout", "20", "-o", "json",
            )  # fmt: skip
            assert newest.code == 0, newest.err
            assert json.loads(newest.out)["data"]["to"] == "succeeded"

            # A cancelled workflow's watch says so, and exits non-zero.
            downgrade = provider(
                "workflow", "start", "upgrade", "-u", "ALP1-SRV1", "-p", "firmware_version=1.0",
                "-o", "json",
            ).json()  # fmt: skip
            cancelling = provider("workflow", "cancel", str(downgrade["id"]), "--reason", "test")
            assert cancelling.code == 0
            cancelled = provider("workflow", "watch", str(downgrade["id"]), "--timeout", "120")
            assert cancelled.code == 1, (cancelled.out, cancelled.err)
            last = cancelled.out.splitlines()[-1]
            assert last.startswith(f"workflow {downgrade['id']} cancelled"), last
    finally:
        stop.set()
        if agent is not None:
            agent.stop()
        hardware.stop()
        worker.stop()
        if ticker.is_alive():
            ticker.join(timeout=5)
