from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from integrations_site.api.errors import ProviderNotFound
from integrations_site.api.viewsets import RoleMappedMixin

from .. import services
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
    """A provider by its slug (``/admin/providers/{slug}/…``, ``/catalog/{slug}/``)."""

    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    not_found_error = ProviderNotFound
    throttle_family = "providers"
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
