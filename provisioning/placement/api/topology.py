"""``instance-topology/`` (shaped like EC2's ``DescribeInstanceTopology``) and its exports for
schedulers. Thin: the reads are ``provisioning.placement.topology``, the shaping is the pure
``provisioning.placement.exports``.

- The list answers ``{"Instances": [...], "NextToken": ...}`` with EC2's names. ``MaxResults``
  is 1–100 (20 by default); ``NextToken`` is opaque and signed, keyed on the last id shown and
  bound to the query's filters: a forged one, or one of another query, is a 400 naming it.
- Filters: ``ultraserver`` (repeatable, ids or serials), ``unit`` (an id), ``reservation``
  (``cr-12`` or ``12``). A malformed value is a 400 naming the filter; an unknown or another
  tenant's unit or reservation matches nothing (an empty list), as the repo's relation filters
  do.
- The exports take a ``site`` (id or code) or a ``reservation``; one that is missing or the
  caller cannot see is a 404 naming it. Slurm's are ``application/yaml``; the others JSON.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.core import signing
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

from provisioning.placement import exports
from provisioning.placement import topology as selectors
from provisioning.placement.exports import ServerTopology
from tenants.access import Actor, actor_for
from tenants.errors import FieldError, Invalid, NotFound
from tenants.filters import INT64, refuse_unknown

MAX_RESULTS_DEFAULT = 20
MAX_RESULTS_LIMIT = 100
MAX_ULTRASERVERS = 100  # as EC2's InstanceIds
_TOKEN_SALT = "provisioning.placement.instance-topology.next-token"
_MAX_VALUE_LENGTH = 64  # a serial's, a site code's (16) and an id's (19) fit
_ALWAYS_KNOWN = frozenset({"format"})  # the renderer's
_INTEGER = re.compile(r"^-?[0-9]+$", re.ASCII)


# --- the answers, for the schema -------------------------------------------------------------


class TopologyUltraServerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    serial = serializers.CharField()


def _nullable_object(properties: dict[str, Any], description: str) -> dict[str, Any]:
    """Inline, not a $ref: OpenAPI 3.0 cannot make a $ref nullable."""
    return {
        "type": "object",
        "nullable": True,
        "description": description,
        "properties": properties,
        "required": list(properties),
    }


@extend_schema_field(
    _nullable_object(
        {"id": {"type": "integer"}, "code": {"type": "string"}},
        "The site of its rack; null for a server in no rack.",
    )
)
class _SiteField(serializers.JSONField):
    pass


@extend_schema_field(
    _nullable_object(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ["leader", "follower"]},
            "state": {
                "type": "string",
                "enum": ["active", "failed"],
                "description": "The membership's state.",
            },
        },
        "The workload unit it is a member of; null if none.",
    )
)
class _UnitField(serializers.JSONField):
    pass


class InstanceTopologySerializer(serializers.Serializer):
    ultraserver = TopologyUltraServerSerializer()
    instance_type = serializers.CharField(help_text="The UltraServer model's slug.")
    site = _SiteField(allow_null=True)
    zone = serializers.CharField(
        allow_null=True, help_text="The zone-like grouping: the site's code (one site, one fabric)."
    )
    network_nodes = serializers.ListField(
        child=serializers.CharField(),
        help_text=(
            "The network nodes over the UltraServer, top layer first, as ids hashed for the "
            "tenant that owns it (`nn-…`); empty outside the fabric."
        ),
    )
    capacity_block_id = serializers.CharField(
        allow_null=True, help_text="The reservation holding it now (`cr-<id>`), if any."
    )
    ultraserver_domain = serializers.CharField(
        help_text="The UltraServer's own NeuronSwitch / NVLink domain, hashed (`us-…`)."
    )
    unit = _UnitField(allow_null=True)


class InstanceTopologyPageSerializer(serializers.Serializer):
    Instances = InstanceTopologySerializer(many=True)
    NextToken = serializers.CharField(
        allow_null=True, help_text="Pass it back as `NextToken` for the next page; null: the last."
    )


class TopologyScopeSerializer(serializers.Serializer):
    site = serializers.CharField(required=False, help_text="The site's code.")
    reservation = serializers.CharField(required=False, help_text="`cr-<id>`.")


class TopologySwitchSerializer(serializers.Serializer):
    id = serializers.CharField()
    layer = serializers.IntegerField()
    children = serializers.ListField(child=serializers.CharField())
    ultraservers = serializers.ListField(child=serializers.CharField(), help_text="Serials.")


class TopologyJsonSerializer(serializers.Serializer):
    scope = TopologyScopeSerializer()
    Instances = InstanceTopologySerializer(many=True)
    NetworkNodes = TopologySwitchSerializer(many=True)


class K8sNodeLabelsSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The node's name: the UltraServer's serial.")
    labels = serializers.DictField(child=serializers.CharField())


class K8sLabelsSerializer(serializers.Serializer):
    scope = TopologyScopeSerializer()
    nodes = K8sNodeLabelsSerializer(many=True)


# --- query parameters ------------------------------------------------------------------------


def _text(request: Request, name: str) -> str | None:
    """The last value of ``name``; a blank, over-long or control-character value is a 400."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    return _checked(name, values[-1])


