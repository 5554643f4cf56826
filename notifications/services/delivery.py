"""Sending deliveries: claim, sign, POST through the outbound client, record; retries, redelivery, sweep, prune.

A delivery is claimed by one conditional UPDATE (pending, due, attempts + 1,
next attempt pushed past the request's whole budget: a lease), sent with no
transaction open (a slow receiver never holds a database lock), and recorded
in a short transaction that checks the claim still holds. A worker that dies
mid-way leaves the delivery pending; once the lease is over the sweep queues
it again. So every delivery is sent at least once and a second run of a
finished one is a no-op; receivers drop repeats by ``webhook-id``.
"""
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import SYSTEM, Actor, audit_record
from integrations_site import bounds, outbound
from integrations_site.api.errors import ConflictError

from ..choices import AttemptOutcome, DeliveryError, DeliveryStatus, DisabledReason, NotificationType
from ..models import NotificationAttempt, NotificationDelivery, NotificationEndpoint, NotificationMarker
from . import dispatch, signing

logger = logging.getLogger("notifications")

LEASE_MARGIN_SECONDS = 60
# Retries further off than this are left to the sweep rather than held by the broker as countdown tasks
# (Redis redelivers an unacknowledged countdown task after its visibility timeout).
COUNTDOWN_MAX_SECONDS = 300
RESPONSE_MAX_BYTES = outbound.DEFAULT_MAX_BYTES  # a bigger answer cannot be read, so counts as failed


@dataclass
class Result:
    """What one POST came to: a status (2xx delivered, 410 gone, else retried), or an error code."""

    status: int | None = None
    latency_ms: int | None = None
    code: str = ""
    message: str = ""
    retry: bool = True

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410


def retry_delay(attempts: int, type: str = "") -> int | None:
    """Seconds before the next try after ``attempts`` failed ones (±10 % jitter), or None after the last.
    A test ping is tried once."""
    schedule = settings.NOTIFICATION_RETRY_SCHEDULE
    if type == NotificationType.PING or attempts > len(schedule):
        return None
    return max(1, int(schedule[attempts - 1] * random.uniform(0.9, 1.1)))


