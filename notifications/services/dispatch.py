"""Producing notifications: one delivery row per subscribed endpoint, queued after commit.

``notify`` runs inside the caller's transaction: the delivery rows commit or
roll back with the state change they report, and the worker is asked to send
them only once that transaction has committed. A broker that is down loses
nothing: the rows wait as ``pending`` and the periodic sweep queues them.
"""
import json
import logging
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations_site import queueing

from ..choices import MAX_PAYLOAD_BYTES, DeliveryStatus, NotificationType
from ..models import NotificationDelivery, NotificationEndpoint, NotificationMarker

logger = logging.getLogger("notifications")

DELIVER = "notifications.deliver_notifications"


def new_notification_id() -> str:
    """A ``webhook-id``: unique per notification, kept across its attempts."""
    return f"msg_{uuid.uuid4().hex}"


def queue_deliveries(ids: list[str]) -> bool:
    """Ask a worker to send ``ids`` (in tasks of NOTIFICATION_TASK_BATCH); False (logged) when the broker is
    unreachable, in which case the sweep queues them later."""
    batch = settings.NOTIFICATION_TASK_BATCH
    sent = True
    for start in range(0, len(ids), batch):
        part = ids[start:start + batch]
        sent &= queueing.enqueue(DELIVER, part, log_event="notifications.queue_failed",
                                 log_detail=f"deliveries={len(part)}")
    return sent


def queue_retry(delivery_id: str, delay: int) -> bool:
    """Send ``delivery_id`` again in ``delay`` seconds (else the sweep does once it is due)."""
    return queueing.enqueue(DELIVER, [delivery_id], countdown=delay, log_event="notifications.retry_enqueue_failed",
                            log_detail=f"delivery={delivery_id}")


def payload_for(*, tenant_id, type: str, data: dict, at) -> dict:
    """The JSON body every receiver gets: ``{"type", "timestamp", "tenant_id", "data"}``, bounded."""
    body = {"type": type, "timestamp": at, "tenant_id": tenant_id, "data": data}
    text = json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"A notification body is at most {MAX_PAYLOAD_BYTES} bytes.")
    return json.loads(text)  # what is stored is exactly what is sent: plain JSON values only


def _first_time(tenant_id, key: str) -> bool:
    """Record ``key`` for the tenant; False when it was recorded before."""
    key = key[:200]
    if NotificationMarker.objects.for_tenant(tenant_id).filter(key=key).exists():
        return False
    try:
        with transaction.atomic():
            NotificationMarker.objects.create(tenant_id=tenant_id, key=key)
    except IntegrityError:  # a concurrent producer recorded it first
        return False
    return True


def _check_type(type: str) -> None:
    if type not in NotificationType.values or type == NotificationType.PING:
        raise ValueError(f"Unknown notification type {type!r}.")


def _subscribers(tenant_ids: set, types: set) -> dict[tuple[str, str], list]:
    """``(tenant id, type)`` → the ids of the tenant's live, active endpoints subscribed to it; one query."""
    found: dict[tuple[str, str], list] = {}
    rows = (NotificationEndpoint.objects.live().filter(active=True, tenant_id__in=tenant_ids)
            .values_list("tenant_id", "pk", "events"))
    for tenant_id, pk, events in rows:
        for type in types.intersection(events or []):
            found.setdefault((str(tenant_id), type), []).append(pk)
    return found


def _deliveries(*, tenant_id, type: str, data: dict, endpoint_ids: list, now) -> list[NotificationDelivery]:
    payload = payload_for(tenant_id=str(tenant_id), type=type, data=data, at=now)
    notification_id = new_notification_id()
    logger.info("notifications.created tenant=%s type=%s notification=%s deliveries=%s", tenant_id, type,
                notification_id, len(endpoint_ids))
    return [NotificationDelivery(tenant_id=tenant_id, endpoint_id=pk, notification_id=notification_id, type=type,
                                 payload=payload, status=DeliveryStatus.PENDING, next_attempt_at=now, created_at=now)
            for pk in endpoint_ids]


def _store(rows: list[NotificationDelivery]) -> int:
    """Insert ``rows`` in the current transaction and queue them once it commits."""
    if rows:
        NotificationDelivery.objects.bulk_create(rows)
        ids = [str(row.pk) for row in rows]
        transaction.on_commit(lambda: queue_deliveries(ids))
    return len(rows)


def notify(*, tenant_id, type: str, data: dict, once_key: str | None = None) -> int:
    """Tell the tenant's active endpoints subscribed to ``type``; returns the number of deliveries made.

    Atomic, inside the caller's transaction: one pending ``NotificationDelivery``
    per endpoint (the same ``webhook-id`` for all), due now, queued with
    ``transaction.on_commit``. With ``once_key``, a notification of that key is
    made once per tenant (later calls return 0): the marker is written even
    when no endpoint is subscribed, so an endpoint added later is not sent old
    news. ``data`` must be JSON-serialisable (datetimes and UUIDs are) and hold
    no secret. ValueError for an unknown type or a body over 64 KB. Without
    ``once_key``, a tenant nobody listens to for ``type`` costs one query.
    """
    _check_type(type)
    now = timezone.now()
    if once_key is None:
        endpoint_ids = _subscribers({tenant_id}, {type}).get((str(tenant_id), type))
        if not endpoint_ids:
            return 0
    with transaction.atomic():
        if once_key is not None:
            if not _first_time(tenant_id, once_key):
                return 0
            endpoint_ids = _subscribers({tenant_id}, {type}).get((str(tenant_id), type))
            if not endpoint_ids:
                return 0
        return _store(_deliveries(tenant_id=tenant_id, type=type, data=data, endpoint_ids=endpoint_ids, now=now))


def notify_many(notes: Iterable[tuple]) -> int:
    """``notify`` for many ``(tenant_id, type, data)`` notes at once (a batch of checks): the subscribed
    endpoints are read in one query and the deliveries inserted in one statement, so a batch costs the same
    few statements whatever its size. No once-keys. Returns the number of deliveries made."""
    notes = list(notes)
    for _, type, _ in notes:
        _check_type(type)
    if not notes:
        return 0
    subscribers = _subscribers({tenant_id for tenant_id, _, _ in notes}, {type for _, type, _ in notes})
    now = timezone.now()
    rows = [row for tenant_id, type, data in notes if (str(tenant_id), type) in subscribers
            for row in _deliveries(tenant_id=tenant_id, type=type, data=data, now=now,
                                   endpoint_ids=subscribers[(str(tenant_id), type)])]
    if not rows:
        return 0
    with transaction.atomic():
        return _store(rows)
