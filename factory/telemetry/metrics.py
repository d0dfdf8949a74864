"""The fleet for Prometheus: read from the database at scrape time, so every web worker answers
the same and nothing is lost when one restarts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from django.db.models import Count, Max, Sum
from django.utils import timezone
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from factory.inventory.models import Chip, UltraServer
from factory.telemetry.choices import DeviceKind
from factory.telemetry.models import DeviceReading, Fault, ServerSample, ServerTelemetry
from factory.wire import FeedReading

_extra: list[Callable[[], Iterable[Metric]]] = []


def register(collect: Callable[[], Iterable[Metric]]) -> None:
    """Other apps add their families (the workflow engine: workflows by kind and state)."""
    if collect not in _extra:
        _extra.append(collect)


def fleet() -> Iterable[Metric]:
    chips = GaugeMetricFamily(
        "factory_chips", "Chips by site and health.", labels=["site", "health"]
    )
    for row in Chip.objects.values("ultraserver__rack__site__code", "health").annotate(
        n=Count("pk")
    ):
        chips.add_metric([row["ultraserver__rack__site__code"] or "", row["health"]], row["n"])
    yield chips

    servers = GaugeMetricFamily(
        "factory_ultraservers",
        "UltraServers by site and lifecycle state.",
        labels=["site", "state"],
    )
    for row in UltraServer.objects.values("rack__site__code", "lifecycle_state").annotate(
        n=Count("pk")
    ):
        servers.add_metric([row["rack__site__code"] or "", row["lifecycle_state"]], row["n"])
    yield servers

    drawn = GaugeMetricFamily(
        "factory_power_drawn_watts", "Power the rack PDUs measure.", labels=["site", "rack", "feed"]
    )
    for reading in DeviceReading.objects.filter(kind=DeviceKind.PDU).select_related("site", "rack"):
        for feed, value in sorted(reading.values.get("feeds", {}).items()):
            drawn.add_metric(
                [reading.site.code, reading.rack.name if reading.rack else "", feed],
                float(value.get(FeedReading.POWER_W, 0.0)),
            )
    yield drawn

    server_power = GaugeMetricFamily(
        "factory_ultraserver_power_watts",
        "Chip power of each UltraServer's latest sample, summed per site.",
        labels=["site"],
    )
    lag = GaugeMetricFamily(
        "factory_telemetry_lag_seconds",
        "Age of the newest sample stored for a site.",
        labels=["site"],
    )
    now = timezone.now()
    for row in ServerTelemetry.objects.values("ultraserver__rack__site__code").annotate(
        watts=Sum("power_total_w"), newest=Max("ts")
    ):
        site = row["ultraserver__rack__site__code"] or ""
        server_power.add_metric([site], float(row["watts"] or 0.0))
        lag.add_metric([site], max(0.0, (now - row["newest"]).total_seconds()))
    yield server_power
    yield lag

    window = 60
    recent = ServerSample.objects.filter(ts__gte=now - dt.timedelta(seconds=window)).aggregate(
        chips=Sum("chips")
    )
    rate = GaugeMetricFamily(
        "factory_telemetry_ingest_chip_samples_per_second",
        f"Chip samples stored over the last {window} s, per second.",
    )
    rate.add_metric([], float(recent["chips"] or 0) / window)
    yield rate

    faults = GaugeMetricFamily("factory_faults_open", "Open faults.", labels=["site", "rule"])
    for row in (
        Fault.objects.filter(cleared_at__isnull=True)
        .values("site__code", "rule")
        .annotate(n=Count("pk"))
    ):
        faults.add_metric([row["site__code"], row["rule"]], row["n"])
    yield faults


class _Collector:
    def collect(self):
        yield from fleet()
        for extra in _extra:
            yield from extra()


def exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)
