from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from connections.api.serializers import ConnectionCheckSerializer
from connections.services import system_provider_test
from integrations_site.api.errors import ProviderNotFound, ValidationFailed
from integrations_site.api.viewsets import RoleMappedMixin

from .. import services
from ..choices import Audience
from ..filters import CatalogFilter, ProviderFilter
from ..models import IntegrationProvider
from .serializers import (
    ProviderAdminSerializer,
    ProviderAudienceSerializer,
    ProviderCatalogSerializer,
    ProviderStatusSerializer,
)

PROVIDER_ORDERING = ["name", "slug", "category", "status", "created_at", "updated_at"]


class ProviderLookupMixin(RoleMappedMixin):
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    not_found_error = ProviderNotFound
    throttle_family = "providers"
    throttle_families = {"test": "connections"}
    ordering_fields = PROVIDER_ORDERING
    ordering = ["name"]


class ProviderAdminViewSet(ProviderLookupMixin, viewsets.ModelViewSet):
    """The provider catalog (super admins)."""

    queryset = IntegrationProvider.objects.all()
    serializer_class = ProviderAdminSerializer
    filterset_class = ProviderFilter
    permission_map = {"*": "catalog.manage"}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.provider_create(actor=self.actor, data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.provider_update(
            actor=self.actor, provider=serializer.instance, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.provider_delete(actor=self.actor, provider=instance)

    @extend_schema(request=None, responses={200: ConnectionCheckSerializer})
    @action(detail=True, methods=["post"], url_path="test")
    def test(self, request, slug=None):
        """System-level connection test through the platform tenant's integration of this provider."""
        provider = self.get_object()
        if provider.audience != Audience.SYSTEM:
            raise ValidationFailed(
                "Only system-audience providers have a system test; tenants test their own integrations.",
                details={"audience": [provider.audience]},
            )
        check = system_provider_test(provider=provider, actor=self.actor)
        if check is None:
            raise ValidationFailed(
                f"The platform tenant '{settings.PLATFORM_TENANT_SLUG}' has no integration of this provider.",
                details={"code": "NOT_CONFIGURED"},
            )
        return Response(ConnectionCheckSerializer(check).data)

    @extend_schema(request=ProviderStatusSerializer, responses={200: ProviderAdminSerializer})
    @action(detail=True, methods=["patch"], url_path="status")
    def set_status(self, request, slug=None):
        serializer = ProviderStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        provider = services.provider_set_status(
            actor=self.actor, provider=self.get_object(), status=serializer.validated_data["status"]
        )
        return Response(ProviderAdminSerializer(provider).data, status=status.HTTP_200_OK)

    @extend_schema(request=ProviderAudienceSerializer, responses={200: ProviderAdminSerializer})
    @action(detail=True, methods=["patch"], url_path="audience")
    def set_audience(self, request, slug=None):
        serializer = ProviderAudienceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        provider = services.provider_set_audience(
            actor=self.actor, provider=self.get_object(), audience=serializer.validated_data["audience"]
        )
        return Response(ProviderAdminSerializer(provider).data)


class CatalogViewSet(ProviderLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Providers a tenant may enable: tenant audience, active or beta."""

    queryset = IntegrationProvider.objects.tenant_catalog()
    serializer_class = ProviderCatalogSerializer
    filterset_class = CatalogFilter
    permission_map = {"*": "catalog.read"}
