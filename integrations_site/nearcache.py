"""Copies of shared-cache entries kept in each process's memory, forgotten by every process when one changes.

A record read on nearly every request and changed seldom (an API key's, with its tenant) costs a round
trip to Redis each time it is read from the shared cache. A ``NearCache`` keeps this process's own copy
instead, for as long as the shared entry lives (``timeout``), and forgets it the moment any process says
so: ``forget(names)`` drops the copies here and publishes the names on a Redis channel that a thread of
every process listens to.

What keeps a forgotten copy from being given again:

- No copy is given while this process's listener is not subscribed (starting, or its connection lost:
  every copy is dropped then), nor while a message waits unread on its connection (it is checked, one
  ``poll`` with no wait, before each copy is given): such a read goes to the shared cache, as it would
  without a near cache.
- A copy read from the shared cache is kept only if no ``forget`` arrived since the read began
  (``generation``): a read that raced a change keeps nothing.
- A silent connection is found by a ping every ``PING_SECONDS``; no answer within three of them is a
  lost connection.

On Redis, only a change made past the ORM (SQL, ``update()``), which forgets nothing, waits: until the
copy ends, at most twice the entry's ``timeout`` after the change. Without Redis there is no channel, and
nothing is kept: every read goes to the shared cache.

``PostgresNearCache`` listens to PostgreSQL instead (``LISTEN``), told by triggers on the tables its
copies are read from: there every write is heard, whoever makes it, when it commits.
"""
import json
import logging
import os
import pickle
import select
import threading
import time

from django.db import connections

from .cache import redis_client

logger = logging.getLogger("integrations_site.nearcache")

PING_SECONDS = 5.0
RETRY_SECONDS = 1.0  # after a lost connection, doubled after each failure to connect again up to the max
RETRY_MAX_SECONDS = 30.0
SUBSCRIBED, FORGET, HEARD = "subscribed", "forget", "heard"
ALL = "*"  # a forget of this name forgets every copy
APPLICATION_NAME = "nearcache"  # the listeners' PostgreSQL connections in pg_stat_activity: nearcache:<pid>


