"""The six signature schemes, signed by the senders' reference libraries, checked by our verifiers
directly and through the receiver (where a refusal must be a clean 401, never a 5xx)."""
import base64
import json
import time
import uuid
from datetime import timedelta

import pytest
import stripe
from django.utils import timezone
from slack_sdk.signature import SignatureVerifier
from standardwebhooks import Webhook

from webhooks import signatures
from webhooks.models import WebhookEndpoint, WebhookEvent

from .signing import SCHEMES, TIMED_SCHEMES, lower, raw_sign, signed_headers

NOW = 1_750_000_000
TOLERANCE = 300
SECRETS = {
    "hmac_sha256": "plain-hmac-secret-0123456789",
    "standard_webhooks": "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode(),
    "stripe": "whsec_stripe_test_secret_abcdef0123456789",
    "github": "github-webhook-secret-0123456789",
    "slack": "8f742231b10e8888abcd99yyyzzz85a5",
    "shopify": "shpss_shopify_app_secret_0123456789",
}
WRONG = {
    **{scheme: secret + "x" for scheme, secret in SECRETS.items()},
    "standard_webhooks": "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode(),
}
BODY = json.dumps({"id": "evt_1", "type": "order.paid", "note": "café ✓ 日本"}, ensure_ascii=False).encode()
NOT_UTF8 = b'{"id": "evt_2", "raw": "\xff\xfe\xc3\x28"}'


def verify(scheme, headers, body=BODY, *, secrets=None, now=NOW, tolerance=TOLERANCE, signature_header=""):
    signatures.verify(
        scheme, secrets=secrets or [SECRETS[scheme]], headers=lower(headers), body=body, tolerance=tolerance,
        signature_header=signature_header, now=now,
    )


def refused(scheme, headers, body=BODY, **kwargs) -> str:
    with pytest.raises(signatures.SignatureError) as caught:
        verify(scheme, headers, body, **kwargs)
    return caught.value.reason


# --- the reference libraries and our verifiers agree ------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delivery_signed_by_the_senders_library_verifies(scheme):
    verify(scheme, signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW, msg_id="msg_1"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_hand_signer_matches_the_reference_library_on_utf8_bodies(scheme):
    by_library = signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW, msg_id="msg_1")
    by_hand = raw_sign(scheme, SECRETS[scheme], BODY, ts=NOW, msg_id="msg_1")
    assert {k: by_hand[k] for k in by_library} == by_library


def test_the_reference_verifiers_accept_the_same_deliveries():
    now = int(time.time())
    sw = signed_headers("standard_webhooks", SECRETS["standard_webhooks"], BODY, ts=now, msg_id="msg_1")
    assert Webhook(SECRETS["standard_webhooks"]).verify(BODY, sw)["id"] == "evt_1"
    st = signed_headers("stripe", SECRETS["stripe"], BODY, ts=now)
    assert stripe.Webhook.construct_event(BODY, st["Stripe-Signature"], SECRETS["stripe"]).id == "evt_1"
    sl = signed_headers("slack", SECRETS["slack"], BODY, ts=now)
    assert SignatureVerifier(SECRETS["slack"]).is_valid_request(BODY, sl)
    for headers, scheme in ((sw, "standard_webhooks"), (st, "stripe"), (sl, "slack")):
        verify(scheme, headers, now=now)


def test_a_stripe_signature_computed_like_the_library_does_verifies():
    payload = f"{NOW}.{BODY.decode()}"
    header = f"t={NOW},v1={stripe.WebhookSignature._compute_signature(payload, SECRETS['stripe'])}"
    verify("stripe", {"Stripe-Signature": header})


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_body_that_is_not_utf8_verifies_on_its_raw_bytes(scheme):
    verify(scheme, raw_sign(scheme, SECRETS[scheme], NOT_UTF8, ts=NOW, msg_id="msg_1"), NOT_UTF8)


