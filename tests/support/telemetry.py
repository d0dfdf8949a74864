"""Telemetry batches as a site agent sends them."""

from __future__ import annotations

import datetime as dt

import orjson
from rest_framework.test import APIClient

from factory import wire
from factory.agents import services as agents
from factory.wire import OEM, Metric, ReportId, ReportKey
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext
from tests.support.api import gateway

CTX = ChangeContext(SYSTEM, AuditSource.SYSTEM)


#: A healthy, busy chip (counters at zero: nothing happened yet).
HEALTHY_CHIP = {
    Metric.POWER_W: 800.0,
    Metric.ENERGY_J: 1.0e6,
    Metric.TEMP_C: 65.0,
    Metric.UTILIZATION: 0.8,
    Metric.HBM_USED_GB: 100.0,
    Metric.ECC_CORRECTED: 0,
    Metric.ECC_UNCORRECTED: 0,
    Metric.LINK_ERRORS: 0,
    Metric.LINK_DOWN_S: 0.0,
    Metric.THROTTLE_S: 0.0,
    Metric.HEALTH: int(wire.HealthCode.OK),
}
assert tuple(HEALTHY_CHIP) == wire.METRIC_NAMES


def chips(n: int = 144, **overrides) -> dict:
    """One list per metric (``Oem[OEM].Chips``); ``overrides`` by metric name."""
    columns = {metric: [value] * n for metric, value in HEALTHY_CHIP.items()}
    columns.update(overrides)
    return columns


def server_report(serial: str, sequence: int, ts: dt.datetime | None = None, **columns) -> dict:
    ts = ts or dt.datetime.now(dt.UTC)
    return {
        "@odata.type": wire.METRIC_REPORT_TYPE,
        "Id": ReportId.CHIPS.value,
        "ReportSequence": str(sequence),
        "Timestamp": ts.isoformat(),
        "MetricValues": [],
        "Oem": {OEM: {ReportKey.SOURCE: serial, ReportKey.CHIPS: chips(**columns)}},
    }


def pdu_report(source: str, sequence: int, feeds: dict) -> dict:
    return {
        "Id": ReportId.PDU.value,
        "ReportSequence": str(sequence),
        "Timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "Oem": {OEM: {ReportKey.SOURCE: source, ReportKey.FEEDS: feeds}},
    }


def feed(power_w: float, up: bool = True) -> dict:
    """One feed's reading in a PDU report's ``Feeds``."""
    return {wire.FeedReading.POWER_W: power_w, wire.FeedReading.UP: up}


def oem(report: dict) -> dict:
    """A report's ``Oem[OEM]`` section."""
    return report["Oem"][OEM]


def agent_client(site) -> tuple[APIClient, object]:
    agent, clear = agents.issue_agent(site, f"agent-{site.code}", CTX)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=wire.authorization(clear))
    return client, agent


def post(client: APIClient, reports: list[dict] | bytes):
    body = reports if isinstance(reports, bytes) else orjson.dumps({"reports": reports})
    return client.post(gateway(wire.TELEMETRY_PATH), data=body, content_type="application/json")
