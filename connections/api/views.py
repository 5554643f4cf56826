import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog.models import IntegrationProvider
from integrations_site.api.errors import IntegrationNotFound, NotFoundError, ProviderNotFound
from integrations_site.api.viewsets import TenantScopedViewSet

from .. import selectors, services
from ..filters import ConfigVersionFilter, IntegrationFilter
from ..models import ConfigVersion
from .serializers import (
    ConfigVersionSerializer,
    ConnectionSerializer,
    CredentialInSerializer,
    CredentialOutSerializer,
    IntegrationSerializer,
    connection_data,
    credential_out,
    validate_credential_input,
)

INTEGRATION_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Integration id (UUID).")


class IntegrationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """A tenant's integrations. DELETE is a soft delete."""

    queryset = selectors.integration_list_queryset()
    serializer_class = IntegrationSerializer
    filterset_class = IntegrationFilter
    ordering_fields = ["name", "created_at", "updated_at", "status", "health_state", "health_checked_at"]
    ordering = ["-created_at"]
    not_found_error = IntegrationNotFound
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    permission_map = {
        "list": "integrations.read",
        "retrieve": "integrations.read",
        "connection": "integrations.read",
        "create": "integrations.write",
        "partial_update": "integrations.write",
        "enable": "integrations.write",
        "disable": "integrations.write",
        "credentials": "integrations.write",
        "destroy": "integrations.delete",
    }

    def _fresh(self, integration):
        return self.get_queryset().get(pk=integration.pk)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        slug = data.pop("provider_slug")
        provider = IntegrationProvider.objects.tenant_catalog().filter(slug=slug).first()
        if provider is None:
            raise ProviderNotFound(f"No provider '{slug}' in the catalog.", details={"provider": slug})
        tenant = self.tenant_for_write()
        serializer.instance = self._fresh(
            services.integration_create(actor=self.actor, tenant=tenant, provider=provider, data=data)
        )

    def update(self, request, *args, **kwargs):
        if request.method == "PUT":
            kwargs["partial"] = True  # PUT is served as PATCH: no field is ever cleared by omission
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer):
        integration = services.integration_update(
            actor=self.actor, integration=serializer.instance, data=serializer.validated_data
        )
        serializer.instance = self._fresh(integration)

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.integration_delete(actor=self.actor, integration=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: IntegrationSerializer})
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        integration = services.integration_enable(actor=self.actor, integration=self.get_object())
        return Response(IntegrationSerializer(self._fresh(integration)).data)

    @extend_schema(request=None, responses={200: IntegrationSerializer})
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        integration = services.integration_disable(actor=self.actor, integration=self.get_object())
        return Response(IntegrationSerializer(self._fresh(integration)).data)

    @extend_schema(methods=["PUT"], request=CredentialInSerializer, responses={200: CredentialOutSerializer})
    @extend_schema(methods=["DELETE"], request=None, responses={204: None})
    @action(detail=True, methods=["put", "delete"])
    def credentials(self, request, pk=None):
        integration = self.get_object()
        if request.method == "DELETE":
            if not services.credential_remove(actor=self.actor, integration=integration):
                raise NotFoundError("This integration has no credentials to remove.")
            return Response(status=status.HTTP_204_NO_CONTENT)
        credential_type, fields = validate_credential_input(request.data)
        credential = services.credential_set(
            actor=self.actor, integration=integration, credential_type=credential_type, data=fields
        )
        return Response(credential_out(credential))

    @extend_schema(responses={200: ConnectionSerializer})
    @action(detail=True, methods=["get"])
    def connection(self, request, pk=None):
        integration = self.get_object()
        return Response(connection_data(selectors.tenant_credential_of(integration)))


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class IntegrationChildViewSet(TenantScopedViewSet):
    """Rows under ``/integrations/{integration_pk}/…``: the parent is scoped first (404 if not ours)."""

    _integration = None

    def integration(self):
        if self._integration is None:
            pk = self.kwargs["integration_pk"]
            found = self.scope(selectors.integration_list_queryset()).filter(pk=pk).first() if _is_uuid(pk) else None
            if found is None:
                raise IntegrationNotFound()
            self._integration = found
        return self._integration

    def get_queryset(self):
        return super().get_queryset().filter(integration=self.integration())


@extend_schema(parameters=[INTEGRATION_ID])
class ConfigVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, IntegrationChildViewSet):
    """An integration's config history; restoring makes a new version."""

    queryset = ConfigVersion.objects.all()
    serializer_class = ConfigVersionSerializer
    filterset_class = ConfigVersionFilter
    ordering_fields = ["number", "created_at"]
    ordering = ["-number"]
    lookup_field = "number"
    lookup_value_regex = r"[0-9]+"
    permission_map = {"list": "integrations.read", "retrieve": "integrations.read", "restore": "integrations.write"}

    @extend_schema(request=None, responses={200: IntegrationSerializer})
    @action(detail=True, methods=["post"])
    def restore(self, request, integration_pk=None, number=None):
        version = self.get_object()
        integration = services.config_version_restore(
            actor=self.actor, integration=self.integration(), number=version.number
        )
        return Response(IntegrationSerializer(selectors.integration_list_queryset().get(pk=integration.pk)).data)
