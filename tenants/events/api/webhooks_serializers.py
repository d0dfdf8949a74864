from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.access import actor_for
from tenants.api.base import ScopedPrimaryKeyRelatedField
from tenants.choices import Role
from tenants.events import delivery as rules
from tenants.events.choices import EventKindChoice
from tenants.events.kinds import EventKind
from tenants.events.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from tenants.models import Tenant

#: Who creates and changes a tenant's subscriptions: its own people only (see the viewset).
WEBHOOK_WRITERS = frozenset({Role.TENANT_ADMIN, Role.TENANT_OPERATOR})


def _invalid(field: str, message: str, code: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: [serializers.ErrorDetail(message, code=code)]})


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    tenant = ScopedPrimaryKeyRelatedField(
        queryset=Tenant.objects.all(),
        tenant_fields=("id",),
        required=False,
        help_text="The tenant whose events it receives. May be left out by a person of one "
        "tenant only; cannot change afterwards.",
    )
    url = serializers.URLField(
        max_length=500,
        help_text="Where deliveries are POSTed: http(s), no credentials in the URL; loopback, "
        "link-local and the control plane's own services and networks are refused. Shown in "
        "full only to those who may change the subscription (its tenant's admins and "
        "operators); to others as `scheme://host:port/…`, as a path or query may be a "
        "credential.",
    )
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=EventKindChoice.choices),
        required=False,
        max_length=len(EventKind),
        help_text="The event kinds to send, each once; empty (the default): every kind.",
    )

    class Meta:
        model = WebhookSubscription
        brief_fields = ["name", "url", "is_active"]
        # The model's clean() checks the name is free in its tenant (naming the field "name"),
        # once the tenant is known: DRF's unique-together check would demand it in the body.
        validators: list = []
        fields = [
            "id",
            "tenant",
            "name",
            "url",
            "kinds",
            "is_active",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "secret_rotated_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "secret_rotated_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "is_active": {
                "help_text": "Deliveries are sent only while true. Set false when deliveries "
                "keep giving up (see `disabled_reason`); setting it true again resets the count "
                "and sends the deliveries that waited meanwhile."
            },
            "consecutive_failures": {
                "help_text": "Deliveries that gave up (after all their attempts) since the last "
                "success; a failed attempt that is retried does not count."
            },
        }

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("url") and not self._may_see_url(instance):
            data["url"] = rules.display_url(instance.url)
        return data

    def _may_see_url(self, subscription: WebhookSubscription) -> bool:
        """Those who may change it (not a read-only token, nobody at the provider)."""
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is None or getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
            return False
        actor = actor_for(user)  # a read-only token's actor is read-only: it may not write
        return actor.provider_role is None and actor.can_write(
            subscription.tenant_id, WEBHOOK_WRITERS
        )

    def validate(self, attrs):
        tenant = attrs.get("tenant")
        if self.instance is not None:
            if tenant is not None and tenant.pk != self.instance.tenant_id:
                raise _invalid("tenant", "a subscription stays with its tenant", "immutable")
            return attrs
        if tenant is None:
            request = self.context.get("request")
            actor = actor_for(request.user if request else None)
            own = sorted(t for t, role in actor.tenant_roles.items() if role in WEBHOOK_WRITERS)
            if len(own) != 1:
                raise _invalid("tenant", "name the tenant whose events it receives", "required")
            attrs["tenant"] = Tenant.objects.get(pk=own[0])
        return attrs


class WebhookSubscriptionSecretSerializer(WebhookSubscriptionSerializer):
    """The subscription with its signing secret: only in the answer that made the secret."""

    secret = serializers.CharField(
        read_only=True,
        help_text="The HMAC-SHA256 key deliveries are signed with. Shown only now: keep it.",
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]
        read_only_fields = fields
        extra_kwargs = {
            "status_code": {"help_text": "The receiver's HTTP status; null if none came."},
            "error": {
                "help_text": "Why it failed: a category (`timeout`, `refused`, `dns`, `tls`, "
                "`reset`, `too_slow`, `destination_refused`, …) and the URL's host, or the "
                "status the receiver answered. Never the receiver's words."
            },
            "response_excerpt": {
                "help_text": "The first 500 characters of a 2xx answer; empty for any other."
            },
        }


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event = serializers.IntegerField(
        source="event.sequence",
        read_only=True,
        help_text="The event's `id` in the event log (and in the delivered body).",
    )
    kind = serializers.ChoiceField(
        source="event.kind", choices=EventKindChoice.choices, read_only=True
    )
    in_flight = serializers.SerializerMethodField(
        help_text="An attempt is under way (its worker holds the delivery's lease)."
    )
    log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        brief_fields = ["subscription", "event", "state"]
        fields = [
            "id",
            "subscription",
            "event",
            "kind",
            "state",
            "attempts",
            "next_attempt_at",
            "in_flight",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "log",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "id": {"help_text": "Sent as `X-Factory-Delivery`, the same on every attempt."},
            "delivered_at": {"help_text": "When a receiver first answered 2xx (written once)."},
        }

    @extend_schema_field(serializers.BooleanField())
    def get_in_flight(self, delivery: WebhookDelivery) -> bool:
        return delivery.leased_until is not None and delivery.leased_until > timezone.now()
