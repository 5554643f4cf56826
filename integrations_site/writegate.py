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

On other databases, and on an in-memory SQLite database, the gate is no gate.
"""
import contextlib
import fcntl
import os
import threading

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
            _flush_log(str(connection.settings_dict["NAME"]) + "-wal")


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
