"""The shared cache: the raw Redis client behind it (``redis_client``), and the embedded run's file cache,
Django's, with ``add`` and ``incr`` atomic across processes.

Without Redis, the web server's processes and the worker share counters
(rate limits, usage minute counts) through files. Django's FileBasedCache
does ``add`` and ``incr`` as a read followed by a write, so two processes
counting at once can both see the old value and one hit is lost: a limit of
10 lets more through. Here each such read-modify-write holds an exclusive
lock on one lock file in the cache folder (``flock``, released if a process
dies), so a count is exact as it is on Redis.

Django's file cache also culls by chance: past MAX_ENTRIES files it deletes a random third of them,
live counters and kept API keys included, so a rate count could start again from nothing within its
minute. Here a cull first removes what has expired (the past minutes' counters, old widget answers)
and falls back to Django's random cull only when the live entries alone are past the limit, which
the settings put far above what a run holds (``MAX_ENTRIES``).
"""
import os
from contextlib import contextmanager

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.files import locks
from django_redis.cache import RedisCache


def redis_client(backend=None):
    """The raw Redis client behind the shared cache (``backend``, when the caller has it), or None when the
    cache is not Redis."""
    backend = caches["default"] if backend is None else backend
    return backend.client.get_client(write=True) if isinstance(backend, RedisCache) else None


class SharedFileCache(FileBasedCache):
    @contextmanager
    def _counter_lock(self):
        os.makedirs(self._dir, 0o700, exist_ok=True)
        with open(os.path.join(self._dir, "counters.lock"), "ab") as handle:
            locks.lock(handle, locks.LOCK_EX)
            try:
                yield
            finally:
                locks.unlock(handle)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        with self._counter_lock():
            return super().add(key, value, timeout, version)

    def incr(self, key, delta=1, version=None):
        with self._counter_lock():
            return super().incr(key, delta, version)

    def _cull(self):
        files = self._list_cache_files()
        if len(files) < self._max_entries:
            return
        live = 0
        for name in files:
            try:
                with open(name, "rb") as handle:
                    live += not self._is_expired(handle)  # an expired entry is deleted as it is read
            except FileNotFoundError:  # removed by another process meanwhile
                pass
        if live >= self._max_entries:
            super()._cull()