def test_the_hmac_scheme_reads_a_configured_header_and_an_optional_sha256_prefix():
    headers = signed_headers("hmac_sha256", SECRETS["hmac_sha256"], BODY, header="X-Acme-Signature")
    verify("hmac_sha256", headers, signature_header="X-Acme-Signature")
    prefixed = {"X-Acme-Signature": "sha256=" + headers["X-Acme-Signature"]}
    verify("hmac_sha256", prefixed, signature_header="X-Acme-Signature")
    assert "missing header" in refused("hmac_sha256", headers)  # default header is X-Signature


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_tampered_body_is_refused(scheme):
    headers = signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW)
    assert refused(scheme, headers, BODY.replace(b"paid", b"void")) == "signature mismatch"
    assert refused(scheme, headers, BODY + b" ") == "signature mismatch"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wrong_secret_is_refused(scheme):
    headers = signed_headers(scheme, WRONG[scheme], BODY, ts=NOW)
    assert refused(scheme, headers) == "signature mismatch"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_empty_body_correctly_signed_verifies(scheme):
    verify(scheme, signed_headers(scheme, SECRETS[scheme], b"", ts=NOW, msg_id="msg_1"), b"")
    verify(scheme, raw_sign(scheme, SECRETS[scheme], b"", ts=NOW, msg_id="msg_1"), b"")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_empty_body_wrongly_signed_is_refused(scheme):
    assert refused(scheme, signed_headers(scheme, WRONG[scheme], b"", ts=NOW), b"") == "signature mismatch"
    # The signature of another body does not cover an empty one (nor the other way round).
    assert refused(scheme, signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW), b"") == "signature mismatch"
    assert refused(scheme, signed_headers(scheme, SECRETS[scheme], b"", ts=NOW), BODY) == "signature mismatch"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_secret_is_refused(scheme):
    headers = signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW)
    with pytest.raises(signatures.SignatureError):
        signatures.verify(scheme, secrets=[], headers=lower(headers), body=BODY, tolerance=TOLERANCE, now=NOW)


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
@pytest.mark.parametrize("offset", [-(TOLERANCE + 1), TOLERANCE + 1, -86400, 10 * 365 * 86400])
def test_a_timestamp_outside_the_tolerance_is_refused_in_the_past_and_the_future(scheme, offset):
    headers = signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW + offset)
    assert refused(scheme, headers) == "timestamp outside the tolerance window"


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
@pytest.mark.parametrize("offset", [-TOLERANCE, -(TOLERANCE - 1), 0, TOLERANCE - 1, TOLERANCE])
def test_a_timestamp_inside_the_tolerance_is_accepted(scheme, offset):
    verify(scheme, signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW + offset))


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
def test_the_tolerance_is_the_endpoints(scheme):
    headers = signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW - 20)
    verify(scheme, headers, tolerance=30)
    assert refused(scheme, headers, tolerance=10) == "timestamp outside the tolerance window"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_either_of_two_secrets_verifies(scheme):
    both = [WRONG[scheme], SECRETS[scheme]]
    verify(scheme, signed_headers(scheme, SECRETS[scheme], BODY, ts=NOW), secrets=both)
    verify(scheme, signed_headers(scheme, WRONG[scheme], BODY, ts=NOW), secrets=both)


# --- several signatures in one header --------------------------------------------------------------------------


def _sw(secret, msg_id="msg_1"):
    return signed_headers("standard_webhooks", secret, BODY, ts=NOW, msg_id=msg_id)


def test_standard_webhooks_accepts_any_matching_signature_among_several():
    good = _sw(SECRETS["standard_webhooks"])["webhook-signature"]
    bad = _sw(WRONG["standard_webhooks"])["webhook-signature"]
    for value in (f"{bad} {good}", f"{good} {bad}", f"v2,Zm9v {good}", f"{bad}  {good}"):
        verify("standard_webhooks", {**_sw(SECRETS["standard_webhooks"]), "webhook-signature": value})
    assert refused("standard_webhooks", {**_sw(SECRETS["standard_webhooks"]), "webhook-signature": bad}) \
        == "signature mismatch"


