from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from factory.inventory import fabric as site_fabric
from factory.inventory import selectors, services
from factory.inventory.api import serializers as s
from factory.inventory.api.history import ServerHistorySerializer
from factory.inventory.filtersets import (
    ChipFilterSet,
    PowerFeedFilterSet,
    RackFilterSet,
    SiteFilterSet,
    UltraServerFilterSet,
)
from factory.inventory.history import ServerHistoryFilterSet, server_history
from factory.inventory.models import Chip, PowerFeed, Rack, Site, UltraServer
from tenants.api.base import AuditedModelViewSet, ScopedViewSetMixin, change_context
from tenants.api.bulk import BulkWriteMixin
from tenants.choices import Role
from tenants.errors import Denied, FieldError, Invalid, NotFound
from tenants.filters import filter_for_action, query_params

# The customer supplies space and power: its admins and operators keep its racks and feeds.
CUSTOMER_FACILITY_WRITERS = frozenset(
    {Role.PROVIDER_ADMIN, Role.TENANT_ADMIN, Role.TENANT_OPERATOR}
)
# Anyone who sees a bad chip may say so; tenant viewers only look.
CHIP_HEALTH_WRITERS = CUSTOMER_FACILITY_WRITERS | {Role.PROVIDER_TECHNICIAN}
# The EFA fabric is the provider's: its node names are for provider admins only (tenants see
# per-tenant hashes in instance-topology/).
FABRIC_ROLES = frozenset({Role.PROVIDER_ADMIN})


class SiteViewSet(BulkWriteMixin, AuditedModelViewSet):
    """Sites: customers' data center halls. Country and contracted power are contract facts, so
    only provider admins change them."""

    queryset = Site.objects.select_related("tenant")
    serializer_class = s.SiteSerializer
    filterset_class = SiteFilterSet
    ordering_fields = ["code", "name", "country", "status", "created_at"]
    tenant_fields = ("tenant",)
    bulk_max_items = 100  # a customer has a few; each is checked against every time zone

    def save_instance(self, instance, ctx):
        return services.save_site(instance, ctx)  # provider facts: audited, announced

    @property
    def read_roles(self):
        return FABRIC_ROLES if self.action == "fabric" else frozenset(Role)

    @extend_schema(methods=["GET"], responses=s.FabricSerializer)
    @extend_schema(methods=["PUT"], request=s.FabricSerializer, responses=s.FabricSerializer)
    @query_params()
    @action(detail=True, methods=["get", "put"])
    def fabric(self, request, pk=None):
        """The site's EFA fabric as one document (provider admins only). ``PUT`` replaces it
        whole, validated at once (400s name the field path) and written in one transaction."""
        site = self.get_object()
        if request.method == "PUT":
            return Response(site_fabric.replace_fabric(site, request.data, change_context(request)))
        return Response(site_fabric.export_fabric(site))

    @extend_schema(responses=s.SiteCapacitySerializer)
    @query_params()
    @action(detail=True, methods=["get"])
    def capacity(self, request, pk=None):
        site = self.get_object()
        return Response(selectors.site_capacities([site])[site.pk])


class RackViewSet(BulkWriteMixin, AuditedModelViewSet):
    queryset = Rack.objects.select_related("site").prefetch_related("power_feeds")
    serializer_class = s.RackSerializer
    filterset_class = RackFilterSet
    ordering_fields = ["name", "status", "cooling_capacity_kw", "created_at"]
    tenant_fields = ("site__tenant",)
    write_roles = CUSTOMER_FACILITY_WRITERS

    @extend_schema(responses=s.RackCapacitySerializer)
    @query_params()
    @action(detail=True, methods=["get"])
    def capacity(self, request, pk=None):
        rack = self.get_object()
        return Response(selectors.rack_capacities([rack])[rack.pk])


class PowerFeedViewSet(BulkWriteMixin, AuditedModelViewSet):
    queryset = PowerFeed.objects.select_related("rack__site")
    serializer_class = s.PowerFeedSerializer
    filterset_class = PowerFeedFilterSet
    ordering_fields = ["name", "path", "voltage", "amperage"]
    tenant_fields = ("rack__site__tenant",)
    write_roles = CUSTOMER_FACILITY_WRITERS

    def delete_instance(self, instance, ctx):
        services.delete_power_feed(instance, ctx)


