import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from .choices import POLICY_BOUNDS, Plan, Role


class TenantScopedQuerySet(models.QuerySet):
    """The only way to scope tenant-owned rows: ``Model.objects.for_tenant(tenant)``."""

    def for_tenant(self, tenant):
        if tenant is None:
            return self.none()
        return self.filter(tenant=tenant)


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.FREE)
    is_active = models.BooleanField(default=True)
    allowed_return_hosts = models.JSONField(
        default=list, blank=True, help_text="Host names an OAuth return URL may point to (exact match)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]
        ordering = ["tenant__name", "user__username"]

    def __str__(self):
        return f"{self.user} @ {self.tenant} ({self.role})"


class ApiKey(models.Model):
    """A tenant API key. Only a SHA-256 hash is stored; the key is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120)
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.MEMBER)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.display})"

    @property
    def display(self) -> str:
        return f"ihk_{self.prefix}_…{self.last4}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_usable(self) -> bool:
        return not self.is_revoked and not self.is_expired


def _policy_field(name: str, help_text: str) -> models.PositiveIntegerField:
    low, high = POLICY_BOUNDS[name]
    return models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(low), MaxValueValidator(high)],
        help_text=f"{help_text} ({low}–{high}; empty: the platform setting).",
    )


class TenantPolicy(models.Model):
    """A tenant's health, auto-disable and request-default policy. Every field is optional: an empty one is
    inherited from the platform settings (``tenants.selectors.effective_policy`` resolves them)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="policy")
    health_failure_threshold = _policy_field("health_failure_threshold", "Failed checks in a row before unhealthy")
    health_latency_budget_ms = _policy_field("health_latency_budget_ms", "A slower success is degraded")
    failure_warning_after = _policy_field("failure_warning_after", "Failed checks in a row before a warning; 0 = off")
    auto_disable_after = _policy_field("auto_disable_after", "Failed checks in a row before auto-disable; 0 = off")
    auto_disable_min_hours = _policy_field("auto_disable_min_hours", "Hours of failing before auto-disable")
    default_check_interval_seconds = _policy_field(
        "default_check_interval_seconds", "Seconds between scheduled checks of an integration without its own"
    )
    default_timeout_seconds = _policy_field("default_timeout_seconds", "Timeout a new integration gets")
    default_retry_count = _policy_field("default_retry_count", "Retries a new integration gets")
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantScopedQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "tenant policies"

    def __str__(self):
        return f"Policy of {self.tenant}"
