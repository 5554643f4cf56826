"""Handing accepted events to the queue without a broker round trip per request.

The receiver adds each committed event id to a per-process buffer; a
background thread sends one ``process_webhook_events`` task per batch (every
``WEBHOOK_HANDOFF_INTERVAL`` seconds or ``WEBHOOK_HANDOFF_BATCH`` ids). If the
broker is down or the process dies first, the events are still in the
database as ``pending`` and the periodic sweep queues them: nothing accepted
is lost. ``WEBHOOK_HANDOFF=immediate`` sends one task per event instead.
"""
from django.conf import settings

from integrations_site import queueing
from integrations_site.batching import BackgroundBatcher

PROCESS_EVENTS = "webhooks.process_webhook_events"
PROCESS_EVENT = "webhooks.process_webhook_event"


def queue_now(ids: list[str]) -> bool:
    """Send ``ids`` to the worker in one task; False (logged) when the broker is unreachable."""
    if not ids:
        return True
    return queueing.enqueue(PROCESS_EVENTS, ids, log_event="webhooks.handoff.failed", log_detail=f"events={len(ids)}")


def queue_retry(event_id: str, delay: int) -> bool:
    """Process ``event_id`` again in ``delay`` seconds (else the sweep does once its next attempt is due)."""
    return queueing.enqueue(PROCESS_EVENT, event_id, countdown=delay, log_event="webhooks.event.retry_enqueue_failed",
                            log_detail=f"event={event_id}")


def _send_batches(ids: list[str]) -> None:
    batch = settings.WEBHOOK_HANDOFF_BATCH
    for start in range(0, len(ids), batch):
        queue_now(ids[start:start + batch])


buffer = BackgroundBatcher(
    "webhook-handoff", _send_batches, interval=lambda: settings.WEBHOOK_HANDOFF_INTERVAL,
    max_items=lambda: settings.WEBHOOK_HANDOFF_BATCH, writes_database=False,
)


def hand_off(event_id: str) -> None:
    if settings.WEBHOOK_HANDOFF == "immediate":
        queue_now([event_id])
    else:
        buffer.add(event_id)
