"""``webhook_receive``, the receiver as a service, with the per-process caches on as in production:
the endpoint cache (``WEBHOOK_ENDPOINT_CACHE_SECONDS``) and the batched rate counter."""
import pytest

from tests.webhooks.signing import signed_headers
from webhooks import services
from webhooks.models import WebhookEndpoint, WebhookEvent
from webhooks.services import endpoints


@pytest.fixture(autouse=True)
def production_caches(settings, queued):
    settings.WEBHOOK_ENDPOINT_CACHE_SECONDS = 30
    endpoints.endpoint_cache_clear()
    yield
    endpoints.endpoint_cache_clear()


def receive(endpoint_path: str, body: bytes, headers: dict, content_length: str | None = None):
    return services.webhook_receive(
        path=endpoint_path, content_length=str(len(body)) if content_length is None else content_length,
        read_body=lambda limit: body[:limit], headers={k.lower(): v for k, v in headers.items()},
        content_type="application/json", source_ip="127.0.0.1",
    )


def test_a_secret_rotated_by_another_process_verifies_at_once_through_one_fresh_read(make_endpoint,
                                                                                       django_assert_num_queries):
    endpoint, secret = make_endpoint("hmac_sha256")
    first = b'{"n": 1}'
    assert receive(endpoint.path, first, signed_headers("hmac_sha256", secret, first)).status == 202
    # Another process rotates: the row changes, this process's cached copy does not (no signal here).
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret="a-new-secret-made-elsewhere-0123")
    second = b'{"n": 2}'
    with django_assert_num_queries(2):  # the fresh read of the endpoint, then the insert
        receipt = receive(endpoint.path, second, signed_headers("hmac_sha256", "a-new-secret-made-elsewhere-0123",
                                                                second))
    assert receipt.status == 202 and receipt.body["status"] == "accepted"
    # The old secret is refused once the stored row says so (cached copy renewed by that fresh read).
    third = b'{"n": 3}'
    refused = receive(endpoint.path, third, signed_headers("hmac_sha256", secret, third))
    assert refused.status == 401 and refused.body["error"]["code"] == "SIGNATURE_INVALID"
    assert WebhookEvent.objects.count() == 2


def test_a_cached_endpoint_costs_one_statement_per_delivery(make_endpoint, django_assert_num_queries):
    endpoint, secret = make_endpoint("hmac_sha256")
    warm = b'{"warm": 1}'
    assert receive(endpoint.path, warm, signed_headers("hmac_sha256", secret, warm)).status == 202
    body = b'{"n": 1}'
    with django_assert_num_queries(1):  # the INSERT … ON CONFLICT DO NOTHING RETURNING
        assert receive(endpoint.path, body, signed_headers("hmac_sha256", secret, body)).status == 202


def test_the_receipts_for_what_the_sender_gets_wrong(make_endpoint):
    endpoint, secret = make_endpoint("hmac_sha256", max_body_bytes=16, rate_limit_per_minute=2)
    assert receive("no-such-endpoint", b"{}", {}).status == 404
    assert receive("bad\x00path", b"{}", {}).status == 404
    assert receive(endpoint.path, b"{}", {}, content_length="12x").status == 400
    assert receive(endpoint.path, b"x" * 17, {}).status == 413
    assert receive(endpoint.path, b"x" * 17, {}, content_length="").status == 413  # no length: counted as read
    assert receive(endpoint.path, b"{}", {"X-Signature": "00"}).status == 401
    limited = receive(endpoint.path, b"{}", signed_headers("hmac_sha256", secret, b"{}"))
    assert limited.status == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
