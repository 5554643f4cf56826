"""Who holds which event stream, and what the stream has done: read by the API, the admin and /metrics."""
from django.db import models

from tenants.models import TenantScopedQuerySet

from ..choices import StreamState
from .integrations import Integration

RECENT_EVENT_IDS = 64  # applied event ids kept per stream, so a replay after a reconnect is not applied twice


class StreamLease(models.Model):
    """One integration's event stream: the consumer holding it until ``lease_until``, and its state.

    The holder alone writes the state fields; a consumer takes a lease that is
    free (no consumer) or expired, so a consumer that died loses its streams
    within a lease period. ``last_event_id`` is the last event *applied* (in
    the same transaction as its statuses), which a reconnect sends back.
    """

    integration = models.OneToOneField(
        Integration, primary_key=True, on_delete=models.CASCADE, related_name="stream_lease"
    )
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    consumer = models.CharField(max_length=200, blank=True, db_index=True, help_text="Empty when no one holds it.")
    lease_until = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=StreamState.choices, default=StreamState.CONNECTING)
    connected_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    last_event_id = models.TextField(blank=True)
    recent_event_ids = models.JSONField(default=list, blank=True)
    events_total = models.PositiveBigIntegerField(default=0, help_text="Events applied.")
    events_duplicate = models.PositiveBigIntegerField(default=0, help_text="Replayed events not applied again.")
    events_oversized = models.PositiveBigIntegerField(default=0, help_text="Events over the size limit, skipped.")
    events_invalid = models.PositiveBigIntegerField(default=0, help_text="Events whose data held no status.")
    reconnects = models.PositiveIntegerField(default=0)
    last_error = models.JSONField(default=dict, blank=True, help_text="Code, message and time of the last failure.")
    lag_seconds = models.FloatField(null=True, blank=True, help_text="Now minus the last event's own time.")
    restart_requested = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["integration_id"]
        indexes = [models.Index(fields=["lease_until"], name="stream_lease_until")]

    def __str__(self):
        return f"Stream of {self.integration_id} ({self.state})"


class StreamConsumer(models.Model):
    """A running ``run_streams`` process, seen at every lease round: consumers share the streams by it."""

    name = models.CharField(max_length=200, primary_key=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    streams = models.PositiveIntegerField(default=0, help_text="Streams held at the last round.")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name
