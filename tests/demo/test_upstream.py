"""The demo upstream over real HTTP: health, the changing status list, credential refusals, the OAuth
authorization server (code + PKCE, refresh rotation, revocation), and the webhook sender against the hub."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client as DjangoClient

from audit.services import SYSTEM
from catalog.management.commands.seed_catalog import CANONICAL_STATUS_MAPPING
from connections.models import ExternalStatus, StatusChange
from connections.services.statuses import map_status, raw_to_canonical
from demo.upstream import (
    CLIENT_ID,
    CLIENT_SECRET,
    INVENTORY_API_KEY,
    PAYMENTS_PROVIDER,
    PAYMENTS_TOKEN,
    SHIPPING_PASSWORD,
    SHIPPING_USERNAME,
    UNKNOWN_STATUS,
    DemoUpstream,
    Response,
    Route,
    WebhookSender,
)
from demo.upstream.api import INVENTORY_STATUSES
from demo.upstream.oauth import Client, s256
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import TenantFactory
from webhooks import services as webhook_services
from webhooks.models import WebhookEvent
from webhooks.services.handoff import PROCESS_EVENTS

from .conftest import CALLBACK, ROTATE_EVERY, approve, basic, bearer, call, consent_form

ROOT = Path(__file__).resolve().parent.parent.parent
VERIFIER = "v" * 43 + "-demo-verifier"


# --- REST API ----------------------------------------------------------------------------------------------


def test_health_answers_without_credentials(upstream):
    answer = call(upstream.url("/health"))
    assert answer.status == 200
    assert answer.json()["status"] == "ok"


def test_unknown_paths_are_404_and_other_methods_405(upstream):
    assert call(upstream.url("/nowhere")).status == 404
    wrong = call(upstream.url("/health"), "POST", form={})
    assert wrong.status == 405 and wrong.headers["allow"] == "GET"


def test_the_route_table_takes_new_routes_and_streams(upstream):
    events = [b"id: 1\ndata: {\"id\": \"SKU-001\", \"status\": \"sold\"}\n\n", b"id: 2\ndata: {}\n\n"]
    upstream.routes[("GET", "/inventory/stream")] = Route(
        lambda request: Response(200, content_type="text/event-stream", stream=iter(events)), auth="api_key")

    assert call(upstream.url("/inventory/stream")).status == 401
    answer = call(upstream.url("/inventory/stream"), headers={"X-API-Key": INVENTORY_API_KEY})

    assert answer.status == 200 and answer.headers["content-type"] == "text/event-stream"
    assert "content-length" not in answer.headers and answer.headers["connection"] == "close"
    assert answer.body == b"".join(events)


def inventory(upstream) -> dict[str, str]:
    answer = call(upstream.url("/inventory/items"), headers={"X-API-Key": INVENTORY_API_KEY})
    assert answer.status == 200, answer.body
    return {item["id"]: item["status"] for item in answer.json()["items"]}


def test_the_status_list_changes_every_few_seconds_some_items_at_a_time(upstream, clock):
    first = inventory(upstream)
    assert inventory(upstream) == first  # within one tick nothing moves
    clock.advance(ROTATE_EVERY)
    second = inventory(upstream)

    assert set(second) == set(first) and len(first) == 6
    changed = {k for k in first if first[k] != second[k]}
    assert changed and changed != set(first)  # some change, some stay


def test_the_raw_statuses_are_known_to_the_demo_mapping_but_one(upstream, clock):
    seen = set()
    for _ in range(len(INVENTORY_STATUSES) * 3):
        seen |= set(inventory(upstream).values())
        clock.advance(ROTATE_EVERY)
    mapping = {raw: canonical for canonical, raws in CANONICAL_STATUS_MAPPING.items() for raw in raws}

    assert seen == set(INVENTORY_STATUSES)
    assert {raw for raw in seen if map_status(raw, mapping) is None} == {UNKNOWN_STATUS}


CREDENTIALS = [
    ("/inventory/items", {"X-API-Key": INVENTORY_API_KEY}, {"X-API-Key": "wrong-key"}, "ApiKey"),
    ("/payments/charges", bearer(PAYMENTS_TOKEN), bearer("wrong-token"), "Bearer"),
    ("/shipping/shipments", basic(SHIPPING_USERNAME, SHIPPING_PASSWORD), basic(SHIPPING_USERNAME, "nope"), "Basic"),
]


@pytest.mark.parametrize(("path", "good", "bad", "challenge"), CREDENTIALS)
def test_each_service_answers_401_without_its_credential(upstream, path, good, bad, challenge):
    for headers in ({}, bad, {"Authorization": "Bearer " + INVENTORY_API_KEY}):
        refused = call(upstream.url(path), headers=headers)
        assert refused.status == 401, (path, headers)
        assert refused.headers["www-authenticate"].startswith(challenge)
        assert refused.json()["error"] == "unauthorized"
    assert call(upstream.url(path), headers=good).status == 200


def test_the_crm_needs_a_live_access_token(upstream):
    assert call(upstream.url("/crm/me")).status == 401
    assert call(upstream.url("/crm/me"), headers=bearer(PAYMENTS_TOKEN)).status == 401
    assert call(upstream.url("/crm/me"), headers=bearer("dat.forged.token")).status == 401


# --- OAuth authorization server ---------------------------------------------------------------------------------


def authorize_url(upstream, **overrides) -> str:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": CALLBACK, "state": "st-123",
              "scope": "profile contacts.read", "code_challenge": s256(VERIFIER), "code_challenge_method": "S256",
              **overrides}
    return upstream.url("/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None}))


CLIENT_BASIC = basic(CLIENT_ID, CLIENT_SECRET)


def get_code(upstream) -> str:
    answer = approve(authorize_url(upstream))
    assert answer.status == 302, answer.body
    return answer.location_query["code"]


def exchange(upstream, code: str, verifier: str = VERIFIER, headers=None, **form):
    return call(upstream.url("/oauth/token"), "POST", headers=CLIENT_BASIC if headers is None else headers,
                form={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                      "code_verifier": verifier, **form})


def refresh(upstream, token: str):
    return call(upstream.url("/oauth/token"), "POST", headers=CLIENT_BASIC,
                form={"grant_type": "refresh_token", "refresh_token": token})


def tokens(upstream) -> dict:
    answer = exchange(upstream, get_code(upstream))
    assert answer.status == 200, answer.body
    return answer.json()


def test_authorize_shows_a_consent_page_and_allow_redirects_with_code_and_state(upstream):
    page = call(authorize_url(upstream))
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"Allow" in page.body and b"contacts.read" in page.body

    answer = approve(authorize_url(upstream))

    assert answer.status == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = answer.location_query
    assert query["state"] == "st-123" and query["code"].startswith("dac_")


def test_deny_redirects_with_access_denied(upstream):
    page = call(authorize_url(upstream))
    answer = call(upstream.url("/oauth/authorize"), "POST", form={**consent_form(page.body), "decision": "deny"})
    assert answer.status == 302
    assert answer.location_query["error"] == "access_denied" and answer.location_query["state"] == "st-123"


def test_auto_approve_redirects_at_once(upstream):
    upstream.oauth.auto_approve = True
    answer = call(authorize_url(upstream))
    assert answer.status == 302 and answer.location_query["code"]


@pytest.mark.parametrize("override", [{"client_id": "someone-else"}, {"redirect_uri": "https://evil.example/cb"}])
def test_an_unknown_client_or_redirect_uri_is_an_error_page_never_a_redirect(upstream, override):
    answer = call(authorize_url(upstream, **override))
    assert answer.status == 400 and "location" not in answer.headers


@pytest.mark.parametrize("override", [{"code_challenge": None}, {"code_challenge_method": "plain"},
                                      {"response_type": "token"}])
def test_authorize_requires_the_code_flow_with_pkce_s256(upstream, override):
    upstream.oauth.auto_approve = True
    answer = call(authorize_url(upstream, **override))
    assert answer.status == 302
    assert answer.location_query["error"] in ("invalid_request", "unsupported_response_type")
    assert "code" not in answer.location_query


def test_the_code_exchange_verifies_pkce_and_the_code_is_single_use(upstream):
    wrong = exchange(upstream, get_code(upstream), verifier="w" * 50)
    assert wrong.status == 400 and wrong.json()["error"] == "invalid_grant"

    code = get_code(upstream)
    answer = exchange(upstream, code)
    assert answer.status == 200, answer.body
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "profile contacts.read" and body["refresh_token"]
    me = call(upstream.url("/crm/me"), headers=bearer(body["access_token"]))
    assert me.status == 200 and me.json()["scopes"] == ["profile", "contacts.read"]

    again = exchange(upstream, code)
    assert again.status == 400 and again.json()["error"] == "invalid_grant"


def test_the_code_must_come_back_with_its_redirect_uri_and_in_time(upstream, clock):
    mismatch = exchange(upstream, get_code(upstream), redirect_uri="http://127.0.0.1:8000/other")
    assert mismatch.status == 400 and mismatch.json()["error"] == "invalid_grant"
    code = get_code(upstream)
    clock.advance(61)
    late = exchange(upstream, code)
    assert late.status == 400 and late.json()["error"] == "invalid_grant"


def test_the_client_authenticates_the_way_it_is_registered(upstream):
    as_post = exchange(upstream, get_code(upstream), headers={}, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert as_post.status == 401 and as_post.json()["error"] == "invalid_client"
    wrong_secret = exchange(upstream, get_code(upstream), headers=basic(CLIENT_ID, "not-the-secret"))
    assert wrong_secret.status == 401 and wrong_secret.headers["www-authenticate"].startswith("Basic")
    assert exchange(upstream, get_code(upstream), headers={}).status == 401

    upstream.oauth.clients["post-client"] = Client("post-client", "post-client-secret-123", "client_secret_post")
    code = approve(authorize_url(upstream, client_id="post-client")).location_query["code"]
    posted = exchange(upstream, code, headers={}, client_id="post-client", client_secret="post-client-secret-123")
    assert posted.status == 200, posted.body


def test_a_refresh_rotates_the_refresh_token_and_a_reused_one_ends_the_grant(upstream):
    first = tokens(upstream)

    second = refresh(upstream, first["refresh_token"])
    assert second.status == 200, second.body
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    assert call(upstream.url("/crm/me"), headers=bearer(rotated["access_token"])).status == 200

    reused = refresh(upstream, first["refresh_token"])
    assert reused.status == 400 and reused.json()["error"] == "invalid_grant"
    # Someone kept a spent token: the whole grant is over, the rotated tokens too.
    assert refresh(upstream, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert call(upstream.url("/crm/me"), headers=bearer(rotated["access_token"])).status == 401


def test_refresh_tokens_are_bound_to_their_client(upstream):
    upstream.oauth.clients["other"] = Client("other", "other-client-secret-456", "client_secret_basic")
    stolen = tokens(upstream)["refresh_token"]
    answer = call(upstream.url("/oauth/token"), "POST", headers=basic("other", "other-client-secret-456"),
                  form={"grant_type": "refresh_token", "refresh_token": stolen})
    assert answer.status == 400 and answer.json()["error"] == "invalid_grant"


def test_access_tokens_expire(upstream, clock):
    access = tokens(upstream)["access_token"]
    clock.advance(3601)
    assert call(upstream.url("/crm/me"), headers=bearer(access)).status == 401


def test_revoking_the_refresh_token_ends_the_grant_and_its_access_tokens(upstream):
    issued = tokens(upstream)
    other = tokens(upstream)  # another grant is not touched

    answer = call(upstream.url("/oauth/revoke"), "POST", headers=CLIENT_BASIC,
                  form={"token": issued["refresh_token"], "token_type_hint": "refresh_token"})

    assert answer.status == 200
    assert call(upstream.url("/crm/me"), headers=bearer(issued["access_token"])).status == 401
    assert refresh(upstream, issued["refresh_token"]).json()["error"] == "invalid_grant"
    assert call(upstream.url("/crm/me"), headers=bearer(other["access_token"])).status == 200


def test_revoking_an_access_token_ends_that_token_only(upstream):
    issued = tokens(upstream)
    call(upstream.url("/oauth/revoke"), "POST", headers=CLIENT_BASIC, form={"token": issued["access_token"]})
    assert call(upstream.url("/crm/me"), headers=bearer(issued["access_token"])).status == 401
    assert refresh(upstream, issued["refresh_token"]).status == 200


def test_revoke_needs_client_authentication_and_accepts_unknown_tokens(upstream):
    assert call(upstream.url("/oauth/revoke"), "POST", form={"token": "x"}).status == 401
    assert call(upstream.url("/oauth/revoke"), "POST", headers=CLIENT_BASIC, form={"token": "unknown"}).status == 200


def test_tokens_survive_a_restart_of_the_upstream(upstream, clock):
    issued = tokens(upstream)
    upstream.stop()
    restarted = DemoUpstream(port=0, clock=clock, redirect_uris=[CALLBACK]).start()
    try:
        assert call(restarted.url("/crm/me"), headers=bearer(issued["access_token"])).status == 200
        assert refresh(restarted, issued["refresh_token"]).status == 200
    finally:
        restarted.stop()
    upstream.httpd = restarted.httpd  # the fixture's stop() has something to close


# --- the webhook sender -------------------------------------------------------------------------------------


@pytest.fixture
def recorded_handoff(settings, sent_tasks):
    settings.WEBHOOK_HANDOFF = "immediate"
    return sent_tasks[PROCESS_EVENTS]


def payments_endpoint(tenant, scheme: str, **data):
    provider = ProviderFactory(slug=PAYMENTS_PROVIDER, name="Demo Payments", auth_type="bearer")
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Demo payments", update_method="webhook",
                                     status_mapping=CANONICAL_STATUS_MAPPING)
    return webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                            data={"name": "Demo payments events", "signature_scheme": scheme, **data})


def client_post(url: str, body: bytes, headers: dict) -> int:
    """The sender's post, through the Django test client instead of a socket."""
    return DjangoClient().post(urlsplit(url).path, body, content_type="application/json", headers=headers).status_code


