"""Real processes for the journeys: a private redis-server, gunicorn and Celery workers on the test
database, and the deliveries and assertions the webhook journeys share."""
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from connections.models import ExternalStatus, StatusChange
from connections.services.statuses import statuses_store
from tests.connections.factories import IntegrationFactory
from tests.helpers import current_database_url

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
STOP_TIMEOUT = 10
STATUS_MAPPING = {"available": ["open"], "sold": ["sold"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, stack=None, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack is not None:
            stack.assert_running()
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    """A private redis-server, gunicorn and Celery workers as subprocesses; logs in files."""

    def __init__(self, log_dir: Path, env: dict | None = None):
        self.log_dir = log_dir
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis_proc = None
        self.http_port = None
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test",
            "DATABASE_URL": current_database_url(),
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # Production values that the test settings change.
            "WEBHOOK_ENDPOINT_CACHE_SECONDS": "1",
            "BATCHING_BACKGROUND": "1",
            **(env or {}),
        }

    def _spawn(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env or self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc, log_path))
        return proc

    # redis
    def redis_start(self) -> None:
        self.redis_proc = self._spawn("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no",
        ])
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(up, 10, "the private redis-server to answer PING")

    def redis_stop(self) -> None:
        self._stop(self.redis_proc)
        self.redis_proc = None

    # gunicorn
    def gunicorn(self, workers: int = 2) -> None:
        self.http_port = free_port()
        self._spawn("gunicorn", [
            str(BIN / "gunicorn"), "integrations_site.wsgi:application", "-w", str(workers),
            "--worker-class", "sync", "-b", f"127.0.0.1:{self.http_port}", "--timeout", "60",
        ])

        def ready():
            try:
                return self.request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(ready, 20, "gunicorn to answer /healthz", self)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=20)
        try:
            conn.request(method, path, body=body or None, headers={**(headers or {}), "Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    # celery
    def worker(self, name: str, *, concurrency: int = 4, env: dict | None = None) -> subprocess.Popen:
        proc = self._spawn(name, [
            str(BIN / "celery"), "-A", "integrations_site", "worker", "--pool=threads",
            f"--concurrency={concurrency}", "-l", "info", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:8]}@%h",
        ], env={**self.env, **(env or {})})
        log_path = self.procs[-1][2]
        wait_until(lambda: " ready." in log_path.read_text(errors="replace"), 30,
                   f"celery worker {name} to be ready", self)
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        path = next(p for _, pr, p in self.procs if pr is proc)
        return path.read_text(errors="replace")

    def logs(self, name: str = "") -> str:
        return "\n".join(
            path.read_text(errors="replace") for n, _, path in self.procs if n.startswith(name) and path.exists()
        )

    def assert_running(self) -> None:
        for name, proc, path in self.procs:
            if getattr(proc, "expected_exit", False):
                continue
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{path.read_text(errors='replace')}"

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the process group: no shutdown code runs, nothing is acknowledged."""
        proc.expected_exit = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)

    def _stop(self, proc: subprocess.Popen | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.expected_exit = True
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for _, proc, _ in reversed(self.procs):
            self._stop(proc)

    def dump(self) -> str:
        parts = []
        for name, proc, path in self.procs:
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"----- {name} (pid {proc.pid}, exit {proc.returncode}) -----\n{text[-20000:]}")
        return "\n".join(parts)


def webhook_integration(tenant, provider, ids: list[str]):
    """An update_method=webhook integration whose items ``ids`` are known as ``open`` (available)."""
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Webhook fed",
                                     update_method="webhook", status_mapping=STATUS_MAPPING)
    statuses_store(integration=integration, pairs=[(i, "open") for i in ids])
    assert ExternalStatus.objects.filter(integration=integration, raw_status="open").count() == len(ids)
    return integration


def hmac_delivery(secret: str, body: bytes) -> dict:
    return {"Content-Type": "application/json",
            "X-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def status_body(external_id: str, status: str = "sold") -> bytes:
    return json.dumps({"id": external_id, "status": status}).encode()


def assert_applied_once(integration, ids: list[str]) -> None:
    """Each item moved open → sold by exactly one StatusChange."""
    statuses = dict(ExternalStatus.objects.filter(integration=integration).values_list("external_id", "raw_status"))
    assert statuses == {i: "sold" for i in ids}
    changes = list(StatusChange.objects.filter(integration=integration)
                   .values_list("external_id", "old_raw", "new_raw", "new_canonical"))
    assert sorted(changes) == sorted((i, "open", "sold", "sold") for i in ids)
