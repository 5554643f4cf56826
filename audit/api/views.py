from rest_framework import mixins

from integrations_site.api.viewsets import TenantScopedViewSet

from ..filters import AdminAuditEventFilter, AuditEventFilter
from ..models import AuditEvent
from .serializers import AuditEventSerializer


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The caller's tenant's audit trail, newest first."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at", "action"]
    ordering = ["-created_at"]
    permission_map = {"*": "audit.read"}


class AdminAuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Every tenant's audit trail and platform events (super admins)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AdminAuditEventFilter
    ordering_fields = ["created_at", "action"]
    ordering = ["-created_at"]
    permission_map = {"*": "audit.read_all"}

    def scope(self, queryset):
        # Platform-wide by design: the permission above admits super admins only.
        return queryset
