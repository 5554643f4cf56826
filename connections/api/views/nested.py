"""Collections under one integration (``/integrations/{integration_pk}/…``): config versions, checks,
external statuses and their changes. The parent is scoped first: another tenant's is a 404."""
import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from integrations_site.api.errors import IntegrationNotFound
from integrations_site.api.viewsets import TenantScopedViewSet

from ... import selectors, services
from ...filters import ConfigVersionFilter, ConnectionCheckFilter, ExternalStatusFilter, StatusChangeFilter
from ...models import ConfigVersion, ConnectionCheck, ExternalStatus, StatusChange
from ..serializers import (
    ConfigVersionSerializer,
    ConnectionCheckSerializer,
    ExternalStatusSerializer,
    IntegrationSerializer,
    StatusChangeSerializer,
)

INTEGRATION_PK = OpenApiParameter("integration_pk", OpenApiTypes.UUID, OpenApiParameter.PATH,
                                  description="Integration id.")


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class IntegrationChildViewSet(TenantScopedViewSet):
    """Rows under ``/integrations/{integration_pk}/…``: the parent is scoped first (404 if not ours)."""

    _integration = None
    throttle_family = "integrations"
    throttle_families = {"revoke": "connections"}

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


@extend_schema(parameters=[INTEGRATION_PK])
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


@extend_schema(parameters=[INTEGRATION_PK])
class ConnectionCheckViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, IntegrationChildViewSet):
    """Connection test and health-check history, newest first."""

    queryset = ConnectionCheck.objects.all()
    serializer_class = ConnectionCheckSerializer
    filterset_class = ConnectionCheckFilter
    ordering_fields = ["created_at", "latency_ms"]
    ordering = ["-created_at"]
    permission_map = {"*": "integrations.read"}


@extend_schema(parameters=[INTEGRATION_PK])
class ExternalStatusViewSet(mixins.ListModelMixin, IntegrationChildViewSet):
    """Polled external statuses: canonical and raw."""

    queryset = ExternalStatus.objects.all()
    serializer_class = ExternalStatusSerializer
    filterset_class = ExternalStatusFilter
    ordering_fields = ["external_id", "last_changed_at", "canonical_status"]
    ordering = ["external_id"]
    permission_map = {"*": "integrations.read"}


@extend_schema(parameters=[INTEGRATION_PK])
class StatusChangeViewSet(mixins.ListModelMixin, IntegrationChildViewSet):
    """The history of external status changes, newest first."""

    queryset = StatusChange.objects.all()
    serializer_class = StatusChangeSerializer
    filterset_class = StatusChangeFilter
    ordering_fields = ["changed_at", "external_id"]
    ordering = ["-changed_at"]
    permission_map = {"*": "integrations.read"}
