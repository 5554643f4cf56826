"""A per-process buffer flushed by a background thread.

Used where a hot path must not pay a round trip per request (webhook
hand-off to the broker, usage counters): callers ``add`` items; a daemon
thread calls ``flush_fn(items)`` every ``interval`` seconds, sooner when
``max_items`` are waiting, and at interpreter exit. What a flush fails to
write must be recoverable elsewhere (the callers say how).
"""
import atexit
import logging
import os
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connections

logger = logging.getLogger("integrations_site.batching")


class BackgroundBatcher:
    def __init__(self, name: str, flush_fn: Callable[[list], None], interval: Callable[[], float],
                 max_items: Callable[[], int], writes_database: bool = True):
        self.name = name
        # A batcher that writes to the database runs in the background only where
        # BATCHING_BACKGROUND allows (not under the tests, whose database is per test).
        self._writes_database = writes_database
        self._flush_fn = flush_fn
        self._interval = interval
        self._max_items = max_items
        self._items: list = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        atexit.register(self._flush_at_exit)

    def add(self, item) -> None:
        with self._lock:
            self._items.append(item)
            full = len(self._items) >= self._max_items()
        self._ensure_thread()
        if full:
            self._wake.set()

    def _alive(self) -> bool:
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def _ensure_thread(self) -> None:
        # After a fork (gunicorn, Celery prefork) the parent's thread does not exist in the child.
        if self._alive() or not self._background():
            return
        with self._lock:
            if self._alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def take(self) -> list:
        with self._lock:
            items, self._items = self._items, []
        return items

    def flush(self) -> None:
        items = self.take()
        if items:
            self._flush_fn(items)

    def _background(self) -> bool:
        return not self._writes_database or getattr(settings, "BATCHING_BACKGROUND", True)

    def _flush_at_exit(self) -> None:
        # Without the background thread (the test settings) counts are written by explicit
        # flush() calls only: at exit the test database is already gone.
        if self._background():
            self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval())
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # never let the thread die
                logger.exception("batching.flush_failed batcher=%s", self.name)
            finally:
                if self._writes_database:
                    connections.close_all()  # this thread's own database connections