def test_stripe_accepts_any_matching_v1_among_several_and_ignores_other_schemes():
    good = signed_headers("stripe", SECRETS["stripe"], BODY, ts=NOW)["Stripe-Signature"].split(",")[1]
    bad = signed_headers("stripe", WRONG["stripe"], BODY, ts=NOW)["Stripe-Signature"].split(",")[1]
    for value in (f"t={NOW},{bad},{good}", f"t={NOW},{good},{bad}", f"t={NOW},v0=abcd,{good}",
                  f"{good}, t={NOW}"):
        verify("stripe", {"Stripe-Signature": value})
        stripe.WebhookSignature.verify_header(BODY, value.replace(" ", ""), SECRETS["stripe"])
    assert refused("stripe", {"Stripe-Signature": f"t={NOW},{bad},v0=" + good[3:]}) == "signature mismatch"


# --- malformed and missing headers -----------------------------------------------------------------------------


def _malformed():
    sw = _sw(SECRETS["standard_webhooks"])
    st = signed_headers("stripe", SECRETS["stripe"], BODY, ts=NOW)["Stripe-Signature"]
    sl = signed_headers("slack", SECRETS["slack"], BODY, ts=NOW)
    gh = signed_headers("github", SECRETS["github"], BODY)
    sh = signed_headers("shopify", SECRETS["shopify"], BODY)
    hm = signed_headers("hmac_sha256", SECRETS["hmac_sha256"], BODY)
    cases = {
        "hmac missing header": ("hmac_sha256", {}),
        "hmac bad hex": ("hmac_sha256", {"X-Signature": "zz" + hm["X-Signature"][2:]}),
        "hmac odd-length hex": ("hmac_sha256", {"X-Signature": hm["X-Signature"][1:]}),
        "hmac blank": ("hmac_sha256", {"X-Signature": "   "}),
        "hmac non-ascii": ("hmac_sha256", {"X-Signature": "é" * 64}),
        "sw missing id": ("standard_webhooks", {k: v for k, v in sw.items() if k != "webhook-id"}),
        "sw missing timestamp": ("standard_webhooks", {k: v for k, v in sw.items() if k != "webhook-timestamp"}),
        "sw missing signature": ("standard_webhooks", {k: v for k, v in sw.items() if k != "webhook-signature"}),
        "sw bad base64": ("standard_webhooks", {**sw, "webhook-signature": "v1,not*base64!"}),
        "sw no comma": ("standard_webhooks", {**sw, "webhook-signature": "v1" + sw["webhook-signature"][3:]}),
        "sw only v2": ("standard_webhooks", {**sw, "webhook-signature": "v2," + sw["webhook-signature"][3:]}),
        "sw empty v1": ("standard_webhooks", {**sw, "webhook-signature": "v1,"}),
        "sw timestamp text": ("standard_webhooks", {**sw, "webhook-timestamp": "yesterday"}),
        "sw timestamp float": ("standard_webhooks", {**sw, "webhook-timestamp": f"{NOW}.5"}),
        "sw timestamp huge": ("standard_webhooks", {**sw, "webhook-timestamp": "1" + "0" * 400}),
        "sw timestamp arabic digits": ("standard_webhooks", {**sw, "webhook-timestamp": "١٧٥٠٠٠٠٠٠٠"}),
        "sw timestamp negative": ("standard_webhooks", {**sw, "webhook-timestamp": "-1"}),
        "stripe missing header": ("stripe", {}),
        "stripe missing t": ("stripe", {"Stripe-Signature": st.split(",", 1)[1]}),
        "stripe empty t": ("stripe", {"Stripe-Signature": "t=," + st.split(",", 1)[1]}),
        "stripe huge t": ("stripe", {"Stripe-Signature": "t=" + "9" * 500 + "," + st.split(",", 1)[1]}),
        "stripe no v1": ("stripe", {"Stripe-Signature": f"t={NOW}"}),
        "stripe bad hex": ("stripe", {"Stripe-Signature": f"t={NOW},v1=nothex"}),
        "stripe garbage": ("stripe", {"Stripe-Signature": ",,,===,"}),
        "github missing": ("github", {}),
        "github wrong prefix": ("github", {"X-Hub-Signature-256": "sha1=" + gh["X-Hub-Signature-256"][7:]}),
        "github no prefix": ("github", {"X-Hub-Signature-256": gh["X-Hub-Signature-256"][7:]}),
        "github bad hex": ("github", {"X-Hub-Signature-256": "sha256=xyz"}),
        "slack missing timestamp": ("slack", {"X-Slack-Signature": sl["X-Slack-Signature"]}),
        "slack missing signature": ("slack", {"X-Slack-Request-Timestamp": str(NOW)}),
        "slack wrong prefix": ("slack", {**sl, "X-Slack-Signature": "v1=" + sl["X-Slack-Signature"][3:]}),
        "slack bad hex": ("slack", {**sl, "X-Slack-Signature": "v0=qq"}),
        "slack bad timestamp": ("slack", {**sl, "X-Slack-Request-Timestamp": "1e9"}),
        "shopify missing": ("shopify", {}),
        "shopify bad base64": ("shopify", {"X-Shopify-Hmac-Sha256": "%%%"}),
        "shopify hex instead of base64": ("shopify", {"X-Shopify-Hmac-Sha256": "abc"}),
        "shopify non-ascii": ("shopify", {"X-Shopify-Hmac-Sha256": "é" + sh["X-Shopify-Hmac-Sha256"][1:]}),
    }
    return cases


