"""Shapes of capacity reservations and workload units. Writes go through
``provisioning.placement.services`` (the create serializers only read the request)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from factory.catalog.models import UltraServerModel
from factory.inventory.models import Site
from provisioning.placement.choices import MemberRole, Spread, TopologyConstraint, UnitState
from provisioning.placement.models import CapacityReservation, UnitMember, WorkloadUnit
from provisioning.placement.services import MAX_HOPS, MAX_RESERVATION, MAX_UNIT
from tenants.api.base import ScopedPrimaryKeyRelatedField

SITE_TENANT = ("tenant",)


class ReservationSerializer(serializers.ModelSerializer):
    """The list's shape: how many servers it holds, not which (up to 1,000 each, 50 a page)."""

    servers_count = serializers.IntegerField(
        read_only=True, help_text="How many servers it holds (their serials: the detail)."
    )

    class Meta:
        model = CapacityReservation
        brief_fields = ["name", "state"]
        fields = [
            "id",
            "name",
            "site",
            "model",
            "count",
            "starts_at",
            "ends_at",
            "constraint",
            "max_hops",
            "state",
            "state_reason",
            "servers_count",
            "explanation",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ReservationDetailSerializer(ReservationSerializer):
    servers = serializers.SerializerMethodField(help_text="Serials of the servers it holds.")

    class Meta(ReservationSerializer.Meta):
        fields = [*ReservationSerializer.Meta.fields, "servers"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_servers(self, reservation: CapacityReservation) -> list[str]:
        return sorted(h.ultraserver.serial for h in reservation.holds.all())


class ReservationCreateSerializer(serializers.Serializer):
    site = ScopedPrimaryKeyRelatedField(queryset=Site.objects.all(), tenant_fields=SITE_TENANT)
    model = serializers.PrimaryKeyRelatedField(queryset=UltraServerModel.objects.all())
    count = serializers.IntegerField(min_value=1, max_value=MAX_RESERVATION)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    constraint = serializers.ChoiceField(
        choices=TopologyConstraint.choices, default=TopologyConstraint.SAME_NODE
    )
    max_hops = serializers.IntegerField(
        min_value=0, max_value=MAX_HOPS, required=False, allow_null=True, default=None
    )
    name = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class UnitSerializer(serializers.ModelSerializer):
    leader = serializers.SerializerMethodField(help_text="Serial of the leader member.")
    # A plain string in the list: the enum of the same name is the detail's (``UnitState``),
    # which spectacular could not name if two components used it (no ENUM_NAME_OVERRIDES
    # entry for it in settings).
    state = serializers.CharField(read_only=True, help_text="active, degraded or released.")

    class Meta:
        model = WorkloadUnit
        brief_fields = ["name", "state"]
        fields = [
            "id",
            "name",
            "site",
            "reservation",
            "model",
            "auto_replace",
            "size",
            "constraint",
            "max_hops",
            "spread",
            "inputs",
            "max_unavailable",
            "state",
            "state_reason",
            "leader",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_leader(self, unit: WorkloadUnit) -> str | None:
        for member in unit.members.all():
            if member.role == MemberRole.LEADER and member.state != "released":
                return member.ultraserver.serial
        return None


class MemberSerializer(serializers.ModelSerializer):
    serial = serializers.CharField(source="ultraserver.serial", read_only=True)
    rack = serializers.CharField(source="ultraserver.rack.name", read_only=True, default=None)
    distance_to_leader = serializers.SerializerMethodField(
        help_text="Hops to the leader over the EFA fabric (0 for the leader itself)."
    )

    class Meta:
        model = UnitMember
        fields = [
            "id",
            "ultraserver",
            "serial",
            "role",
            "state",
            "state_reason",
            "rack",
            "distance_to_leader",
            "joined_at",
            "left_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_distance_to_leader(self, member: UnitMember) -> int | None:
        return self.context.get("distances", {}).get(member.pk)


class UnitDetailSerializer(UnitSerializer):
    members = serializers.SerializerMethodField()
    state = serializers.ChoiceField(choices=UnitState.choices, read_only=True)  # type: ignore[assignment]

    class Meta(UnitSerializer.Meta):
        fields = [*UnitSerializer.Meta.fields, "members", "explanation"]
        read_only_fields = fields

    @extend_schema_field(MemberSerializer(many=True))
    def get_members(self, unit: WorkloadUnit) -> list[dict[str, Any]]:
        from provisioning.placement.services import member_distances

        context = {**self.context, "distances": member_distances(unit)}
        return list(MemberSerializer(unit.members.all(), many=True, context=context).data)


class UnitCreateSerializer(serializers.Serializer):
    site = ScopedPrimaryKeyRelatedField(queryset=Site.objects.all(), tenant_fields=SITE_TENANT)
    name = serializers.CharField(max_length=100)
    size = serializers.IntegerField(min_value=1, max_value=MAX_UNIT)
    constraint = serializers.ChoiceField(
        choices=TopologyConstraint.choices, default=TopologyConstraint.SAME_NODE
    )
    max_hops = serializers.IntegerField(
        min_value=0, max_value=MAX_HOPS, required=False, allow_null=True, default=None
    )
    spread = serializers.ChoiceField(choices=Spread.choices, default=Spread.NONE)
    inputs = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        max_length=100,
        required=False,
        default=list,
        help_text="Ids of the protected assets (model weights, datasets) the workload reads.",
    )
    reservation = ScopedPrimaryKeyRelatedField(
        queryset=CapacityReservation.objects.all(),
        tenant_fields=("tenant",),
        required=False,
        allow_null=True,
        default=None,
    )
    max_unavailable = serializers.IntegerField(min_value=0, max_value=MAX_UNIT, default=0)
    model = serializers.PrimaryKeyRelatedField(
        queryset=UltraServerModel.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="The UltraServer model of every member (as a reservation's ``model``). "
        "Required from free capacity; inside a reservation it defaults to, and must be, the "
        "reservation's.",
    )
    auto_replace = serializers.BooleanField(
        default=False,
        help_text="A failed member may be replaced without asking (by a server under the "
        "unit's constraint).",
    )
