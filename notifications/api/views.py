from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from integrations_site.api.viewsets import TenantScopedViewSet

from .. import services
from ..filters import NotificationDeliveryFilter, NotificationEndpointFilter
from ..models import NotificationDelivery, NotificationEndpoint
from .serializers import (
    NotificationDeliveryDetailSerializer,
    NotificationDeliverySerializer,
    NotificationEndpointCreatedSerializer,
    NotificationEndpointSerializer,
    NotificationRotatedSecretSerializer,
    NotificationRotateSecretSerializer,
)

# Answers that show a secret once must never be cached.
SHOWN_ONCE = {"Cache-Control": "no-store"}
# Where the tenant is told of its integrations' health and credentials: the tenant's admins only
# (the permission of the tenant's own settings, DESIGN.md's role table).
TENANT_ADMIN = "tenant.update"


class NotificationEndpointViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    mixins.DestroyModelMixin, TenantScopedViewSet,
):
    """Where the tenant is told of health and credential events. The secret is in the create and rotate
    answers only."""

    throttle_family = "integrations"
    queryset = NotificationEndpoint.objects.live()
    serializer_class = NotificationEndpointSerializer
    filterset_class = NotificationEndpointFilter
    ordering_fields = ["created_at", "url"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    permission_map = {"*": TENANT_ADMIN}

    @extend_schema(request=NotificationEndpointSerializer, responses={201: NotificationEndpointCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.notification_endpoint_create(
            actor=self.actor, tenant=self.tenant_for_write(), data=serializer.validated_data
        )
        body = NotificationEndpointCreatedSerializer(endpoint).data
        body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED, headers=SHOWN_ONCE)

    def perform_update(self, serializer):
        serializer.instance = services.notification_endpoint_update(
            actor=self.actor, endpoint=serializer.instance, data=serializer.validated_data
        )

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.notification_endpoint_delete(actor=self.actor, endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=NotificationRotateSecretSerializer, responses={200: NotificationRotatedSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret, shown once; deliveries are signed with the old one too for ``grace_seconds``
        (default 24 h, max 7 days), so a receiver verifies with either while it switches."""
        endpoint = self.get_object()
        serializer = NotificationRotateSecretSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.notification_secret_rotate(actor=self.actor, endpoint=endpoint,
                                                               **serializer.validated_data)
        return Response({"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at},
                        headers=SHOWN_ONCE)

    @extend_schema(request=None, responses={200: NotificationDeliveryDetailSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a signed ``ping`` now, once (active or not); the answer is its delivery with the attempt."""
        delivery = services.notification_endpoint_test(actor=self.actor, endpoint=self.get_object())
        delivery = NotificationDelivery.objects.prefetch_related("history").get(pk=delivery.pk)
        return Response(NotificationDeliveryDetailSerializer(delivery).data)


class NotificationDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Each notification sent to each endpoint, newest first; the detail holds the body and every attempt."""

    throttle_family = "integrations"
    queryset = NotificationDelivery.objects.all()
    serializer_class = NotificationDeliverySerializer
    filterset_class = NotificationDeliveryFilter
    ordering_fields = ["created_at", "status", "attempts", "next_attempt_at"]
    ordering = ["-created_at"]
    permission_map = {"*": TENANT_ADMIN}

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.prefetch_related("history") if self.action != "list" else queryset.defer("payload")

    def get_serializer_class(self):
        return NotificationDeliverySerializer if self.action == "list" else NotificationDeliveryDetailSerializer

    @extend_schema(request=None, responses={202: NotificationDeliveryDetailSerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Send a delivered or failed delivery again now (attempts start over, same ``webhook-id``); 409 while
        it is pending or its endpoint is off."""
        delivery = services.delivery_redeliver(actor=self.actor, delivery=self.get_object())
        delivery = self.get_queryset().get(pk=delivery.pk)
        return Response(NotificationDeliveryDetailSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
