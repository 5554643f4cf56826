"""Connection checks in the admin: the history of tests and health checks, read-only."""
from django.contrib import admin

from integrations_site.admin import ReadOnlyAdmin

from ..models import ConnectionCheck


@admin.register(ConnectionCheck)
class ConnectionCheckAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "integration", "tenant", "kind", "state", "success", "status_code", "latency_ms", "error_code",
    )
    list_filter = ("kind", "state", "success", "error_code", "tenant")
    search_fields = ("integration__name", "tenant__slug", "url", "requested_by")
    list_select_related = ("integration", "tenant")
    date_hierarchy = "created_at"