@pytest.mark.parametrize(("scheme", "extra"), [("standard_webhooks", {}),
                                               ("hmac_sha256", {}),
                                               ("hmac_sha256", {"signature_header": "X-Demo-Signature"})])
def test_a_delivery_is_accepted_by_the_receiver_and_processed_into_statuses(
    db, tenant, upstream, clock, recorded_handoff, scheme, extra
):
    endpoint, _ = payments_endpoint(tenant, scheme, **extra)
    sender = WebhookSender(hub_url="http://testserver", feed=upstream.payments, post=client_post)

    deliveries = sender.send_once()

    assert [(d.endpoint_id, d.status) for d in deliveries] == [(str(endpoint.pk), 202)]
    event = WebhookEvent.objects.get(endpoint=endpoint)
    assert recorded_handoff == [[str(event.pk)]]
    body = json.loads(bytes(event.body))
    assert body["type"] == "payment.status_updated" and len(body["items"]) == 4
    assert webhook_services.event_process(event_id=event.pk) == "processed"
    statuses = dict(ExternalStatus.objects.filter(integration=endpoint.integration)
                    .values_list("external_id", "raw_status"))
    assert statuses == {item["id"]: item["status"] for item in body["items"]}
    mapping = raw_to_canonical(endpoint.integration)
    assert all(map_status(raw, mapping) for raw in statuses.values())

    clock.advance(ROTATE_EVERY)
    sender.send_once()
    later = WebhookEvent.objects.filter(endpoint=endpoint).exclude(pk=event.pk).get()
    webhook_services.event_process(event_id=later.pk)
    assert StatusChange.objects.filter(integration=endpoint.integration).exists()


