"""Event streams in the admin: who holds which stream and what it has done (read-only), the consumers,
the "Stream" fieldset of an integration, the "Restart stream" action and button."""
from django.contrib import admin, messages

from integrations_site.admin import HubStyleMixin, ReadOnlyAdmin, error_in_words, object_button, staff_actor

from ..choices import UpdateMethod
from ..models import StreamConsumer, StreamLease
from ..services.streams import stream_restart, stream_state
from .badges import STREAM_BADGES

STREAM_FIELDS = (
    "stream_state_label", "stream_consumer", "stream_connected_at", "stream_last_event_at", "stream_last_event_id",
    "stream_events_total", "stream_reconnects", "stream_last_error",
)


def restart_streams(model_admin, request, integrations) -> None:
    """Ask ``stream_restart`` for these integrations as the staff member, and say how many streams were asked."""
    integrations = list(integrations)
    asked = stream_restart(integrations=integrations, actor=staff_actor(request))
    model_admin.message_user(request, f"Asked {asked} stream(s) to restart.", messages.SUCCESS)
    if len(integrations) > asked:
        model_admin.message_user(
            request, f"Not restarted, no stream: {len(integrations) - asked} integration(s).", messages.WARNING
        )


class IntegrationStreamAdminMixin:
    """For ``IntegrationAdmin``: the read-only "Stream" fieldset (the API's answer, ``stream_state``), shown
    when the integration reads an event stream or has a lease, and the "Restart stream" action and button."""

    stream_fields = STREAM_FIELDS

    def stream_fieldset(self, obj):
        """The fieldset to add to the change page of ``obj``, or None when it has no stream to show."""
        if obj is None or obj.pk is None:
            return None
        if obj.update_method != UpdateMethod.SSE and self._lease(obj) is None:
            return None
        return ("Stream", {"fields": self.stream_fields})

    @staticmethod
    def _lease(obj) -> StreamLease | None:
        if not hasattr(obj, "_stream_lease_row"):
            obj._stream_lease_row = StreamLease.objects.filter(integration_id=obj.pk).first()
        return obj._stream_lease_row

    def _stream(self, obj) -> dict:
        if not hasattr(obj, "_stream_answer"):
            obj._stream_answer = stream_state(obj, lease=self._lease(obj))
        return obj._stream_answer

    @admin.display(description="state")
    def stream_state_label(self, obj):
        return STREAM_BADGES(self._stream(obj)["state"])

    @admin.display(description="consumer")
    def stream_consumer(self, obj):
        return self._stream(obj)["consumer"]

    @admin.display(description="connected at")
    def stream_connected_at(self, obj):
        return self._stream(obj)["connected_at"]

    @admin.display(description="last event at")
    def stream_last_event_at(self, obj):
        return self._stream(obj)["last_event_at"]

    @admin.display(description="last event id")
    def stream_last_event_id(self, obj):
        return self._stream(obj)["last_event_id"]

    @admin.display(description="events applied")
    def stream_events_total(self, obj):
        return self._stream(obj)["events_total"]

    @admin.display(description="reconnects")
    def stream_reconnects(self, obj):
        return self._stream(obj)["reconnects"]

    @admin.display(description="last error")
    def stream_last_error(self, obj):
        return error_in_words(self._stream(obj)["last_error"])

    @admin.action(description="Restart stream")
    def restart_stream(self, request, queryset):
        restart_streams(self, request, queryset.select_related("tenant"))

    @object_button(label="Restart stream", slug="restart-stream",
                   applies=lambda obj: obj.update_method == UpdateMethod.SSE and not obj.is_deleted)
    def restart_stream_button(self, request, obj):
        if stream_restart(integrations=[obj], actor=staff_actor(request)):
            self.message_user(request, "Asked the stream to restart: its consumer reconnects within a lease round.",
                              messages.SUCCESS)
        else:
            self.message_user(request, "No consumer holds this stream yet: there is nothing to restart.",
                              messages.WARNING)


@admin.register(StreamLease)
class StreamLeaseAdmin(HubStyleMixin, ReadOnlyAdmin):
    """The streams: one lease per integration, written by the ``run_streams`` consumers only."""

    list_display = ("integration", "tenant", "state_badge", "consumer", "last_event_at", "events_total",
                    "reconnects", "lease_until")
    list_filter = ("state",)
    search_fields = ("integration__name",)
    list_select_related = ("integration", "tenant")
    actions = ("restart_stream",)
    fields = (
        "integration", "tenant", "state_badge", "consumer", "lease_until", "connected_at", "last_event_at",
        "last_event_id", "events_total", "events_duplicate", "events_oversized", "events_invalid", "reconnects",
        "last_error_in_words", "lag_seconds", "restart_requested", "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj):
        return STREAM_BADGES(obj.state)

    @admin.display(description="last error")
    def last_error_in_words(self, obj):
        return error_in_words(obj.last_error)

    @admin.action(description="Restart stream")
    def restart_stream(self, request, queryset):
        restart_streams(self, request, (lease.integration for lease in queryset.select_related("integration__tenant")))


@admin.register(StreamConsumer)
class StreamConsumerAdmin(ReadOnlyAdmin):
    """The running ``run_streams`` processes, as each last said at its lease round."""

    list_display = ("name", "hostname", "pid", "started_at", "seen_at", "streams")
    search_fields = ("name", "hostname")
