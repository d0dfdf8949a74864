"""Simulated hardware, the real site agent and the control plane, as separate processes:
telemetry flows, a fault injected on one chip becomes a fault on that chip's UltraServer,
commands run through Redfish, and cutting the control plane off loses and duplicates nothing."""

from __future__ import annotations

import json
import time
import urllib.request
from itertools import pairwise

import pytest
from django.conf import settings
from django.db.models import Count

from factory.agents import services as agents
from factory.agents.models import AgentCommand
from factory.telemetry.layout import site_layout
from factory.telemetry.models import Fault, ServerSample, TelemetrySource
from factory.wire import CommandKind, CommandParam, EventKind, FaultRule, HardwareState
from tests.support.fleet import make_rack, make_server
from tests.support.processes import (
    BIN,
    Process,
    app_env,
    free_port,
    site_agent,
    site_simulator,
    wait_for,
)
from tests.support.signing import any_image
from tests.support.telemetry import CTX

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def control_plane(env: dict, port: int, log) -> Process:
    process = Process(
        [
            str(BIN / "gunicorn"),
            "factory.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--log-level",
            "warning",
        ],
        env,
        log,
    ).start()
    wait_for(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
        30,
        f"gunicorn (see {log})",
    )
    return process


def samples_and_sequences(serials):
    stored = dict(
        ServerSample.objects.filter(ultraserver__serial__in=serials)
        .values_list("ultraserver__serial")
        .annotate(n=Count("id"), distinct_ts=Count("ts", distinct=True))
        .values_list("ultraserver__serial", "n")
    )
    sequences = dict(
        TelemetrySource.objects.filter(source__in=serials).values_list("source", "last_sequence")
    )
    return stored, sequences


def test_site_hardware_agent_and_control_plane(fleet, tmp_path):
    site = fleet.sites["alpha"]
    servers = [fleet.servers["alpha"], make_server("ALP1-SRV2", rack=make_rack(site, "ALP1-R02"))]
    serials = [s.serial for s in servers]
    _, token = agents.issue_agent(site, "e2e-agent", CTX)
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps(site_layout(site)))
    devices = tmp_path / "devices.json"

    simulator = site_simulator(layout, devices, tmp_path / "simulator.log")
    port = free_port()
    env = app_env(settings.REDIS_URL, TELEMETRY_INTERVAL_SECONDS="1")
    web = control_plane(env, port, tmp_path / "web.log")
    agent = None
    try:
        wait_for(devices.exists, 15, "simulator device list")
        listing = json.loads(devices.read_text())
        agent = site_agent(
            f"http://127.0.0.1:{port}",
            devices,
            token,
            tmp_path / "outbox.sqlite3",
            tmp_path / "agent.log",
            "--image-base",
            any_image(),
        )

        # Telemetry flows, from every BMC.
        wait_for(
            lambda: (
                ServerSample.objects.filter(ultraserver__in=servers)
                .values("ultraserver")
                .distinct()
                .count()
                == 2
            ),
            30,
            "samples from both servers",
        )

        # A chip fails in the simulator: the control plane raises a fault on that chip.
        inject = urllib.request.Request(
            f"{listing['control']}/sim/faults",
            data=json.dumps(
                {"kind": EventKind.CHIP_FAILURE, "target": serials[1], "chip": 7}
            ).encode(),
            method="POST",
        )
        assert urllib.request.urlopen(inject, timeout=5).status == 201
        wait_for(
            lambda: Fault.objects.filter(
                ultraserver=servers[1], chip_index=7, rule=FaultRule.CHIP_DOWN
            ).exists(),
            30,
            "the chip's fault",
        )
        assert not Fault.objects.filter(ultraserver=servers[0]).exists()
        servers[1].refresh_from_db()
        assert servers[1].in_maintenance

        # A command through the real agent and Redfish: flash firmware, A/B banks.
        command = agents.submit(
            site_id=site.pk,
            kind=CommandKind.FLASH_FIRMWARE,
            ultraserver_id=servers[0].pk,
            params={CommandParam.VERSION: "2026.11.1", CommandParam.ORIGIN: "aws-neuron"},
        )
        wait_for(
            lambda: AgentCommand.objects.get(pk=command.pk).state == "succeeded",
            30,
            "the flash to finish",
        )
        result = AgentCommand.objects.get(pk=command.pk).result
        assert result[HardwareState.FIRMWARE_VERSION] == "2026.11.1"
        assert result[HardwareState.INACTIVE_FIRMWARE_VERSION] == "2026.09.1"

        # The control plane goes away for a while; the agent keeps polling into its outbox.
        web.stop()
        before, _ = samples_and_sequences(serials)
        time.sleep(6)
        web = control_plane(env, port, tmp_path / "web2.log")

        def caught_up():
            stored, sequences = samples_and_sequences(serials)
            return all(
                stored.get(s, 0) == sequences.get(s, -1) and stored.get(s, 0) > before[s] + 5
                for s in serials
            )

        wait_for(caught_up, 60, "the agent's outbox to drain")
        agent.stop()
        agent = None
        _, sequences = samples_and_sequences(serials)
        for server in servers:
            rows = ServerSample.objects.filter(ultraserver=server)
            # Every sequence number from 1 to the last is stored exactly once: no loss, no
            # duplicate, even across the outage.
            assert rows.count() == sequences[server.serial]
            assert rows.values("ts").distinct().count() == rows.count()
            stamps = sorted(rows.values_list("ts", flat=True))
            gaps = [(b - a).total_seconds() for a, b in pairwise(stamps)]
            assert max(gaps) < 4, "samples taken while the control plane was away are there"
    finally:
        if agent is not None:
            agent.stop()
        web.stop()
        simulator.stop()
