"""The demo upstream's notification receiver: Standard Webhooks signatures verified with the standard library
(checked against the hub's signer and the ``standardwebhooks`` package), refusals answered 401, the last 100
kept; and, end to end, the seeded demo endpoint's deliveries verified with the secrets read from the database."""
import http.client
import io
import json
import time
from datetime import UTC, datetime
from email.message import Message
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from standardwebhooks import Webhook

from audit.services import SYSTEM
from connections.models import Integration
from connections.services import connection_test_run
from demo.management.commands.seed_demo import DEMO_INTEGRATION
from demo.upstream import DemoUpstream, NotificationReceiver, Request
from demo.upstream.notifications import (
    KEEP,
    TOLERANCE_SECONDS,
    endpoint_secrets,
    endpoint_secrets_in_thread,
    verify,
)
from notifications import services as notification_services
from notifications.choices import EVENT_TYPES
from notifications.models import NotificationDelivery, NotificationEndpoint
from notifications.services import signing

from .conftest import call

SECRET = signing.new_secret()
OTHER_SECRET = signing.new_secret()
BODY = json.dumps({"type": "integration.health_changed", "timestamp": "2026-01-01T00:00:00Z",
                   "tenant_id": "t", "data": {"old_state": "unknown", "new_state": "healthy"}}).encode()


def signed(body: bytes = BODY, secrets=(SECRET,), message_id: str = "msg_1", at: float | None = None) -> dict:
    return signing.signed_headers(list(secrets), message_id, int(time.time() if at is None else at), body)


def post(url: str, body: bytes, headers: dict) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture
def receiving():
    server = DemoUpstream(port=0, notification_secrets=lambda: [SECRET]).start()
    yield server
    server.stop()


# --- verifying ---------------------------------------------------------------------------------------------------


def test_the_hubs_signature_verifies_and_a_changed_body_or_secret_does_not():
    now = time.time()
    assert verify(secrets=[SECRET], headers=signed(at=now), body=BODY, now=now)
    assert not verify(secrets=[SECRET], headers=signed(at=now), body=BODY + b" ", now=now)
    assert not verify(secrets=[OTHER_SECRET], headers=signed(at=now), body=BODY, now=now)
    assert not verify(secrets=[], headers=signed(at=now), body=BODY, now=now)


