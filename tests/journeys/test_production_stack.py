"""The production settings as shipped, through real processes: gunicorn and a Celery worker started with
``integrations_site.settings.production`` and its required variables, on the pass's database, with a
private Redis as cache and broker.

Nothing the test settings switch off is off here: the receiver's per-process endpoint cache, the
background batching of usage counts and webhook hand-offs, persistent database connections with
health checks, the HTTPS redirect behind a proxy. The journey: a signed webhook delivery is received
and processed by the worker; a connection test runs in the web process and, queued, in the worker;
an OAuth token about to expire is refreshed by the worker against a real authorization server.
"""
import json
import os
import secrets
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.models import ConnectionCheck, Credential, Integration, UsageDaily
from connections.tasks import refresh_oauth_tokens
from integrations_site.nearcache import APPLICATION_NAME
from tenants.choices import Role
from tenants.services import api_key_create
from tests.connections.factories import IntegrationFactory
from tests.connections.oauth_server import (  # noqa: F401 (fixtures, known by their names)
    connect,
    oauth_integration_fixture,
    oauth_provider_fixture,
    oauth_server_fixture,
)
from tests.helpers import celery_broker
from tests.journeys.stack import assert_applied_once, hmac_delivery, status_body, wait_until, webhook_integration
from webhooks import services as webhook_services
from webhooks.models import WebhookEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WAIT = 40
# What a proxy in front of gunicorn adds: production redirects plain HTTP to HTTPS otherwise.
BEHIND_TLS = {"X-Forwarded-Proto": "https"}


def production_env() -> dict:
    return {
        "DJANGO_SETTINGS_MODULE": "integrations_site.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        # The test process writes the credentials the processes read: one key for both.
        "FERNET_KEYS": ",".join(settings.FERNET_KEYS),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "OAUTH_CALLBACK_URL": "https://hub.example.org/api/v1/oauth/callback",
        "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "USAGE_FLUSH_SECONDS": "0.5",
    }


@pytest.fixture
def production(stack):
    """gunicorn (2 sync workers) and a thread-pool worker under the production settings."""
    stack.env.update(production_env())
    # The production settings' own values, not those the Stack (or the test run) would pass.
    for name in ("WEBHOOK_ENDPOINT_CACHE_SECONDS", "BATCHING_BACKGROUND", "DB_CONN_MAX_AGE", "LOG_LEVEL"):
        stack.env.pop(name, None)
    stack.redis_start()
    stack.gunicorn(workers=2)
    stack.worker("worker", concurrency=4)
    return stack


