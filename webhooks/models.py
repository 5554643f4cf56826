import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from catalog.choices import SignatureScheme
from integrations_site.crypto import EncryptedTextField
from tenants.models import TenantScopedQuerySet

from .choices import DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_SECONDS, MAX_BODY_BYTES_LIMIT, EventStatus


class EndpointQuerySet(TenantScopedQuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)


class WebhookEndpoint(models.Model):
    """An inbound URL (``/hooks/{path}``) for one integration, with its signing secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_endpoints")
    integration = models.ForeignKey(
        "connections.Integration", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    path = models.SlugField(max_length=100, unique=True)
    secret = EncryptedTextField(blank=True, default="")
    previous_secret = EncryptedTextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    verify_signature = models.BooleanField(default=True)
    signature_scheme = models.CharField(
        max_length=32, choices=SignatureScheme.choices, default=SignatureScheme.HMAC_SHA256
    )
    signature_header = models.CharField(
        max_length=100, blank=True, help_text="Header holding the signature (hmac_sha256 only; default X-Signature)."
    )
    tolerance_seconds = models.PositiveIntegerField(
        default=DEFAULT_TOLERANCE_SECONDS, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    max_body_bytes = models.PositiveIntegerField(
        default=DEFAULT_MAX_BODY_BYTES, validators=[MinValueValidator(1), MaxValueValidator(MAX_BODY_BYTES_LIMIT)]
    )
    dedupe = models.BooleanField(default=True, help_text="Store a delivery once (by its id, else a body hash).")
    rate_limit_per_minute = models.PositiveIntegerField(default=6000, validators=[MinValueValidator(1)])
    signature_failures = models.PositiveBigIntegerField(default=0)
    last_received_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} (/hooks/{self.path})"

    @property
    def url_path(self) -> str:
        return f"/hooks/{self.path}"

    def verifying_secrets(self, now=None) -> list[str]:
        """The current secret, and the previous one while its grace period lasts."""
        now = now or timezone.now()
        secrets = [self.secret] if self.secret else []
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(self.previous_secret)
        return secrets


class WebhookEvent(models.Model):
    """One accepted delivery: the exact raw body and filtered headers, and its processing state."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="events")
    # Indexed by webhook_event_tenant (tenant, -received_at), which serves every lookup by tenant:
    # one index fewer for each delivery to update.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    dedupe_key = models.CharField(max_length=255, null=True, blank=True)
    body = models.BinaryField()
    content_type = models.CharField(max_length=200, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=16, choices=EventStatus.choices, default=EventStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "dedupe_key"], condition=Q(dedupe_key__isnull=False), name="webhook_event_dedupe"
            )
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhook_event_status"),
            models.Index(fields=["tenant", "-received_at"], name="webhook_event_tenant"),
        ]

    def __str__(self):
        return f"{self.endpoint_id} {self.received_at:%Y-%m-%d %H:%M:%S} {self.status}"
