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
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit.services import SYSTEM
from connections.models import ExternalStatus, StatusChange
from tests.helpers import current_database_url, kept_connection_dropped
from tests.journeys.stack import assert_applied_once, hmac_delivery, status_body, wait_until, webhook_integration
from webhooks import services
from webhooks.models import WebhookEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WAIT_TIMEOUT = 40
VISIBILITY_TIMEOUT = 5  # seconds; the settings' default (3600) is for production


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


@pytest.mark.database_server  # blocks the worker inside its transaction with a PostgreSQL table lock
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


@pytest.mark.database_server  # SQLite has no server to drop a kept connection
def test_the_receivers_insert_replaces_a_kept_connection_the_database_dropped_and_stores_the_event(
    tenant, integration
):
    """With CONN_HEALTH_CHECKS the insert itself checks the kept connection (no SELECT 1 round trip first)."""
    endpoint, _ = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration, data={"name": "pg"})
    with kept_connection_dropped() as dropped:
        event, created = services.event_accept(endpoint=endpoint, body=b'{"n": 1}', headers={},
                                               content_type="application/json", source_ip=None, dedupe_key="d-1")
        assert created and connection.connection.info.backend_pid != dropped
        stored = WebhookEvent.objects.get()
        assert (stored.pk, bytes(stored.body), stored.status) == (event.pk, b'{"n": 1}', "pending")
        again, created = services.event_accept(endpoint=endpoint, body=b'{"n": 1}', headers={},
                                               content_type="application/json", source_ip=None, dedupe_key="d-1")
        assert not created and again.pk == event.pk
