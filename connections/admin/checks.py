"""Connection checks in the admin: the history of tests and health checks, read-only."""
from django.contrib import admin

from integrations_site.admin import HubStyleMixin, ReadOnlyAdmin

from ..models import ConnectionCheck
from .badges import check_outcome_badge


@admin.register(ConnectionCheck)
class ConnectionCheckAdmin(HubStyleMixin, ReadOnlyAdmin):
    list_display = (
        "created_at", "integration", "tenant", "kind", "outcome", "status_code", "latency_ms", "error_code",
    )
    list_filter = ("kind", "state", "success", "error_code", "tenant")
    search_fields = ("integration__name", "tenant__slug", "url", "requested_by")
    list_select_related = ("integration", "tenant")
    date_hierarchy = "created_at"

    @admin.display(description="outcome", ordering="success")
    def outcome(self, obj):
        return check_outcome_badge(obj)
