from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.choices import AuditCause, TokenScope
from tenants.models import ApiToken, AuditEvent, Tenant
from tenants.services.tokens import MAX_DAYS


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        brief_fields = ["name", "slug"]
        fields = ["id", "name", "slug", "kind", "country", "contact_email", "created_at"]
        read_only_fields = ["created_at"]


def cause_type_field() -> serializers.ChoiceField:
    """An audit event's ``cause_type``: one of ``AuditCause``, or blank for a person's own
    request (declared: a read-only model field would lose the blank in the schema)."""
    return serializers.ChoiceField(
        choices=AuditCause.choices,
        allow_blank=True,
        read_only=True,
        help_text="What caused the change (its id in cause_id); blank: a person's own request.",
    )


class AuditEventSerializer(serializers.ModelSerializer):
    changed_fields = serializers.ListField(child=serializers.CharField(), read_only=True)
    cause_type = cause_type_field()

    class Meta:
        model = AuditEvent
        brief_fields = ["occurred_at", "action", "object_type", "object_id"]
        fields = [
            "id",
            "occurred_at",
            "actor_id",
            "actor_username",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "tenant_id",
            "changed_fields",
            "before",
            "after",
            "request_id",
            "on_behalf_of",
            "cause_type",
            "cause_id",
            "reason",
        ]
        read_only_fields = fields


class ApiTokenSerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        brief_fields = ["name", "prefix", "is_active"]
        fields = ["id", *ApiToken.SHOWN, "is_active"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=TokenScope.choices, default=TokenScope.WRITE)
    days = serializers.IntegerField(min_value=1, max_value=MAX_DAYS, required=False)


class TokenLoginSerializer(ApiTokenCreateSerializer):
    """A username and password exchanged for a new token (``POST /auth/token/``)."""

    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        max_length=1024, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )


class IssuedApiTokenSerializer(ApiTokenSerializer):
    token = serializers.SerializerMethodField(help_text="Shown once. Store it now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_token(self, obj) -> str:
        return self.context["clear_token"]