MALFORMED = _malformed()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_or_missing_headers_raise_only_a_signature_error(case):
    scheme, headers = MALFORMED[case]
    assert refused(scheme, headers)


def test_a_standard_webhooks_endpoint_secret_that_is_not_base64_is_a_signature_error():
    headers = _sw(SECRETS["standard_webhooks"])
    assert "not valid base64" in refused("standard_webhooks", headers, secrets=["whsec_!!!not-base64!!!"])


def _unique():
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "status": "open"}).encode()


# --- through the receiver --------------------------------------------------------------------------------------


def _post(client, endpoint, body, headers, content_type="application/json"):
    return client.post(endpoint.url_path, body, content_type=content_type, headers=headers)


@pytest.fixture
def endpoints(make_endpoint, queued):
    """One live endpoint per scheme, with the secrets above."""
    return {scheme: make_endpoint(scheme, secret=SECRETS[scheme])[0] for scheme in SCHEMES}


def _assert_refused(response):
    assert response.status_code == 401, response.content
    error = response.json()["error"]
    assert error["code"] == "SIGNATURE_INVALID" and error["request_id"]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_receiver_answers_a_malformed_signature_with_401_and_stores_nothing(client, endpoints, case):
    scheme, headers = MALFORMED[case]
    # Header values reach WSGI as latin-1; send what HTTP can carry.
    headers = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
    _assert_refused(_post(client, endpoints[scheme], BODY, headers))
    assert not WebhookEvent.objects.exists()
    assert WebhookEndpoint.objects.get(pk=endpoints[scheme].pk).signature_failures == 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_receiver_accepts_a_reference_signed_delivery_and_refuses_variants(client, endpoints, scheme):
    endpoint, secret = endpoints[scheme], SECRETS[scheme]
    good = signed_headers(scheme, secret, BODY)
    assert _post(client, endpoint, BODY, good).status_code == 202
    _assert_refused(_post(client, endpoint, BODY + b"\n", signed_headers(scheme, secret, BODY)))
    _assert_refused(_post(client, endpoint, BODY, signed_headers(scheme, WRONG[scheme], BODY)))
    _assert_refused(_post(client, endpoint, b"", signed_headers(scheme, WRONG[scheme], b"")))
    _assert_refused(_post(client, endpoint, b"", signed_headers(scheme, secret, BODY)))
    assert WebhookEvent.objects.filter(endpoint=endpoint).count() == 1
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).signature_failures == 4


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_receiver_accepts_an_empty_body_signed_by_the_senders_library(client, endpoints, scheme):
    response = _post(client, endpoints[scheme], b"", signed_headers(scheme, SECRETS[scheme], b""))
    assert response.status_code == 202, response.content
    assert bytes(WebhookEvent.objects.get(pk=response.json()["event_id"]).body) == b""
    assert WebhookEndpoint.objects.get(pk=endpoints[scheme].pk).signature_failures == 0


