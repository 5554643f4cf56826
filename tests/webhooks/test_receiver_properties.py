"""Property tests: whatever a stranger sends to ``/hooks/``, the answer is a 4xx or a 2xx, never a 5xx, and
whatever was accepted is processed by the task without an unhandled exception.

Hypothesis generates the path, the body (raw bytes, or JSON nested up to thousands of levels, with NUL and
odd numbers), the content type and headers, including correctly signed deliveries for every scheme so that
bodies get past verification into the store and the processing task.
"""
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.choices import SignatureScheme
from tests.strategies import json_values
from tests.webhooks.signing import signed_headers
from webhooks import tasks
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

SCHEMES = [value for value, _ in SignatureScheme.choices]
HEADER_NAME = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=30)
# Header values as a WSGI server hands them over (latin-1 text), control characters included.
HEADER_VALUE = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=200)



@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "deep", "status", "nul"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2000))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * depth).encode()
    if kind == "status":
        return json.dumps({"id": draw(st.text(max_size=300)), "status": draw(json_values)}).encode()
    return b'{"id": "x\\u0000y", "status": "op\\u0000en", "k\\u0000": [1]}'


PATHS = st.one_of(
    st.text(max_size=120).map(lambda t: "/hooks/" + "".join(f"%{b:02X}" for b in t.encode())),
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=110).map(lambda t: "/hooks/" + t),
)


@pytest.fixture
def endpoints(make_endpoint, integration):
    integration.update_method = "webhook"
    integration.save(update_fields=["update_method"])
    return {scheme: make_endpoint(scheme) for scheme in SCHEMES}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(SCHEMES), body=bodies(), sign=st.booleans(),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
    extra=st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=4),
)
def test_any_delivery_to_an_endpoint_is_a_4xx_or_stored_and_processed_without_an_error(
    client, endpoints, scheme, body, sign, content_type, extra
):
    endpoint, secret = endpoints[scheme]
    headers = {**extra, **(signed_headers(scheme, secret, body, raw=True) if sign else {})}
    response = client.post(endpoint.url_path, body, content_type=content_type, headers=headers)
    assert response.status_code < 500, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    if response.status_code in (200, 202):
        event_id = response.json()["event_id"]
        tasks.process_webhook_events([event_id])  # the task itself: never raises
        assert WebhookEvent.objects.get(pk=event_id).status in ("processed", "failed")
    elif sign:
        assert response.status_code in (400, 401, 413, 429)  # a signed delivery is refused only for cause


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, body=st.binary(max_size=200))
def test_any_path_under_hooks_is_a_404_in_the_envelope(client, db, path, body):
    response = client.post(path, body, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