def body_of(delivery: NotificationDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()


def post(endpoint: NotificationEndpoint, delivery: NotificationDelivery) -> Result:
    """Sign and POST ``delivery`` to ``endpoint`` once (the retry schedule is ours, not the client's).

    Redirects are not followed (a signed body goes where the tenant said, or nowhere); the address
    policy applies to the URL and every address it resolves to.
    """
    body = body_of(delivery)
    headers = {"Content-Type": "application/json", "Accept": "*/*",
               **signing.signed_headers(endpoint.signing_secrets(), delivery.notification_id, int(time.time()), body)}
    try:
        response = outbound.request("POST", endpoint.url, headers=headers, body=body, retries=0,
                                    follow_redirects=False, timeout=settings.NOTIFICATION_TIMEOUT_SECONDS,
                                    max_bytes=RESPONSE_MAX_BYTES)
    except outbound.OutboundError as exc:
        return Result(latency_ms=exc.elapsed_ms, code=exc.code, message=bounds.clean_text(exc.message, 500),
                      retry=not isinstance(exc, outbound.UrlNotAllowed))
    result = Result(status=response.status_code, latency_ms=response.elapsed_ms)
    if result.gone:
        result.code, result.retry = DeliveryError.ENDPOINT_GONE, False
        result.message = "The receiver answered 410 Gone; the endpoint is disabled."
    elif not result.delivered:
        # Every other answer is retried on the schedule, as Standard Webhooks senders do: a receiver's 4xx
        # is mostly a deploy or a setting the tenant fixes within the schedule, which is bounded.
        result.code, result.message = DeliveryError.UNEXPECTED_STATUS, f"The receiver answered {response.status_code}."
    return result


def _claim(delivery_id, now) -> NotificationDelivery | None:
    lease = now + timedelta(seconds=settings.NOTIFICATION_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    claimed = NotificationDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(attempts=F("attempts") + 1, next_attempt_at=lease, updated_at=now)
    if not claimed:
        return None
    return NotificationDelivery.objects.filter(pk=delivery_id).first()


def delivery_attempt(*, delivery_id, now=None) -> str | None:
    """Send one due delivery once and record the outcome. Idempotent and safe to retry.

    Returns the delivery's new status, or None when it was not pending and due (already sent, taken
    by another worker, or retried later). 2xx: delivered. 410: failed, and the endpoint is disabled
    (reason ``gone``). A URL the address policy refuses: failed (``URL_NOT_ALLOWED``). Anything
    else: tried again after NOTIFICATION_RETRY_SCHEDULE[attempts - 1] seconds, failed after the last.
    """
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    try:
        endpoint = NotificationEndpoint.objects.get(pk=delivery.endpoint_id)
        if delivery.type != NotificationType.PING and (endpoint.deleted_at is not None or not endpoint.active):
            result = Result(code=DeliveryError.ENDPOINT_DISABLED, retry=False,
                            message="The endpoint was disabled or deleted before this delivery was sent.")
        else:
            result = post(endpoint, delivery)
    except Exception as exc:  # a stored secret that no key decrypts, a bug: recorded and retried, never a loop
        logger.warning("notifications.delivery.error delivery=%s error=%s", delivery.pk, type(exc).__name__)
        result = Result(code=DeliveryError.CONNECTION_FAILED, message=f"The delivery could not be sent "
                        f"({type(exc).__name__}).")
    return _record(delivery, result, now)


@transaction.atomic
def _record(delivery: NotificationDelivery, result: Result, now) -> str | None:
    row = NotificationDelivery.objects.select_for_update().filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
    ).first()
    if row is None:  # our lease ran out and another worker took the delivery over: its record counts
        return None
    delay = None if result.delivered or not result.retry else retry_delay(row.attempts, row.type)
    if result.delivered:
        row.status, outcome = DeliveryStatus.DELIVERED, AttemptOutcome.DELIVERED
        row.delivered_at, row.next_attempt_at, row.last_error = timezone.now(), None, None
    elif delay is None:
        row.status, outcome, row.next_attempt_at = DeliveryStatus.FAILED, AttemptOutcome.FAILED, None
    else:
        outcome, row.next_attempt_at = AttemptOutcome.RETRY, now + timedelta(seconds=delay)
        if delay <= COUNTDOWN_MAX_SECONDS:
            transaction.on_commit(lambda: dispatch.queue_retry(str(row.pk), delay))
    if not result.delivered:
        row.last_error = {"code": result.code, "message": result.message}
    row.response_status, row.latency_ms = result.status, result.latency_ms
    row.save(update_fields=["status", "delivered_at", "next_attempt_at", "last_error", "response_status",
                            "latency_ms", "updated_at"])
    NotificationAttempt.objects.create(
        delivery=row, attempted_at=now, outcome=outcome, response_status=result.status, latency_ms=result.latency_ms,
        error_code=result.code, error_message=result.message[:500],
    )
    if result.gone:
        _disable_gone(row.endpoint_id, now)
    log = logger.info if result.delivered else logger.warning
    log("notifications.delivery.%s delivery=%s endpoint=%s type=%s attempts=%s status=%s code=%s", outcome, row.pk,
        row.endpoint_id, row.type, row.attempts, result.status, result.code or "-")
    return row.status


def _disable_gone(endpoint_id, now) -> None:
    """The receiver said 410 Gone: stop sending there (a person turns it on again)."""
    endpoint = NotificationEndpoint.objects.select_for_update().filter(pk=endpoint_id, active=True).first()
    if endpoint is None:
        return
    endpoint.active, endpoint.disabled_reason, endpoint.disabled_at = False, DisabledReason.GONE, now
    endpoint.save(update_fields=["active", "disabled_reason", "disabled_at", "updated_at"])
    audit_record(actor=SYSTEM, action="notification_endpoint.disabled", target=endpoint,
                 changes={"active": {"from": True, "to": False}, "reason": DisabledReason.GONE})
    logger.warning("notifications.endpoint.disabled endpoint=%s reason=gone", endpoint.pk)


@transaction.atomic
def delivery_redeliver(*, actor: Actor, delivery: NotificationDelivery) -> NotificationDelivery:
    """Send a delivered or failed delivery again, now (attempts start over; the history is kept). Audited.

    409 when it is still pending, or its endpoint is disabled or deleted.
    """
    delivery = NotificationDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
    if delivery.status == DeliveryStatus.PENDING:
        raise ConflictError("The delivery is already waiting to be sent.", details={"status": delivery.status})
    endpoint = delivery.endpoint
    if endpoint.deleted_at is not None or not endpoint.active:
        raise ConflictError("The endpoint is disabled; turn it on before redelivering.",
                            details={"endpoint": str(endpoint.pk)})
    old = delivery.status
    delivery.status, delivery.attempts, delivery.next_attempt_at = DeliveryStatus.PENDING, 0, timezone.now()
    delivery.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
    audit_record(actor=actor, action="notification_delivery.redelivered", target=delivery, tenant=delivery.tenant,
                 changes={"status": {"from": old, "to": DeliveryStatus.PENDING}})
    transaction.on_commit(lambda: dispatch.queue_deliveries([str(delivery.pk)]))
    return delivery


def deliveries_sweep(*, now=None) -> int:
    """Queue again pending deliveries due for NOTIFICATION_SWEEP_AFTER_SECONDS or longer (the broker was
    down, a countdown was lost, a retry is further off than a countdown, a worker died holding one)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFICATION_SWEEP_AFTER_SECONDS)
    ids = [str(pk) for pk in NotificationDelivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff,
    ).order_by("next_attempt_at").values_list("pk", flat=True)[:5000]]
    if ids:
        dispatch.queue_deliveries(ids)
        logger.info("notifications.swept deliveries=%s", len(ids))
    return len(ids)


def deliveries_prune(*, now=None) -> int:
    """Delete finished deliveries (and their attempts) and once-markers older than NOTIFICATION_RETENTION_DAYS
    (longer than any window a marker guards: a credential's 7 days before expiry)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.NOTIFICATION_RETENTION_DAYS)
    _, deleted = NotificationDelivery.objects.filter(
        status__in=(DeliveryStatus.DELIVERED, DeliveryStatus.FAILED), created_at__lt=cutoff
    ).delete()
    NotificationMarker.objects.filter(created_at__lt=cutoff).delete()
    return deleted.get(NotificationDelivery._meta.label, 0)