def _checked(name: str, value: str) -> str:
    if not value.strip():
        raise Invalid(f"{name} is empty", code="blank", field=name)
    if len(value) > _MAX_VALUE_LENGTH:
        raise Invalid(
            f"{name} is longer than {_MAX_VALUE_LENGTH} characters", code="max_length", field=name
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Invalid(f"{name} holds control characters", code="invalid", field=name)
    return value


def _integer(request: Request, name: str, low: int, high: int) -> int | None:
    value = _text(request, name)
    if value is None:
        return None
    if not _INTEGER.match(value):
        raise Invalid(f"{name} must be an integer", code="invalid", field=name)
    number = int(value)
    if not low <= number <= high:
        raise Invalid(f"{name} must be from {low} to {high}", code="out_of_range", field=name)
    return number


def _reservation(request: Request) -> int | None:
    value = _text(request, "reservation")
    if value is None:
        return None
    pk = exports.parse_reservation_id(value)
    if pk is None:
        raise Invalid(
            "reservation is a reservation id: cr-<id> or <id>", code="invalid", field="reservation"
        )
    return pk


def _encode_token(after: int, filters: selectors.Filters) -> str:
    return signing.Signer(salt=_TOKEN_SALT).sign_object({"a": after, "q": filters.key()})


def _decode_token(token: str, filters: selectors.Filters) -> int:
    try:
        payload = signing.Signer(salt=_TOKEN_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise Invalid(
            "not a NextToken of this list; start again without one",
            code="invalid_token",
            field="NextToken",
        ) from None
    after = payload.get("a") if isinstance(payload, dict) else None
    if not isinstance(after, int) or isinstance(after, bool):
        raise Invalid("not a NextToken of this list", code="invalid_token", field="NextToken")
    if payload.get("q") != filters.key():
        raise Invalid(
            "this NextToken belongs to a query with other filters; repeat that query's filters "
            "or start again without it",
            code="next_token_mismatch",
            field="NextToken",
        )
    return after


LIST_PARAMETERS = [
    OpenApiParameter(
        "ultraserver",
        {"type": "array", "maxItems": MAX_ULTRASERVERS, "items": {"type": "string"}},
        explode=True,
        description=(
            f"Only these UltraServers, by id or serial; repeat it (at most {MAX_ULTRASERVERS})."
        ),
    ),
    OpenApiParameter(
        "unit",
        {"type": "integer", "format": "int64", "minimum": 1, "maximum": INT64[1]},
        description="Only the members of this workload unit (another tenant's: none).",
    ),
    OpenApiParameter(
        "reservation",
        {"type": "string", "pattern": r"^(cr-)?[0-9]{1,19}$"},
        description="Only the servers this reservation holds, `cr-<id>` or `<id>` (another "
        "tenant's: none).",
    ),
    OpenApiParameter(
        "MaxResults",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_RESULTS_LIMIT,
            "default": MAX_RESULTS_DEFAULT,
        },
        description="Servers per page.",
    ),
    OpenApiParameter(
        "NextToken",
        OpenApiTypes.STR,
        description="The previous page's `NextToken`, with the same filters.",
    ),
]


class InstanceTopologyView(APIView):
    """Where each UltraServer the caller sees hangs in the EFA fabric (EC2's
    ``DescribeInstanceTopology``): its network nodes top layer first, hashed per tenant; its
    UltraServer domain; the reservation holding it now; its unit; its site and zone."""

    known_params = frozenset(p.name for p in LIST_PARAMETERS) | _ALWAYS_KNOWN

    @extend_schema(
        operation_id="instance_topology_list",
        parameters=LIST_PARAMETERS,
        responses=InstanceTopologyPageSerializer,
    )
    def get(self, request: Request) -> Response:
        refuse_unknown(request, self.known_params)
        values = [_checked("ultraserver", v) for v in request.query_params.getlist("ultraserver")]
        if len(values) > MAX_ULTRASERVERS:
            raise Invalid(
                f"at most {MAX_ULTRASERVERS} ultraserver values",
                code="too_many",
                field="ultraserver",
            )
        filters = selectors.Filters(
            ultraservers=tuple(dict.fromkeys(values)),
            unit=_integer(request, "unit", 1, INT64[1]),
            reservation=_reservation(request),
        )
        limit = _integer(request, "MaxResults", 1, MAX_RESULTS_LIMIT) or MAX_RESULTS_DEFAULT
        token = request.query_params.get("NextToken")
        after = _decode_token(token, filters) if token else None
        servers, last = selectors.describe(
            actor_for(request.user), filters, after=after, limit=limit
        )
        return Response(
            {
                "Instances": [exports.instance(s) for s in servers],
                "NextToken": _encode_token(last, filters) if last is not None else None,
            }
        )


# --- exports ---------------------------------------------------------------------------------

EXPORT_PARAMETERS = [
    OpenApiParameter(
        "site",
        {"type": "string", "maxLength": _MAX_VALUE_LENGTH},
        description="The site (id or code): every server of it the caller sees.",
    ),
    OpenApiParameter(
        "reservation",
        {"type": "string", "pattern": r"^(cr-)?[0-9]{1,19}$"},
        description="The reservation (`cr-<id>` or `<id>`): the servers it holds.",
    ),
]
_ONE_SCOPE = "Exactly one of `site` and `reservation`; one the caller cannot see is a 404."


def export_scope(request: Request, actor: Actor) -> tuple[dict[str, str], list[ServerTopology]]:
    """The servers an export covers and how it names them; one of ``site``, ``reservation``."""
    refuse_unknown(request, {"site", "reservation"} | _ALWAYS_KNOWN)
    site_value = _text(request, "site")
    reservation_pk = _reservation(request)
    if (site_value is None) == (reservation_pk is None):
        code, message = (
            ("ambiguous", "give either site or reservation, not both")
            if site_value is not None
            else ("required", "give a site or a reservation")
        )
        raise Invalid(
            code=code,
            errors=[FieldError(name, code, message) for name in ("site", "reservation")],
        )
    if site_value is not None:
        sites = selectors.visible_sites(actor)
        site = None
        if site_value.isascii() and site_value.isdigit() and int(site_value) <= INT64[1]:
            site = sites.filter(pk=int(site_value)).first()
        site = site or sites.filter(code=site_value).first()
        if site is None:
            raise NotFound("no such site", code="not_found", field="site")
        return {"site": site.code}, selectors.site_servers(actor, site)
    assert reservation_pk is not None  # one of the two, checked above
    reservation = selectors.visible_reservations(actor).filter(pk=reservation_pk).first()
    if reservation is None:
        raise NotFound("no such reservation", code="not_found", field="reservation")
    scope = {"reservation": exports.reservation_id(reservation.pk)}
    return scope, selectors.reservation_servers(actor, reservation)


class _ExportView(APIView):
    """An export: the body is the scheduler's format; errors stay the one JSON body."""

    plugin: ClassVar[str] = ""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)


