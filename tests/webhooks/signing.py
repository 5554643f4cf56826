"""Signing test deliveries the way each sender does.

Where a scheme has a reference library (standardwebhooks, stripe, slack_sdk)
the signature comes from it; GitHub, Shopify and plain HMAC follow their
documentation. ``raw_sign`` does the same by hand for bodies the reference
libraries cannot take (bytes that are not UTF-8); a test checks that both
agree on UTF-8 bodies.
"""
import base64
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime

import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks import Webhook

SCHEMES = ("hmac_sha256", "standard_webhooks", "stripe", "github", "slack", "shopify")
TIMED_SCHEMES = ("standard_webhooks", "stripe", "slack")


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _sw_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def signed_headers(scheme: str, secret: str, body: bytes, *, ts: int | None = None, msg_id: str | None = None,
                   header: str = "X-Signature", raw: bool = False) -> dict:
    """The headers a sender attaches to ``body`` (names in their usual case)."""
    ts = int(time.time()) if ts is None else ts
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    if raw:
        return raw_sign(scheme, secret, body, ts=ts, msg_id=msg_id, header=header)
    text = body.decode("utf-8")
    if scheme == "standard_webhooks":
        signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), text)
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    if scheme == "stripe":
        return {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=ts)}
    if scheme == "slack":
        signature = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=text)
        return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature}
    return raw_sign(scheme, secret, body, ts=ts, msg_id=msg_id, header=header)


def raw_sign(scheme: str, secret: str, body: bytes, *, ts: int, msg_id: str, header: str = "X-Signature") -> dict:
    """Per the schemes' documentation, over raw bytes."""
    if scheme == "hmac_sha256":
        return {header: _mac(secret.encode(), body).hex()}
    if scheme == "github":
        return {"X-Hub-Signature-256": "sha256=" + _mac(secret.encode(), body).hex(),
                "X-GitHub-Delivery": msg_id}
    if scheme == "shopify":
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret.encode(), body)).decode(),
                "X-Shopify-Webhook-Id": msg_id}
    if scheme == "standard_webhooks":
        sig = base64.b64encode(_mac(_sw_key(secret), f"{msg_id}.{ts}.".encode() + body)).decode()
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}
    if scheme == "stripe":
        return {"Stripe-Signature": f"t={ts},v1=" + _mac(secret.encode(), f"{ts}.".encode() + body).hex()}
    if scheme == "slack":
        return {"X-Slack-Request-Timestamp": str(ts),
                "X-Slack-Signature": "v0=" + _mac(secret.encode(), f"v0:{ts}:".encode() + body).hex()}
    raise ValueError(scheme)


def lower(headers: dict) -> dict:
    """As the receiver hands headers to the verifier: lower-case names."""
    return {k.lower(): v for k, v in headers.items()}
