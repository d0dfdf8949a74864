"""Webhooks over HTTP: a tenant's subscriptions, their deliveries and the delivery log.

Who: a subscription sends the tenant's events out of the control plane to a receiver of the
tenant's choosing, so it moves the customer's data boundary, and only the customer moves that:
the tenant's admins and operators create, change, rotate, redeliver and delete its
subscriptions. Nobody at the provider can point a tenant's events somewhere: any account with a
provider membership, or a superuser or staff one, is refused every webhook write (403
``tenant_people_only``), even with a tenant membership it may have given itself in the admin.
Every change is a ``webhook.*`` event in the tenant's own log. Its viewers, and provider admins
(who support every tenant), read subscriptions and their delivery logs, with the URL cut to
``scheme://host:port/…`` (its path or query may be a credential); the secret is never shown
after the answer that made it.

The sovereignty engine (``tenants.sovereignty``) has no rule about URL destinations (its egress
rule governs telemetry leaving a site for another site), so there is none to check here; the
destination policy (``tenants.events.delivery.DestinationPolicy``) is the guard.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from tenants.access import actor_for
from tenants.api.base import AuditedModelViewSet, ScopedViewSetMixin, change_context
from tenants.choices import TENANT_ROLES, Role
from tenants.events import webhooks
from tenants.events.api.webhooks_serializers import (
    WEBHOOK_WRITERS,
    WebhookDeliverySerializer,
    WebhookSubscriptionSecretSerializer,
    WebhookSubscriptionSerializer,
)
from tenants.events.models import WebhookDelivery, WebhookSubscription
from tenants.filters import FilterSet, filter_for_action, query_params

WEBHOOK_READERS = frozenset({Role.PROVIDER_ADMIN, *TENANT_ROLES})


class WebhookSubscriptionFilterSet(FilterSet):
    class Meta:
        model = WebhookSubscription
        fields = ["tenant", "name", "is_active", "consecutive_failures", "created_at"]
        search_fields = ["name"]  # not the URL: a reader must not probe its path by searching


class WebhookDeliveryFilterSet(FilterSet):
    class Meta:
        model = WebhookDelivery
        fields = [
            "subscription",
            "state",
            ("event", "event__sequence"),
            ("kind", "event__kind"),
            "attempts",
            "created_at",
            "next_attempt_at",
            "delivered_at",
        ]


def _secret_response(view, subscription: WebhookSubscription, secret: str, code: int):
    """The object response, with the secret added: its one appearance, so never cached."""
    response = view.object_response(subscription, code)
    response.data = {**response.data, "secret": secret}
    response["Cache-Control"] = "no-store"
    return response


class TenantPeopleOnlyMixin:
    """Every write, by anyone at the provider, is refused before anything else is looked at."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method not in SAFE_METHODS:
            webhooks.refuse_provider_people(actor_for(request.user))


class WebhookSubscriptionViewSet(TenantPeopleOnlyMixin, AuditedModelViewSet):
    """A tenant's webhook subscriptions: each receives the tenant's events (all kinds, or the
    ones in `kinds`) as signed POSTs. See the README's "Webhooks" for verifying a signature."""

    queryset = WebhookSubscription.objects.select_related("tenant")
    serializer_class = WebhookSubscriptionSerializer
    filterset_class = WebhookSubscriptionFilterSet
    ordering_fields = ["name", "created_at", "consecutive_failures"]
    tenant_fields = ("tenant",)
    read_roles = WEBHOOK_READERS
    write_roles = WEBHOOK_WRITERS

    @extend_schema(
        responses={
            201: OpenApiResponse(
                WebhookSubscriptionSecretSerializer,
                description="The subscription and its signing `secret`, shown only now.",
            )
        }
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = WebhookSubscription(**serializer.validated_data)
        self._check_target_tenant(subscription)
        subscription, secret = webhooks.create_subscription(subscription, change_context(request))
        return _secret_response(self, subscription, secret, status.HTTP_201_CREATED)

    def save_instance(self, instance, ctx):
        return webhooks.save_subscription(instance, ctx)

    def delete_instance(self, instance, ctx):
        webhooks.delete_subscription(instance, ctx)

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(
                WebhookSubscriptionSecretSerializer,
                description="The subscription and its new `secret`, shown only now. The old "
                "one signs nothing from now on.",
            )
        },
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new signing secret; the next attempt of every delivery is signed with it."""
        subscription, secret = webhooks.rotate_secret(self.get_object(), change_context(request))
        return _secret_response(self, subscription, secret, status.HTTP_200_OK)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @query_params(WebhookDeliveryFilterSet, paginated=True)
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The subscription's deliveries, newest first, each with its attempts (the log)."""
        subscription = self.get_object()
        queryset = (
            WebhookDelivery.objects.filter(subscription=subscription)
            .select_related("event")
            .prefetch_related("log")
            .order_by("-id")
        )
        page = self.paginate_queryset(filter_for_action(self, queryset))
        data = WebhookDeliverySerializer(page, many=True).data
        return self.get_paginated_response(data)


class WebhookDeliveryViewSet(
    TenantPeopleOnlyMixin, ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet
):
    """Deliveries of every subscription the caller may see, each with its attempts: when, how
    long, the receiver's status code, the error (a category and the host), the start of a 2xx
    answer."""

    queryset = WebhookDelivery.objects.select_related("event", "subscription").prefetch_related(
        "log"
    )
    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilterSet
    ordering_fields = ["id", "created_at", "next_attempt_at", "delivered_at"]
    tenant_fields = ("subscription__tenant",)
    read_roles = WEBHOOK_READERS
    write_roles = WEBHOOK_WRITERS

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(
                WebhookDeliverySerializer, description="Queued again; its log is kept."
            )
        },
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Send this delivery again (delivered or failed alike), with the same
        `X-Factory-Delivery` id. 409 while an attempt is in flight or the subscription is
        disabled."""
        delivery = webhooks.redeliver(self.get_object(), change_context(request))
        fresh = self.get_queryset().get(pk=delivery.pk)
        return Response(WebhookDeliverySerializer(fresh).data, status=status.HTTP_202_ACCEPTED)
