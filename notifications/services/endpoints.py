"""Notification endpoints: create, update, delete, secret rotation, and the test ping.

Writes are atomic and audited; a secret is returned by create and rotate only (the caller shows it
once) and is never written to the audit trail.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site.api.errors import ConflictError, ValidationFailed

from ..choices import DEFAULT_GRACE_SECONDS, EVENT_TYPES, MAX_GRACE_SECONDS, DeliveryStatus, NotificationType
from ..models import NotificationDelivery, NotificationEndpoint
from . import delivery as sending
from . import dispatch, signing

logger = logging.getLogger("notifications")

ENDPOINT_FIELDS = ("url", "events", "active", "description")


def _events(value) -> list[str]:
    """The subscribed types, each once, in the order of the type list."""
    return [item for item in EVENT_TYPES if item in set(value)]


@transaction.atomic
def notification_endpoint_create(*, actor: Actor, tenant, data: dict) -> tuple[NotificationEndpoint, str]:
    """Create an endpoint (subscribed to every type unless ``events`` says otherwise); returns it and its
    new secret, shown this once. 409 past NOTIFICATION_ENDPOINTS_PER_TENANT live endpoints."""
    limit = settings.NOTIFICATION_ENDPOINTS_PER_TENANT
    if NotificationEndpoint.objects.live().for_tenant(tenant).count() >= limit:
        raise ConflictError(f"A tenant has at most {limit} notification endpoints; delete one first.",
                            details={"limit": limit})
    secret = signing.new_secret()
    endpoint = NotificationEndpoint.objects.create(
        tenant=tenant, url=data["url"], events=_events(data.get("events") or EVENT_TYPES),
        active=data.get("active", True), description=data.get("description", ""), secret=secret,
    )
    audit_record(actor=actor, action="notification_endpoint.created", target=endpoint, tenant=tenant,
                 changes={"url": {"to": endpoint.url}, "events": {"to": endpoint.events}, "secret": "set"},
                 secret_fields=frozenset({"secret"}))
    return endpoint, secret


@transaction.atomic
def notification_endpoint_update(*, actor: Actor, endpoint: NotificationEndpoint, data: dict) -> NotificationEndpoint:
    """Change url, events, active or description. Turning an endpoint on clears why it was turned off."""
    endpoint = NotificationEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    changes = {}
    for field, value in data.items():
        if field not in ENDPOINT_FIELDS:
            continue
        value = _events(value) if field == "events" else value
        if getattr(endpoint, field) != value:
            changes[field] = {"from": getattr(endpoint, field), "to": value}
            setattr(endpoint, field, value)
    if changes.get("active", {}).get("to") is True and endpoint.disabled_reason:
        changes["disabled_reason"] = {"from": endpoint.disabled_reason, "to": ""}
        endpoint.disabled_reason, endpoint.disabled_at = "", None
    if changes:
        endpoint.save()
        audit_record(actor=actor, action="notification_endpoint.updated", target=endpoint, changes=changes)
    return endpoint


@transaction.atomic
def notification_endpoint_delete(*, actor: Actor, endpoint: NotificationEndpoint) -> None:
    """Soft delete: nothing more is sent there, its secrets are erased, its deliveries stay readable."""
    endpoint = NotificationEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.deleted_at, endpoint.active = timezone.now(), False
    endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at = "", "", None
    endpoint.save()
    audit_record(actor=actor, action="notification_endpoint.deleted", target=endpoint)


@transaction.atomic
def notification_secret_rotate(
    *, actor: Actor, endpoint: NotificationEndpoint, grace_seconds: int | None = None
) -> tuple[NotificationEndpoint, str]:
    """A new secret; deliveries are signed with the old one too for ``grace_seconds`` (default 24 h, at most
    7 days, 0 = not at all), as inbound webhook secrets keep verifying. Returns the endpoint and the secret."""
    grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ValidationFailed(f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}.",
                               details={"grace_seconds": [f"Must be between 0 and {MAX_GRACE_SECONDS}."]})
    endpoint = NotificationEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    if grace and endpoint.secret:
        endpoint.previous_secret, endpoint.previous_secret_expires_at = endpoint.secret, now + timedelta(seconds=grace)
    else:
        endpoint.previous_secret, endpoint.previous_secret_expires_at = "", None
    secret = signing.new_secret()
    endpoint.secret, endpoint.secret_rotated_at = secret, now
    endpoint.save()
    audit_record(actor=actor, action="notification_endpoint.secret_rotated", target=endpoint,
                 changes={"secret": "rotated", "grace_seconds": grace,
                          "previous_secret_expires_at": endpoint.previous_secret_expires_at},
                 secret_fields=frozenset({"secret"}))
    return endpoint, secret


def notification_endpoint_test(*, actor: Actor, endpoint: NotificationEndpoint) -> NotificationDelivery:
    """Send a signed ``ping`` now, once, whether or not the endpoint is active; returns its delivery (delivered
    or failed, with the receiver's status and the latency). Not retried. A 410 disables the endpoint."""
    now = timezone.now()
    delivery = NotificationDelivery.objects.create(
        tenant_id=endpoint.tenant_id, endpoint=endpoint, notification_id=dispatch.new_notification_id(),
        type=NotificationType.PING, status=DeliveryStatus.PENDING, next_attempt_at=now, created_at=now,
        payload=dispatch.payload_for(tenant_id=str(endpoint.tenant_id), type=NotificationType.PING, at=now,
                                     data={"endpoint_id": str(endpoint.pk)}),
    )
    sending.delivery_attempt(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    return delivery
