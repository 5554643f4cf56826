"""An integration's activity feed: audit events, connection checks and webhook events in one list.

It reads both connections and webhooks, so it lives above them (STYLE 4c): neither app
imports the other's models for it.
"""
from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Integration
from webhooks.models import WebhookEvent

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
