"""The event log over HTTP: a list to page through, and a watch stream (server-sent events)
that resumes from ``Last-Event-ID``. Both are scoped like every other read: a tenant's people
see their tenant's events, the provider sees all of them (its own, tenant-less ones too)."""

from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action

from tenants.api.base import ScopedViewSetMixin
from tenants.errors import FieldError, Invalid
from tenants.events import selectors, slots, stream
from tenants.events.api.serializers import EventSerializer
from tenants.events.filtersets import EventFilterSet
from tenants.filters import INT64, FilterBackend, filter_for_action, query_params

#: A stream holds a web thread; it ends after at most this long and the client reconnects.
MAX_WATCH_SECONDS = 300
LAST_EVENT_ID = "Last-Event-ID"
#: Response shaping is for objects; a frame is always the whole event.
NOT_FOR_STREAMS = ("fields", "brief")


class WatchParamsSerializer(serializers.Serializer):
    timeout = serializers.IntegerField(
        min_value=1,
        max_value=MAX_WATCH_SECONDS,
        default=60,
        help_text="End the stream after this many seconds (then reconnect with `Last-Event-ID`).",
    )


def resume_position(request) -> int | None:
    """The id of the last event the client saw (``Last-Event-ID``; None: none given)."""
    raw = request.headers.get(LAST_EVENT_ID, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) > INT64[1]:
        raise Invalid(
            f"{LAST_EVENT_ID} must be the id of an event (a whole number), not {raw[:40]!r}",
            code="invalid",
            field=LAST_EVENT_ID,
        )
    return int(raw)


def refuse_shaping(request) -> None:
    """``?fields`` and ``?brief`` shape objects; on the stream they are unknown parameters."""
    given = [name for name in NOT_FOR_STREAMS if name in request.query_params]
    if given:
        raise Invalid(
            code="unknown_filter",
            errors=[
                FieldError(
                    name,
                    "unknown_filter",
                    f"'{name}' is not a filter or parameter of this endpoint "
                    "(a frame is always the whole event)",
                )
                for name in given
            ],
        )


WATCH_HELP = (
    "Server-sent events: first a `retry: <ms>` line (how long to wait before reconnecting), "
    "then each event as a frame of `id: <id>`, `event: <kind>`, `data: <the event as JSON, as "
    "in the list>`. Because each frame names its kind, a browser's EventSource delivers it to "
    '`addEventListener("<kind>", ...)` (e.g. `"fault.opened"`), never to `onmessage`. A '
    "`: keepalive` comment comes after 15 s without an event.\n\n"
    "Where it starts: after `Last-Event-ID` (the last id seen; an EventSource sends it when "
    "it reconnects) or `after`, the later of the two; with neither, at the newest event, so "
    "only what happens from now on is sent. `after=0` replays the whole log first.\n\n"
    "The stream ends after `timeout` seconds (at most 300), or at once when the token is "
    "revoked or expires or the person loses the membership it was opened with (checked every "
    "15 s); reconnect with `Last-Event-ID` and it goes on exactly where it stopped: no event "
    "is skipped or repeated.\n\n"
    "Each stream holds a server thread, so open streams are capped: per token (4), per "
    "tenant (16) and per server process. Past a cap the answer is a 429 with `Retry-After`. "
    "`fields` and `brief` are refused (400), as is any parameter not listed here. Refusals "
    "(401, 403, 400, 429) are JSON, before the stream starts."
)


@extend_schema_view(
    retrieve=extend_schema(
        parameters=[
            OpenApiParameter(
                "id",
                OpenApiTypes.INT64,
                OpenApiParameter.PATH,
                description="The event's id: its place in the log.",
            )
        ]
    )
)
class EventViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The event log: what happened that customers care about (faults, workflows, access
    requests, maintenance windows), oldest first, numbered in commit order. Paged by cursor
    unless `offset` is given: the log is never short, and a cursor page costs one query."""

    queryset = selectors.committed()
    cursor_by_default = True  # factory.core.pagination
    serializer_class = EventSerializer
    filterset_class = EventFilterSet
    filter_backends = [FilterBackend]  # one order: the log's
    tenant_fields = ("tenant",)
    lookup_field = "sequence"
    lookup_url_kwarg = "id"

    def _identity_field(self, name: str) -> serializers.Field | None:
        if name == "url":  # the detail route is by the event's id, its sequence number
            return serializers.HyperlinkedIdentityField(
                view_name="event-detail", lookup_field="sequence", lookup_url_kwarg="id"
            )
        return super()._identity_field(name)

    def perform_content_negotiation(self, request, force=False):
        # An EventSource asks for text/event-stream; the stream is that, and a refusal before
        # it starts is the API's JSON error body all the same.
        return super().perform_content_negotiation(request, force=force or self.action == "watch")

    @extend_schema(
        operation_id="events_watch",
        filters=True,  # the list's filters (the schema lists them only for lists otherwise)
        description=WATCH_HELP,
        parameters=[
            WatchParamsSerializer,
            OpenApiParameter(
                LAST_EVENT_ID,
                OpenApiTypes.INT64,
                OpenApiParameter.HEADER,
                description="Resume after this event (the last `id` seen). With `after` too, "
                "the later of the two.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR, description="The stream of events (server-sent events)."
            ),
            429: OpenApiResponse(
                description="Over the rate limit, or too many streams open (code "
                "`too_many_streams`: per token, per tenant or on this server process); "
                "`Retry-After` says when to try again."
            ),
        },
    )
    @query_params(EventFilterSet, WatchParamsSerializer)
    @action(detail=False, methods=["get"])
    def watch(self, request):
        refuse_shaping(request)
        params = WatchParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        events = filter_for_action(self, self.filter_queryset(self.get_queryset()))
        position = resume_position(request)
        if position is None:
            # Neither Last-Event-ID nor after: from now on (after=0 replays the whole log).
            position = 0 if "after" in request.query_params else selectors.newest_position()
        timeout = params.validated_data["timeout"]
        viewer = stream.Viewer.of(request, frozenset(self.read_roles))
        slot = slots.acquire(viewer.credential, viewer.tenants(), timeout)
        frames = stream.watch(
            events,
            position=position,
            timeout=timeout,
            poll=settings.EVENTS_WATCH_POLL_SECONDS,
            keepalive=settings.EVENTS_WATCH_KEEPALIVE_SECONDS,
            request_id=getattr(request, "request_id", ""),
            viewer=viewer,
            recheck=settings.EVENTS_WATCH_RECHECK_SECONDS,
            slot=slot,
        )
        response = StreamingHttpResponse(
            stream.Stream(frames, slot), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx and the like: pass each frame on at once
        return response