def test_a_signature_made_by_the_standardwebhooks_package_verifies():
    at = datetime.now(tz=UTC)
    signature = Webhook(SECRET).sign("msg_pkg", at, BODY.decode())
    headers = {"webhook-id": "msg_pkg", "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}
    assert verify(secrets=[SECRET], headers=headers, body=BODY, now=at.timestamp())


def test_during_a_rotation_either_signature_verifies():
    now = time.time()
    headers = signed(secrets=(OTHER_SECRET, SECRET), at=now)  # the new secret and the previous one both sign
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(secrets=[SECRET], headers=headers, body=BODY, now=now)
    assert verify(secrets=["whsec_not-base64!", OTHER_SECRET], headers=headers, body=BODY, now=now)


@pytest.mark.parametrize("change", [
    {"webhook-timestamp": "not-a-number"}, {"webhook-id": ""}, {"webhook-signature": "v2,abc"},
    {"webhook-signature": ""},
])
def test_missing_or_malformed_headers_do_not_verify(change):
    now = time.time()
    assert not verify(secrets=[SECRET], headers={**signed(at=now), **change}, body=BODY, now=now)


def test_a_timestamp_outside_the_tolerance_does_not_verify():
    now = time.time()
    assert verify(secrets=[SECRET], headers=signed(at=now - TOLERANCE_SECONDS + 5), body=BODY, now=now)
    assert not verify(secrets=[SECRET], headers=signed(at=now - TOLERANCE_SECONDS - 5), body=BODY, now=now)
    assert not verify(secrets=[SECRET], headers=signed(at=now + TOLERANCE_SECONDS + 5), body=BODY, now=now)


# --- the receiver over HTTP --------------------------------------------------------------------------------------


def test_a_good_signature_is_accepted_and_listed_as_verified(receiving):
    assert post(receiving.url("/notifications"), BODY, signed(message_id="msg_good")) == 204

    answer = call(receiving.url("/notifications"))
    assert answer.status == 200
    [entry] = answer.json()
    assert entry.keys() == {"type", "id", "verified", "received_at"}
    assert (entry["type"], entry["id"], entry["verified"]) == ("integration.health_changed", "msg_good", True)
    assert datetime.fromisoformat(entry["received_at"]).tzinfo is not None


def test_a_bad_signature_is_refused_with_401_and_listed_as_not_verified(receiving):
    assert post(receiving.url("/notifications"), BODY, signed(secrets=(OTHER_SECRET,), message_id="msg_bad")) == 401
    assert post(receiving.url("/notifications"), BODY, {}) == 401  # not signed at all
    tampered = signed(message_id="msg_tampered")
    assert post(receiving.url("/notifications"), BODY.replace(b"healthy", b"unhealthy"), tampered) == 401

    entries = call(receiving.url("/notifications")).json()
    assert [(e["id"], e["verified"]) for e in entries] == [("msg_tampered", False), (None, False),
                                                          ("msg_bad", False)]


def test_without_secrets_every_notification_is_refused(upstream):
    assert post(upstream.url("/notifications"), BODY, signed()) == 401


def test_the_list_keeps_the_last_100_newest_first(receiving):
    for n in range(KEEP + 5):
        assert post(receiving.url("/notifications"), BODY, signed(message_id=f"msg_{n}")) == 204

    entries = call(receiving.url("/notifications")).json()

    assert KEEP == 100 and len(entries) == KEEP
    assert entries[0]["id"] == f"msg_{KEEP + 4}" and entries[-1]["id"] == "msg_5"
    assert all(entry["verified"] for entry in entries)


def test_a_body_that_is_not_json_has_no_type(receiving):
    assert post(receiving.url("/notifications"), b"not json", signed(body=b"not json")) == 204
    [entry] = receiving.notifications.received()
    assert entry["type"] is None and entry["verified"] is True


def test_the_receiver_asks_for_the_secrets_on_each_notification():
    secrets = []
    receiver = NotificationReceiver(secrets=lambda: list(secrets))
    request = Request(method="POST", path="/notifications", query={}, headers=_message(signed()), body=BODY)
    assert receiver.receive(request).status == 401
    secrets.append(SECRET)  # the endpoint was created after the upstream started
    assert receiver.receive(request).status == 204


def _message(headers: dict) -> Message:
    message = Message()
    for name, value in headers.items():
        message[name] = value
    return message


# --- the secrets, from the database ------------------------------------------------------------------------------


def test_the_secrets_are_those_of_live_endpoints_at_the_receiver_with_a_rotations_previous_one(db, tenant):
    here, first = notification_services.notification_endpoint_create(
        actor=SYSTEM, tenant=tenant, data={"url": "http://127.0.0.1:8001/notifications"})
    notification_services.notification_endpoint_create(actor=SYSTEM, tenant=tenant,
                                                       data={"url": "http://127.0.0.1:8001/elsewhere"})
    gone, gone_secret = notification_services.notification_endpoint_create(
        actor=SYSTEM, tenant=tenant, data={"url": "http://localhost:9001/notifications"})
    notification_services.notification_endpoint_delete(actor=SYSTEM, endpoint=gone)
    assert endpoint_secrets() == [first]

    _, second = notification_services.notification_secret_rotate(actor=SYSTEM, endpoint=here)

    assert endpoint_secrets() == [second, first]  # both during the grace period
    assert gone_secret not in endpoint_secrets()


# --- end to end: the seeded demo endpoint --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_seeded_endpoint_receives_the_demos_health_change_and_a_ping_verified(monkeypatch, settings, sent_tasks):
    """What the run command does: seed_demo's endpoint, a health change from a connection test, the worker's
    delivery to the upstream, which verifies with the secret it reads from the database in its own thread."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    server = DemoUpstream(port=0, notification_secrets=endpoint_secrets_in_thread).start()
    try:
        monkeypatch.setenv("DEMO_UPSTREAM_URL", server.base_url)
        call_command("seed_demo", stdout=io.StringIO())
        endpoint = NotificationEndpoint.objects.get(tenant__slug="demo")
        assert endpoint.url == server.url("/notifications") and endpoint.events == EVENT_TYPES

        inventory = Integration.objects.get(tenant__slug="demo", name=DEMO_INTEGRATION)
        assert connection_test_run(integration=inventory, actor=SYSTEM).success
        delivery = NotificationDelivery.objects.get(endpoint=endpoint, type="integration.health_changed")
        assert notification_services.delivery_attempt(delivery_id=delivery.pk) == "delivered"
        ping = notification_services.notification_endpoint_test(actor=SYSTEM, endpoint=endpoint)
        assert (ping.status, ping.response_status) == ("delivered", 204)

        entries = call(server.url("/notifications")).json()
    finally:
        server.stop()
    assert [(e["type"], e["id"], e["verified"]) for e in entries] == [
        ("ping", ping.notification_id, True), ("integration.health_changed", delivery.notification_id, True)]
