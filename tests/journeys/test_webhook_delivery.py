"""Issue 4: webhook deliveries through real processes — gunicorn, a Celery worker, Redis, PostgreSQL.

Each test starts a private ``redis-server`` on a free port (the broker and the
cache of the processes it starts; the shared Redis is never touched), gunicorn
serving the app, and Celery workers, all against the pytest-django test
database. Deliveries are signed and sent over HTTP to ``/hooks/{path}``; the
integration behind the endpoint uses ``update_method=webhook``, so each
processed event leaves ExternalStatus / StatusChange rows that show how many
times it was applied.

- Redis stopped while deliveries arrive: every one is answered 202 and stored
  pending; after Redis is back, the sweep queues them and the worker processes
  each exactly once.
- The same delivery sent twice (at once, and again later as a re-signed retry)
  is stored once and processed once.
- A worker killed with SIGKILL inside an event's transaction: the transaction
  rolls back, the unacknowledged task is delivered again to a new worker
  (acks late, short visibility timeout) and the event is processed once.
"""
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from django.db import OperationalError, close_old_connections, connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit.services import SYSTEM
from connections.models import ExternalStatus, StatusChange
from connections.polling import statuses_store
from tests.connections.factories import IntegrationFactory
from tests.helpers import celery_broker, current_database_url
from webhooks import services
from webhooks.models import WebhookEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
STOP_TIMEOUT = 10
WAIT_TIMEOUT = 40
VISIBILITY_TIMEOUT = 5  # seconds; the settings' default (3600) is for production
STATUS_MAPPING = {"available": ["open"], "sold": ["sold"]}


# --- processes ------------------------------------------------------------------------


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

    def __init__(self, log_dir: Path):
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


# --- tests ------------------------------------------------------------------------------


def test_deliveries_accepted_while_redis_is_down_are_swept_and_processed_exactly_once(
    tenant, provider, stack, celery_on_private_redis, settings
):
    n = 50
    ids = [f"item-{i:03d}" for i in range(n)]
    integration = webhook_integration(tenant, provider, ids)
    endpoint, secret = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                data={"name": "loss", "signature_scheme": "hmac_sha256"})
    stack.redis_start()
    stack.gunicorn(workers=2)
    stack.redis_stop()

    def send(external_id):
        body = status_body(external_id)
        return stack.request("POST", endpoint.url_path, body, hmac_delivery(secret, body))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, ids))
    assert [status for status, _ in answers] == [202] * n, answers
    event_ids = {json.loads(body)["event_id"] for _, body in answers}
    assert len(event_ids) == n
    stored = WebhookEvent.objects.filter(endpoint=endpoint)
    assert {str(pk) for pk in stored.values_list("pk", flat=True)} == event_ids
    assert set(stored.values_list("status", "attempts")) == {("pending", 0)}

    # The receivers' hand-off really met a dead broker: every accepted id is reported as not queued.
    def handoff_failures():
        return sum(int(line.rsplit("events=", 1)[1].split()[0])
                   for line in stack.logs("gunicorn").splitlines() if "webhooks.handoff.failed" in line)

    wait_until(lambda: handoff_failures() >= n, 20, "the hand-off to fail for every event", stack)
    assert handoff_failures() == n

    stack.redis_start()
    worker = stack.worker("worker", concurrency=4)
    time.sleep(1.0)
    # Nothing reached the queue while Redis was down: the events wait for the sweep.
    assert stored.filter(status="pending").count() == n

    settings.WEBHOOK_HANDOFF_BATCH = 10  # several tasks, shared by the worker's threads
    assert services.events_sweep() == 0  # not yet older than WEBHOOK_SWEEP_AFTER_SECONDS
    later = timezone.now() + timedelta(seconds=settings.WEBHOOK_SWEEP_AFTER_SECONDS + 1)
    assert services.events_sweep(now=later) == n

    wait_until(lambda: stored.filter(status="processed").count() == n, WAIT_TIMEOUT,
               "every event to be processed", stack)
    assert services.events_sweep(now=later) == 0
    time.sleep(0.5)
    assert set(stored.values_list("status", "attempts", "last_error")) == {("processed", 1, "")}
    assert all(r == {"handled": "statuses", "seen": 1, "changed": 1, "unknown": {}}
               for r in stored.values_list("result", flat=True))
    assert_applied_once(integration, ids)
    assert stack.log_of(worker).count("succeeded") == n // settings.WEBHOOK_HANDOFF_BATCH