class UltraServerViewSet(BulkWriteMixin, AuditedModelViewSet):
    """UltraServers: provider hardware on customer premises. Creating one creates its chips."""

    queryset = UltraServer.objects.select_related("model", "rack__site", "tenant").prefetch_related(
        "firmware_components"
    )
    serializer_class = s.UltraServerSerializer
    filterset_class = UltraServerFilterSet
    ordering_fields = ["serial", "lifecycle_state", "position", "created_at", "last_heartbeat_at"]
    tenant_fields = ("rack__site__tenant", "tenant")
    bulk_max_items = 100  # each new one brings its 64-144 chips

    def save_instance(self, instance, ctx):
        return services.save_ultraserver(instance, ctx)

    @extend_schema(responses=ServerHistorySerializer(many=True))
    @query_params(ServerHistoryFilterSet, paginated=True)
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """What touched this server, oldest first: every audit event about it and its chips,
        and the actions on workflows that targeted it, each with who (and on whose behalf),
        why (the cause: workflow, job run, fault or agent; a reason) and what changed."""
        events = filter_for_action(self, server_history(self.get_object(), self.actor))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(ServerHistorySerializer(page, many=True).data)

    @extend_schema(
        request=s.PutInServiceSerializer, responses={200: s.PutInServiceResultSerializer}
    )
    @action(detail=False, methods=["post"], url_path="put-in-service")
    def put_in_service(self, request):
        """Put many deployed (ready) UltraServers in service in one action, all or nothing:
        one refused is a 4xx naming it as ``ultraservers[i]`` and nothing changes; each
        changed server is audited. Ids not visible to the caller are a 404 naming them."""
        body = s.PutInServiceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids: list[int] = body.validated_data["ultraservers"]
        site = body.validated_data.get("site")
        reasons: list[FieldError] = []
        seen: dict[int, int] = {}
        for index, pk in enumerate(ids):
            if pk in seen:
                reasons.append(
                    FieldError(f"ultraservers[{index}]", "duplicate", f"also item [{seen[pk]}]")
                )
            seen.setdefault(pk, index)
        if reasons:
            raise Invalid(errors=reasons, code="duplicate")
        visible = {
            pk: (site_id, site_tenant if rack_id else tenant)
            for pk, rack_id, site_id, site_tenant, tenant in self.get_queryset()
            .filter(pk__in=ids)
            .order_by()
            .values_list("pk", "rack_id", "rack__site_id", "rack__site__tenant_id", "tenant_id")
        }
        missing = [
            FieldError(f"ultraservers[{i}]", "not_found", f"no UltraServer with id {pk}")
            for i, pk in enumerate(ids)
            if pk not in visible
        ]
        if missing:
            raise NotFound(errors=missing)
        if site is not None:
            elsewhere = [
                FieldError(f"ultraservers[{i}]", "other_site", f"UltraServer {pk} is not at {site}")
                for i, pk in enumerate(ids)
                if visible[pk][0] != site
            ]
            if elsewhere:
                raise Invalid(errors=elsewhere, code="other_site")
        refused = [
            FieldError(f"ultraservers[{i}]", "role", "your role may not change this server")
            for i, pk in enumerate(ids)
            if not self.actor.can_write(visible[pk][1], self.write_roles)
        ]
        if refused:
            raise Denied(errors=refused, code="role")
        changed = services.put_in_service(
            ids, change_context(request), reason=body.validated_data["reason"]
        )
        return Response({"ultraservers": ids, "changed": [server.pk for server in changed]})


class ChipViewSet(BulkWriteMixin, AuditedModelViewSet):
    """Chips are created with their UltraServer; here they are read and their health set."""

    queryset = Chip.objects.select_related("ultraserver__rack__site")
    serializer_class = s.ChipSerializer
    filterset_class = ChipFilterSet
    ordering_fields = ["index", "health", "ecc_uncorrected", "updated_at"]
    tenant_fields = ("ultraserver__rack__site__tenant", "ultraserver__tenant")
    write_roles = CHIP_HEALTH_WRITERS
    http_method_names = ["get", "put", "patch", "head", "options"]


class SiteCapacityViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Capacity of every visible site in one list: power and cooling contracted vs committed,
    chips by health, FP8 PFLOPs and HBM."""

    queryset = Site.objects.all()
    serializer_class = s.SiteCapacitySerializer
    filterset_class = SiteFilterSet
    ordering_fields = ["code", "name"]
    tenant_fields = ("tenant",)

    @extend_schema(responses=s.SiteCapacitySerializer(many=True))
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        capacities = selectors.site_capacities(page)
        return self.get_paginated_response([capacities[site.pk] for site in page])

    @extend_schema(responses=s.SiteCapacitySerializer)
    def retrieve(self, request, *args, **kwargs):
        site = self.get_object()
        return Response(selectors.site_capacities([site])[site.pk])
