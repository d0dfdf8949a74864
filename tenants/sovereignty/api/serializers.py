from django.contrib.auth import get_user_model
from rest_framework import serializers

from tenants.api.base import ScopedPrimaryKeyRelatedField
from tenants.models import Tenant
from tenants.sovereignty.core.model import Action
from tenants.sovereignty.models import (
    AccessRequest,
    DecisionRecord,
    JurisdictionGroup,
    ProtectedAsset,
    SovereigntyRule,
    TransferBasis,
)

#: The engine's actions, as the API names them (one enum in the schema: SovereigntyActionEnum).
ACTIONS = [a.value for a in Action]
#: What a what-if finds it would deny: an asset's placement or replica, or a standing access.
WHAT_IF_SUBJECTS = ["asset", "access-request"]

# The site model, without importing the inventory app (tenants must not depend on it).
Site = ProtectedAsset._meta.get_field("site").related_model


def tenant_field(**kwargs):
    return ScopedPrimaryKeyRelatedField(
        queryset=Tenant.objects.all(), tenant_fields=("id",), **kwargs
    )


def site_field(**kwargs):
    return ScopedPrimaryKeyRelatedField(
        queryset=Site.objects.all(), tenant_fields=("tenant",), **kwargs
    )


class JurisdictionGroupSerializer(serializers.ModelSerializer):
    tenant = tenant_field(
        required=False, allow_null=True, help_text="Empty for the built-in groups (EU, EEA)."
    )
    countries = serializers.ListField(child=serializers.CharField(max_length=2), min_length=1)

    class Meta:
        model = JurisdictionGroup
        brief_fields = ["code", "name"]
        fields = ["id", "tenant", "code", "name", "countries"]


class ProtectedAssetSerializer(serializers.ModelSerializer):
    tenant = tenant_field()
    site = site_field(required=False, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False)

    class Meta:
        model = ProtectedAsset
        brief_fields = ["name", "kind"]
        fields = [
            "id",
            "tenant",
            "name",
            "kind",
            "classification",
            "labels",
            "site",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class RuleSerializer(serializers.ModelSerializer):
    tenant = tenant_field()
    supersedes = ScopedPrimaryKeyRelatedField(
        queryset=SovereigntyRule.objects.all(),
        tenant_fields=("tenant",),
        required=False,
        allow_null=True,
    )
    params = serializers.JSONField(required=False)
    sentence = serializers.CharField(read_only=True, help_text="The rule in plain language.")
    cedar_id = serializers.CharField(read_only=True, help_text="Its @id in decisions.")

    class Meta:
        model = SovereigntyRule
        brief_fields = ["name", "kind", "status", "version"]
        fields = [
            "id",
            "tenant",
            "name",
            "kind",
            "params",
            "status",
            "version",
            "supersedes",
            "sentence",
            "cedar_id",
            "created_at",
            "updated_at",
            "activated_at",
            "retired_at",
        ]
        read_only_fields = [
            "status",
            "version",
            "created_at",
            "updated_at",
            "activated_at",
            "retired_at",
        ]


class TransferBasisSerializer(serializers.ModelSerializer):
    tenant = tenant_field()

    class Meta:
        model = TransferBasis
        brief_fields = ["kind", "destination"]
        fields = ["id", "tenant", "kind", "destination", "reference", "valid_until", "created_at"]
        read_only_fields = ["created_at"]


class AccessRequestSerializer(serializers.ModelSerializer):
    site = site_field()
    person = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.filter(memberships__tenant__isnull=True),
        help_text="The provider person who will act on the site.",
    )

    class Meta:
        model = AccessRequest
        brief_fields = ["site", "person", "status"]
        fields = [
            "id",
            "tenant",
            "site",
            "person",
            "requested_by",
            "reason",
            "starts_at",
            "ends_at",
            "status",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = [
            "tenant",
            "requested_by",
            "status",
            "decided_by",
            "decided_at",
            "created_at",
        ]


class DecisionRecordSerializer(serializers.ModelSerializer):
    action = serializers.ChoiceField(choices=ACTIONS, read_only=True)
    rule_ids = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The deciding rules' @ids."
    )
    reasons = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = DecisionRecord
        brief_fields = ["occurred_at", "action", "allowed"]
        fields = [
            "id",
            "occurred_at",
            "tenant_id",
            "actor_username",
            "action",
            "principal",
            "resource_type",
            "resource_id",
            "resource_repr",
            "site_id",
            "allowed",
            "rule_ids",
            "reasons",
            "request_id",
        ]
        read_only_fields = fields


class EvaluateSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ACTIONS)
    site = site_field(help_text="Where the action happens (target, or telemetry source).")
    asset = ScopedPrimaryKeyRelatedField(
        queryset=ProtectedAsset.objects.all(), tenant_fields=("tenant",), required=False
    )
    person = serializers.PrimaryKeyRelatedField(
        # Only provider personnel act on sites; a tenant's people are nobody else's business.
        queryset=get_user_model().objects.filter(memberships__tenant__isnull=True),
        required=False,
    )
    from_country = serializers.CharField(max_length=2, required=False, allow_blank=True, default="")
    remote = serializers.BooleanField(required=False, default=False)
    destination = site_field(required=False, help_text="Telemetry destination site.")
    telemetry_category = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )
    artifact_origin = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )
    artifact_signed = serializers.BooleanField(required=False, default=False)


class DecisionSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    rule_ids = serializers.ListField(child=serializers.CharField())
    reasons = serializers.ListField(child=serializers.CharField())


class WhatIfItemSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=WHAT_IF_SUBJECTS)
    id = serializers.CharField()
    repr = serializers.CharField()
    site = serializers.IntegerField()
    action = serializers.ChoiceField(choices=ACTIONS)
    reasons = serializers.ListField(child=serializers.CharField())


class WhatIfSerializer(serializers.Serializer):
    rule = serializers.IntegerField()
    checked = serializers.IntegerField()
    would_deny = WhatIfItemSerializer(many=True)
