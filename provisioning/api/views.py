from __future__ import annotations

from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from factory.telemetry import attention
from factory.telemetry import policy as fault_policy
from factory.telemetry.api.serializers import FaultSerializer as FaultRecordSerializer
from factory.telemetry.choices import FaultRule
from factory.telemetry.faults import record as record_fault
from factory.telemetry.models import Fault
from provisioning import operator_actions, services
from provisioning.api import serializers as s
from provisioning.filtersets import (
    FaultFilterSet,
    StepFilterSet,
    TargetFilterSet,
    WorkflowFilterSet,
)
from provisioning.models import (
    CapacityFloor,
    FirmwareRelease,
    JobRun,
    MaintenanceWindow,
    Notification,
    Workflow,
)
from tenants.api.base import (
    AuditedModelViewSet,
    ConditionalWritesMixin,
    ObjectResponseMixin,
    ScopedViewSetMixin,
    change_context,
)
from tenants.choices import PROVIDER_ROLES, Role
from tenants.filters import filter_for_action, query_params

FIELD_HANDS = frozenset({Role.PROVIDER_ADMIN, Role.PROVIDER_TECHNICIAN})


class WorkflowViewSet(
    ConditionalWritesMixin,
    ScopedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Deploy, rolling-upgrade and maintain workflows. Provider admins start and steer them; the
    site's tenant watches. A server already in an active workflow is a 409 naming it. Steering
    (pause, resume, cancel, start, input, parts) honours ``If-Match``: a stale version is a
    412, checked again under the workflow's row lock."""

    queryset = Workflow.objects.select_related("site")
    # Per-workflow counts over its targets: a join and a GROUP BY, made only where the
    # workflow's representation is read (``_shows_counts``), and left out of a list whose
    # ?brief or ?fields shows none of them (a detail's ETag is of the full representation).
    TARGET_COUNTS = {
        "target_count": Count("targets"),
        "finished_count": Count("targets", filter=~Q(targets__state__in=["pending", "running"])),
        "failed_count": Count("targets", filter=Q(targets__state__in=["failed", "rolled-back"])),
    }
    serializer_class = s.WorkflowSerializer
    tenant_fields = ("site__tenant",)
    filterset_class = WorkflowFilterSet
    ordering_fields = ["created_at", "updated_at", "state"]
    etag_on_create = True  # create answers with the detail representation

    # Steering honours If-Match; these answer with the workflow (and its ETag).
    object_actions = frozenset({"pause", "resume", "cancel", "start", "abort_batch"})
    TARGET_ACTIONS = frozenset({"retry_target", "skip_target", "force_release_target"})
    conditional_actions = object_actions | {"provide_input", "parts"} | TARGET_ACTIONS
    SHOWN_BY = object_actions | {"list", "retrieve", "create"}

    def _shows_counts(self) -> bool:
        """Whether this action reads the workflow's representation: to show it, or to check
        an ``If-Match`` against its ETag. A workflow's steps, targets and history do not."""
        if self.action == "list":
            shown = self.requested_fields()
            return shown is None or bool(set(shown) & set(self.TARGET_COUNTS))
        request = getattr(self, "request", None)
        return self.action in self.SHOWN_BY or (
            request is not None and "If-Match" in request.headers
        )

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.annotate(**self.TARGET_COUNTS) if self._shows_counts() else queryset

    @property
    def write_roles(self):
        if self.action in ("provide_input", "parts"):
            return FIELD_HANDS
        return frozenset({Role.PROVIDER_ADMIN})

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.WorkflowDetailSerializer
        return super().get_serializer_class()

    @extend_schema(
        request=s.WorkflowCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="The same as the body's idempotency_key (either, or both equal).",
            )
        ],
        responses={201: s.WorkflowDetailSerializer, 200: s.WorkflowDetailSerializer},
    )
    def create(self, request, *args, **kwargs):
        """Start a workflow. The same ``idempotency_key`` (or ``Idempotency-Key`` header)
        returns the same workflow: 201 the first time, 200 with the same body after, even for
        simultaneous requests."""
        data = request.data
        header = request.headers.get("Idempotency-Key")
        if header is not None and isinstance(data, dict):
            if data.get("idempotency_key") not in (None, header):
                raise exceptions.ValidationError(
                    {"idempotency_key": ["differs from the Idempotency-Key header"]}
                )
            data = {**data, "idempotency_key": header}
        body = s.WorkflowCreateSerializer(data=data, context={"request": request})
        body.is_valid(raise_exception=True)
        workflow, created = services.create_workflow(
            body.validated_data["kind"],
            s.TargetSelectionSerializer.resolve(body.validated_data["targets"]),
            change_context(request),
            spec=body.validated_data.get("spec"),
            idempotency_key=body.validated_data.get("idempotency_key"),
            reason=body.validated_data["reason"],
        )
        return self.object_response(workflow, 201 if created else 200)

    def _steer(self, fn, *args, **kwargs):
        """``fn(workflow, ctx, *args, **kwargs)``, a service that locks the workflow's row: a
        stale ``If-Match`` is a 412, checked before and again under that lock."""
        workflow = self.get_object()
        expected = self.request.headers.get("If-Match")
        self.check_if_match(workflow, expected)
        with self.if_match_under_lock(workflow, expected):
            return fn(workflow, change_context(self.request), *args, **kwargs)

    def _act(self, fn, body_class=None, **kwargs):
        """``fn`` on the workflow, given the request body's fields (read by ``body_class``);
        answered with the workflow as ``GET`` shows it, and its ETag."""
        if body_class is not None:
            body = body_class(data=self.request.data)
            body.is_valid(raise_exception=True)
            kwargs.update(body.validated_data)
        return self.object_response(self._steer(fn, **kwargs))

    @extend_schema(request=s.PauseSerializer, responses=s.WorkflowDetailSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(services.pause, s.PauseSerializer)

    @extend_schema(request=s.ResumeSerializer, responses=s.WorkflowDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Resume a paused workflow, optionally with a new failure budget. The body goes to
        the service as sent: it checks it against the kind's declared spec, and refuses any
        other key by name."""
        return self._act(services.resume, budget=request.data)

    @extend_schema(request=s.PauseSerializer, responses=s.WorkflowDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(services.cancel, s.PauseSerializer)

    @extend_schema(request=None, responses=s.WorkflowDetailSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._act(services.start)

    @extend_schema(request=s.InputSerializer, responses=s.StepSerializer)
    @action(detail=True, methods=["post"], url_path="input")
    def provide_input(self, request, pk=None):
        """Give a waiting manual step what it needs: ``dispatch`` a technician
        (``{"technician": <user id>, "from_country": "DE"}``), or ``repair`` with
        ``{"no_parts_needed": true}``."""
        body = s.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)

        def provide(workflow, ctx):
            data = body.validated_data
            return services.provide_input(
                workflow, data["step"], data.get("ultraserver"), data["data"], ctx
            )

        return Response(s.StepSerializer(self._steer(provide)).data)

    @extend_schema(
        request=s.PartReplacementSerializer, responses={201: s.PartReplacementSerializer}
    )
    @action(detail=True, methods=["post"])
    def parts(self, request, pk=None):
        """Record a replaced part (and its RMA) on one of the workflow's servers."""
        body = s.PartReplacementSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        server = fields.pop("ultraserver")

        def record(workflow, ctx):
            return services.record_part_replacement(workflow, server, ctx, **fields)

        return Response(s.PartReplacementSerializer(self._steer(record)).data, status=201)

    def _on_target(self, fn, target_id: str):
        """``fn(workflow, target_id, reason, ctx)`` steered like pause: answered with the
        target as ``targets/`` lists it."""
        body = s.OperatorActionSerializer(data=self.request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"]
        target = self._steer(lambda workflow, ctx: fn(workflow, int(target_id), reason, ctx))
        return Response(s.TargetSerializer(target).data)

    TARGET_ID = OpenApiParameter(
        "target_id", int, OpenApiParameter.PATH, description="The target's id (see targets/)."
    )

    @extend_schema(
        request=s.OperatorActionSerializer,
        responses=s.TargetSerializer,
        parameters=[TARGET_ID],
    )
    @action(detail=True, methods=["post"], url_path=r"targets/(?P<target_id>[0-9]+)/retry")
    def retry_target(self, request, pk=None, target_id=None):
        """Run a failed server's failed step again (the server back to running, its hold
        taken again). 409 naming the state when it is not failed."""
        return self._on_target(operator_actions.retry_target, target_id)

    @extend_schema(
        request=s.OperatorActionSerializer,
        responses=s.TargetSerializer,
        parameters=[TARGET_ID],
    )
    @action(detail=True, methods=["post"], url_path=r"targets/(?P<target_id>[0-9]+)/skip")
    def skip_target(self, request, pk=None, target_id=None):
        """Leave a server out (not started, failed, or at rest between steps): skipped and
        released, its recorded state kept. 409 when it is mid-step."""
        return self._on_target(operator_actions.skip_target, target_id)

    @extend_schema(
        request=s.OperatorActionSerializer,
        responses=s.TargetSerializer,
        parameters=[TARGET_ID],
    )
    @action(detail=True, methods=["post"], url_path=r"targets/(?P<target_id>[0-9]+)/force-release")
    def force_release_target(self, request, pk=None, target_id=None):
        """Release a stuck hold: the target stops, the server is flagged for maintenance."""
        return self._on_target(operator_actions.force_release, target_id)

    @extend_schema(request=s.OperatorActionSerializer, responses=s.WorkflowDetailSerializer)
    @action(detail=True, methods=["post"], url_path="abort-batch")
    def abort_batch(self, request, pk=None):
        """Stop the batch in flight: risky steps not yet started are held, servers whose
        firmware it changed are rolled back, and the workflow pauses."""
        body = s.OperatorActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"]
        workflow = self._steer(
            lambda workflow, ctx: operator_actions.abort_batch(workflow, reason, ctx)
        )
        return self.object_response(workflow)

    def _page(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)

    @extend_schema(responses=s.StepSerializer(many=True))
    @query_params(StepFilterSet, paginated=True)
    @action(detail=True, methods=["get"])
    def steps(self, request, pk=None):
        workflow = self.get_object()
        steps = workflow.steps.select_related("target").order_by("target_id", "seq")
        return self._page(filter_for_action(self, steps), s.StepSerializer)

    @extend_schema(responses=s.TargetSerializer(many=True))
    @query_params(TargetFilterSet, paginated=True)
    @action(detail=True, methods=["get"])
    def targets(self, request, pk=None):
        workflow = self.get_object()
        targets = workflow.targets.select_related("ultraserver")
        return self._page(filter_for_action(self, targets), s.TargetSerializer)

    @extend_schema(responses=s.EventSerializer(many=True))
    @query_params(paginated=True)
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        workflow = self.get_object()
        return self._page(workflow.events.order_by("at", "id"), s.EventSerializer)


class MaintenanceWindowViewSet(AuditedModelViewSet):
    """Recurring windows in the site's time zone. The provider proposes; a tenant-admin of the
    site's tenant approves or rejects. Changing a window sends it back for approval."""

    queryset = MaintenanceWindow.objects.select_related("site")
    serializer_class = s.MaintenanceWindowSerializer
    tenant_fields = ("site__tenant",)
    filterset_fields = ["site", "status", "name", "created_at"]
    ordering_fields = ["name", "created_at"]

    @property
    def write_roles(self):
        if self.action in ("approve", "reject"):
            return frozenset({Role.TENANT_ADMIN})
        return frozenset({Role.PROVIDER_ADMIN})

    def save_instance(self, instance, ctx):
        return services.propose_window(instance, ctx)

    def _decide(self, approve: bool):
        # write_roles for these actions is tenant-admin alone: the object permission check in
        # get_object() admits only a tenant-admin of the site's own tenant.
        window = self.get_object()
        window = services.decide_window(window, approve, change_context(self.request))
        return Response(s.MaintenanceWindowSerializer(window).data)

    @extend_schema(request=None, responses=s.MaintenanceWindowSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(True)

    @extend_schema(request=None, responses=s.MaintenanceWindowSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(False)


class CapacityFloorViewSet(AuditedModelViewSet):
    """The tenant's disruption budget per site: maintenance may not go below it."""

    queryset = CapacityFloor.objects.select_related("site")
    serializer_class = s.CapacityFloorSerializer
    tenant_fields = ("site__tenant",)
    write_roles = frozenset({Role.TENANT_ADMIN})
    filterset_fields = ["site"]
    ordering_fields = ["site"]


class FirmwareReleaseViewSet(AuditedModelViewSet):
    """Firmware builds per model; one baseline per model (the compliance target)."""

    queryset = FirmwareRelease.objects.all()
    serializer_class = s.FirmwareReleaseSerializer
    filterset_fields = ["model", "baseline", "version", "key_id", "created_at"]
    ordering_fields = ["created_at", "version"]


class FaultViewSet(
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Faults: raised by the telemetry health rules or reported here by a person. Reporting
    one gives the server the maintenance flag and, unless a workflow already holds it, opens a
    maintain workflow; a refused drain (a capacity floor) never loses the report: the fault is
    kept, ``waiting-capacity-floor``, and the health sweep tries again. ``?open=true`` lists
    those not yet cleared. People acknowledge, silence and resolve them (audited, with the
    note)."""

    queryset = Fault.objects.select_related("site", "ultraserver")
    serializer_class = FaultRecordSerializer
    tenant_fields = ("site__tenant",)
    filterset_class = FaultFilterSet
    ordering_fields = ["opened_at", "cleared_at", "severity"]
    write_roles = frozenset(
        {Role.PROVIDER_ADMIN, Role.PROVIDER_TECHNICIAN, Role.TENANT_ADMIN, Role.TENANT_OPERATOR}
    )

    @extend_schema(request=s.FaultSerializer, responses={201: s.FaultResultSerializer})
    def create(self, request):
        body = s.FaultSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        server = body.validated_data["ultraserver"]
        if not self.actor.can_write(server.owning_tenant_id, self.write_roles):
            raise exceptions.PermissionDenied("Your role may not report faults here.", code="role")
        reason = body.validated_data["reason"]
        # The record commits on its own: whatever becomes of the drain, the report is kept.
        with transaction.atomic():
            fault = record_fault(server, FaultRule.REPORTED, reason)
        about = fault or self._open_report(server)
        workflow = None
        if fault_policy.of(FaultRule.REPORTED).drains:
            server, workflow = services.report_fault(
                server,
                reason,
                change_context(request),
                open_workflow=body.validated_data["open_workflow"],
                faults=[about] if about is not None else [],
            )
        if about is not None:
            about.refresh_from_db()
        location = self.detail_url(fault.pk) if fault else None
        return Response(
            {
                "ultraserver": server.pk,
                "in_maintenance": server.in_maintenance,
                "fault_reason": server.fault_reason,
                "workflow": workflow.pk if workflow else None,
                "fault": fault.pk if fault else None,
                "severity": about.severity if about else None,
                "action": about.action if about else None,
                "action_detail": about.action_detail if about else None,
            },
            status=201,
            headers={"Location": location} if location else None,
        )

    @staticmethod
    def _open_report(server) -> Fault | None:
        """The person's report already open on the server (one open per key)."""
        return Fault.objects.filter(
            ultraserver=server, rule=FaultRule.REPORTED, chip_index=None, cleared_at__isnull=True
        ).first()

    def _attend(self, do, body_class):
        fault = self.get_object()  # others' faults are 404; a role that may not write, 403
        body = body_class(data=self.request.data)
        body.is_valid(raise_exception=True)
        fault = do(fault, ctx=change_context(self.request), **body.validated_data)
        return Response(FaultRecordSerializer(fault).data)

    @extend_schema(request=s.FaultNoteSerializer, responses=FaultRecordSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Seen, and someone is on it: the note says what they will do (again: a new note)."""
        return self._attend(attention.acknowledge, s.FaultNoteSerializer)

    @extend_schema(request=s.FaultSilenceSerializer, responses=FaultRecordSerializer)
    @action(detail=True, methods=["post"])
    def silence(self, request, pk=None):
        """Out of the attention list until ``until``; it stays open and its action stands."""
        return self._attend(attention.silence, s.FaultSilenceSerializer)

    @extend_schema(request=s.FaultNoteSerializer, responses=FaultRecordSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Closed by a person (repaired, or not real); 409 if it is already resolved."""
        return self._attend(attention.resolve, s.FaultNoteSerializer)


class NotificationViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """What each tenant has been told (drains, proposed upgrades)."""

    queryset = Notification.objects.all()
    serializer_class = s.NotificationSerializer
    tenant_fields = ("tenant",)
    filterset_fields = ["site", "kind", "workflow", "tenant", "created_at"]
    ordering_fields = ["created_at"]


class JobRunViewSet(ObjectResponseMixin, viewsets.ReadOnlyModelViewSet):
    """Runs of the scheduled jobs (reconciler, health sweep, firmware compliance, stale
    agents): when, and how each went. Provider personnel only."""

    queryset = JobRun.objects.all()
    serializer_class = s.JobRunSerializer
    read_roles = PROVIDER_ROLES
    filterset_fields = ["job", "outcome", "started_at", "finished_at"]
    ordering_fields = ["started_at"]

    @extend_schema(responses=s.JobRunSerializer(many=True))
    @action(detail=False, methods=["get"], pagination_class=None)
    def latest(self, request):
        """The latest run of each job."""
        newest = JobRun.objects.filter(job=OuterRef("job")).order_by("-started_at")
        latest = JobRun.objects.filter(pk=Subquery(newest.values("pk")[:1])).order_by("job")
        latest = self.filter_queryset(latest)
        return Response(s.JobRunSerializer(latest, many=True).data)
