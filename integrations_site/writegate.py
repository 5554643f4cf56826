"""One writer at a time on an SQLite file, woken the moment the writer before it is done.

SQLite lets one connection write at a time; a connection that finds the file locked sleeps in steps
(1, 2, 5, 10 … ms, SQLite's busy handler) and tries again, although the write it waits for takes a
tenth of a millisecond. Under a burst of concurrent writes from several processes (the webhook
receiver's inserts, one per delivery) most of the time goes to those sleeps. ``write_gate`` makes
the writers of a hot path queue on an advisory lock (``flock``) of a file beside the database
instead: the kernel hands the lock to the next waiter when it is released, so writes follow one
another without sleeping. Writers that do not take the gate (a worker's transaction) are still
serialized by SQLite itself, as before: the gate only removes waiting, it guards nothing.

``gated_commit`` adds what makes the gate pay off under ``synchronous=FULL`` (SQLite's default, kept:
an answer given after a commit means the commit survives a power loss): the commit's wait for the disk
(``fdatasync`` of the write-ahead log, most of a small write's time) happens after the gate is released,
so the next writer writes meanwhile instead of waiting for it.

A commit that finds the write-ahead log past SQLite's automatic checkpoint (1,000 pages) also copies
the log into the database there and then, with two more waits for the disk, and that commit is in
the gate: every other writer waits for it. So every ``SQLITE_CHECKPOINT_COMMITS`` gated commits (and
``CHECKPOINT_IDLE_SECONDS`` after fewer) a background thread of the process (``checkpoints``, a
``BackgroundBatcher`` of the files committed to) copies the log into the database on a connection
of its own (``wal_checkpoint(PASSIVE)``: as much as it can without waiting for any reader or writer),
beside the writers. The automatic checkpoint that a commit in the gate still meets under a steady stream
of writes then finds most of the log copied and little left to do; when the writes pause, the next
one starts the log again at its beginning without it. SQLite's automatic checkpoint stays as it is,
for every other writer and whenever this thread falls behind.

On other databases, and on an in-memory SQLite database, the gate is no gate.
"""
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading

from django.conf import settings

from integrations_site.batching import BackgroundBatcher

logger = logging.getLogger(__name__)

_files: dict[str, int] = {}
_locks: dict[str, threading.Lock] = {}
_setup = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child shares its parent's open files, and with them the parent's flock: it opens its own."""
    global _setup
    _files.clear()
    _locks.clear()
    _setup = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _gate(path: str) -> tuple[int, threading.Lock]:
    with _setup:
        if path not in _files:
            _files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            _locks[path] = threading.Lock()
        return _files[path], _locks[path]


def _gate_path(connection) -> str | None:
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    return name + "-gate"


@contextlib.contextmanager
def write_gate(connection):
    """Hold the write gate of ``connection``'s database (a Django connection) for the block."""
    path = _gate_path(connection)
    if path is None:
        yield
        return
    fd, lock = _gate(path)
    # flock belongs to the open file, which this process's threads share: a thread lock orders them.
    with lock:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def gated_commit(connection):
    """``write_gate`` for a block that commits (autocommit statements), durable when the block ends.

    In the gate the connection commits without waiting for the disk (``synchronous=NORMAL``: in WAL mode
    still atomic and consistent); after the gate is released the write-ahead log is flushed to the disk
    with ``fdatasync``, which is the wait ``synchronous=FULL`` would have made inside the gate. When the block
    ends the commit is as durable as under FULL; until then nobody has been told it happened. The
    connection's own setting is restored before the gate is released.
    """
    path = _gate_path(connection)
    if path is None or connection.in_atomic_block:  # no commit in the block: the caller's transaction's
        with write_gate(connection):
            yield
        return
    name = str(connection.settings_dict["NAME"])
    connection.ensure_connection()
    raw = connection.connection
    level = raw.execute("PRAGMA synchronous").fetchone()[0]
    try:
        with write_gate(connection):
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                raw.execute(f"PRAGMA synchronous={int(level)}")
    finally:
        if level >= 2:  # FULL or EXTRA: the commit waits for the disk here
            _flush_log(name + "-wal")
        if settings.SQLITE_CHECKPOINT_COMMITS > 0:
            checkpoints.add(name)


def _flush_log(path: str) -> None:
    """``fdatasync`` the write-ahead log, opened by name each time: once every connection has closed, SQLite
    checkpoints the log into the database (flushed then) and deletes it, and a kept descriptor would
    flush a deleted file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # checkpointed and removed: the commit is in the flushed database file
        return
    try:
        os.fdatasync(fd)  # what SQLite itself calls on Linux
    finally:
        os.close(fd)


CHECKPOINT_IDLE_SECONDS = 5.0
# Per file checkpointed: (checkpoints run, the last one's (busy, pages in the log, pages copied)).
last_checkpoint: dict[str, tuple[int, tuple]] = {}


def _checkpoint(names: list[str]) -> None:
    """Copy the write-ahead log of each file committed to into the database, on a connection opened for it."""
    for name in dict.fromkeys(names):
        try:
            # synchronous=FULL, SQLite's default: the copy is flushed. Every row fetched, so that the statement
            # ends: one left open would keep a read of the log open, and the log could not restart.
            with contextlib.closing(sqlite3.connect(name, isolation_level=None)) as db:
                result = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        except sqlite3.Error as exc:  # SQLite's own checkpoints go on meanwhile
            logger.warning("writegate.checkpoint_failed database=%s error=%s", name, exc)
            continue
        last_checkpoint[name] = (last_checkpoint.get(name, (0,))[0] + 1, result)


# Not a writer of Django's database connections: it runs beside the tests too (its own sqlite3 connection).
checkpoints = BackgroundBatcher("sqlite-checkpoint", _checkpoint, interval=lambda: CHECKPOINT_IDLE_SECONDS,
                                max_items=lambda: settings.SQLITE_CHECKPOINT_COMMITS, writes_database=False)
