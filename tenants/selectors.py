"""Reads of tenant data that other apps need: the effective policy of a tenant.

The one place where a tenant's policy falls back to the platform settings. Everything that reads a
threshold, a budget, the auto-disable rules or the request defaults asks ``effective_policy`` (one
tenant, one query) or ``effective_policies`` (many tenants, one query: the batch paths resolve each
tenant once per batch, not once per row). ``platform_policy`` is the settings alone, no query.
"""
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from .choices import POLICY_FIELDS
from .models import Tenant, TenantPolicy

# The platform setting each policy field falls back to (read when asked, so an override applies at once).
PLATFORM_SETTINGS = {
    "health_failure_threshold": "HEALTH_FAILURE_THRESHOLD",
    "health_latency_budget_ms": "HEALTH_LATENCY_BUDGET_MS",
    "failure_warning_after": "FAILURE_WARNING_AFTER",
    "auto_disable_after": "AUTO_DISABLE_AFTER",
    "auto_disable_min_hours": "AUTO_DISABLE_MIN_HOURS",
    "default_check_interval_seconds": "HEALTH_CHECK_INTERVAL_SECONDS",
    "default_timeout_seconds": "INTEGRATION_TIMEOUT_SECONDS",
    "default_retry_count": "INTEGRATION_RETRY_COUNT",
}


@dataclass(frozen=True)
class Policy:
    """A tenant's effective policy: its own values, else the platform's; ``inherited`` names the latter."""

    health_failure_threshold: int
    health_latency_budget_ms: int
    failure_warning_after: int  # 0: no warning
    auto_disable_after: int  # 0: never auto-disabled
    auto_disable_min_hours: int
    default_check_interval_seconds: int
    default_timeout_seconds: int
    default_retry_count: int
    inherited: tuple[str, ...] = ()


def _platform_values() -> dict:
    return {name: getattr(settings, setting) for name, setting in PLATFORM_SETTINGS.items()}


def platform_policy() -> Policy:
    """The platform settings alone (every field inherited); no query."""
    return Policy(**_platform_values(), inherited=POLICY_FIELDS)


def policy_of(row: TenantPolicy | None, platform: dict | None = None) -> Policy:
    """The effective policy of a loaded ``TenantPolicy`` row (None: the tenant has none)."""
    values = dict(platform) if platform is not None else _platform_values()
    inherited = []
    for name in POLICY_FIELDS:
        own = getattr(row, name) if row is not None else None
        if own is None:
            inherited.append(name)
        else:
            values[name] = own
    return Policy(**values, inherited=tuple(inherited))


def effective_policy(tenant_or_id) -> Policy:
    """The effective policy of one tenant (a Tenant or its id): one query."""
    tenant_id = tenant_or_id.pk if isinstance(tenant_or_id, Tenant) else tenant_or_id
    return policy_of(TenantPolicy.objects.filter(tenant_id=tenant_id).first())


def effective_policies(tenant_ids: Iterable) -> dict:
    """Tenant id → effective policy for each of ``tenant_ids`` (keyed as given): one query whatever their
    number, none when there is no id. A tenant without a policy row gets the platform's."""
    wanted = set(tenant_ids)
    if not wanted:
        return {}
    rows = {row.tenant_id: row for row in TenantPolicy.objects.filter(tenant_id__in=wanted)}
    platform = _platform_values()
    return {tenant_id: policy_of(rows.get(_as_uuid(tenant_id)), platform) for tenant_id in wanted}


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
