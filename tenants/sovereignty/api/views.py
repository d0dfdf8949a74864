from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.access import actor_for
from tenants.api.base import AuditedModelViewSet, ScopedViewSetMixin, change_context
from tenants.choices import PROVIDER_ROLES, TENANT_ROLES, Role
from tenants.filters import filter_for_action, query_params
from tenants.sovereignty import services
from tenants.sovereignty.api import serializers as s
from tenants.sovereignty.api import transparency
from tenants.sovereignty.core.model import Action
from tenants.sovereignty.filtersets import (
    AccessRequestFilterSet,
    DecisionRecordFilterSet,
    ProtectedAssetFilterSet,
    RuleFilterSet,
)
from tenants.sovereignty.models import (
    AccessRequest,
    AccessRequestStatus,
    DecisionRecord,
    JurisdictionGroup,
    ProtectedAsset,
    SovereigntyRule,
    TransferBasis,
)

TENANT_WRITERS = frozenset({Role.TENANT_ADMIN, Role.TENANT_OPERATOR})


class JurisdictionGroupViewSet(AuditedModelViewSet):
    """Country groups a rule can name: the built-in EU and EEA, and a tenant's own."""

    queryset = JurisdictionGroup.objects.all()
    serializer_class = s.JurisdictionGroupSerializer
    ordering_fields = ["code"]
    write_roles = frozenset({Role.PROVIDER_ADMIN, Role.TENANT_ADMIN})

    def _check_target_tenant(self, instance) -> None:
        """A tenant's own groups are part of its boundary: only its admins change them, never
        the provider (built-in groups are refused to everyone by the service)."""
        if instance.tenant_id is not None and self.actor.provider_role is not None:
            raise exceptions.PermissionDenied(
                "A tenant's groups are part of its boundary: only its admins change them.",
                code="role",
            )
        super()._check_target_tenant(instance)

    def get_queryset(self):
        queryset = super(ScopedViewSetMixin, self).get_queryset()
        visible = self.actor.visible_tenant_ids()
        if visible is None:
            return queryset
        return queryset.filter(tenant__isnull=True) | queryset.filter(tenant_id__in=visible)

    # Built-in groups are never changed here (not even by a provider admin): their next
    # version comes from a data migration or ``manage.py revise_group``. A tenant's group
    # changes by a new version; the old one is kept (``versions``).
    def save_instance(self, instance, ctx):
        return services.save_group(instance, ctx)

    def delete_instance(self, instance, ctx):
        self._check_target_tenant(instance)
        services.delete_group(instance, ctx)

    @extend_schema(request=None, responses=s.JurisdictionGroupVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def versions(self, request, pk=None):
        """Every definition the group has had, oldest first."""
        group = self.get_object()
        return Response(
            s.JurisdictionGroupVersionSerializer(group.versions.order_by("version"), many=True).data
        )


class ProtectedAssetViewSet(AuditedModelViewSet):
    """A tenant's datasets, model weights, backups, replicas and keys, and where each one is.
    Placing or moving one to a site is checked against the tenant's rules (403 if denied)."""

    queryset = ProtectedAsset.objects.all()
    serializer_class = s.ProtectedAssetSerializer
    filterset_class = ProtectedAssetFilterSet
    ordering_fields = ["name", "kind", "classification"]
    tenant_fields = ("tenant",)
    write_roles = TENANT_WRITERS | {Role.PROVIDER_ADMIN}

    def save_instance(self, instance, ctx):
        return services.save_asset(instance, ctx)


class RuleViewSet(AuditedModelViewSet):
    """A tenant's sovereignty rules. Its tenant-admins write; its other people and provider
    admins read. Drafts change freely; activation type-checks the compiled Cedar policy."""

    queryset = SovereigntyRule.objects.all()
    serializer_class = s.RuleSerializer
    filterset_class = RuleFilterSet
    ordering_fields = ["name", "kind", "status", "created_at"]
    tenant_fields = ("tenant",)
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})
    write_roles = frozenset({Role.TENANT_ADMIN})

    def save_instance(self, instance, ctx):
        if instance.supersedes_id and instance._state.adding:
            instance.version = instance.supersedes.version + 1
        return super().save_instance(instance, ctx)

    def _transition(self, request, change):
        rule = change(self.get_object(), change_context(request))
        return Response(self.get_serializer(rule).data)

    def delete_instance(self, instance, ctx):
        services.delete_rule(instance, ctx)  # drafts only: an active rule is retired (409)

    def _confirmed(self, request) -> bool:
        body = s.ActivateSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        return body.validated_data["confirm"]

    @extend_schema(
        request=s.ActivateSerializer,
        responses={
            200: s.RuleSerializer,
            409: OpenApiResponse(
                s.ConfirmationRequiredSerializer,
                description="`confirmation_required`: it would deny existing placements or "
                "access, listed in `would_deny`; ask again with `confirm: true`.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        """Activate a draft: the group versions it names are pinned, and its what-if is run
        and stored with it. If it would deny what exists now, a 409 lists that until
        ``confirm`` is given."""
        confirm = self._confirmed(request)
        return self._transition(
            request, lambda rule, ctx: services.activate_rule(rule, ctx, confirm=confirm)
        )

    @extend_schema(
        request=s.ActivateSerializer,
        responses={
            200: s.RuleSerializer,
            409: OpenApiResponse(
                s.ConfirmationRequiredSerializer,
                description="`confirmation_required`, as for activate.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def repin(self, request, pk=None):
        """Re-activate an active rule on the current versions of the groups it names (a group
        change reaches an active rule only this way, or by a new draft superseding it)."""
        confirm = self._confirmed(request)
        return self._transition(
            request, lambda rule, ctx: services.repin_rule(rule, ctx, confirm=confirm)
        )

    @extend_schema(request=None, responses=s.RuleSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        return self._transition(request, services.retire_rule)

    @extend_schema(request=None, responses=s.WhatIfSerializer)
    @action(detail=True, methods=["post"], url_path="what-if")
    def what_if(self, request, pk=None):
        """What this rule would deny in the live fleet if it were active now."""
        return Response(services.what_if(self.get_object()))


class TransferBasisViewSet(AuditedModelViewSet):
    """Legal bases for cross-border transfers that a tenant has on record."""

    queryset = TransferBasis.objects.all()
    serializer_class = s.TransferBasisSerializer
    ordering_fields = ["destination", "kind"]
    tenant_fields = ("tenant",)
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})
    write_roles = frozenset({Role.TENANT_ADMIN})


class AccessRequestViewSet(AuditedModelViewSet):
    """The customer lockbox: the provider asks for a person's access to a site for a window; one
    of the tenant's admins approves or rejects it."""

    queryset = AccessRequest.objects.select_related("site")
    serializer_class = s.AccessRequestSerializer
    filterset_class = AccessRequestFilterSet
    ordering_fields = ["created_at", "starts_at"]
    tenant_fields = ("tenant",)
    write_roles = PROVIDER_ROLES | {Role.TENANT_ADMIN}
    http_method_names = ["get", "post", "head", "options"]

    def perform_create(self, serializer):
        if actor_for(self.request.user).provider_role is None:
            raise exceptions.PermissionDenied("Only the provider requests access.", code="role")
        data = serializer.validated_data
        instance = AccessRequest(
            **data, tenant_id=data["site"].tenant_id, requested_by=self.request.user
        )
        serializer.instance = services.request_access(instance, change_context(self.request))

    def _decide(self, request, new_status):
        access = self.get_object()
        if not self.actor.can_write(access.tenant_id, {Role.TENANT_ADMIN}):
            raise exceptions.PermissionDenied("Only the tenant's admins decide.", code="role")
        access = services.decide_access(
            access,
            new_status == AccessRequestStatus.APPROVED,
            request.user,
            change_context(request),
        )
        return Response(self.get_serializer(access).data)

    @extend_schema(request=None, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, AccessRequestStatus.APPROVED)

    @extend_schema(request=None, responses=s.AccessRequestSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, AccessRequestStatus.REJECTED)


class DecisionRecordViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Access transparency: every sovereignty decision about the tenant's assets and the people
    acting on its sites, and, redacted to what concerns its premises, the decisions about other
    tenants' assets at its sites."""

    queryset = DecisionRecord.objects.all()
    serializer_class = s.DecisionRecordSerializer
    filterset_class = DecisionRecordFilterSet
    ordering_fields = ["occurred_at", "id"]
    tenant_fields = ("tenant_id", "site_owner_id")
    read_roles = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})
    #: Filters on what a site owner sees redacted match only the caller's own records: they
    #: must not let it probe for another tenant's asset names.
    redacted_filters = ("resource_id", "principal", "request_id", "tenant_id", "q", "person")

    def get_queryset(self):
        queryset = super().get_queryset()
        visible = self.actor.visible_tenant_ids()
        params = self.request.query_params
        if visible is not None and any(params.get(p) for p in self.redacted_filters):
            queryset = queryset.filter(tenant_id__in=visible)
        return transparency.log_rows(queryset, summaries=transparency.asks_for_summaries(params))

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # The export streams CSV or JSON itself (``format`` chooses); a refusal is JSON.
        if self.action == "export":
            transparency.export_format(request.query_params)
            return (JSONRenderer(), JSONRenderer.media_type)
        return super().perform_content_negotiation(request, force=force)

    @extend_schema(
        operation_id="sovereignty_decisions_export",
        filters=True,
        description="The log as a file, with the list's filters, newest first, streamed: "
        "`format=csv` (one row per record, lists joined with `; `) or `format=json` (an array "
        "of the list's objects). Other tenants' records at the caller's sites stay redacted.",
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(transparency.EXPORT_FORMATS),
                description="csv or json (the default).",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="The records: CSV with a header row, or JSON."
            ),
            (200, "application/json"): OpenApiResponse(
                s.DecisionRecordSerializer(many=True), description="The records: an array."
            ),
        },
    )
    @query_params(DecisionRecordFilterSet, "format")
    @action(detail=False, methods=["get"], pagination_class=None)  # one file, not pages
    def export(self, request: Request) -> StreamingHttpResponse:
        records = filter_for_action(self, self.filter_queryset(self.get_queryset()))
        serializer = s.DecisionRecordSerializer(context=self.get_serializer_context())
        return transparency.export_response(
            records, serializer, transparency.export_format(request.query_params)
        )


