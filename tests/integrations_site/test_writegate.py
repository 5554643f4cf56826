"""The SQLite write gate (integrations_site/writegate.py): writers of a hot path queue on a lock of a
file beside the database, across processes and threads, and wait for nothing elsewhere."""
import sqlite3
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from integrations_site.writegate import write_gate

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _sqlite(path):
    return SimpleNamespace(vendor="sqlite", settings_dict={"NAME": str(path)})


def test_a_writer_waits_for_another_process_holding_the_gate_and_goes_on_when_it_lets_go(tmp_path):
    connection = _sqlite(tmp_path / "db.sqlite3")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "db.sqlite3-gate"), "0.5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with write_gate(connection):
            waited = time.monotonic() - started
    finally:
        holder.wait(5)
    assert 0.3 < waited < 3, waited  # it waited for the holder, and not for a busy handler's sleeps after


def test_threads_of_one_process_take_the_gate_one_at_a_time(tmp_path):
    connection, inside, most = _sqlite(tmp_path / "db.sqlite3"), [0], [0]
    lock = threading.Lock()

    def writer():
        for _ in range(20):
            with write_gate(connection):
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.001)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


def test_no_gate_on_other_databases_or_in_memory(tmp_path):
    for connection in (SimpleNamespace(vendor="postgresql", settings_dict={"NAME": "ih"}),
                       _sqlite(":memory:"), _sqlite("file:memorydb_default?mode=memory&cache=shared")):
        with write_gate(connection):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_forked_child_holds_a_gate_of_its_own(tmp_path):
    """Opened before the fork, the parent's gate file would be the child's too, and so would its lock."""
    import os

    connection = _sqlite(tmp_path / "db.sqlite3")
    with write_gate(connection):
        pass  # the parent has opened its gate file
    with write_gate(connection):
        pid = os.fork()
        if pid == 0:  # the child must wait for the parent, who holds the gate
            import fcntl

            from integrations_site import writegate

            fd, _ = writegate._gate(str(tmp_path / "db.sqlite3-gate"))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(1)  # taken: it shared the parent's lock
            except BlockingIOError:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- gated_commit: the commit's fsync after the gate ---------------------------------------------------------


@pytest.fixture
def unblocked(django_db_blocker):
    """Database access for a connection of the test's own (not the test database)."""
    with django_db_blocker.unblock():
        yield


def _file_database(path):
    """A Django connection of its own to an SQLite file, as the settings make one (WAL, FULL)."""
    from django.db.backends.sqlite3.base import DatabaseWrapper

    connection = DatabaseWrapper({
        "ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "USER": "", "PASSWORD": "", "HOST": "",
        "PORT": "", "ATOMIC_REQUESTS": False, "AUTOCOMMIT": True, "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False,
        "TIME_ZONE": None, "TEST": {},
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
    }, alias="gated-commit-test")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return connection


def _record(monkeypatch, events):
    import fcntl
    import os

    flock, fdatasync = fcntl.flock, os.fdatasync
    monkeypatch.setattr(fcntl, "flock", lambda fd, op: (events.append(("flock", op)), flock(fd, op))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                     fdatasync(fd))[1])


def test_a_gated_commit_is_committed_in_the_gate_and_flushed_to_the_disk_after_it(tmp_path, monkeypatch, unblocked):
    import fcntl
    import sqlite3

    from integrations_site.writegate import gated_commit

    connection = _file_database(tmp_path / "db.sqlite3")
    try:
        events = []
        _record(monkeypatch, events)
        with gated_commit(connection):
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO t (v) VALUES ('one') RETURNING id")
                assert cursor.fetchall() == [(1,)]
            assert connection.connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL in the gate
            events.append(("block ends",))
        # Committed (another connection sees it), the connection's own FULL back, the log flushed after the gate.
        assert sqlite3.connect(tmp_path / "db.sqlite3").execute("SELECT v FROM t").fetchall() == [("one",)]
        assert connection.connection.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert events == [("flock", fcntl.LOCK_EX), ("block ends",), ("flock", fcntl.LOCK_UN),
                          ("fsync", str(tmp_path / "db.sqlite3-wal"))]
    finally:
        connection.close()


def test_a_gated_commit_in_a_transaction_leaves_the_commit_and_its_flush_to_the_transaction(tmp_path, monkeypatch,
                                                                                         unblocked):
    from django.db import connections, transaction

    from integrations_site.writegate import gated_commit

    connection = _file_database(tmp_path / "db.sqlite3")
    try:
        events = []
        _record(monkeypatch, events)
        connections[connection.alias] = connection  # so that transaction.atomic can name it
        with transaction.atomic(using=connection.alias):
            with gated_commit(connection):
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO t (v) VALUES ('one')")
                assert connection.connection.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert [e[0] for e in events] == ["flock", "flock"]  # the gate, and no fsync of ours
        assert connection.connection.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        connection.close()
        del connections[connection.alias]


# --- checkpoints beside the writers ---------------------------------------------------------------------------


def _gated_inserts(connection, count, size=3000):
    from integrations_site.writegate import gated_commit

    for _ in range(count):
        with gated_commit(connection), connection.cursor() as cursor:
            cursor.execute("INSERT INTO t (v) VALUES (%s)", ["x" * size])


def _wait_for(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _checkpoints_run(path) -> int:
    from integrations_site import writegate

    return writegate.last_checkpoint.get(path, (0, None))[0]


def test_a_thread_checkpoints_the_file_after_every_so_many_gated_commits(tmp_path, settings, unblocked):
    from integrations_site import writegate

    settings.SQLITE_CHECKPOINT_COMMITS = 10
    writegate.checkpoints.take()  # commits other tests left waiting for a checkpoint
    path = str(tmp_path / "db.sqlite3")
    connection = _file_database(path)
    try:
        _gated_inserts(connection, 9)
        assert _checkpoints_run(path) == 0
        _gated_inserts(connection, 1)
        _wait_for(lambda: _checkpoints_run(path) == 1)
        busy, in_log, copied = writegate.last_checkpoint[path][1]
        assert busy == 0 and in_log > 0 and copied == in_log  # all of the log copied into the database
        _gated_inserts(connection, 10)
        _wait_for(lambda: _checkpoints_run(path) == 2)
        # Every commit is in the database file itself once the log is copied.
        reader = sqlite3.connect(path)
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (20,)
        reader.close()
    finally:
        connection.close()


def test_between_writes_the_log_restarts_without_sqlites_own_checkpoint(tmp_path, settings, unblocked):
    """With SQLite's automatic checkpoint off on the writer's connection, the log grows by every commit until
    something copies it into the database: the thread does, and the next write after a complete copy
    starts the log again at its beginning, so it stays a fraction of the size; with 0, nothing does."""
    import os

    from integrations_site import writegate

    sizes = {}
    for every in (0, 20):
        settings.SQLITE_CHECKPOINT_COMMITS = every
        writegate.checkpoints.take()  # commits other tests left waiting for a checkpoint
        path = str(tmp_path / f"db-{every}.sqlite3")
        connection = _file_database(path)
        try:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            for batch in range(1, 21):
                _gated_inserts(connection, 20)
                if every:
                    _wait_for(lambda: _checkpoints_run(path) == batch)  # noqa: B023 (called at once)
            sizes[every] = os.path.getsize(path + "-wal")
        finally:
            connection.close()
        assert (path in writegate.last_checkpoint) == bool(every)  # with 0, nothing asked for a checkpoint
    assert sizes[20] * 4 < sizes[0], sizes
