"""The system-level connection test of a provider (super admins)."""
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog.api.views import ProviderLookupMixin
from catalog.choices import Audience
from catalog.models import IntegrationProvider
from integrations_site.api.errors import ValidationFailed

from ...services import checks
from ..serializers import ConnectionCheckSerializer


class ProviderTestViewSet(ProviderLookupMixin, viewsets.GenericViewSet):
    """``POST /admin/providers/{slug}/test`` (super admins): beside the catalog's provider routes, served
    here because it runs through a connection of the platform tenant."""

    queryset = IntegrationProvider.objects.all()
    serializer_class = ConnectionCheckSerializer
    permission_map = {"*": "catalog.manage"}
    throttle_families = {"test": "connections"}

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
        check = checks.system_provider_test(provider=provider, actor=self.actor)
        if check is None:
            raise ValidationFailed(
                f"The platform tenant '{settings.PLATFORM_TENANT_SLUG}' has no integration of this provider.",
                details={"code": "NOT_CONFIGURED"},
            )
        return Response(ConnectionCheckSerializer(check).data)
