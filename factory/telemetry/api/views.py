from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from factory import wire
from factory.agents.api.authentication import SiteAgentView
from factory.agents.services import seen
from factory.inventory.models import Site, UltraServer
from factory.telemetry import egress, events, ingest, metrics, services
from factory.telemetry.api import serializers as s
from factory.telemetry.choices import Resolution
from tenants.access import actor_for
from tenants.api.base import ScopedViewSetMixin
from tenants.choices import PROVIDER_ROLES
from tenants.errors import DomainError
from tenants.filters import query_params

DEFAULT_SPAN = {
    Resolution.RAW: dt.timedelta(minutes=10),
    Resolution.MINUTE: dt.timedelta(hours=6),
    Resolution.HOUR: dt.timedelta(days=7),
}


class AgentTelemetryView(SiteAgentView):
    """A site agent's telemetry batch (MetricReports). All-or-nothing: a malformed report or
    another site's server rejects the whole batch; a replayed report is acknowledged and
    ignored. A batch over ``TELEMETRY_MAX_BATCH_BYTES`` is a 413 before it is read; its rate
    limit is its own, far above the rest of the agent gateway's."""

    throttle_scope = "telemetry"

    @extend_schema(request=s.TelemetryBatchSerializer, responses=s.IngestResultSerializer)
    def post(self, request):
        agent = request.auth
        # The raw bytes, read once: request.body would apply the 2.5 MB form-upload limit, and
        # request.data would parse the JSON a second, slower way.
        body = request._request.read()
        try:
            result = ingest.ingest(agent, body, egress.allowed_categories(agent.site))
        except DomainError as refusal:
            metrics.count_rejected(agent.site.code, refusal)
            raise
        metrics.count_ingest(agent.site.code)
        seen(agent)
        return Response(result.as_dict())


class AgentEventsView(SiteAgentView):
    """Discrete events the agent saw (a chip gone, a feed lost): faults at once, without
    waiting for the next telemetry batch."""

    @extend_schema(request=s.AgentEventsSerializer, responses=s.IngestResultSerializer)
    def post(self, request):
        body = s.AgentEventsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        opened = events.record_events(request.auth, body.validated_data["events"])
        seen(request.auth)
        return Response({"accepted": len(body.validated_data["events"]), "faults_opened": opened})


class AgentConfigView(SiteAgentView):
    """What the agent should send and how often: the telemetry categories the site's egress
    rules let leave the site (everything else is dropped at the site)."""

    @extend_schema(responses=s.AgentConfigSerializer)
    def get(self, request):
        agent = request.auth
        categories = sorted(egress.allowed_categories(agent.site))
        seen(agent)
        return Response(
            wire.AgentConfig(
                site=agent.site.code,
                interval_seconds=settings.TELEMETRY_INTERVAL_SECONDS,
                telemetry_categories=categories,
                metrics=egress.metrics_for(categories),
            )
        )


class UltraServerTelemetryViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):
    """An UltraServer's telemetry: a time series and every chip's health now."""

    queryset = UltraServer.objects.select_related("model", "rack__site")
    tenant_fields = ("rack__site__tenant", "tenant")

    @extend_schema(parameters=[s.SeriesQuerySerializer], responses=s.TelemetrySeriesSerializer)
    @query_params(s.SeriesQuerySerializer)
    @action(detail=True, methods=["get"])
    def telemetry(self, request, pk=None):
        """Per-server figures over time: raw samples (every chip's values too) or 1-minute /
        1-hour roll-ups. At most `limit` (10,000) points: when more remain, `truncated` is
        true and `next_start` is where to ask again."""
        server = self.get_object()
        query = s.SeriesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        resolution = query.validated_data["resolution"]
        end = query.validated_data.get("end") or timezone.now()
        start = query.validated_data.get("start") or end - DEFAULT_SPAN[resolution]
        found = services.series(server, start, end, resolution, query.validated_data["limit"])
        return Response(
            {
                "ultraserver": server.pk,
                "resolution": resolution,
                "start": start,
                "end": end,
                "limit": found.limit,
                "truncated": found.truncated,
                "next_start": found.next_start,
                "points": found.points,
            }
        )

    @extend_schema(responses=s.ChipHealthSerializer)
    @query_params()
    @action(detail=True, methods=["get"], url_path="chip-health")
    def chip_health(self, request, pk=None):
        """Every chip now: `health` is the inventory's verdict (as in `/chips/`),
        `reported_health` what the chip last reported, beside its latest readings."""
        server = self.get_object()
        return Response(services.chip_health(server))


class SitePowerViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):
    """Power a site and its racks actually draw, beside budget and commitment."""

    queryset = Site.objects.all()
    tenant_fields = ("tenant",)

    @extend_schema(responses=s.SitePowerDrawSerializer)
    @query_params()
    @action(detail=True, methods=["get"])
    def power(self, request, pk=None):
        return Response(services.site_power(self.get_object()))


class ExpositionView(APIView):
    """Answers with the Prometheus text format whatever ``Accept`` says (a scraper asks for
    ``text/plain`` or OpenMetrics, which no API renderer offers); a refusal is the JSON error
    body, never a 406. Scrapes read the database, so they have a rate budget of their own
    (``RATE_LIMITS["metrics"]``, per token) and the database families are cached per scope
    (``METRICS_CACHE_SECONDS``)."""

    throttle_scope = "metrics"

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)


class MetricsView(ExpositionView):
    """Prometheus exposition of the fleet. Provider personnel's tokens only (a Prometheus
    ``bearer_token``): it spans every tenant."""

    read_roles = PROVIDER_ROLES

    @extend_schema(responses={(200, "text/plain"): str})
    def get(self, request):
        return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


class TenantMetricsView(ExpositionView):
    """Prometheus exposition of what the token's owner may see, scoped as the API's lists are:
    a tenant's people get the series of their own sites, servers, chips, faults, workflows and
    telemetry batches; provider personnel get everything `/metrics` shows. Scrape it with the
    token as Prometheus's `bearer_token`."""

    @extend_schema(
        operation_id="metrics_scoped",
        responses={(200, "text/plain"): OpenApiTypes.STR},
        description="The Prometheus text exposition format, whatever `Accept` asks for. The "
        "series read from the database are refreshed at most every 10 s "
        "(`METRICS_CACHE_SECONDS`); scrapes have their own rate limit per token (60 a minute by "
        "default), apart from the token's API budget.",
    )
    def get(self, request):
        scope = metrics.Scope(actor_for(request.user))
        return HttpResponse(metrics.exposition(scope), content_type=CONTENT_TYPE_LATEST)
