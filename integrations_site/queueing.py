"""Sending work to the Celery workers: by task name, so a service never imports a tasks module.

A broker that cannot be reached never fails the caller's work: ``enqueue``
logs and answers False, and whatever was to be done is still in the database
(a queued check, a pending event) for the periodic sweep to queue again.
"""
import logging
import time

from .celery import app

logger = logging.getLogger("integrations_site.queueing")
RETRY_PAUSE_SECONDS = 0.2


def _send(name: str, args: list, countdown: float | None) -> None:
    app.send_task(name, args=args, countdown=countdown)


def enqueue(name: str, *args, countdown: float | None = None, log_event: str = "queueing.enqueue_failed",
            log_detail: str = "") -> bool:
    """Send task ``name`` with ``args`` (JSON-serialisable); False when the broker is unreachable, logged as
    ``log_event`` with ``log_detail`` (ids, counts: never arguments that could hold a secret).

    A failed send is tried once more after a short pause (a broker restarting, the embedded
    filesystem broker's binding file being rewritten by a starting worker) before giving up.
    """
    for attempt in (1, 2):
        try:
            _send(name, list(args), countdown)
            return True
        except Exception as exc:  # the broker is down: the caller's sweep queues it again
            if attempt == 2:
                logger.warning("%s task=%s %s error=%s", log_event, name, log_detail, type(exc).__name__)
                return False
            time.sleep(RETRY_PAUSE_SECONDS)
    return False
