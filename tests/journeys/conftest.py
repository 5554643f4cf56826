"""Real processes for journeys: a Celery worker and beat on Redis, and a local HTTP server.

The processes run against the pytest-django test database, so the tests that
use them must be ``django_db(transaction=True)``: rows are committed and seen
by the worker and beat. Their logs go to files that are printed at teardown
(pytest shows them when the test fails).
"""
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import celery_broker, current_database_url, fresh_broker_url
from tests.journeys.stack import Stack

ROOT = Path(__file__).resolve().parent.parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
# A Redis database of its own, flushed before the processes start.
BROKER_DB = 5
STOP_TIMEOUT = 10


class SwitchableServer:
    """A threaded loopback HTTP server whose answer can be switched while it runs."""

    def __init__(self):
        self.status = 200
        self.hits = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                with owner._lock:
                    owner.hits += 1
                    status = owner.status
                body = b'{"ok": true}' if status < 400 else b'{"error": "down"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self._thread.start()

    def answer(self, status: int) -> None:
        with self._lock:
            self.status = status

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def switchable_server():
    server = SwitchableServer()
    server.start()
    yield server
    server.stop()


class CeleryProcesses:
    """Starts ``celery worker`` and ``celery beat`` as subprocesses; stops them all."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir = log_dir
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 (closed with the process below)
        proc = subprocess.Popen(
            [CELERY, "-A", "integrations_site", *args], cwd=ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc, log_path))
        return proc

    def worker(self, *, pool: str = "threads", concurrency: int = 4) -> subprocess.Popen:
        return self._start("worker", [
            "worker", f"--pool={pool}", f"--concurrency={concurrency}", "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"journey-{os.getpid()}@%h",
        ])

    def beat(self) -> subprocess.Popen:
        return self._start("beat", [
            "beat", "-l", "info", "-S", "django_celery_beat.schedulers:DatabaseScheduler",
            "--schedule", str(self.log_dir / "beat-schedule"), "--pidfile=",
        ])

    def assert_running(self) -> None:
        for name, proc, _ in self.procs:
            assert proc.poll() is None, f"celery {name} exited with {proc.returncode}:\n{self.logs()}"

    def logs(self) -> str:
        parts = []
        for name, _, path in self.procs:
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"----- celery {name} log -----\n{text[-20000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture
def celery_processes(tmp_path):
    """``celery_processes.worker()`` / ``.beat()`` on the test database and a flushed Redis database.

    Use only in ``django_db(transaction=True)`` tests, and create the rows the
    processes need (PeriodicTask, integrations) before starting them.
    """
    url = fresh_broker_url(BROKER_DB)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test",
        "DATABASE_URL": current_database_url(),
        "CELERY_BROKER_URL": url,
        "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HEALTH_FAILURE_THRESHOLD": "3",
        "HEALTH_LATENCY_BUDGET_MS": "2000",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    processes = CeleryProcesses(tmp_path, env)
    try:
        yield processes
    finally:
        processes.stop()
        print(processes.logs())


@pytest.fixture
def stack(tmp_path):
    processes = Stack(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()
        print(processes.dump())


@pytest.fixture
def celery_on_private_redis(stack):
    """Point this process's Celery app (used by the sweep) at the private Redis, and back afterwards."""
    with celery_broker(stack.redis_url) as app:
        with app.connection_for_write() as conn:
            assert (conn.transport_cls, conn.hostname, conn.port) == ("redis", "127.0.0.1", stack.redis_port)
        with app.producer_or_acquire() as producer:
            assert (producer.connection.hostname, producer.connection.port) == ("127.0.0.1", stack.redis_port)
        yield app


# --- data -------------------------------------------------------------------------------
