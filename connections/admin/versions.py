"""Config versions in the admin: read-only, inline on their integration and in a list of their own."""
from django.contrib import admin

from integrations_site.admin import ReadOnlyAdmin

from ..models import ConfigVersion


class ConfigVersionInline(admin.TabularInline):
    model = ConfigVersion
    extra = 0
    fields = ("number", "reason", "author", "credential_version", "created_at")
    readonly_fields = fields
    ordering = ("-number",)
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ConfigVersion)
class ConfigVersionAdmin(ReadOnlyAdmin):
    list_display = ("integration", "number", "tenant", "reason", "author", "credential_version", "created_at")
    list_filter = ("tenant",)
    search_fields = ("integration__name", "author", "reason", "tenant__slug")
    list_select_related = ("integration", "tenant")
    date_hierarchy = "created_at"
    readonly_fields = (
        "integration", "tenant", "number", "snapshot", "credential_version", "author", "author_user", "reason",
        "created_at",
    )
    fields = readonly_fields
