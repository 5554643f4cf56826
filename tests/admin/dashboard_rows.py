"""Rows for the dashboard tests, with the times they say (``created_at`` is auto_now_add: set after the insert)."""
from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Credential, Integration, StreamLease
from webhooks.models import WebhookEndpoint, WebhookEvent


def set_created(model, objs, when) -> None:
    model.objects.filter(pk__in=[obj.pk for obj in objs]).update(created_at=when)


def integration(tenant, provider, name, *, created=None, **fields) -> Integration:
    row = Integration.objects.create(tenant=tenant, provider=provider, name=name, **fields)
    if created is not None:
        set_created(Integration, [row], created)
    return row


def checks(integration, when, *, kind="health", ok=(), failed=(), failed_without_latency=0) -> list:
    """Completed checks at ``when``: one succeeded per latency in ``ok``, one failed per latency in ``failed``."""
    rows = [ConnectionCheck(tenant_id=integration.tenant_id, integration=integration, kind=kind, success=True,
                            latency_ms=latency) for latency in ok]
    rows += [ConnectionCheck(tenant_id=integration.tenant_id, integration=integration, kind=kind, success=False,
                             latency_ms=latency, error_code="TIMEOUT") for latency in failed]
    rows += [ConnectionCheck(tenant_id=integration.tenant_id, integration=integration, kind=kind, success=False,
                             error_code="CONNECTION_FAILED") for _ in range(failed_without_latency)]
    created = ConnectionCheck.objects.bulk_create(rows)
    set_created(ConnectionCheck, created, when)
    return created


def endpoint(integration, path) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(tenant=integration.tenant, integration=integration, name=f"Hook {path}",
                                          path=path)


def events(endpoint, when, **by_status) -> list:
    """``events(endpoint, when, processed=2, failed=1)``: that many events of each status, received at ``when``."""
    rows = [
        WebhookEvent(endpoint=endpoint, tenant_id=endpoint.tenant_id, body=b"{}", status=status, received_at=when,
                     attempts=3 if status == "failed" else 1,
                     last_error="HTTP 500 from the handler" if status == "failed" else "")
        for status, count in by_status.items() for _ in range(count)
    ]
    return WebhookEvent.objects.bulk_create(rows)


def credential(integration, expires_at, status="active") -> Credential:
    return Credential.objects.create(tenant=integration.tenant, integration=integration, type="bearer",
                                     status=status, expires_at=expires_at)


def lease(integration, state, lease_until) -> StreamLease:
    return StreamLease.objects.create(integration=integration, tenant=integration.tenant, consumer="host-a:1",
                                      state=state, lease_until=lease_until)


def transition(integration, when, old, new) -> AuditEvent:
    """The audit row the check service writes when a check moves an integration's health state."""
    event = AuditEvent.objects.create(
        tenant=integration.tenant, actor="system", action="integration.health_changed",
        target_type="connections.integration", target_id=str(integration.pk), target_repr=integration.name,
        changes={"health_state": {"from": old, "to": new}},
    )
    set_created(AuditEvent, [event], when)
    return event


def hour_of(now, hours_ago: int):
    """The start of the hour ``hours_ago`` before the one ``now`` is in (a bucket of the hourly charts)."""
    return timezone.localtime(now).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)
