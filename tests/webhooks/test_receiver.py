"""The public receiver ``POST /hooks/{path}``: routing, limits, dedupe, what is stored, and the hand-off."""
import hashlib
import http.client
import io
import json
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from audit.services import SYSTEM
from connections.models import Integration
from tests.helpers import assert_envelope, on_another_connection
from webhooks import services, signatures
from webhooks.models import WebhookEndpoint, WebhookEvent

from .signing import signed_headers

pytestmark = pytest.mark.usefixtures("queued")


def body_of(**extra) -> bytes:
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "status": "open", **extra}).encode()


def post(client, endpoint, body, headers=None, content_type="application/json", **extra):
    return client.post(endpoint.url_path, body, content_type=content_type, headers=headers or {}, **extra)


def signed_post(client, endpoint, secret, body, **kwargs):
    return post(client, endpoint, body, signed_headers(endpoint.signature_scheme, secret, body, **kwargs))


# --- routing ---------------------------------------------------------------------------------------------------


def test_an_unknown_path_is_a_404_envelope(client, db):
    assert_envelope(client.post("/hooks/no-such-path-here", b"{}", content_type="application/json"),
                    404, "NOT_FOUND")


def test_an_inactive_endpoint_is_a_404_and_counts_nothing(client, make_endpoint):
    endpoint, secret = make_endpoint(active=False)
    body = body_of()
    assert_envelope(signed_post(client, endpoint, secret, body), 404, "NOT_FOUND")
    assert not WebhookEvent.objects.exists()


def test_a_deleted_endpoint_is_a_404_and_its_events_stay_listed_and_replayable(
    client, make_endpoint, admin_client_api
):
    endpoint, secret = make_endpoint()
    accepted = signed_post(client, endpoint, secret, body_of())
    assert accepted.status_code == 202
    event_id = accepted.json()["event_id"]
    services.event_process(event_id=event_id)
    assert admin_client_api.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 204

    assert_envelope(signed_post(client, endpoint, secret, body_of()), 404, "NOT_FOUND")
    listed = admin_client_api.get("/api/v1/webhook-events/", {"endpoint": str(endpoint.pk)}).json()
    assert [row["id"] for row in listed["results"]] == [event_id]
    assert admin_client_api.get(f"/api/v1/webhook-events/{event_id}/").json()["status"] == "processed"
    assert admin_client_api.post(f"/api/v1/webhook-events/{event_id}/replay").status_code == 202
    assert WebhookEvent.objects.get(pk=event_id).status == "pending"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_methods_other_than_post_are_a_405_envelope(client, make_endpoint, method):
    endpoint, _ = make_endpoint()
    response = getattr(client, method)(endpoint.url_path)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "POST"


def test_the_receiver_needs_no_csrf_token_session_or_auth(make_endpoint):
    from django.test import Client

    endpoint, secret = make_endpoint()
    strict = Client(enforce_csrf_checks=True)
    assert signed_post(strict, endpoint, secret, body_of()).status_code == 202


# --- body size -------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_by_content_length_before_the_signature(client, make_endpoint):
    endpoint, secret = make_endpoint(max_body_bytes=64)
    big = body_of(pad="x" * 100)
    assert_envelope(signed_post(client, endpoint, secret, big), 413, "PAYLOAD_TOO_LARGE")
    assert_envelope(post(client, endpoint, big, {"X-Signature": "00"}), 413, "PAYLOAD_TOO_LARGE")
    assert not WebhookEvent.objects.exists()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signature_failures == 0


def test_a_body_exactly_at_the_limit_is_accepted(client, make_endpoint):
    body = body_of()
    endpoint, secret = make_endpoint(max_body_bytes=len(body))
    assert signed_post(client, endpoint, secret, body).status_code == 202