def _yaml_response(text: str, name: str) -> HttpResponse:
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{name}"'
    return response


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_HOSTLIST = {"type": "string", "description": "A Slurm hostlist: comma-separated names."}
#: ``topology.yaml`` as topology.yaml(5) documents it, for the YAML our exports write.
SLURM_TOPOLOGY_SCHEMA = {
    "type": "array",
    "items": _object(
        {
            "topology": {"type": "string", "description": "The topology's name (first key)."},
            "cluster_default": {"type": "boolean"},
            "tree": _object(
                {
                    "switches": {
                        "type": "array",
                        "items": _object(
                            {
                                "switch": {"type": "string", "maxLength": 64},
                                "children": _HOSTLIST,
                                "nodes": _HOSTLIST,
                            },
                            ["switch"],
                        ),
                    }
                },
                ["switches"],
            ),
            "block": _object(
                {
                    "block_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                    "blocks": {
                        "type": "array",
                        "items": _object(
                            {"block": {"type": "string"}, "nodes": _HOSTLIST}, ["block", "nodes"]
                        ),
                    },
                },
                ["block_sizes", "blocks"],
            ),
        },
        ["topology"],
    ),
}
_YAML = {
    (200, "application/yaml"): OpenApiResponse(
        SLURM_TOPOLOGY_SCHEMA,
        description="Slurm's `topology.yaml` (Slurm 23.11 and later), as topology.yaml(5) "
        "documents it.",
    )
}


