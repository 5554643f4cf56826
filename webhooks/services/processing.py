"""Processing received events: parse, apply to the integration, retry transient failures, replay, sweep, prune.

Each event is processed in one transaction that claims it (``SELECT … FOR
UPDATE SKIP LOCKED``), applies its effects and marks it: a worker that dies
mid-way rolls everything back and leaves it pending.
"""
import logging
import random
from datetime import timedelta
from urllib.parse import parse_qs

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from connections.choices import UpdateMethod
from connections.services.statuses import PollError, extract_items, statuses_store
from integrations_site import bounds
from integrations_site.api.errors import ConflictError
from notifications.choices import NotificationType
from notifications.services import notify

from ..choices import EventStatus
from ..models import WebhookEvent
from . import handoff

logger = logging.getLogger("webhooks")


class PermanentEventError(Exception):
    """Processing this event can never succeed (its body is not JSON we keep, its shape is not one the
    integration reads): it fails at once with the reason instead of being retried."""


def parse_body(body: bytes, content_type: str):
    """JSON or form bodies (a form's ``payload`` field holding JSON is unpacked, as Slack sends it), bounded
    as everything from outside is (integrations_site.bounds); PermanentEventError when it cannot be read.

    An empty body (some senders ping with one) holds nothing: None.
    """
    if not body.strip():
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PermanentEventError("The body is not UTF-8 text.") from None
    if kind == "application/x-www-form-urlencoded":
        form = {bounds.clean_text(k): bounds.clean_text(v[0]) if len(v) == 1 else [bounds.clean_text(x) for x in v]
                for k, v in parse_qs(text, keep_blank_values=True).items()}
        if isinstance(form.get("payload"), str):
            try:
                return bounds.loads(form["payload"])
            except bounds.JsonRefused:
                pass
        return form
    try:
        return bounds.loads(body)
    except bounds.JsonRefused as exc:
        raise PermanentEventError(f"The body cannot be read: {exc}.") from None


def handle_event(event: WebhookEvent) -> dict:
    """Dispatch by the integration's handler; returns what the processing did.

    PermanentEventError when the body cannot be read or holds no status items where the integration
    looks for them; any other exception is taken as transient (the database, a lock) and retried.
    """
    integration = event.endpoint.integration
    data = parse_body(bytes(event.body), event.content_type)
    if data is None or integration.update_method != UpdateMethod.WEBHOOK or integration.deleted_at is not None:
        return {"handled": "recorded"}
    if isinstance(data, dict) and integration.status_id_field in data and integration.status_field in data \
            and not integration.status_items_path:
        data = [data]
    try:
        pairs = extract_items(data, integration)
    except PollError as exc:
        raise PermanentEventError(exc.message) from None
    result = statuses_store(integration=integration, pairs=pairs)
    return {"handled": "statuses", **result.as_dict()}


def retry_delay(attempts: int) -> int | None:
    """Seconds before the next try (with ±10 % jitter), or None after the last one."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return max(1, int(base * random.uniform(0.9, 1.1)))


def event_process(*, event_id) -> str | None:
    """Process one event. Idempotent and safe to retry.

    The row is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` inside the same
    transaction that applies its effects and marks it processed: a worker that
    dies mid-way rolls everything back and leaves the event pending, and a
    second run of a processed event is a no-op. Returns the new status, or
    None when there was nothing to do.
    """
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint__integration__provider")
            .filter(pk=event_id, status=EventStatus.PENDING).first()
        )
        if event is None:
            return None
        event.attempts += 1
        try:
            with transaction.atomic():
                result = handle_event(event)
        except Exception as exc:  # a permanent failure fails now; any other is retried on the schedule
            permanent = isinstance(exc, PermanentEventError)
            delay = None if permanent else retry_delay(event.attempts)
            event.last_error = bounds.clean_text(str(exc) if permanent else f"{type(exc).__name__}: {exc}", 500)
            if delay is None:
                event.status = EventStatus.FAILED
                event.next_attempt_at = None
                logger.warning("webhooks.event.failed event=%s attempts=%s permanent=%s", event.pk, event.attempts,
                               permanent)
                _notify_failed(event, permanent)
            else:
                event.next_attempt_at = timezone.now() + timedelta(seconds=delay)
                transaction.on_commit(lambda: handoff.queue_retry(str(event.pk), delay))
            event.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
            return event.status
        event.status = EventStatus.PROCESSED
        event.processed_at = timezone.now()
        event.result = result
        event.last_error = ""
        event.next_attempt_at = None
        event.save(update_fields=["attempts", "status", "processed_at", "result", "last_error", "next_attempt_at"])
        return event.status


def _notify_failed(event: WebhookEvent, permanent: bool) -> None:
    """Tell the tenant (``webhook_event.failed``), in the transaction that marks the event failed."""
    endpoint = event.endpoint
    notify(tenant_id=event.tenant_id, type=NotificationType.WEBHOOK_EVENT_FAILED, data={
        "event_id": str(event.pk), "endpoint_id": str(endpoint.pk), "endpoint_name": endpoint.name,
        "integration_id": str(endpoint.integration_id), "received_at": event.received_at,
        "attempts": event.attempts, "permanent": permanent, "last_error": event.last_error,
    })


@transaction.atomic
def event_replay(*, actor: Actor, event: WebhookEvent) -> WebhookEvent:
    """Queue a processed or failed event again (attempts start over). Audited."""
    event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
    if event.status == EventStatus.PENDING:
        raise ConflictError("The event is already waiting to be processed.", details={"status": event.status})
    old = event.status
    event.status = EventStatus.PENDING
    event.attempts = 0
    event.next_attempt_at = None
    event.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_record(actor=actor, action="webhook_event.replayed", target=event, tenant=event.tenant,
                 changes={"status": {"from": old, "to": EventStatus.PENDING}})
    transaction.on_commit(lambda: handoff.queue_now([str(event.pk)]))
    return event


def events_sweep(*, now=None) -> int:
    """Queue again pending events that waited longer than WEBHOOK_SWEEP_AFTER_SECONDS
    (the broker was down, or a process died before handing them off).

    Queued in tasks of WEBHOOK_HANDOFF_BATCH ids, so that a backlog is shared
    by every worker instead of running in one task.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_AFTER_SECONDS)
    ids = [
        str(pk) for pk in WebhookEvent.objects.filter(status=EventStatus.PENDING, received_at__lte=cutoff)
        .exclude(next_attempt_at__gt=now).order_by("received_at").values_list("pk", flat=True)[:5000]
    ]
    batch = settings.WEBHOOK_HANDOFF_BATCH
    for start in range(0, len(ids), batch):
        handoff.queue_now(ids[start:start + batch])
    return len(ids)


def events_prune(*, now=None) -> int:
    """Delete processed events older than WEBHOOK_EVENT_RETENTION_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    deleted, _ = WebhookEvent.objects.filter(status=EventStatus.PROCESSED, received_at__lt=cutoff).delete()
    return deleted
