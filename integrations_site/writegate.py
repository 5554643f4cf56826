"""One writer at a time on an SQLite file, woken the moment the writer before it is done.

SQLite lets one connection write at a time; a connection that finds the file locked sleeps in steps
(1, 2, 5, 10 … ms, SQLite's busy handler) and tries again, although the write it waits for takes a
tenth of a millisecond. Under a burst of concurrent writes from several processes (the webhook
receiver's inserts, one per delivery) most of the time goes to those sleeps. ``write_gate`` makes
the writers of a hot path queue on an advisory lock (``flock``) of a file beside the database
instead: the kernel hands the lock to the next waiter when it is released, so writes follow one
another without sleeping. Writers that do not take the gate (a worker's transaction) are still
serialized by SQLite itself, as before: the gate only removes waiting, it guards nothing.

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