def call(stack, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    status, text = stack.request(method, path, json.dumps(body).encode() if body is not None else b"",
                                 {**BEHIND_TLS, "X-API-Key": key, "Content-Type": "application/json"})
    return status, json.loads(text)


def test_the_production_settings_serve_webhooks_tests_and_refreshes_through_real_processes(
    tenant, provider, admin_client_api, oauth_integration, oauth_server, production, switchable_server
):
    stack = production
    api_key, key = api_key_create(actor=SYSTEM, tenant=tenant, name="ops", role=Role.TENANT_ADMIN)

    # Production really is on: plain HTTP is sent to HTTPS, and errors are still the envelope.
    status, _ = stack.request("GET", "/api/v1/catalog/", headers={"X-API-Key": key})
    assert status == 301
    status, body = call(stack, "GET", "/api/v1/integrations/00000000-0000-0000-0000-000000000000/", key)
    assert status == 404 and body["error"]["code"] == "INTEGRATION_NOT_FOUND"

    # --- a webhook delivery, received and processed ----------------------------------------------
    fed = webhook_integration(tenant, provider, ["item-1"])
    endpoint, secret = webhook_services.endpoint_create(
        actor=SYSTEM, tenant=tenant, integration=fed, data={"name": "prod", "signature_scheme": "hmac_sha256"})
    payload = status_body("item-1")
    status, text = stack.request("POST", f"/hooks/{endpoint.path}", payload,
                                 {**BEHIND_TLS, **hmac_delivery(secret, payload)})
    assert status == 202, text
    event_id = json.loads(text)["event_id"]
    wait_until(lambda: WebhookEvent.objects.filter(pk=event_id, status="processed").exists(), WAIT,
               "the worker to process the event (batched hand-off)", stack)
    assert_applied_once(fed, ["item-1"])
    # Usage is written by each process's background flush, with no request asking for it.
    wait_until(lambda: UsageDaily.objects.filter(integration=fed, webhooks=1).exists(), WAIT,
               "the web process's background usage flush", stack)

    # The endpoint cache is on: a secret rotated in another process verifies at once all the same.
    _, rotated = webhook_services.webhook_secret_rotate(actor=SYSTEM, endpoint=endpoint, grace_seconds=0)
    second = status_body("item-1", status="open")
    status, text = stack.request("POST", f"/hooks/{endpoint.path}", second,
                                 {**BEHIND_TLS, **hmac_delivery(rotated, second)})
    assert status == 202, text
    status, text = stack.request("POST", f"/hooks/{endpoint.path}", second,
                                 {**BEHIND_TLS, **hmac_delivery(secret, second + b" ")})
    assert status == 401 and json.loads(text)["error"]["code"] == "SIGNATURE_INVALID"

    # --- connection tests: in the web process, and queued to the worker ---------------------------
    checked = IntegrationFactory(tenant=tenant, provider=provider, name="Checked", api_base_url=switchable_server.url,
                                 test_endpoint="/ping", retry_count=0)
    status, body = call(stack, "POST", f"/api/v1/integrations/{checked.pk}/test", key)
    assert status == 200 and body["success"] is True and body["status_code"] == 200, body
    status, body = call(stack, "POST", f"/api/v1/integrations/{checked.pk}/test?async=1", key)
    assert status == 202 and body["status"] == "queued", body
    done = wait_until(
        lambda: ConnectionCheck.objects.filter(pk=body["check_id"], state="completed").first(), WAIT,
        "the worker to run the queued test", stack)
    assert done.success is True and switchable_server.hits == 2

    # --- an OAuth token about to expire, refreshed by the worker ----------------------------------
    with celery_broker("memory://"):  # the test queued by the callback stays in this process
        answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302 and answer["Location"].endswith("status=connected")
    credential = Credential.objects.get(integration=oauth_integration, user__isnull=True)
    old = dict(credential.payload)
    Credential.objects.filter(pk=credential.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    with celery_broker(stack.redis_url):
        refresh_oauth_tokens.delay()
    fresh = wait_until(
        lambda: Credential.objects.filter(pk=credential.pk, version=credential.version + 1).first(), WAIT,
        "the worker to refresh the token", stack)
    assert fresh.status == "active" and fresh.payload["access_token"] != old["access_token"]
    assert oauth_server.access_token_is_live(fresh.payload["access_token"])
    assert fresh.expires_at > timezone.now() + timedelta(minutes=55)
    assert AuditEvent.objects.filter(action="oauth.refreshed", target_id=str(oauth_integration.pk)).exists()

    # The refreshed token works for a test through the production web process.
    status, body = call(stack, "POST", f"/api/v1/integrations/{oauth_integration.pk}/test", key)
    assert status == 200 and body["success"] is True, body
    assert len(oauth_server.refresh_calls()) == 1
    time.sleep(0.2)
    stack.assert_running()

    # --- an API key revoked in one web worker is refused at once by every one ----------------------
    # Each worker keeps its own copy of the key (integrations_site/nearcache.py) and listens for changes.
    detail = f"/api/v1/integrations/{checked.pk}/"
    listening = redis.Redis.from_url(stack.redis_url)

    def both_listen() -> bool:  # a worker starts listening at its first request with a key
        assert call(stack, "GET", detail, key)[0] == 200
        return dict(listening.pubsub_numsub("auth:api-key:forget"))[b"auth:api-key:forget"] == 2

    wait_until(both_listen, WAIT, "both gunicorn workers to listen for forgotten keys", stack)
    for _ in range(12):
        assert call(stack, "GET", detail, key)[0] == 200

    # --- an integration changed by another process, past the ORM, is answered changed at once -----
    # Both workers now keep the detail's rows (connections.selectors.INTEGRATION_COPIES, on PostgreSQL).
    if connection.vendor == "postgresql":
        wait_until(lambda: _listeners(stack) == 2, WAIT, "both gunicorn workers to LISTEN for changed rows", stack)
    Integration.objects.filter(pk=checked.pk).update(name="Renamed past the ORM")
    for _ in range(12):
        status, body = call(stack, "GET", detail, key)
        assert status == 200 and body["name"] == "Renamed past the ORM", body

    _, admin_key = api_key_create(actor=SYSTEM, tenant=tenant, name="admin", role=Role.TENANT_ADMIN)
    status, text = stack.request("DELETE", f"/api/v1/api-keys/{api_key.pk}/", headers={**BEHIND_TLS,
                                                                                       "X-API-Key": admin_key})
    assert status == 204, text
    for _ in range(12):
        status, body = call(stack, "GET", detail, key)
        assert status == 401 and "revoked" in body["error"]["message"], body


def _listeners(stack) -> int:
    """The connections to the test database that LISTEN for changed integration rows, this process's aside."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name LIKE %s AND application_name <> %s",
                       [f"{APPLICATION_NAME}:%", f"{APPLICATION_NAME}:{os.getpid()}"])
        return cursor.fetchone()[0]
