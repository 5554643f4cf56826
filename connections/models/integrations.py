import uuid

from django.conf import settings as django_settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from catalog import validators
from catalog.choices import CanonicalStatus
from integrations_site.crypto import EncryptedJSONField, EncryptedTextField
from tenants.models import TenantScopedQuerySet

from ..choices import (
    HEALTH_INTERVAL_RANGE,
    POLLING_INTERVAL_RANGE,
    RETRY_RANGE,
    TIMEOUT_RANGE,
    CheckError,
    CheckKind,
    CheckState,
    CredentialStatus,
    CredentialType,
    DisabledReason,
    Environment,
    HealthState,
    IntegrationStatus,
    UpdateMethod,
)


class IntegrationQuerySet(TenantScopedQuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)


# Config fields: what a ConfigVersion snapshots and a restore puts back.
CONFIG_FIELDS = (
    "name", "description", "environment", "api_base_url", "test_endpoint", "status_endpoint",
    "status_mapping", "update_method", "polling_interval_seconds", "timeout_seconds", "retry_count",
    "settings", "user_scoped", "search_enabled", "limit_monthly_budget", "limit_tokens",
    "limit_requests_per_minute", "health_check_interval_seconds", "status_items_path", "status_id_field",
    "status_field", "stream_endpoint",
)


class Integration(models.Model):
    """A tenant's instance of a provider: config, lifecycle and cached health."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="integrations")
    provider = models.ForeignKey(
        "catalog.IntegrationProvider", on_delete=models.PROTECT, related_name="integrations"
    )
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PRODUCTION)
    status = models.CharField(
        max_length=16, choices=IntegrationStatus.choices, default=IntegrationStatus.PENDING, db_index=True
    )
    health_state = models.CharField(max_length=16, choices=HealthState.choices, default=HealthState.UNKNOWN)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True, help_text="First failed check of the current streak.")
    failure_warned_at = models.DateTimeField(
        null=True, blank=True, help_text="When this failing streak's warning was sent (once per streak)."
    )
    disabled_reason = models.CharField(max_length=16, choices=DisabledReason.choices, blank=True, default="")
    last_success_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_error = models.JSONField(default=dict, blank=True, help_text="Code and message of the last failed check.")
    next_poll_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)

    api_base_url = models.URLField(max_length=500, blank=True, validators=[validators.validate_http_url])
    test_endpoint = models.CharField(max_length=500, blank=True, validators=[validators.validate_endpoint])
    status_endpoint = models.CharField(max_length=500, blank=True, validators=[validators.validate_endpoint])
    stream_endpoint = models.CharField(
        max_length=500, blank=True, validators=[validators.validate_endpoint],
        help_text="The event stream read when the update method is server-sent events.",
    )
    status_mapping = models.JSONField(default=dict, blank=True, validators=[validators.validate_status_mapping])
    update_method = models.CharField(max_length=16, choices=UpdateMethod.choices, default=UpdateMethod.POLLING)
    polling_interval_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(POLLING_INTERVAL_RANGE[0]), MaxValueValidator(POLLING_INTERVAL_RANGE[1])],
    )
    timeout_seconds = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(TIMEOUT_RANGE[0]), MaxValueValidator(TIMEOUT_RANGE[1])]
    )
    retry_count = models.PositiveIntegerField(
        default=3, validators=[MinValueValidator(RETRY_RANGE[0]), MaxValueValidator(RETRY_RANGE[1])]
    )
    health_check_interval_seconds = models.PositiveIntegerField(
        null=True, blank=True,
        validators=[MinValueValidator(HEALTH_INTERVAL_RANGE[0]), MaxValueValidator(HEALTH_INTERVAL_RANGE[1])],
        help_text="Seconds between scheduled checks; empty: the tenant policy's default check interval.",
    )
    status_items_path = models.CharField(
        max_length=200, blank=True,
        help_text=(
            "Dotted path to the list of items in the status answer "
            "('' = the root or its 'items'/'data'/'results')."
        ),
    )
    status_id_field = models.CharField(max_length=100, default="id")
    status_field = models.CharField(max_length=100, default="status")
    settings = models.JSONField(default=dict, blank=True)
    user_scoped = models.BooleanField(default=False)
    search_enabled = models.BooleanField(default=False)
    limit_monthly_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    limit_requests_per_minute = models.PositiveIntegerField(null=True, blank=True)

    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = IntegrationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=Q(deleted_at__isnull=True), name="integration_unique_live_name"
            ),
            models.CheckConstraint(
                condition=Q(polling_interval_seconds__gte=5) & Q(polling_interval_seconds__lte=300),
                name="integration_polling_interval_range",
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=1) & Q(timeout_seconds__lte=60), name="integration_timeout_range"
            ),
            models.CheckConstraint(condition=Q(retry_count__lte=10), name="integration_retry_range"),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="integration_tenant_created"),
            models.Index(fields=["next_check_at"], name="integration_next_check", condition=Q(deleted_at__isnull=True)),
            models.Index(fields=["next_poll_at"], name="integration_next_poll", condition=Q(deleted_at__isnull=True)),
        ]

    def __str__(self):
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def config_snapshot(self) -> dict:
        """The non-secret config, JSON-ready."""
        snapshot = {}
        for field in CONFIG_FIELDS:
            value = getattr(self, field)
            snapshot[field] = str(value) if field == "limit_monthly_budget" and value is not None else value
        return snapshot


class Credential(models.Model):
    """Secrets for one integration (and, when user-scoped, one user). Encrypted at rest."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="credentials")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="credentials")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    type = models.CharField(max_length=16, choices=CredentialType.choices)
    payload = EncryptedJSONField(null=True, blank=True, help_text="Encrypted; never displayed.")
    public_fields = models.JSONField(
        default=dict, blank=True, help_text="Non-secret parts of the credential (header name, username, scopes)."
    )
    hint = models.CharField(max_length=8, blank=True)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=CredentialStatus.choices, default=CredentialStatus.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_validated_at = models.DateTimeField(null=True, blank=True)
    validation_error = models.TextField(blank=True)
    refresh_lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker refreshing this token holds it until then."
    )
    refresh_failures = models.PositiveIntegerField(default=0)
    next_refresh_at = models.DateTimeField(null=True, blank=True, help_text="Earliest retry after a failed refresh.")
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration"], condition=Q(user__isnull=True), name="credential_one_per_integration"
            ),
            models.UniqueConstraint(
                fields=["integration", "user"], condition=Q(user__isnull=False), name="credential_one_per_user"
            ),
        ]

    def __str__(self):
        hint = f" …{self.hint}" if self.hint else ""
        return f"{self.get_type_display()}{hint} ({self.status})"

    @property
    def is_set(self) -> bool:
        if "payload" not in self.__dict__ and "payload_present" in self.__dict__:
            return self.payload_present  # loaded without the (encrypted) payload itself
        return self.payload is not None