def test_the_same_delivery_sent_twice_is_stored_once_and_processed_once(tenant, provider, stack):
    integration = webhook_integration(tenant, provider, ["item-1"])
    endpoint, secret = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                data={"name": "dupes", "signature_scheme": "standard_webhooks"})
    stack.redis_start()
    stack.gunicorn(workers=2)
    worker = stack.worker("worker", concurrency=4)
    signer = Webhook(secret)
    body = status_body("item-1")

    def delivery(at: datetime) -> dict:
        return {"Content-Type": "application/json", "webhook-id": "msg_2Yb1dKq", "webhook-timestamp":
                str(int(at.timestamp())), "webhook-signature": signer.sign("msg_2Yb1dKq", at, body.decode())}

    first = delivery(datetime.now(tz=UTC))
    # Sent twice at the same moment: two gunicorn workers race on the unique dedupe key.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: stack.request("POST", endpoint.url_path, body, first), range(2)))
    assert sorted(status for status, _ in answers) == [200, 202], answers
    payloads = {status: json.loads(text) for status, text in answers}
    event_id = payloads[202]["event_id"]
    assert payloads[200] == {"status": "duplicate", "event_id": event_id}
    assert payloads[202] == {"status": "accepted", "event_id": event_id}

    stored = WebhookEvent.objects.filter(endpoint=endpoint)
    wait_until(lambda: stored.filter(status="processed").exists(), WAIT_TIMEOUT, "the event to be processed", stack)
    processed = stored.get()
    assert str(processed.pk) == event_id and processed.dedupe_key == "msg_2Yb1dKq"

    # The sender retries later: same webhook-id, new timestamp and signature.
    status, text = stack.request("POST", endpoint.url_path, body, delivery(datetime.now(tz=UTC)))
    assert (status, json.loads(text)) == (200, {"status": "duplicate", "event_id": event_id})
    time.sleep(1.0)  # longer than the hand-off interval: a second task would have run by now
    again = stored.get()
    assert (again.status, again.attempts, again.processed_at) == ("processed", 1, processed.processed_at)
    assert_applied_once(integration, ["item-1"])
    assert stack.log_of(worker).count("succeeded") == 1


