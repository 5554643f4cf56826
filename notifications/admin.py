from django import forms
from django.contrib import admin, messages
from django.urls import reverse

from integrations_site.admin import (
    ChoiceBadges,
    ObjectButtonsMixin,
    ReadOnlyAdmin,
    SecretOnceAddMixin,
    ServiceAdminMixin,
    adopt,
    json_block,
    object_button,
    secret_once_response,
    staff_actor,
)

from . import services
from .choices import EVENT_TYPES, AttemptOutcome, DeliveryStatus, NotificationType
from .models import NotificationAttempt, NotificationDelivery, NotificationEndpoint
from .validators import validate_url

DELIVERY_BADGES = ChoiceBadges(DeliveryStatus, {
    DeliveryStatus.PENDING: "info", DeliveryStatus.DELIVERED: "ok", DeliveryStatus.FAILED: "bad",
})
ATTEMPT_BADGES = ChoiceBadges(AttemptOutcome, {
    AttemptOutcome.DELIVERED: "ok", AttemptOutcome.RETRY: "warn", AttemptOutcome.FAILED: "bad",
})
REDELIVERABLE = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)
TYPE_LABELS = dict(NotificationType.choices)


class NotificationEndpointForm(forms.ModelForm):
    url = forms.CharField(max_length=500, validators=[validate_url],
                          help_text="An absolute http(s) URL; the outbound address policy applies to each delivery.")
    events = forms.MultipleChoiceField(choices=[(t, TYPE_LABELS[t]) for t in EVENT_TYPES],
                                       widget=forms.CheckboxSelectMultiple, initial=EVENT_TYPES)

    class Meta:
        model = NotificationEndpoint
        fields = ("tenant", "url", "events", "active", "description")


def _live(endpoint) -> bool:
    return endpoint.deleted_at is None


@admin.register(NotificationEndpoint)
class NotificationEndpointAdmin(ObjectButtonsMixin, SecretOnceAddMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Endpoints; the secret is never shown except once, right after it is created or rotated."""

    form = NotificationEndpointForm
    list_display = ("url", "tenant", "active", "disabled_reason", "events_display", "previous_secret_expires_at",
                    "created_at")
    list_filter = ("active", "disabled_reason", "tenant")
    search_fields = ("url", "description", "tenant__slug")
    list_select_related = ("tenant",)
    autocomplete_fields = ("tenant",)
    readonly_fields = ("secret_state", "disabled_reason", "disabled_at", "previous_secret_expires_at",
                       "secret_rotated_at", "created_at", "updated_at", "deleted_at")
    object_buttons = ("rotate_secret_button", "test_button")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("secret", "previous_secret")

    def get_readonly_fields(self, request, obj=None):
        return (("tenant",) if obj else ()) + self.readonly_fields

    @admin.display(description="events")
    def events_display(self, obj):
        return ", ".join(obj.events or []) or "—"

    @admin.display(description="secret")
    def secret_state(self, obj):
        return "set (hidden)" if obj.secret else "not set"

    def save_model(self, request, obj, form, change):
        actor = staff_actor(request)
        if change:
            data = {name: form.cleaned_data[name] for name in form.changed_data if name in services.ENDPOINT_FIELDS}
            adopt(obj, services.notification_endpoint_update(actor=actor, endpoint=obj, data=data))
            return
        data = {name: form.cleaned_data[name] for name in services.ENDPOINT_FIELDS if name in form.cleaned_data}
        endpoint, secret = services.notification_endpoint_create(actor=actor, tenant=form.cleaned_data["tenant"],
                                                                 data=data)
        adopt(obj, endpoint)
        request.secrets_once = [(endpoint.url, secret)]

    def delete_model(self, request, obj):
        services.notification_endpoint_delete(actor=staff_actor(request), endpoint=obj)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            services.notification_endpoint_delete(actor=staff_actor(request), endpoint=endpoint)

    @object_button(label="Rotate secret", slug="rotate-secret", applies=_live)
    def rotate_secret_button(self, request, endpoint):
        """A new secret, as the API's POST …/rotate-secret makes it, shown once on a page never cached."""
        endpoint, secret = services.notification_secret_rotate(actor=staff_actor(request), endpoint=endpoint)
        until = endpoint.previous_secret_expires_at
        return secret_once_response(
            request, title="Notification secret rotated", items=[(endpoint.url, secret)],
            back_url=reverse("admin:notifications_notificationendpoint_change", args=[endpoint.pk]),
            note=f"Deliveries are signed with the previous secret too until {until:%Y-%m-%d %H:%M} UTC." if until
            else "There was no previous secret to keep.",
        )

    @object_button(label="Send test ping", slug="test", applies=_live)
    def test_button(self, request, endpoint):
        """A signed ``ping`` now, as the API's POST …/test sends it; says how it went."""
        delivery = services.notification_endpoint_test(actor=staff_actor(request), endpoint=endpoint)
        if delivery.status == DeliveryStatus.DELIVERED:
            self.message_user(request, f"Ping delivered: {delivery.response_status} in {delivery.latency_ms} ms.",
                              messages.SUCCESS)
        else:
            error = delivery.last_error or {}
            self.message_user(request, f"Ping failed: {error.get('code')}: {error.get('message')}", messages.WARNING)


class NotificationAttemptInline(admin.TabularInline):
    model = NotificationAttempt
    fields = ("attempted_at", "outcome_badge", "response_status", "latency_ms", "error_code", "error_message")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="outcome")
    def outcome_badge(self, obj):
        return ATTEMPT_BADGES(obj.outcome)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ObjectButtonsMixin, ServiceAdminMixin, ReadOnlyAdmin):
    list_display = ("created_at", "type", "endpoint", "tenant", "status_badge", "attempts", "response_status",
                    "latency_ms", "next_attempt_at")
    list_filter = ("status", "type", "tenant", "created_at")
    search_fields = ("id", "notification_id", "endpoint__url", "tenant__slug")
    list_select_related = ("endpoint", "tenant")
    date_hierarchy = "created_at"
    actions = ("redeliver",)
    object_buttons = ("redeliver_button",)
    service_object_kwarg = "delivery"
    inlines = (NotificationAttemptInline,)
    fields = ("id", "notification_id", "type", "endpoint", "tenant", "status_badge", "attempts", "response_status",
              "latency_ms", "last_error_display", "next_attempt_at", "delivered_at", "created_at", "updated_at",
              "payload_display")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint", "tenant").defer(
            "endpoint__secret", "endpoint__previous_secret")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return DELIVERY_BADGES(obj.status)

    @admin.display(description="last error")
    def last_error_display(self, obj):
        return json_block(obj.last_error) if obj.last_error else "—"

    @admin.display(description="body sent")
    def payload_display(self, obj):
        return json_block(obj.payload)

    @admin.action(description="Redeliver selected deliveries", permissions=["view"])
    def redeliver(self, request, queryset):
        self.run_per_object(request, queryset, services.delivery_redeliver, "Queued again")

    @object_button(label="Redeliver", slug="redeliver", applies=lambda delivery: delivery.status in REDELIVERABLE)
    def redeliver_button(self, request, delivery):
        """Send the delivery again, as the API's POST …/redeliver does (attempts start over)."""
        services.delivery_redeliver(actor=staff_actor(request), delivery=delivery)
        self.message_user(request, "Queued again: the delivery is pending and will be sent.", messages.SUCCESS)
