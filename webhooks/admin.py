
from django import forms
from django.contrib import admin, messages
from django.db.models.functions import Length
from django.urls import reverse
from django.utils.html import format_html

from integrations_site import bounds
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
from .choices import EventStatus
from .models import WebhookEndpoint, WebhookEvent

EVENT_BADGES = ChoiceBadges(EventStatus, {
    EventStatus.PENDING: "info", EventStatus.PROCESSING: "info", EventStatus.PROCESSED: "ok",
    EventStatus.FAILED: "bad",
})
# What a replay can take back to pending (the service refuses an event already pending; one being
# processed is left to finish).
REPLAYABLE = (EventStatus.PROCESSED, EventStatus.FAILED)


class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = (
            "tenant", "integration", "name", "description", "path", "active", "verify_signature", "signature_scheme",
            "signature_header", "tolerance_seconds", "max_body_bytes", "dedupe", "rate_limit_per_minute",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "path" in self.fields:
            self.fields["path"].required = False
            self.fields["path"].help_text = "Leave blank for a random path (128 bits)."

    def clean(self):
        cleaned = super().clean()
        tenant, integration = cleaned.get("tenant"), cleaned.get("integration")
        if tenant and integration and integration.tenant_id != tenant.pk:
            self.add_error("integration", "The integration belongs to another tenant.")
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ObjectButtonsMixin, SecretOnceAddMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Endpoints; the secret is never shown except once, right after it is created or rotated."""

    form = WebhookEndpointForm
    list_display = ("name", "tenant", "integration", "signature_scheme", "active", "url_path", "signature_failures",
                    "previous_secret_expires_at", "created_at")
    list_filter = ("active", "signature_scheme", "verify_signature", "tenant")
    search_fields = ("name", "path", "integration__name", "tenant__slug")
    list_select_related = ("tenant", "integration")
    autocomplete_fields = ("tenant", "integration")
    readonly_fields = ("url_path", "secret_state", "previous_secret_expires_at", "secret_rotated_at",
                       "signature_failures", "created_at", "updated_at", "deleted_at")
    date_hierarchy = "created_at"
    actions = ("rotate_secret",)
    object_buttons = ("rotate_secret_button",)
    service_object_kwarg = "endpoint"

    def get_readonly_fields(self, request, obj=None):
        # The tenant, integration and path of an existing endpoint do not change.
        fixed = ("tenant", "integration", "path") if obj else ()
        return fixed + self.readonly_fields

    @admin.display(description="secret")
    def secret_state(self, obj):
        return "set (hidden)" if obj.secret else "not set"

    def save_model(self, request, obj, form, change):
        actor = staff_actor(request)
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in services.ENDPOINT_FIELDS}
        if change:
            adopt(obj, services.endpoint_update(actor=actor, endpoint=obj, data=data))
            return
        data = {k: v for k, v in form.cleaned_data.items() if k in services.ENDPOINT_FIELDS or k == "path"}
        endpoint, secret = services.endpoint_create(
            actor=actor, tenant=form.cleaned_data["tenant"], integration=form.cleaned_data["integration"], data=data
        )
        adopt(obj, endpoint)
        request.secrets_once = [(f"{endpoint.name} ({endpoint.url_path})", secret)]

    def delete_model(self, request, obj):
        services.endpoint_delete(actor=staff_actor(request), endpoint=obj)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            services.endpoint_delete(actor=staff_actor(request), endpoint=endpoint)

    @admin.action(description="Rotate secret (the old one stays valid for 24 h)")
    def rotate_secret(self, request, queryset):
        items = []
        for endpoint in queryset:
            endpoint, secret = services.webhook_secret_rotate(actor=staff_actor(request), endpoint=endpoint)
            items.append((f"{endpoint.name} ({endpoint.url_path})", secret))
        return secret_once_response(
            request, title="Webhook secrets rotated", items=items, back_url=request.get_full_path(),
            note="The previous secrets keep verifying for 24 hours.",
        )

    @object_button(label="Rotate secret", slug="rotate-secret", applies=lambda endpoint: endpoint.deleted_at is None)
    def rotate_secret_button(self, request, endpoint):
        """A new secret, as the API's POST …/rotate-secret makes it, shown once on a page never cached."""
        endpoint, secret = services.webhook_secret_rotate(actor=staff_actor(request), endpoint=endpoint)
        until = endpoint.previous_secret_expires_at
        return secret_once_response(
            request, title="Webhook secret rotated", items=[(f"{endpoint.name} ({endpoint.url_path})", secret)],
            back_url=reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]),
            note=f"The previous secret keeps verifying until {until:%Y-%m-%d %H:%M} UTC." if until else
                 "There was no previous secret to keep.",
        )


@admin.register(WebhookEvent)
class WebhookEventAdmin(ObjectButtonsMixin, ServiceAdminMixin, ReadOnlyAdmin):
    list_display = ("received_at", "endpoint", "tenant", "status_badge", "attempts", "size", "dedupe_key",
                    "processed_at")
    list_filter = ("status", "endpoint", "tenant", "received_at")
    search_fields = ("id", "dedupe_key", "endpoint__name", "endpoint__path")
    list_select_related = ("endpoint", "tenant")
    date_hierarchy = "received_at"
    actions = ("replay",)
    object_buttons = ("replay_button",)
    service_object_kwarg = "event"
    fields = ("id", "endpoint", "tenant", "status_badge", "attempts", "last_error", "received_at", "processed_at",
              "next_attempt_at", "dedupe_key", "content_type", "source_ip", "headers_display", "body_display",
              "result_display")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("body").annotate(_size=Length("body"))

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return EVENT_BADGES(obj.status)

    @admin.display(description="bytes", ordering="_size")
    def size(self, obj):
        return getattr(obj, "_size", None)

    @admin.display(description="body")
    def body_display(self, obj):
        raw = bytes(obj.body)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return format_html("<i>{} bytes, not UTF-8</i>", len(raw))
        try:
            return json_block(bounds.loads(raw))
        except bounds.JsonRefused:  # not JSON, or not JSON we parse (too deep): shown as the text it is
            return format_html("<pre>{}</pre>", text)

    @admin.display(description="headers (Authorization and cookies are never stored)")
    def headers_display(self, obj):
        return json_block(obj.headers)

    @admin.display(description="result")
    def result_display(self, obj):
        return json_block(obj.result)

    @admin.action(description="Replay selected events", permissions=["view"])
    def replay(self, request, queryset):
        self.run_per_object(request, queryset, services.event_replay, "Queued again")

    @object_button(label="Replay", slug="replay", applies=lambda event: event.status in REPLAYABLE)
    def replay_button(self, request, event):
        """Queue the event again, as the API's POST …/replay does (attempts start over)."""
        services.event_replay(actor=staff_actor(request), event=event)
        self.message_user(request, "Queued again: the event is pending and will be processed.", messages.SUCCESS)
