"""Reads that more than one view needs."""
from django.db.models import Prefetch

from .models import Credential, Integration


def integration_list_queryset():
    """Live integrations with provider and tenant-wide credential loaded (no N+1)."""
    return (
        Integration.objects.live()
        .select_related("provider")
        .prefetch_related(
            Prefetch("credentials", queryset=Credential.objects.filter(user__isnull=True), to_attr="tenant_credentials")
        )
    )


def tenant_credential_of(integration: Integration) -> Credential | None:
    return Credential.objects.filter(integration=integration, user__isnull=True).first()


def integration_health(integration: Integration) -> dict:
    """The cached health state plus the success rate of the last 24 hours (one query)."""
    from datetime import timedelta

    from django.db.models import Count, Q
    from django.utils import timezone

    from .models import ConnectionCheck

    since = timezone.now() - timedelta(hours=24)
    stats = ConnectionCheck.objects.filter(
        integration=integration, created_at__gte=since, success__isnull=False
    ).aggregate(total=Count("id"), ok=Count("id", filter=Q(success=True)))
    last_error = integration.last_error or None
    return {
        "state": integration.health_state,
        "health_checked_at": integration.health_checked_at,
        "consecutive_failures": integration.consecutive_failures,
        "last_success_at": integration.last_success_at,
        "last_error": {"code": last_error["code"], "message": last_error["message"]} if last_error else None,
        "success_rate_24h": round(stats["ok"] / stats["total"], 4) if stats["total"] else None,
        "checks_24h": stats["total"],
        "next_check_at": integration.next_check_at,
    }
