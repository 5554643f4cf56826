from django.contrib import admin

from integrations_site.admin import ChoiceBadges, HubStyleMixin, ReadOnlyAdmin, json_block

from .choices import Outcome
from .models import AuditEvent

OUTCOME_BADGES = ChoiceBadges(Outcome, {Outcome.SUCCESS: "ok", Outcome.FAILURE: "bad", Outcome.DENIED: "warn"})


@admin.register(AuditEvent)
class AuditEventAdmin(HubStyleMixin, ReadOnlyAdmin):
    """The audit trail: readable by staff, never written or removed from the admin."""

    list_display = ("created_at", "actor", "action", "target_type", "target_repr", "outcome_badge", "tenant",
                    "request_id")
    list_filter = ("action", "outcome", "tenant")
    search_fields = ("actor", "target_repr", "target_id", "request_id")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("created_at", "action", "outcome_badge", "tenant")}),
        ("Actor", {"fields": ("actor", "actor_user", "actor_api_key", "ip", "request_id")}),
        ("Target", {"fields": ("target_type", "target_id", "target_repr", "changes_display")}),
    )
    readonly_fields = (
        "created_at", "action", "outcome_badge", "tenant", "actor", "actor_user", "actor_api_key", "ip", "request_id",
        "target_type", "target_id", "target_repr", "changes_display",
    )

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj):
        return OUTCOME_BADGES(obj.outcome)

    @admin.display(description="changes (secret values redacted)")
    def changes_display(self, obj):
        return json_block(obj.changes)