class NearCache:
    def __init__(self, channel: str, max_entries: int = 10_000):
        self.channel = channel
        self.max_entries = max_entries
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._generation = 0
        self._pid: int | None = None
        self._socket = None  # the listener's connection while it is subscribed
        self._busy = False  # the listener is reading or applying messages
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- reading and keeping ---------------------------------------------------------------------------------

    def get(self, name: str):
        """This process's copy of ``name``, None when there is none it may give. Each call gives an object of
        its own (kept pickled, as the shared cache keeps it): what one request does to it, another never sees."""
        if not self._trusted():
            return None
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            self._entries.pop(name, None)
            return None
        return pickle.loads(entry[0])

    def generation(self) -> int | None:
        """Taken before a read of the shared cache and handed to ``put``; None when nothing can be kept."""
        return self._generation if self._trusted() else None

    def put(self, name: str, value, timeout: float, generation: int | None) -> None:
        """Keep ``value`` as ``name``'s copy, unless a ``forget`` arrived since ``generation`` was taken."""
        with self._lock:
            if generation is None or generation != self._generation or self._socket is None:
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[name] = (pickle.dumps(value, pickle.HIGHEST_PROTOCOL), time.monotonic() + timeout)

    def forget(self, names: list[str]) -> None:
        """Drop ``names`` here, and in every other process by a message on the channel."""
        names = list(names)
        self._drop(names)
        self._publish(names)

    def wait_listening(self, timeout: float = 5.0) -> bool:
        """True once this process's listener is subscribed (for tests and the first request of a process)."""
        deadline = time.monotonic() + timeout
        while not self._trusted():
            if time.monotonic() > deadline or not self._available():
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and keep nothing from now on (a test run, before its database is dropped)."""
        self._stopped = True
        self._pid = None
        self._drop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _drop(self, names=None) -> None:
        with self._lock:
            self._generation += 1
            if names is None or ALL in names:
                self._entries.clear()
            else:
                for name in names:
                    self._entries.pop(name, None)

    def _trusted(self) -> bool:
        """Subscribed, in this process (a forked child starts its own listener), nothing unread or being read.

        The connection is asked first, then whether the listener is reading: a message read off the
        connection after the first question keeps ``_busy`` set until it has been applied."""
        if self._pid != os.getpid():
            if not self._stopped:
                self._start()
            return False
        sock = self._socket
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            unread = poller.poll(0)
        except (OSError, ValueError):  # closed meanwhile by the listener
            return False
        return not unread and not self._busy

    # --- the listener ----------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._pid == pid:
                return
            self._pid, self._socket, self._busy = pid, None, False
            self._entries.clear()
            if not self._available():
                return
            self._thread = threading.Thread(target=self._listen, args=(pid,), name="nearcache-listener", daemon=True)
            self._thread.start()

    def _listen(self, pid: int) -> None:
        retry = RETRY_SECONDS
        while self._pid == pid:
            handle = None
            try:
                handle, fd = self._connect()
                retry = RETRY_SECONDS
                self._applying(self._connected, handle, fd)
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                heard = pinged = time.monotonic()
                while self._pid == pid:
                    ready = poller.poll(1000)
                    now = time.monotonic()
                    if not ready:
                        if now - heard > 3 * PING_SECONDS:
                            raise ConnectionError(f"no answer on {self.channel} for {now - heard:.0f} s")
                        if now - pinged > PING_SECONDS:
                            pinged = now
                            heard = self._applying(self._ping, handle, fd) or heard
                        continue
                    heard = now
                    self._applying(self._receive, handle, fd)
            except Exception as exc:  # noqa: BLE001 (the listener starts again; meanwhile no copy is given)
                logger.warning("nearcache.listener.lost channel=%s error=%s retry_s=%g", self.channel, exc, retry)
            finally:
                self._socket = None
                self._drop()
                if handle is not None:
                    try:
                        handle.close()
                    except Exception:  # noqa: BLE001
                        pass
            if self._pid == pid:
                time.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)

    def _applying(self, read, handle, fd) -> float | None:
        """What ``read(handle)`` gives, applied with ``_busy`` set; the time when it says the server answered."""
        heard = None
        self._busy = True
        try:
            for event, names in read(handle):
                if event == SUBSCRIBED:
                    self._drop()
                    self._socket = fd
                elif event == FORGET:
                    self._drop(names)
                heard = time.monotonic()
        finally:
            self._busy = False
        return heard

    # --- the channel: a Redis channel here, PostgreSQL's LISTEN in ``PostgresNearCache`` ---------------------

    def _available(self) -> bool:
        return redis_client() is not None

    def _connect(self):
        """(handle, file descriptor) of a new connection listening on the channel."""
        pubsub = redis_client().pubsub()
        pubsub.subscribe(self.channel)
        return pubsub, pubsub.connection._sock

    def _connected(self, pubsub):
        """The events a new connection gives at once: none here (Redis confirms the subscription by a message)."""
        return ()

    def _receive(self, pubsub):
        """The events read off the connection: (SUBSCRIBED, None), (FORGET, names) or (HEARD, None)."""
        while (message := pubsub.get_message(timeout=0)) is not None:
            if message["type"] == "subscribe":
                yield SUBSCRIBED, None
            elif message["type"] == "message":
                yield FORGET, json.loads(message["data"])
            else:
                yield HEARD, None

    def _ping(self, pubsub):
        pubsub.ping()  # the answer comes as a message
        return ()

    def _publish(self, names: list[str]) -> None:
        client = redis_client()
        if client is not None:
            try:
                client.publish(self.channel, json.dumps(names))
            except Exception:  # noqa: BLE001 (the copies elsewhere end with their timeout)
                logger.error("nearcache.forget.unpublished channel=%s names=%d", self.channel, len(names))


class PostgresNearCache(NearCache):
    """A ``NearCache`` told by PostgreSQL: the channel is a ``LISTEN``, and what is forgotten is notified by
    triggers on the tables the copies are read from (``NOTIFY`` on commit, so a change is never heard before
    it can be read; ``*`` forgets everything). Every write is seen, the ORM's and any other. Only on
    PostgreSQL; elsewhere nothing is kept."""

    def _available(self) -> bool:
        return connections["default"].vendor == "postgresql"

    def _connect(self):
        wrapper = connections["default"]
        conn = wrapper.get_new_connection({**wrapper.get_connection_params(),
                                           "application_name": f"{APPLICATION_NAME}:{os.getpid()}"})
        conn.autocommit = True
        conn.execute(f"LISTEN {self.channel}")
        return conn, conn.fileno()

    def _connected(self, conn):
        return [(SUBSCRIBED, None)]  # listening from here on: LISTEN has been answered

    def _receive(self, conn):
        notified = [notify.payload for notify in conn.notifies(timeout=0)]
        return [(FORGET, notified)] if notified else [(HEARD, None)]

    def _ping(self, conn):
        conn.execute("SELECT 1")  # what was notified meanwhile is kept by psycopg for ``notifies``
        return [*self._receive(conn), (HEARD, None)]

    def _publish(self, names: list[str]) -> None:
        pass  # the triggers tell every process, this one included, when the change commits
