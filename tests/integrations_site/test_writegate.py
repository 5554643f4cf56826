"""The SQLite write gate (integrations_site/writegate.py): writers of a hot path queue on a lock of a
file beside the database, across processes and threads, and wait for nothing elsewhere."""
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

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
