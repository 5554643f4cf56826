"""Handing accepted events to the queue without a broker round trip per request.

The receiver adds each committed event id to a per-process buffer; a
background thread sends one ``process_webhook_events`` task per batch (every
``WEBHOOK_HANDOFF_INTERVAL`` seconds or ``WEBHOOK_HANDOFF_BATCH`` ids). If the
broker is down or the process dies first, the events are still in the
database as ``pending`` and the periodic sweep queues them: nothing accepted
is lost. ``WEBHOOK_HANDOFF=immediate`` sends one task per event instead.
"""
import logging

from django.conf import settings

from integrations_site.batching import BackgroundBatcher

logger = logging.getLogger("webhooks.handoff")


def queue_now(ids: list[str]) -> bool:
    """Send ``ids`` to the worker in one task; False (logged) when the broker is unreachable."""
    from .tasks import process_webhook_events

    if not ids:
        return True
    try:
        process_webhook_events.delay(ids)
        return True
    except Exception:  # broker down: the sweep re-queues what is still pending
        logger.warning("webhooks.handoff.failed events=%s", len(ids))
        return False


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