class ConfigVersion(models.Model):
    """One numbered snapshot of an integration's non-secret config."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField(encoder=DjangoJSONEncoder)
    credential_version = models.PositiveIntegerField(null=True, blank=True)
    author = models.CharField(max_length=200, blank=True)
    author_user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["integration", "number"], name="config_version_unique_number")]

    def __str__(self):
        return f"{self.integration} v{self.number}"


class ConnectionCheck(models.Model):
    """One connection test or health check: timings, outcome and a typed error."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="checks")
    kind = models.CharField(max_length=16, choices=CheckKind.choices, default=CheckKind.TEST)
    state = models.CharField(max_length=16, choices=CheckState.choices, default=CheckState.COMPLETED)
    success = models.BooleanField(null=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=32, choices=CheckError.choices, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    sample = models.JSONField(null=True, blank=True)
    url = models.CharField(max_length=1000, blank=True)
    requested_by = models.CharField(max_length=200, blank=True)
    requested_by_user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["integration", "-created_at"], name="check_integration_created")]

    def __str__(self):
        outcome = {True: "ok", False: self.error_code or "failed", None: self.state}[self.success]
        return f"{self.get_kind_display()} {outcome}"

    @property
    def tested_at(self):
        return self.finished_at or self.created_at


class ExternalStatus(models.Model):
    """The latest status of one external item, raw and mapped to a canonical status."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="external_statuses")
    external_id = models.CharField(max_length=255)
    raw_status = models.CharField(max_length=255)
    canonical_status = models.CharField(max_length=16, choices=CanonicalStatus.choices)
    is_unknown = models.BooleanField(default=False, help_text="The raw value matched no mapping.")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    last_changed_at = models.DateTimeField()

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "external_id"], name="external_status_unique_item")
        ]
        indexes = [models.Index(fields=["integration", "canonical_status"], name="external_status_canonical")]
        verbose_name_plural = "external statuses"

    def __str__(self):
        return f"{self.external_id}: {self.canonical_status} ({self.raw_status})"


class StatusChange(models.Model):
    """One change of an external item's status, as seen by a poll."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="status_changes")
    external_id = models.CharField(max_length=255)
    old_canonical = models.CharField(max_length=16, choices=CanonicalStatus.choices)
    new_canonical = models.CharField(max_length=16, choices=CanonicalStatus.choices)
    old_raw = models.CharField(max_length=255)
    new_raw = models.CharField(max_length=255)
    changed_at = models.DateTimeField(db_index=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-changed_at"]
        indexes = [models.Index(fields=["integration", "-changed_at"], name="status_change_integration")]

    def __str__(self):
        return f"{self.external_id}: {self.old_canonical} → {self.new_canonical}"


class OAuthState(models.Model):
    """One authorization attempt: single use, short-lived, bound to integration, user and tenant.

    Only a hash of ``state`` is stored; the PKCE verifier is encrypted.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="oauth_states")
    user = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    for_user = models.BooleanField(default=False, help_text="The tokens belong to the user, not the tenant.")
    state_hash = models.CharField(max_length=64, unique=True)
    code_verifier = EncryptedTextField(blank=True, default="")
    return_url = models.URLField(max_length=2000)
    redirect_uri = models.URLField(max_length=500)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"OAuth state for {self.integration_id} ({'used' if self.used_at else 'open'})"


class UsageDaily(models.Model):
    """Per-integration usage for one day, flushed in batches (see connections.services.usage)."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="usage_days")
    date = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    webhooks = models.PositiveBigIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-date"]
        constraints = [models.UniqueConstraint(fields=["integration", "date"], name="usage_daily_unique_day")]
        verbose_name_plural = "daily usage"

    def __str__(self):
        return f"{self.integration_id} {self.date}: {self.requests} requests"
