"""The lockbox API: the tenant's policy (its admins only), provider access requests judged by it
(approve/reject counted per the policy, extend, revoke, end), break-glass and its review. The
rules live in ``core/lockbox.py`` and ``services/access.py``; these views only route."""

from __future__ import annotations

import django_filters
from django.db.models import Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from tenants.access import actor_for
from tenants.api.base import change_context
from tenants.choices import Role
from tenants.models import Tenant
from tenants.sovereignty import services
from tenants.sovereignty.api import serializers as s
from tenants.sovereignty.api.views import AccessRequestViewSet
from tenants.sovereignty.core import lockbox
from tenants.sovereignty.filtersets import AccessRequestFilterSet
from tenants.sovereignty.models import (
    AccessApproval,
    AccessRequest,
    AccessRequestStatus,
    AccessScope,
    AccessUse,
    ApprovalNeed,
    Justification,
    LockboxPolicy,
)

#: A policy entry's codes and scopes: the enums' values or ``*`` (one schema enum each).
ENTRY_JUSTIFICATIONS = [lockbox.ANY, *Justification.values]
ENTRY_SCOPES = [lockbox.ANY, *AccessScope.values]


class PolicyEntrySerializer(serializers.Serializer):
    justification = serializers.ChoiceField(choices=ENTRY_JUSTIFICATIONS, default=lockbox.ANY)
    scope = serializers.ChoiceField(choices=ENTRY_SCOPES, default=lockbox.ANY)
    approval = serializers.ChoiceField(choices=ApprovalNeed.choices)
    n = serializers.IntegerField(min_value=1, max_value=50, default=1)
    approvers = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        default=list,
        max_length=50,
        help_text="N of M: the M tenant admins (user ids).",
    )


class LockboxPolicySerializer(serializers.ModelSerializer):
    entries = PolicyEntrySerializer(many=True, required=False)
    emergency_codes = serializers.ListField(
        child=serializers.ChoiceField(choices=Justification.choices),
        required=False,
        max_length=len(Justification.values),
    )
    office_countries = serializers.ListField(
        child=serializers.CharField(min_length=2, max_length=2), required=False, max_length=300
    )
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="null: the tenant runs on the defaults."
    )

    class Meta:
        model = LockboxPolicy
        fields = [
            "tenant",
            "entries",
            "default_approval",
            "emergency_codes",
            "break_glass_minutes",
            "answer_within_minutes",
            "physical_in_site_country",
            "office_countries",
            "updated_at",
        ]
        read_only_fields = ["tenant", "updated_at"]
        extra_kwargs = {
            "break_glass_minutes": {"min_value": 1, "max_value": lockbox.MAX_BREAK_GLASS_MINUTES},
            "answer_within_minutes": {"min_value": 5, "max_value": 14 * 24 * 60},
        }


class LockboxPolicyViewSet(viewsets.GenericViewSet):
    """A tenant's lockbox policy: what each (justification, scope) needs, break-glass codes and
    length, deadlines and location rules. Read and changed only by the tenant's own admins; a
    tenant without one is shown (and governed by) the secure defaults."""

    queryset = LockboxPolicy.objects.all()
    serializer_class = LockboxPolicySerializer
    lookup_field = "tenant"
    lookup_value_regex = r"\d+"
    pagination_class = None
    write_roles = frozenset({Role.TENANT_ADMIN})

    def _policy(self, tenant: str) -> LockboxPolicy:
        actor = actor_for(self.request.user)
        visible = actor.visible_tenant_ids()
        if (
            not tenant.isdigit()
            or int(tenant) >= 2**63
            or (visible is not None and int(tenant) not in visible)
        ):
            raise exceptions.NotFound("No such tenant.")
        owner = get_object_or_404(Tenant, pk=int(tenant))
        if actor.tenant_roles.get(owner.pk) != Role.TENANT_ADMIN:
            raise exceptions.PermissionDenied(
                "Only the tenant's admins read or change its lockbox policy.", code="role"
            )
        return services.lockbox_policy(owner.pk)

    @extend_schema(responses=LockboxPolicySerializer)
    def retrieve(self, request, tenant=None):
        return Response(self.get_serializer(self._policy(str(tenant))).data)

    @extend_schema(request=LockboxPolicySerializer, responses=LockboxPolicySerializer)
    def update(self, request, tenant=None):
        policy = self._policy(str(tenant))
        if actor_for(request.user).read_only:
            raise exceptions.PermissionDenied("A read-only token changes nothing.", code="scope")
        serializer = self.get_serializer(policy, data=request.data)
        serializer.is_valid(raise_exception=True)
        for name, value in serializer.validated_data.items():
            setattr(policy, name, value)
        policy = services.save_policy(policy, change_context(request))
        return Response(self.get_serializer(policy).data)


class VoteSerializer(serializers.ModelSerializer):
    approver = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AccessApproval
        fields = ["approver", "approve", "note", "decided_at"]
        read_only_fields = fields


class UseSerializer(serializers.ModelSerializer):
    class Meta:
        model = AccessUse
        fields = [
            "occurred_at",
            "scope",
            "office_country",
            "physical_country",
            "workflow_id",
            "step",
            "allowed",
            "reason",
        ]
        read_only_fields = fields