@pytest.mark.parametrize("scheme", TIMED_SCHEMES)
def test_the_receiver_refuses_stale_and_future_timestamps(client, endpoints, scheme):
    now = int(time.time())
    for offset in (-(TOLERANCE + 5), TOLERANCE + 5):
        _assert_refused(_post(client, endpoints[scheme], BODY, signed_headers(scheme, SECRETS[scheme], BODY,
                                                                               ts=now + offset)))
    assert _post(client, endpoints[scheme], BODY, signed_headers(scheme, SECRETS[scheme], BODY,
                                                                  ts=now - 60)).status_code == 202


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_receiver_stores_utf8_and_raw_bytes_byte_exact(client, endpoints, scheme):
    endpoint, secret = endpoints[scheme], SECRETS[scheme]
    for body, raw in ((BODY, False), (NOT_UTF8, True)):
        response = _post(client, endpoint, body, signed_headers(scheme, secret, body, raw=raw))
        assert response.status_code == 202, response.content
        assert bytes(WebhookEvent.objects.get(pk=response.json()["event_id"]).body) == body


@pytest.mark.parametrize("scheme", SCHEMES)
def test_header_names_are_case_insensitive(client, endpoints, scheme):
    for transform in (str.upper, str.lower, str.swapcase):
        body = _unique()
        headers = {transform(k): v for k, v in signed_headers(scheme, SECRETS[scheme], body).items()}
        assert _post(client, endpoints[scheme], body, headers).status_code == 202
        verify(scheme, headers, body, now=time.time())


def test_the_receiver_uses_the_configured_hmac_header(client, make_endpoint, queued):
    endpoint, secret = make_endpoint("hmac_sha256", signature_header="X-Acme-Sig")
    headers = signed_headers("hmac_sha256", secret, BODY, header="X-Acme-Sig")
    assert _post(client, endpoint, BODY, headers).status_code == 202
    _assert_refused(_post(client, endpoint, BODY + b" ", {"X-Signature": headers["X-Acme-Sig"]}))


# --- rotation with a grace period, through the API -------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_both_secrets_verify_during_the_grace_period_and_the_old_one_is_refused_after(
    admin_client_api, integration, client, queued, scheme
):
    created = admin_client_api.post("/api/v1/webhooks/", {"integration": str(integration.pk), "name": "r",
                                                           "signature_scheme": scheme}, format="json")
    assert created.status_code == 201, created.content
    endpoint = WebhookEndpoint.objects.get(pk=created.json()["id"])
    old = created.json()["secret"]
    body = _unique()
    assert _post(client, endpoint, body, signed_headers(scheme, old, body)).status_code == 202

    rotated = admin_client_api.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret", {}, format="json")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new != old
    for secret in (old, new):
        body = _unique()
        assert _post(client, endpoint, body, signed_headers(scheme, secret, body)).status_code == 202

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    body = _unique()
    _assert_refused(_post(client, endpoint, body, signed_headers(scheme, old, body)))
    assert _post(client, endpoint, body, signed_headers(scheme, new, body)).status_code == 202


@pytest.mark.parametrize("scheme", ["standard_webhooks", "github"])
def test_a_rotation_with_no_grace_refuses_the_old_secret_at_once(admin_client_api, make_endpoint, client, queued,
                                                                  scheme):
    endpoint, old = make_endpoint(scheme)
    rotated = admin_client_api.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret", {"grace_seconds": 0},
                                    format="json")
    assert rotated.status_code == 200 and rotated.json()["previous_secret_expires_at"] is None
    body = _unique()
    _assert_refused(_post(client, endpoint, body, signed_headers(scheme, old, body)))
    assert _post(client, endpoint, body, signed_headers(scheme, rotated.json()["secret"], body)).status_code == 202