class EvaluateView(APIView):
    """Ask the engine: allow or deny, the deciding rules, and a sentence for each. The question
    and its answer are recorded in the access-transparency log."""

    write_roles = frozenset(Role)  # asking changes nothing but the log

    @extend_schema(request=s.EvaluateSerializer, responses=s.DecisionSerializer)
    def post(self, request):
        params = s.EvaluateSerializer(data=request.data, context={"request": request})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        question = services.Question(
            action=Action(data["action"]),
            site=data["site"],
            asset=data.get("asset"),
            person=data.get("person"),
            from_country=data["from_country"],
            remote=data["remote"],
            destination=data.get("destination"),
            telemetry_category=data["telemetry_category"],
            artifact_origin=data["artifact_origin"],
            artifact_signed=data["artifact_signed"],
            artifact_roots=frozenset(data["artifact_roots"]),
        )
        missing = question.missing()
        if missing:
            raise exceptions.ValidationError(
                {
                    name: [
                        exceptions.ErrorDetail(f"required for {question.action}", code="required")
                    ]
                    for name in missing
                }
            )
        decision = services.evaluate_question(question, change_context(request))
        body = {
            "allowed": decision.allowed,
            "rule_ids": list(decision.rule_ids),
            "reasons": list(decision.reasons),
        }
        return Response(body, status=status.HTTP_200_OK)
