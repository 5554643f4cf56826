"""The catalog's provider admin, with what connections knows of each provider: its live integrations.

The catalog does not know integrations; connections replaces the catalog's registration
with this subclass (an app's admin module runs after those of the apps listed before it
in INSTALLED_APPS).
"""
from django.contrib import admin
from django.db.models import Count, Q

from catalog.admin import IntegrationProviderAdmin
from catalog.models import IntegrationProvider

from ..models import Integration


class ProviderAdmin(IntegrationProviderAdmin):
    """Adds the count of live integrations to the list, and lists them as what keeps a provider from a delete."""

    list_display = (*IntegrationProviderAdmin.list_display, "live_integrations")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _live=Count("integrations", filter=Q(integrations__deleted_at__isnull=True))
        )

    @admin.display(description="live integrations", ordering="_live")
    def live_integrations(self, obj):
        return getattr(obj, "_live", None)

    def get_deleted_objects(self, objs, request):
        # The service's rule, not the foreign key's: live integrations block the delete;
        # soft-deleted ones go with the provider.
        objs = list(objs)
        deleted, counts, perms, _ = super().get_deleted_objects(objs, request)
        live = Integration.objects.filter(provider__in=objs, deleted_at__isnull=True).select_related("tenant")
        protected = [f"Integration: {integration} (tenant {integration.tenant})" for integration in live]
        return deleted, counts, perms, protected


admin.site.unregister(IntegrationProvider)
admin.site.register(IntegrationProvider, ProviderAdmin)
