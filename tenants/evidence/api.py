"""The ledger's API: verify the hash-chained logs, export an evidence pack. Thin: the work is in
``tenants.evidence.services``; the scope is the caller's (a tenant's people: their tenants'
chains; a provider admin: every chain, the provider's own included)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.access import Actor, actor_for
from tenants.choices import TENANT_ROLES, Role
from tenants.errors import Denied, Invalid, NotFound
from tenants.models import Tenant

from . import services

LEDGER_READERS = TENANT_ROLES | {Role.PROVIDER_ADMIN}


PROBLEM_SCHEMA = {
    "type": "object",
    "nullable": True,  # inline, not a $ref: OpenAPI 3.0 cannot make a $ref nullable
    "description": "The first broken link of the chain; null when it verifies.",
    "properties": {
        "log": {"type": "string", "enum": ["audit", "decision"]},
        "tenant_id": {"type": "integer", "nullable": True},
        "seq": {"type": "integer", "nullable": True},
        "record_id": {"type": "integer", "nullable": True},
        "kind": {
            "type": "string",
            "enum": ["edited", "deleted", "reordered", "truncated", "checkpoint", "signature"],
        },
        "detail": {"type": "string"},
    },
    "required": ["log", "tenant_id", "seq", "record_id", "kind", "detail"],
}


@extend_schema_field(PROBLEM_SCHEMA)
class ProblemField(serializers.JSONField):
    pass


class ChainSerializer(serializers.Serializer):
    log = serializers.CharField()
    tenant_id = serializers.IntegerField(allow_null=True)
    records = serializers.IntegerField()
    head_seq = serializers.IntegerField()
    head_hash = serializers.CharField()
    checkpoints = serializers.IntegerField()
    problem = ProblemField(allow_null=True)


class VerifySerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    first_problem = ProblemField(allow_null=True)
    chains = ChainSerializer(many=True)


class EvidenceRequestSerializer(serializers.Serializer):
    tenant = serializers.IntegerField(
        required=False, help_text="Required for provider admins and for people of two tenants."
    )
    start = serializers.DateTimeField(help_text="From (inclusive).")
    end = serializers.DateTimeField(help_text="To (exclusive).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["must be after start"]}, code="range")
        return attrs


def _tenant(actor: Actor, tenant_id: int | None) -> Tenant:
    """The tenant acted for: given, or the caller's only one. Another tenant's is a 404."""
    visible = actor.visible_tenant_ids()
    if tenant_id is None:
        if visible is None or len(visible) != 1:
            raise Invalid("name the tenant", code="required", field="tenant")
        (tenant_id,) = visible
    if visible is not None and tenant_id not in visible:
        raise NotFound("no such tenant", code="not_found", field="tenant")
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise NotFound("no such tenant", code="not_found", field="tenant")
    return tenant


def _may_export(actor: Actor, tenant: Tenant) -> None:
    if actor.is_provider_admin or actor.tenant_roles.get(tenant.pk) in LEDGER_READERS:
        return
    raise Denied("your role may not read the ledger", code="role")


class LedgerVerifyView(APIView):
    """Walk the hash-chained audit and access-transparency logs and their signed checkpoints;
    report each chain and the first broken link (edited, deleted, reordered, truncated)."""

    read_roles = LEDGER_READERS

    @extend_schema(
        parameters=[
            OpenApiParameter("tenant", OpenApiTypes.INT, description="Only this tenant's chains.")
        ],
        responses=VerifySerializer,
    )
    def get(self, request: Request) -> Response:
        actor = actor_for(request.user)
        params = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
        raw = request.query_params.get("tenant")
        tenant_id = None
        if raw is not None:
            try:
                tenant_id = params.run_validation(raw)
            except serializers.ValidationError as exc:
                raise Invalid("must be a tenant id", code="invalid", field="tenant") from exc
        scope: list[int] | None = None  # a provider admin: every chain
        if tenant_id is not None:
            tenant = _tenant(actor, tenant_id)
            _may_export(actor, tenant)
            scope = [tenant.pk]
        elif not actor.is_provider_admin:
            scope = sorted(actor.tenant_roles)
        reports = services.verify_logs(scope)
        problems = [r.problem.as_dict() for r in reports if r.problem]
        return Response(
            {
                "ok": not problems,
                "first_problem": problems[0] if problems else None,
                "chains": [
                    {
                        "log": r.log,
                        "tenant_id": r.tenant_id,
                        "records": r.records,
                        "head_seq": r.head_seq,
                        "head_hash": r.head_hash,
                        "checkpoints": r.checkpoints,
                        "problem": r.problem.as_dict() if r.problem else None,
                    }
                    for r in reports
                ],
            }
        )


BROKEN = OpenApiResponse(
    {"$ref": "#/components/schemas/Error"},
    description="A chain in the range is broken (`ledger_broken`, naming the first broken link) "
    "or no checkpoint covers it: no pack is written.",
)


class EvidencePackView(APIView):
    """An evidence pack: one signed zip of a tenant's decisions, audit events, rules in force
    (Cedar), checkpoints and public keys for a time range, checked offline by
    ``tenants/ledger/verify_pack.py``. ``GET`` takes the range as query parameters, ``POST`` as
    a JSON body; both answer the archive."""

    read_roles = LEDGER_READERS
    write_roles = LEDGER_READERS  # a POST here reads; it writes nothing

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)  # a zip, or JSON errors

    def _pack(self, request: Request, data: Any) -> HttpResponse:
        params = EvidenceRequestSerializer(data=data)
        params.is_valid(raise_exception=True)
        actor = actor_for(request.user)
        tenant = _tenant(actor, params.validated_data.get("tenant"))
        _may_export(actor, tenant)
        start: dt.datetime = params.validated_data["start"]
        end: dt.datetime = params.validated_data["end"]
        pack = services.export_evidence(tenant, start, end)
        response = HttpResponse(pack, content_type="application/zip")
        name = f"evidence-{tenant.slug}-{start:%Y%m%d}-{end:%Y%m%d}.zip"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @extend_schema(
        operation_id="ledger_evidence_retrieve",
        parameters=[EvidenceRequestSerializer],
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 409: BROKEN},
    )
    def get(self, request: Request) -> HttpResponse:
        return self._pack(request, request.query_params)

    @extend_schema(
        operation_id="ledger_evidence_create",
        request=EvidenceRequestSerializer,
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 409: BROKEN},
    )
    def post(self, request: Request) -> HttpResponse:
        return self._pack(request, request.data)