def test_a_worker_killed_inside_the_events_transaction_leaves_it_to_be_redelivered_and_processed_once(
    tenant, provider, stack
):
    integration = webhook_integration(tenant, provider, ["item-1"])
    endpoint, secret = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                data={"name": "crash", "signature_scheme": "hmac_sha256"})
    stack.redis_start()
    stack.gunicorn(workers=1)
    short_visibility = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}
    first_worker = stack.worker("worker-a", concurrency=1, env=short_visibility)

    db_name = connection.settings_dict["NAME"]
    locker = psycopg.connect(current_database_url().replace("postgres://", "postgresql://", 1))
    try:
        # Hold the table the event's effects write to: the worker blocks inside its transaction.
        locker.execute("LOCK TABLE connections_externalstatus IN EXCLUSIVE MODE")
        locker_pid = locker.info.backend_pid
        body = status_body("item-1")
        status, text = stack.request("POST", endpoint.url_path, body, hmac_delivery(secret, body))
        assert status == 202, text
        event_id = json.loads(text)["event_id"]

        def blocked_worker_backend():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s AND wait_event_type = 'Lock'"
                    " AND query ILIKE %s", [db_name, locker_pid, "%connections_externalstatus%"],
                )
                row = cursor.fetchone()
            return row and row[0]

        backend = wait_until(blocked_worker_backend, 20, "the worker to wait on the locked table", stack)
        stack.kill(first_worker)
        event = WebhookEvent.objects.get(pk=event_id)
        assert (event.status, event.attempts) == ("pending", 0)  # its claim is not committed
        with pytest.raises(OperationalError), transaction.atomic():  # ...but its row lock is still held
            WebhookEvent.objects.select_for_update(nowait=True).get(pk=event_id)
    finally:
        locker.rollback()
        locker.close()

    # The orphaned backend gets the lock, finds its client gone, and rolls back.
    def backend_gone():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend])
            return cursor.fetchone() is None

    wait_until(backend_gone, 15, "the killed worker's database session to end")
    event = WebhookEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts, event.processed_at) == ("pending", 0, None)
    assert ExternalStatus.objects.get(integration=integration).raw_status == "open"
    assert not StatusChange.objects.filter(integration=integration).exists()

    # No sweep: the task taken by the killed worker is still unacknowledged in Redis. A consumer
    # puts such tasks back in the queue when they are older than the visibility timeout (kombu
    # scans when it starts, then every 100 s), so the new worker starts once that has passed.
    broker = redis.Redis.from_url(stack.redis_url)
    unacked = broker.zrange("unacked_index", 0, -1, withscores=True)
    assert len(unacked) == 1 and broker.llen("celery") == 0
    time.sleep(max(0.0, unacked[0][1] + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    second_worker = stack.worker("worker-b", concurrency=1, env=short_visibility)
    wait_until(lambda: WebhookEvent.objects.filter(pk=event_id, status="processed").exists(), WAIT_TIMEOUT,
               "the redelivered task to process the event", stack)
    event = WebhookEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts, event.last_error) == ("processed", 1, "")
    assert_applied_once(integration, ["item-1"])
    assert stack.log_of(second_worker).count("succeeded") == 1
    assert broker.zcard("unacked_index") == 0  # acknowledged after the work was committed


def test_the_receivers_insert_replaces_a_kept_connection_the_database_dropped_and_stores_the_event(
    tenant, integration
):
    """With CONN_HEALTH_CHECKS the insert itself checks the kept connection (no SELECT 1 round trip first)."""
    endpoint, _ = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration, data={"name": "pg"})
    kept = {k: connection.settings_dict[k] for k in ("CONN_HEALTH_CHECKS", "CONN_MAX_AGE")}
    connection.settings_dict.update(CONN_HEALTH_CHECKS=True, CONN_MAX_AGE=60)  # the production settings
    try:
        connection.close()
        connection.ensure_connection()
        dropped = connection.connection.info.backend_pid
        close_old_connections()  # what a new request does: its first statement checks the kept connection
        assert connection.health_check_enabled and not connection.health_check_done
        pg_url = current_database_url().replace("postgres://", "postgresql://", 1)
        with psycopg.connect(pg_url, autocommit=True) as other:
            assert other.execute("SELECT pg_terminate_backend(%s)", [dropped]).fetchone() == (True,)
            wait_until(lambda: other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                              [dropped]).fetchone() == (0,), 10, "the backend to end")
        event, created = services.event_accept(endpoint=endpoint, body=b'{"n": 1}', headers={},
                                               content_type="application/json", source_ip=None, dedupe_key="d-1")
        assert created and connection.connection.info.backend_pid != dropped
        stored = WebhookEvent.objects.get()
        assert (stored.pk, bytes(stored.body), stored.status) == (event.pk, b'{"n": 1}', "pending")
        again, created = services.event_accept(endpoint=endpoint, body=b'{"n": 1}', headers={},
                                               content_type="application/json", source_ip=None, dedupe_key="d-1")
        assert not created and again.pk == event.pk
    finally:
        connection.settings_dict.update(kept)
        connection.close()
