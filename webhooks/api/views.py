from django.db.models.functions import Length
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog.choices import SignatureScheme
from connections.models import Integration
from integrations_site.api.errors import IntegrationNotFound, NotFoundError
from integrations_site.api.viewsets import TenantScopedViewSet

from .. import services
from ..filters import WebhookEndpointFilter, WebhookEventFilter
from ..models import WebhookEndpoint, WebhookEvent
from .serializers import (
    RotatedSecretSerializer,
    RotateSecretSerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointSerializer,
    WebhookEventDetailSerializer,
    WebhookEventSerializer,
    validate_secret_for_scheme,
)

# Answers that show a secret once must never be cached.
SHOWN_ONCE = {"Cache-Control": "no-store"}


class WebhookEndpointViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    mixins.DestroyModelMixin, TenantScopedViewSet,
):
    """Inbound webhook endpoints. The secret is in the create and rotate answers only."""

    throttle_family = "integrations"

    queryset = WebhookEndpoint.objects.live().select_related("integration")
    serializer_class = WebhookEndpointSerializer
    filterset_class = WebhookEndpointFilter
    ordering_fields = ["created_at", "name"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    permission_map = {
        "list": "integrations.read", "retrieve": "integrations.read",
        "create": "integrations.write", "partial_update": "integrations.write", "rotate_secret": "integrations.write",
        "destroy": "integrations.delete",
    }

    @extend_schema(request=WebhookEndpointSerializer, responses={201: WebhookEndpointCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        tenant = self.tenant_for_write()
        integration = Integration.objects.for_tenant(tenant).live().select_related("provider").filter(
            pk=data.pop("integration_id")
        ).first()
        if integration is None:
            raise IntegrationNotFound(details={"integration": "No such integration in this tenant."})
        if data.get("secret") and not data.get("signature_scheme"):
            # The scheme comes from the provider: check a chosen secret against it too.
            scheme = integration.provider.default_webhook_signature_scheme or SignatureScheme.HMAC_SHA256
            try:
                validate_secret_for_scheme(data["secret"], scheme)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"secret": exc.detail}) from None
        endpoint, secret = services.endpoint_create(actor=self.actor, tenant=tenant, integration=integration,
                                                    data=data)
        body = WebhookEndpointCreatedSerializer(endpoint).data
        body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED, headers=SHOWN_ONCE)

    def perform_update(self, serializer):
        serializer.instance = services.endpoint_update(
            actor=self.actor, endpoint=serializer.instance, data=serializer.validated_data
        )

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.endpoint_delete(actor=self.actor, endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=RotateSecretSerializer, responses={200: RotatedSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret, shown once; the old one verifies for ``grace_seconds`` (default 24 h, max 7 days)."""
        endpoint = self.get_object()
        serializer = RotateSecretSerializer(data=request.data, context={"scheme": endpoint.signature_scheme})
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_secret_rotate(actor=self.actor, endpoint=endpoint,
                                                          **serializer.validated_data)
        return Response(
            {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}, headers=SHOWN_ONCE
        )


class WebhookEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Received events, newest first; the detail includes the raw body."""

    throttle_family = "integrations"

    queryset = WebhookEvent.objects.select_related("endpoint").annotate(body_size=Length("body"))
    serializer_class = WebhookEventSerializer
    filterset_class = WebhookEventFilter
    ordering_fields = ["received_at", "status", "attempts"]
    ordering = ["-received_at"]
    not_found_error = NotFoundError
    permission_map = {"list": "integrations.read", "retrieve": "integrations.read", "replay": "integrations.write"}

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.defer("body") if self.action == "list" else queryset

    def get_serializer_class(self):
        return WebhookEventDetailSerializer if self.action == "retrieve" else WebhookEventSerializer

    @extend_schema(request=None, responses={202: WebhookEventSerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Queue a processed or failed event again (409 if it is still pending)."""
        event = services.event_replay(actor=self.actor, event=self.get_object())
        event = self.get_queryset().get(pk=event.pk)
        return Response(WebhookEventSerializer(event).data, status=status.HTTP_202_ACCEPTED)
