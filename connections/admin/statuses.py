"""Polled external statuses and their changes in the admin, read-only."""
from django.contrib import admin

from integrations_site.admin import ReadOnlyAdmin

from ..models import ExternalStatus, StatusChange


@admin.register(ExternalStatus)
class ExternalStatusAdmin(ReadOnlyAdmin):
    list_display = ("external_id", "integration", "tenant", "canonical_status", "raw_status", "is_unknown",
                    "last_changed_at", "last_seen_at")
    list_filter = ("canonical_status", "is_unknown", "tenant")
    search_fields = ("external_id", "raw_status", "integration__name")
    list_select_related = ("integration", "tenant")
    date_hierarchy = "last_seen_at"


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "external_id", "integration", "tenant", "old_canonical", "new_canonical",
                    "old_raw", "new_raw")
    list_filter = ("new_canonical", "old_canonical", "tenant")
    search_fields = ("external_id", "integration__name")
    list_select_related = ("integration", "tenant")
    date_hierarchy = "changed_at"
