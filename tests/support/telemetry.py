"""Telemetry batches as a site agent sends them."""

from __future__ import annotations

import datetime as dt

import orjson
from rest_framework.test import APIClient

from factory.agents import services as agents
from tenants.access import SYSTEM
from tenants.choices import AuditSource
from tenants.services.changes import ChangeContext

CTX = ChangeContext(SYSTEM, AuditSource.SYSTEM)


def chips(n: int = 144, **overrides) -> dict:
    columns = {
        "power_w": [800.0] * n,
        "energy_j": [1.0e6] * n,
        "temp_c": [65.0] * n,
        "utilization": [0.8] * n,
        "hbm_used_gb": [100.0] * n,
        "ecc_corrected": [0] * n,
        "ecc_uncorrected": [0] * n,
        "link_errors": [0] * n,
        "link_down_s": [0.0] * n,
        "throttle_s": [0.0] * n,
        "health": [0] * n,
    }
    columns.update(overrides)
    return columns


def server_report(serial: str, sequence: int, ts: dt.datetime | None = None, **columns) -> dict:
    ts = ts or dt.datetime.now(dt.UTC)
    return {
        "@odata.type": "#MetricReport.v1_5_2.MetricReport",
        "Id": "ChipMetrics",
        "ReportSequence": str(sequence),
        "Timestamp": ts.isoformat(),
        "MetricValues": [],
        "Oem": {"AIFactory": {"Source": serial, "Chips": chips(**columns)}},
    }


def pdu_report(source: str, sequence: int, feeds: dict) -> dict:
    return {
        "Id": "PduMetrics",
        "ReportSequence": str(sequence),
        "Timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "Oem": {"AIFactory": {"Source": source, "Feeds": feeds}},
    }


def agent_client(site) -> tuple[APIClient, object]:
    agent, clear = agents.issue_agent(site, f"agent-{site.code}", CTX)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {clear}")
    return client, agent


def post(client: APIClient, reports: list[dict] | bytes):
    body = reports if isinstance(reports, bytes) else orjson.dumps({"reports": reports})
    return client.post("/api/v1/agent/telemetry/", data=body, content_type="application/json")
