import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from integrations_site.crypto import EncryptedTextField
from tenants.models import TenantScopedQuerySet

from .choices import (
    DESCRIPTION_MAX_LENGTH,
    URL_MAX_LENGTH,
    AttemptOutcome,
    DeliveryStatus,
    DisabledReason,
    NotificationType,
)


class EndpointQuerySet(TenantScopedQuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)


class NotificationEndpoint(models.Model):
    """Where a tenant is told of health and credential events: a URL, the types it wants, a signing secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="notification_endpoints")
    url = models.CharField(max_length=URL_MAX_LENGTH, help_text="An absolute http(s) URL; deliveries are POSTed here.")
    events = models.JSONField(default=list, blank=True, help_text="The notification types sent to this URL.")
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True)
    secret = EncryptedTextField(blank=True, default="")
    previous_secret = EncryptedTextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=16, choices=DisabledReason.choices, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.url

    def signing_secrets(self, now=None) -> list[str]:
        """The current secret, and the previous one while its grace period lasts (both sign)."""
        now = now or timezone.now()
        secrets = [self.secret] if self.secret else []
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(self.previous_secret)
        return secrets


class NotificationDelivery(models.Model):
    """One notification to one endpoint: its signed body, its state, and when it is tried next.

    ``notification_id`` is the ``webhook-id`` header: the same on every attempt and redelivery, so a
    receiver can drop a repeat.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    endpoint = models.ForeignKey(NotificationEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    notification_id = models.CharField(max_length=64)
    type = models.CharField(max_length=64, choices=NotificationType.choices)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts since the delivery was (re)queued.")
    response_status = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.JSONField(null=True, blank=True, help_text='{"code", "message"} of the last failed attempt.')
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "notification_id"], name="notification_delivery_once"),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_delivery_due"),
            models.Index(fields=["tenant", "-created_at"], name="notification_delivery_tenant"),
        ]

    def __str__(self):
        return f"{self.type} → {self.endpoint_id} ({self.status})"


class NotificationAttempt(models.Model):
    """One POST of a delivery: when, what came back, how long it took."""

    delivery = models.ForeignKey(NotificationDelivery, on_delete=models.CASCADE, related_name="history")
    attempted_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self):
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.outcome}"


class NotificationMarker(models.Model):
    """A notification that is sent once (per credential and expiry window, per failing streak): its key."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="notification_marker_once")]

    def __str__(self):
        return self.key
