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
