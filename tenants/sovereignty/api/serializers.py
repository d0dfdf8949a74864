from typing import Any, cast

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.access import actor_for
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
from tenants.sovereignty.services import keys

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
    version = serializers.IntegerField(
        read_only=True,
        help_text="The current definition. Changing the countries makes the next version; "
        "rules keep the version they pinned until re-activated.",
    )

    class Meta:
        model = JurisdictionGroup
        brief_fields = ["code", "name"]
        fields = ["id", "tenant", "code", "name", "countries", "version"]


class JurisdictionGroupVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    name = serializers.CharField()
    countries = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class ProtectedAssetSerializer(serializers.ModelSerializer):
    tenant = tenant_field()
    site = site_field(required=False, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    availability = serializers.SerializerMethodField(
        help_text="unavailable while a key store the customer holds for its site is disconnected"
    )
    unavailable_reason = serializers.SerializerMethodField(help_text="Empty when available.")

    @extend_schema_field(serializers.ChoiceField(choices=["available", "unavailable"]))
    def get_availability(self, asset: ProtectedAsset) -> str:
        return _key_availability(self, asset)[0]

    def get_unavailable_reason(self, asset: ProtectedAsset) -> str:
        return _key_availability(self, asset)[1]

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
            "availability",
            "unavailable_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


def _key_availability(serializer: serializers.Serializer, asset: ProtectedAsset) -> tuple[str, str]:
    """Key custody (services/keys.py), read once per tenant for a page of assets."""
    cache = serializer.context.setdefault("_key_store_availability", {})
    return keys.availability_cached(asset, cache)


class PinnedGroupSerializer(serializers.Serializer):
    group = serializers.IntegerField()
    version = serializers.IntegerField()
    builtin = serializers.BooleanField()
    countries = serializers.ListField(child=serializers.CharField())


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
    pinned_groups = serializers.DictField(
        child=PinnedGroupSerializer(),
        read_only=True,
        help_text="The group versions pinned at activation, by code: what decisions use.",
    )
    pinned_roots = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="A provenance rule that requires a signature and names no trust_roots: the "
        "roots (refs) in force at activation, the only ones that verify for it.",
    )
    activation_what_if = serializers.JSONField(
        read_only=True, help_text="What it would deny when it was activated (null: a draft)."
    )

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
            "pinned_groups",
            "pinned_roots",
            "activation_what_if",
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
    tenant_id = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="The tenant whose log holds it; null when redacted (another tenant's).",
    )
    redacted = serializers.SerializerMethodField(
        help_text="Another tenant's decision at the caller's site, shown only as far as it "
        "concerns the premises."
    )
    site_code = serializers.CharField(
        read_only=True, allow_null=True, default=None, help_text="The site's code."
    )
    repeat_count = serializers.IntegerField(
        read_only=True,
        default=1,
        help_text="How many identical decisions this row stands for (a telemetry poll asks "
        "again and again: repeats within the period are counted, not logged one by one).",
    )
    repeat_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        default=None,
        help_text="When the last of those repeats was decided; null if it never repeated.",
    )

    class Meta:
        model = DecisionRecord
        brief_fields = ["occurred_at", "action", "allowed"]
        fields = [
            "id",
            "occurred_at",
            "redacted",
            "tenant_id",
            "actor_username",
            "action",
            "principal",
            "resource_type",
            "resource_id",
            "resource_repr",
            "site_id",
            "site_code",
            "site_owner_id",
            "allowed",
            "rule_ids",
            "reasons",
            "request_id",
            "repeat_count",
            "repeat_until",
        ]
        read_only_fields = fields

    #: Shown to a site's owner about another tenant's asset there: only what concerns its
    #: premises (when, what action, at which site, the verdict), not what the asset is, whose it
    #: is, who asked, nor the other tenant's rules.
    REDACTED = {
        "resource_id": "",
        "resource_repr": "(another tenant's asset)",
        "principal": "",
        "tenant_id": None,
        "actor_username": "",
    }

    def _redacted(self, instance: DecisionRecord) -> bool:
        context = cast(dict[str, Any], self.context)
        if "visible_tenants" not in context:  # once per answer, not once per row
            request = context.get("request")
            visible = actor_for(request.user).visible_tenant_ids() if request else None
            context["visible_tenants"] = visible
        visible = context["visible_tenants"]
        return visible is not None and instance.tenant_id not in visible

    def get_redacted(self, instance) -> bool:
        return self._redacted(instance)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self._redacted(instance):
            verdict = "allowed" if instance.allowed else "denied"
            hidden = {
                **self.REDACTED,
                "rule_ids": [],
                "reasons": [],
                "request_id": "",
                "display": f"{instance.action} (another tenant's asset): {verdict}",
            }
            # Only the fields this answer carries (``?brief``/``?fields`` choose fewer).
            data.update({k: v for k, v in hidden.items() if k in data})
        return data


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
    artifact_signed = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Suppose its signature verified (a question: real releases are verified).",
    )
    artifact_roots = serializers.ListField(
        child=serializers.CharField(max_length=80),
        required=False,
        default=list,
        max_length=20,
        help_text="Suppose these trust roots (refs) verified it.",
    )


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


class ActivateSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Activate even though the what-if finds existing placements or access it "
        "would deny (without it, that is a 409 listing them).",
    )


class ConfirmationRequiredSerializer(serializers.Serializer):
    """The 409 of an activation that would deny what exists now: the usual error body plus
    the would-deny list."""

    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.ListField(child=serializers.DictField())
    would_deny = WhatIfItemSerializer(many=True, required=False)