class SlurmTreeExportView(_ExportView):
    """Slurm ``topology.yaml`` for ``topology/tree``: a switch per network node over the
    servers (hashed ids; ``children`` and ``nodes`` as Slurm hostlists), node names the
    UltraServer serials, under a ``core`` root when several top-layer switches are involved."""

    @extend_schema(
        operation_id="instance_topology_export_slurm_tree",
        parameters=EXPORT_PARAMETERS,
        responses=_YAML,
        description=_ONE_SCOPE,
    )
    def get(self, request: Request) -> HttpResponse:
        scope, servers = export_scope(request, actor_for(request.user))
        name = exports.topology_name(next(iter(scope.values())), "tree")
        text = exports.slurm_yaml(exports.slurm_tree(servers, name), servers)
        return _yaml_response(text, "topology.yaml")


class SlurmBlockExportView(_ExportView):
    """Slurm ``topology.yaml`` for ``topology/block``: a block per lowest network node holding
    its servers; ``block_sizes`` the smallest block and its power-of-two multiples."""

    @extend_schema(
        operation_id="instance_topology_export_slurm_block",
        parameters=EXPORT_PARAMETERS,
        responses=_YAML,
        description=_ONE_SCOPE,
    )
    def get(self, request: Request) -> HttpResponse:
        scope, servers = export_scope(request, actor_for(request.user))
        name = exports.topology_name(next(iter(scope.values())), "block")
        text = exports.slurm_yaml(exports.slurm_block(servers, name), servers)
        return _yaml_response(text, "topology.yaml")


class K8sLabelsExportView(_ExportView):
    """Kubernetes node labels per UltraServer, as EKS names them:
    ``topology.k8s.aws/network-node-layer-N`` (hashed ids), ``topology.k8s.aws/ultraserver-id``
    and ``topology.kubernetes.io/zone``."""

    @extend_schema(
        operation_id="instance_topology_export_k8s",
        parameters=EXPORT_PARAMETERS,
        responses=K8sLabelsSerializer,
        description=_ONE_SCOPE,
    )
    def get(self, request: Request) -> Response:
        scope, servers = export_scope(request, actor_for(request.user))
        return Response({"scope": scope, "nodes": exports.k8s_nodes(servers)})


class JsonExportView(_ExportView):
    """Every server's ``instance-topology/`` entry and the (hashed) switches over them."""

    @extend_schema(
        operation_id="instance_topology_export_json",
        parameters=EXPORT_PARAMETERS,
        responses=TopologyJsonSerializer,
        description=_ONE_SCOPE,
    )
    def get(self, request: Request) -> Response:
        scope, servers = export_scope(request, actor_for(request.user))
        return Response(exports.json_export(scope, servers))
