from django.db import models


class Role(models.TextChoices):
    TENANT_ADMIN = "tenant_admin", "Tenant admin"
    INTEGRATION_MANAGER = "integration_manager", "Integration manager"
    MEMBER = "member", "Member"


SUPER_ADMIN = "super_admin"
SUPER_ADMIN_GROUP = "super_admin"


class Plan(models.TextChoices):
    FREE = "free", "Free"
    STARTER = "starter", "Starter"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


PLAN_ORDER = [Plan.FREE, Plan.STARTER, Plan.PRO, Plan.ENTERPRISE]


def plan_rank(plan: str) -> int:
    return PLAN_ORDER.index(plan) if plan in PLAN_ORDER else 0


# An integration's own request settings and a tenant policy's defaults for them share these bounds (connections
# imports them; tenants may not import connections).
HEALTH_INTERVAL_RANGE = (10, 86400)
TIMEOUT_RANGE = (1, 60)
RETRY_RANGE = (0, 10)

# Bounds of each field of a tenant's policy (``TenantPolicy``); for the counts and hours 0 turns the rule off.
POLICY_BOUNDS = {
    "health_failure_threshold": (1, 100),
    "health_latency_budget_ms": (1, 600_000),
    "failure_warning_after": (0, 10_000),
    "auto_disable_after": (0, 10_000),
    "auto_disable_min_hours": (0, 8760),
    "default_check_interval_seconds": HEALTH_INTERVAL_RANGE,
    "default_timeout_seconds": TIMEOUT_RANGE,
    "default_retry_count": RETRY_RANGE,
}
POLICY_FIELDS = tuple(POLICY_BOUNDS)