class LockboxRequestSerializer(s.AccessRequestSerializer):
    status = serializers.ChoiceField(
        choices=AccessRequestStatus.choices,
        source="live_status",
        read_only=True,
        help_text="As of now: an unanswered request past answer_by reads expired, a grant past "
        "ends_at reads ended, before the beat job writes it.",
    )
    votes = VoteSerializer(many=True, read_only=True)
    uses = UseSerializer(
        many=True,
        read_only=True,
        help_text="Each check under this grant, and where the person was.",
    )
    needs_review = serializers.BooleanField(read_only=True)

    class Meta(s.AccessRequestSerializer.Meta):
        fields = [
            *s.AccessRequestSerializer.Meta.fields,
            "justification",
            "scope",
            "office_country",
            "physical_country",
            "approval",
            "approvals_needed",
            "approvers",
            "answer_by",
            "extends",
            "votes",
            "uses",
            "closed_by",
            "closed_at",
            "close_note",
            "break_glass",
            "needs_review",
            "reviewed_by",
            "reviewed_at",
            "review_note",
        ]
        read_only_fields = [
            *s.AccessRequestSerializer.Meta.read_only_fields,
            "approval",
            "approvals_needed",
            "approvers",
            "answer_by",
            "extends",
            "closed_by",
            "closed_at",
            "close_note",
            "break_glass",
            "reviewed_by",
            "reviewed_at",
            "review_note",
        ]


class BreakGlassSerializer(LockboxRequestSerializer):
    class Meta(LockboxRequestSerializer.Meta):
        read_only_fields = [*LockboxRequestSerializer.Meta.read_only_fields, "starts_at", "ends_at"]


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class ReviewSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=1000)


class ExtendSerializer(serializers.Serializer):
    ends_at = serializers.DateTimeField()
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class LockboxRequestFilterSet(AccessRequestFilterSet):
    needs_review = django_filters.BooleanFilter(
        method="filter_needs_review", label="Only break-glass uses not yet reviewed (or only not)."
    )

    class Meta(AccessRequestFilterSet.Meta):
        fields = [*AccessRequestFilterSet.Meta.fields, "justification", "scope", "break_glass"]

    def filter_needs_review(self, queryset, name, value):
        flagged = Q(break_glass=True, reviewed_at__isnull=True)
        return queryset.filter(flagged) if value else queryset.exclude(flagged)


class LockboxAccessRequestViewSet(AccessRequestViewSet):
    """The customer lockbox: the provider asks for a person's access to a site, with a
    justification code, a scope of actions and the person's location; the tenant's policy says
    what that needs (pre-approved, one admin, N of M named admins, never). Tenant admins approve
    or reject (each vote counted, who and when recorded), revoke at once; the provider extends
    (approved again) or ends; break-glass is for the tenant's emergency codes only, short, told to
    the tenant at once and flagged until reviewed (``?needs_review=true`` lists those)."""

    queryset = AccessRequest.objects.select_related("site", "person").prefetch_related(
        "votes__approver", "uses"
    )
    serializer_class = LockboxRequestSerializer
    filterset_class = LockboxRequestFilterSet

    def get_serializer_class(self):
        if self.action == "break_glass":
            return BreakGlassSerializer
        return super().get_serializer_class()

    def _provider(self) -> None:
        if self.actor.provider_role is None or self.actor.read_only:
            raise exceptions.PermissionDenied("Only the provider does this.", code="role")

    def _tenant_admin(self, access: AccessRequest) -> None:
        if not self.actor.can_write(access.tenant_id, {Role.TENANT_ADMIN}):
            raise exceptions.PermissionDenied("Only the tenant's admins do this.", code="role")

    def _answer(self, access: AccessRequest, code: int = status.HTTP_200_OK) -> Response:
        access = self.get_queryset().get(pk=access.pk)
        return Response(self.get_serializer(access).data, status=code)

    @extend_schema(request=ExtendSerializer, responses={201: LockboxRequestSerializer})
    @action(detail=True, methods=["post"])
    def extend(self, request, pk=None):
        """Ask to extend a live grant: a new request from its end, approved again per policy."""
        access = self.get_object()
        self._provider()
        params = ExtendSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        extension = services.extend_access(
            access,
            params.validated_data["ends_at"],
            request.user,
            change_context(request),
            params.validated_data["reason"],
        )
        return self._answer(extension, status.HTTP_201_CREATED)

    @extend_schema(request=NoteSerializer, responses=LockboxRequestSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """The tenant ends the access now: open dispatches stop at their next step."""
        access = self.get_object()
        self._tenant_admin(access)
        params = NoteSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        services.revoke_access(
            access, request.user, change_context(request), params.validated_data["note"]
        )
        return self._answer(access)

    @extend_schema(request=None, responses=LockboxRequestSerializer)
    @action(detail=True, methods=["post"])
    def end(self, request, pk=None):
        """The provider is done before the window's end."""
        access = self.get_object()
        self._provider()
        services.end_access(access, request.user, change_context(request))
        return self._answer(access)

    @extend_schema(request=ReviewSerializer, responses=LockboxRequestSerializer)
    @action(detail=True, methods=["post"])
    def review(self, request, pk=None):
        """A tenant admin reviews a break-glass use; until then it is flagged."""
        access = self.get_object()
        self._tenant_admin(access)
        params = ReviewSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        services.review_break_glass(
            access, request.user, params.validated_data["note"], change_context(request)
        )
        return self._answer(access)

    @extend_schema(request=BreakGlassSerializer, responses={201: LockboxRequestSerializer})
    @action(detail=False, methods=["post"], url_path="break-glass")
    def break_glass(self, request):
        """Act now without approval: only for the tenant's emergency codes, for the policy's
        fixed minutes from now; the tenant is notified at once."""
        self._provider()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        access = services.break_glass(
            AccessRequest(**data, tenant_id=data["site"].tenant_id, requested_by=request.user),
            change_context(request),
        )
        return self._answer(access, status.HTTP_201_CREATED)
