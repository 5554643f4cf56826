"""Handing accepted events to the queue without a broker round trip per request.

The receiver adds each committed event id to a per-process buffer; a
background thread sends one ``process_webhook_events`` task per batch (every
``WEBHOOK_HANDOFF_INTERVAL`` seconds or ``WEBHOOK_HANDOFF_BATCH`` ids). If the
broker is down or the process dies first, the events are still in the
database as ``pending`` and the periodic sweep queues them: nothing accepted
is lost. ``WEBHOOK_HANDOFF=immediate`` sends one task per event instead.
"""
import atexit
import logging
import os
import threading

from django.conf import settings

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


class Buffer:
    def __init__(self):
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._pid = None

    def add(self, event_id: str) -> None:
        with self._lock:
            self._ids.append(event_id)
            full = len(self._ids) >= settings.WEBHOOK_HANDOFF_BATCH
        self._ensure_thread()
        if full:
            self._wake.set()

    def _ensure_thread(self) -> None:
        # After a fork (gunicorn workers) the parent's thread does not exist in the child.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="webhook-handoff", daemon=True)
            self._thread.start()

    def _take(self) -> list[str]:
        with self._lock:
            ids, self._ids = self._ids, []
        return ids

    def flush(self) -> None:
        ids = self._take()
        batch = settings.WEBHOOK_HANDOFF_BATCH
        for start in range(0, len(ids), batch):
            queue_now(ids[start:start + batch])

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.WEBHOOK_HANDOFF_INTERVAL)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # never let the thread die
                logger.exception("webhooks.handoff.error")


buffer = Buffer()
atexit.register(buffer.flush)


def hand_off(event_id: str) -> None:
    if settings.WEBHOOK_HANDOFF == "immediate":
        queue_now([event_id])
    else:
        buffer.add(event_id)
