"""Reads that more than one view needs."""
from django.db.models import BooleanField, ExpressionWrapper, Prefetch, Q

from .models import Credential, Integration

# Provider columns an integration's answer never shows: not loaded (nor decrypted) per row.
PROVIDER_DEFERRED = tuple(
    f"provider__{name}" for name in (
        "description", "capabilities", "supported_sync_directions", "searchable_entities", "available_entities",
        "oauth_config", "oauth_client_secret", "credential_fields", "default_status_mapping",
    )
)


def integration_list_queryset():
    """Live integrations with provider and tenant-wide credential loaded (no N+1).

    The credential's encrypted payload is not loaded: answers show only its
    type, hint, status and version, and whether it is set.
    """
    credentials = (
        Credential.objects.filter(user__isnull=True).defer("payload")
        .annotate(payload_present=ExpressionWrapper(Q(payload__isnull=False), output_field=BooleanField()))
    )
    return (
        Integration.objects.live()
        .select_related("provider")
        .defer(*PROVIDER_DEFERRED)
        .prefetch_related(Prefetch("credentials", queryset=credentials, to_attr="tenant_credentials"))
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


ACTIVITY_RANGES = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}
# Audit actions shown in the activity feed, by activity type.
ACTIVITY_AUDIT_TYPES = {
    "integration.created": "config", "integration.updated": "config", "integration.restored": "config",
    "integration.enabled": "config", "integration.disabled": "config",
    "credential.set": "connect", "credential.updated": "connect", "oauth.connected": "connect",
    "oauth.refreshed": "connect", "oauth.connect_failed": "connect", "oauth.refresh_failed": "connect",
    "credential.removed": "disconnect", "oauth.disconnected": "disconnect",
    "integration.polled": "sync",
}


def integration_activity(integration: Integration, *, time_range: str = "24h", limit: int = 50) -> dict:
    """One feed from audit events, checks and webhook events, newest first.

    ``{activities: [{id, type, status, timestamp, details}], total}``; each
    source is read once (its newest ``limit`` rows and its count).
    """
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import AuditEvent
    from webhooks.models import WebhookEvent

    from .models import ConnectionCheck

    since = timezone.now() - timedelta(hours=ACTIVITY_RANGES[time_range])
    audits = AuditEvent.objects.filter(
        target_id=str(integration.pk), action__in=list(ACTIVITY_AUDIT_TYPES), created_at__gte=since
    )
    checks = ConnectionCheck.objects.filter(integration=integration, created_at__gte=since)
    events = WebhookEvent.objects.filter(endpoint__integration=integration, received_at__gte=since)
    activities = [
        {"id": str(a.pk), "type": ACTIVITY_AUDIT_TYPES[a.action],
         "status": "success" if a.outcome == "success" else "failed", "timestamp": a.created_at,
         "details": {"action": a.action, "actor": a.actor}}
        for a in audits.order_by("-created_at")[:limit]
    ] + [
        {"id": str(c.pk), "type": "test", "status": _check_status(c), "timestamp": c.created_at,
         "details": {"kind": c.kind, "status_code": c.status_code, "latency_ms": c.latency_ms,
                     "error_code": c.error_code or None}}
        for c in checks.order_by("-created_at")[:limit]
    ] + [
        {"id": str(e.pk), "type": "webhook", "status": _event_status(e.status), "timestamp": e.received_at,
         "details": {"endpoint_id": str(e.endpoint_id), "attempts": e.attempts}}
        for e in events.defer("body", "headers").order_by("-received_at")[:limit]
    ]
    activities.sort(key=lambda a: a["timestamp"], reverse=True)
    total = audits.count() + checks.count() + events.count()
    return {"activities": activities[:limit], "total": total}


def _check_status(check) -> str:
    if check.success is None:
        return "running"
    return "success" if check.success else "failed"


def _event_status(status: str) -> str:
    return {"processed": "success", "failed": "failed"}.get(status, "running")


def integration_widget_status(integration: Integration) -> dict:
    """The status widget: where the integration stands, in one small object."""
    credential = tenant_credential_of(integration)
    error = (integration.last_error or {}).get("message") if integration.status == "error" else None
    if credential is not None and credential.status in ("expired", "revoked", "error") and not error:
        error = credential.validation_error or f"The credential is {credential.status}."
    return {
        "integration_id": integration.pk,
        "name": integration.name,
        "status": integration.status,
        "connection_status": credential.status if credential is not None and credential.is_set else None,
        "health_state": integration.health_state,
        "last_connected_at": integration.last_success_at,
        "last_sync_at": integration.last_polled_at,
        "error": error,
    }