def test_each_delivery_is_a_new_event_even_with_unchanged_statuses(db, tenant, upstream, recorded_handoff):
    endpoint, _ = payments_endpoint(tenant, "hmac_sha256")
    sender = WebhookSender(hub_url="http://testserver", feed=upstream.payments, post=client_post)
    sender.send_once()
    sender.send_once()
    assert WebhookEvent.objects.filter(endpoint=endpoint).count() == 2


def test_only_live_active_endpoints_of_demo_payments_receive_deliveries(db, tenant, upstream, recorded_handoff):
    endpoint, _ = payments_endpoint(tenant, "hmac_sha256")
    inactive, _ = webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=endpoint.integration,
                                                   data={"name": "off", "active": False})
    other = IntegrationFactory(tenant=tenant, name="Elsewhere")
    webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=other, data={"name": "other"})
    sender = WebhookSender(hub_url="http://testserver", feed=upstream.payments, post=client_post)

    assert [d.endpoint_id for d in sender.send_once()] == [str(endpoint.pk)]
    assert not WebhookEvent.objects.filter(endpoint=inactive).exists()


def test_an_unreachable_hub_is_not_an_error(db, tenant, upstream):
    payments_endpoint(tenant, "standard_webhooks")

    def refused(url, body, headers):
        raise ConnectionRefusedError(111, "Connection refused")

    sender = WebhookSender(hub_url="http://127.0.0.1:9", feed=upstream.payments, post=refused)
    assert [d.status for d in sender.send_once()] == [None]


@pytest.mark.django_db(transaction=True)
def test_the_sender_thread_retries_until_the_hub_is_up_then_delivers(live_server, upstream, settings, sent_tasks):
    settings.WEBHOOK_HANDOFF = "immediate"
    endpoint, _ = payments_endpoint(TenantFactory(slug="live-demo"), "standard_webhooks")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there once closed
    sender = WebhookSender(hub_url=dead, feed=upstream.payments, every=0.1).start()
    try:
        time.sleep(0.5)
        assert sender._thread.is_alive() and not WebhookEvent.objects.exists()
        sender.hub_url = live_server.url  # the hub came up
        deadline = time.monotonic() + 10
        while not WebhookEvent.objects.filter(endpoint=endpoint).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sender.stop()
    assert WebhookEvent.objects.filter(endpoint=endpoint).exists()
    assert not sender._thread.is_alive()


# --- the command ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_demo_upstream_serves_until_sigterm():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_demo_upstream", "--port", str(port), "--send-every", "0"],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if call(f"http://127.0.0.1:{port}/health").status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        output = proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"listening at http://127.0.0.1:{port}/" in output and "stopping" in output