class ChunkedInput(io.RawIOBase):
    """A server-terminated input stream (as gunicorn gives for ``Transfer-Encoding: chunked``)
    that records how much was read."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.consumed = 0

    def readable(self):
        return True

    def read(self, size=-1):
        chunk = self._data.read(size)
        self.consumed += len(chunk)
        return chunk


def chunked_post(client, endpoint, body, headers):
    stream = ChunkedInput(body)
    response = client.generic(
        "POST", endpoint.url_path, b"", content_type="application/json", headers=headers,
        CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": stream, "wsgi.input_terminated": True},
    )
    return response, stream


def test_a_chunked_body_over_the_limit_is_413_without_reading_it_all(client, make_endpoint):
    endpoint, secret = make_endpoint(max_body_bytes=1000)
    big = body_of(pad="x" * 500_000)
    response, stream = chunked_post(client, endpoint, big, signed_headers("hmac_sha256", secret, big))
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert stream.consumed <= 1001
    assert not WebhookEvent.objects.exists()


def test_a_chunked_body_under_the_limit_is_read_whole_and_stored(client, make_endpoint):
    endpoint, secret = make_endpoint()
    body = body_of(pad="y" * 200_000)
    response, _ = chunked_post(client, endpoint, body, signed_headers("hmac_sha256", secret, body))
    assert response.status_code == 202, response.content
    assert bytes(WebhookEvent.objects.get(pk=response.json()["event_id"]).body) == body


@pytest.mark.parametrize("verify_signature", [False, True])
@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "\u00b2", " 8"])
def test_a_content_length_that_is_not_a_number_is_a_clean_4xx(client, make_endpoint, verify_signature, length):
    # Django reads such a body as empty, and an empty body is a valid delivery: refused before reading it.
    endpoint, secret = make_endpoint(verify_signature=verify_signature)
    response = client.generic("POST", endpoint.url_path, b'{"a": 1}', content_type="application/json",
                              CONTENT_LENGTH=length, headers=signed_headers("hmac_sha256", secret, b""))
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert not WebhookEvent.objects.exists()


# --- signature failures ----------------------------------------------------------------------------------------


def test_a_refused_signature_is_counted_and_nothing_is_stored(client, make_endpoint, queued):
    endpoint, secret = make_endpoint("github")
    for _ in range(3):
        body = body_of()
        response = post(client, endpoint, body, signed_headers("github", secret + "x", body))
        assert_envelope(response, 401, "SIGNATURE_INVALID")
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signature_failures == 3
    assert not WebhookEvent.objects.exists() and queued == []


def test_an_endpoint_without_verification_takes_any_body_empty_included(client, make_endpoint):
    endpoint, _ = make_endpoint(verify_signature=False)
    assert post(client, endpoint, body_of()).status_code == 202
    empty = post(client, endpoint, b"")
    assert empty.status_code == 202, empty.content
    assert bytes(WebhookEvent.objects.get(pk=empty.json()["event_id"]).body) == b""
    assert services.event_process(event_id=empty.json()["event_id"]) == "processed"


# --- empty bodies ----------------------------------------------------------------------------------------------

SCHEMES = ("hmac_sha256", "standard_webhooks", "stripe", "github", "slack", "shopify")


@pytest.mark.parametrize("update_method", ["polling", "webhook"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_empty_body_correctly_signed_is_accepted_stored_and_processed_as_recorded(
    client, make_endpoint, integration, queued, scheme, update_method
):
    Integration.objects.filter(pk=integration.pk).update(update_method=update_method)
    endpoint, secret = make_endpoint(scheme)
    response = signed_post(client, endpoint, secret, b"")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert bytes(event.body) == b"" and event.status == "pending"
    assert queued == [[str(event.pk)]]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signature_failures == 0

    assert services.event_process(event_id=event.pk) == "processed"
    event.refresh_from_db()
    assert event.result == {"handled": "recorded"} and event.last_error == "" and event.attempts == 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_empty_body_wrongly_signed_is_a_401_and_stores_nothing(client, make_endpoint, queued, scheme):
    endpoint, secret = make_endpoint(scheme)
    for headers in (signed_headers(scheme, signatures.new_secret(scheme), b""),  # another secret
                    signed_headers(scheme, secret, body_of()),  # a signature of another body
                    {}):  # no signature at all
        assert_envelope(post(client, endpoint, b"", headers), 401, "SIGNATURE_INVALID")
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signature_failures == 3
    assert not WebhookEvent.objects.exists() and queued == []


def test_a_body_of_whitespace_only_is_processed_as_recorded(client, make_endpoint, integration):
    Integration.objects.filter(pk=integration.pk).update(update_method="webhook")
    endpoint, secret = make_endpoint()
    response = signed_post(client, endpoint, secret, b" \r\n")
    assert response.status_code == 202
    assert services.event_process(event_id=response.json()["event_id"]) == "processed"
    assert WebhookEvent.objects.get(pk=response.json()["event_id"]).result == {"handled": "recorded"}


# --- duplicates ------------------------------------------------------------------------------------------------


def _deliver_twice(client, endpoint, secret, scheme):
    """The same delivery sent twice the way the sender retries it (re-signed, same id)."""
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"id": event_id, "status": "open"}).encode()
    now = int(time.time())
    first = post(client, endpoint, body, signed_headers(scheme, secret, body, ts=now - 10, msg_id="delivery-1"))
    again = post(client, endpoint, body, signed_headers(scheme, secret, body, ts=now, msg_id="delivery-1"))
    return first, again, event_id


@pytest.mark.parametrize("scheme, expected_key", [
    ("standard_webhooks", "delivery-1"),
    ("github", "BODY_HASH"),  # the delivery id header is not signed
    ("shopify", "BODY_HASH"),
    ("stripe", "EVENT_ID"),
    ("hmac_sha256", "BODY_HASH"),
    ("slack", "BODY_HASH"),
])
def test_a_repeated_delivery_is_stored_once_and_answers_the_original_event(
    client, make_endpoint, queued, scheme, expected_key
):
    endpoint, secret = make_endpoint(scheme)
    first, again, event_id = _deliver_twice(client, endpoint, secret, scheme)
    assert first.status_code == 202 and first.json()["status"] == "accepted"
    assert again.status_code == 200, again.content
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    event = WebhookEvent.objects.get()
    if expected_key == "EVENT_ID":
        assert event.dedupe_key == event_id
    elif expected_key == "BODY_HASH":
        assert event.dedupe_key.startswith("sha256:") and len(event.dedupe_key) == 7 + 64
    else:
        assert event.dedupe_key == expected_key
    assert queued == [[first.json()["event_id"]]]


@pytest.mark.parametrize("event_id, expected", [
    ("evt_\u0000nul", "evt_nul"), ("e" * 300, "e" * 255),
])
def test_a_stripe_event_id_is_made_storable(client, make_endpoint, event_id, expected):
    endpoint, secret = make_endpoint("stripe")
    body = json.dumps({"id": event_id, "type": "charge.succeeded"}).encode()
    first = signed_post(client, endpoint, secret, body)
    assert first.status_code == 202, first.content
    assert signed_post(client, endpoint, secret, body).json()["event_id"] == first.json()["event_id"]
    assert WebhookEvent.objects.get().dedupe_key == expected


@pytest.mark.parametrize("body", [b'[{"id": "evt_1"}]', b"not json at all", b'{"type": "no id"}', b"\xff\xfe"])
def test_a_stripe_body_without_an_event_id_is_deduped_by_its_hash(client, make_endpoint, body):
    endpoint, secret = make_endpoint("stripe")
    headers = signed_headers("stripe", secret, body, raw=True)
    assert post(client, endpoint, body, headers).status_code == 202
    assert post(client, endpoint, body, headers).status_code == 200
    assert WebhookEvent.objects.get().dedupe_key.startswith("sha256:")


@pytest.mark.parametrize("scheme", ["github", "shopify", "hmac_sha256"])
def test_a_captured_delivery_sent_again_with_another_id_header_is_a_duplicate(client, make_endpoint, scheme):
    """Schemes that sign neither an id nor a timestamp: changing the unsigned id header replays nothing."""
    endpoint, secret = make_endpoint(scheme)
    body = body_of()
    captured = signed_headers(scheme, secret, body, msg_id="a")
    first = post(client, endpoint, body, captured)
    assert first.status_code == 202
    for header in ("X-GitHub-Delivery", "X-Shopify-Webhook-Id"):
        again = post(client, endpoint, body, {**captured, header: "b"})
        assert again.status_code == 200 and again.json() == {"status": "duplicate",
                                                             "event_id": first.json()["event_id"]}
    assert WebhookEvent.objects.count() == 1


@pytest.mark.parametrize("scheme", ["standard_webhooks", "stripe"])
def test_a_new_signed_delivery_id_with_the_same_body_is_a_new_event(client, make_endpoint, scheme):
    endpoint, secret = make_endpoint(scheme)
    for msg_id in ("a", "b"):
        body = body_of() if scheme != "stripe" else json.dumps({"id": f"evt_{msg_id}", "n": 1}).encode()
        response = post(client, endpoint, body, signed_headers(scheme, secret, body, msg_id=msg_id))
        assert response.status_code == 202, response.content
    assert WebhookEvent.objects.count() == 2


def test_dedupe_is_per_endpoint(client, make_endpoint):
    (one, s1), (two, s2) = make_endpoint("github"), make_endpoint("github")
    body = body_of()
    for endpoint, secret in ((one, s1), (two, s2)):
        response = post(client, endpoint, body, signed_headers("github", secret, body, msg_id="same"))
        assert response.status_code == 202
    assert WebhookEvent.objects.count() == 2  # the same body at two endpoints is two deliveries


@pytest.mark.parametrize("scheme", ["github", "hmac_sha256"])
def test_with_dedupe_off_a_repeat_is_stored_twice(client, make_endpoint, scheme):
    endpoint, secret = make_endpoint(scheme, dedupe=False)
    first, again, _ = _deliver_twice(client, endpoint, secret, scheme)
    assert first.status_code == again.status_code == 202
    assert first.json()["event_id"] != again.json()["event_id"]
    assert list(WebhookEvent.objects.values_list("dedupe_key", flat=True)) == [None, None]


# --- what is stored --------------------------------------------------------------------------------------------


def test_the_stored_event_keeps_headers_but_not_credentials_plus_ip_and_content_type(client, make_endpoint):
    endpoint, secret = make_endpoint("github")
    body = body_of()
    headers = {
        **signed_headers("github", secret, body, msg_id="d-42"),
        "Authorization": "Bearer top-secret-token", "Cookie": "sessionid=abc", "X-Api-Key": "k-123",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==", "X-GitHub-Event": "push", "User-Agent": "GitHub-Hookshot/1",
    }
    response = post(client, endpoint, body, headers, content_type="application/json; charset=utf-8",
                    REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 202
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    names = {name.lower() for name in event.headers}
    assert {"x-github-event", "x-github-delivery", "x-hub-signature-256", "user-agent"} <= names
    assert not names & {"authorization", "cookie", "x-api-key", "proxy-authorization"}
    assert "top-secret-token" not in json.dumps(event.headers)
    assert event.source_ip == "203.0.113.9"
    assert event.content_type == "application/json"
    assert event.tenant_id == endpoint.tenant_id and event.status == "pending" and event.attempts == 0
    assert abs((timezone.now() - event.received_at).total_seconds()) < 10
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signature_failures == 0


def test_a_form_body_is_stored_with_its_content_type(client, make_endpoint):
    endpoint, secret = make_endpoint("slack")
    body = b"payload=%7B%22type%22%3A%22block_actions%22%7D&token=x"
    response = post(client, endpoint, body, signed_headers("slack", secret, body),
                    content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202
    event = WebhookEvent.objects.get()
    assert bytes(event.body) == body and event.content_type == "application/x-www-form-urlencoded"


@pytest.mark.django_db(transaction=True)
def test_the_event_is_committed_before_it_is_handed_off_and_answered(client, make_endpoint, queued, sent_tasks):
    endpoint, secret = make_endpoint()
    seen_at_handoff = []

    def second_connection_count(event_id):
        return on_another_connection(
            lambda: [(status,) for status in WebhookEvent.objects.filter(pk=event_id).values_list("status", flat=True)]
        )

    sent_tasks.on_send = lambda name, args: seen_at_handoff.append(second_connection_count(args[0][0]))
    response = signed_post(client, endpoint, secret, body_of())
    assert response.status_code == 202
    assert seen_at_handoff == [[("pending",)]]
    assert second_connection_count(response.json()["event_id"]) == [("pending",)]


# --- rate limit ------------------------------------------------------------------------------------------------


def _clear_of_the_minute_boundary():
    if 60 - time.time() % 60 < 5:
        time.sleep(60 - time.time() % 60 + 0.5)


def test_the_per_endpoint_rate_limit_answers_429_with_retry_after(client, make_endpoint):
    endpoint, secret = make_endpoint(rate_limit_per_minute=3)
    other, other_secret = make_endpoint()
    _clear_of_the_minute_boundary()
    for _ in range(3):
        assert signed_post(client, endpoint, secret, body_of()).status_code == 202
    limited = signed_post(client, endpoint, secret, body_of())
    assert_envelope(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert WebhookEvent.objects.filter(endpoint=endpoint).count() == 3
    assert signed_post(client, other, other_secret, body_of()).status_code == 202


# --- hand-off --------------------------------------------------------------------------------------------------


def test_an_accepted_event_is_handed_to_the_queue(client, make_endpoint, queued):
    endpoint, secret = make_endpoint()
    response = signed_post(client, endpoint, secret, body_of())
    assert queued == [[response.json()["event_id"]]]


def test_the_batched_hand_off_sends_the_ids_in_one_task(client, make_endpoint, queued, settings):
    settings.WEBHOOK_HANDOFF = "batched"
    settings.WEBHOOK_HANDOFF_INTERVAL = 0.05
    endpoint, secret = make_endpoint()
    ids = [signed_post(client, endpoint, secret, body_of()).json()["event_id"] for _ in range(3)]
    deadline = time.monotonic() + 5
    while sorted(i for batch in queued for i in batch) != sorted(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(i for batch in queued for i in batch) == sorted(ids)
    assert len(queued) <= 3


def test_with_the_broker_down_the_delivery_is_still_accepted_and_the_sweep_queues_it_later(
    client, make_endpoint, queued, sent_tasks
):
    endpoint, secret = make_endpoint()

    sent_tasks.broker_down = True
    response = signed_post(client, endpoint, secret, body_of())
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    event = WebhookEvent.objects.get(pk=response.json()["event_id"])
    assert event.status == "pending"

    sent_tasks.broker_down = False
    sent = queued
    assert services.events_sweep() == 0 and sent == []  # too recent: its hand-off may still be on its way
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(seconds=31))
    assert services.events_sweep() == 1
    assert sent == [[str(event.pk)]]


def test_the_sweep_skips_events_waiting_for_a_retry_and_finished_ones(make_endpoint, queued):
    endpoint, _ = make_endpoint(verify_signature=False)
    old = timezone.now() - timedelta(minutes=5)
    rows = {}
    for name, fields in {
        "due": {},
        "retry_later": {"next_attempt_at": timezone.now() + timedelta(minutes=1)},
        "retry_due": {"next_attempt_at": timezone.now() - timedelta(seconds=1)},
        "processed": {"status": "processed"},
        "failed": {"status": "failed"},
    }.items():
        event, _ = services.event_accept(endpoint=endpoint, body=body_of(), headers={}, content_type="",
                                         source_ip=None, dedupe_key=None)
        WebhookEvent.objects.filter(pk=event.pk).update(received_at=old, **fields)
        rows[name] = str(event.pk)
    assert services.events_sweep() == 2
    assert sorted(queued[0]) == sorted([rows["due"], rows["retry_due"]])


# --- a real HTTP server ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_over_real_http_mixed_case_headers_verify_and_the_event_is_stored(live_server, settings, sent_tasks):
    from tests.connections.factories import IntegrationFactory
    from tests.tenants.factories import TenantFactory

    settings.WEBHOOK_HANDOFF = "immediate"
    tenant = TenantFactory(slug="live")
    endpoint, secret = services.endpoint_create(
        actor=SYSTEM, tenant=tenant, integration=IntegrationFactory(tenant=tenant),
        data={"name": "live", "signature_scheme": "standard_webhooks"},
    )
    body = "{\"note\": \"naïve\"}".encode()
    headers = {"WeBhOoK-iD": "msg_live", **{k.title(): v for k, v in
               signed_headers("standard_webhooks", secret, body, msg_id="msg_live").items() if k != "webhook-id"}}
    url = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("POST", endpoint.url_path, body=body, headers={**headers, "Content-Type": "application/json"})
    answer = conn.getresponse()
    payload = json.loads(answer.read())
    conn.close()
    assert answer.status == 202, payload
    assert bytes(WebhookEvent.objects.get(pk=payload["event_id"]).body) == body


# --- malformed requests from strangers: a 4xx, never a 500 ------------------------------------------------------


@pytest.mark.parametrize("path", ["/hooks/%00", "/hooks/abc%00def", "/hooks/%FF%FE", "/hooks/" + "a" * 101,
                                  "/hooks/caf%C3%A9", "/hooks/a%20b"])
def test_a_path_no_endpoint_can_have_is_a_404(client, db, path, caplog):
    with caplog.at_level("ERROR"):
        response = client.post(path, b"{}", content_type="application/json")
    assert_envelope(response, 404, "NOT_FOUND")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_stripe_body_nested_too_deep_to_read_an_id_is_keyed_by_its_hash(client, make_endpoint):
    """Reading Stripe's event id parses the body before anything else is known of it: a deeply nested body
    must not break that (without a secret it never gets past the signature; with one it is a delivery)."""
    endpoint, secret = make_endpoint("stripe")
    body = b"[" * 100_000 + b"]" * 100_000
    unsigned = post(client, endpoint, body, {"Stripe-Signature": "t=1,v1=00"})
    assert_envelope(unsigned, 401, "SIGNATURE_INVALID")
    signed = post(client, endpoint, body, signed_headers("stripe", secret, body, raw=True))
    assert signed.status_code == 202, signed.content
    assert WebhookEvent.objects.get().dedupe_key == "sha256:" + hashlib.sha256(body).hexdigest()
    # An endpoint that does not verify signatures reads the id of any stranger's body.
    open_endpoint, _ = make_endpoint("stripe", verify_signature=False)
    assert post(client, open_endpoint, body, {}).status_code == 202
    assert post(client, open_endpoint, body, {}).status_code == 200  # the same body: a duplicate


def test_the_receiver_reads_the_headers_request_headers_would_give():
    from django.test import RequestFactory

    from webhooks.views import _lower_case_headers

    request = RequestFactory().post("/hooks/x", b"{}", content_type="application/json; charset=utf-8",
                                    headers={"X-Hub-Signature-256": "sha256=ab", "X-GitHub-Delivery": "d-1",
                                             "User-Agent": "GitHub-Hookshot/1", "Webhook-Id": "msg_1"})
    assert _lower_case_headers(request.META) == {k.lower(): v for k, v in request.headers.items()}
    assert _lower_case_headers(request.META)["x-hub-signature-256"] == "sha256=ab"
    assert _lower_case_headers(request.META)["content-type"] == "application/json; charset=utf-8"
