"""Inbound webhook signature schemes: one small verifier per scheme, one interface.

Every verifier works on the raw body bytes (never a re-serialised body),
compares in constant time, refuses timestamps outside ±tolerance (past and
future), and raises ``SignatureError`` with a short reason for anything
malformed — never another exception. Headers are looked up case-insensitively
(callers pass a dict with lower-case keys).
"""
import base64
import binascii
import hashlib
import hmac
import secrets as pysecrets
import time

from catalog.choices import SignatureScheme
from integrations_site import bounds

DEFAULT_HMAC_HEADER = "x-signature"


class SignatureError(Exception):
    """The delivery's signature is missing, malformed, stale or wrong."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _any_match(expected: list[bytes], given: list[bytes]) -> bool:
    matched = False
    for candidate in given:
        for want in expected:
            # No early exit: every pair is compared in constant time.
            matched |= hmac.compare_digest(want, candidate)
    return matched


def _header(headers: dict, name: str) -> str:
    value = headers.get(name.lower(), "")
    if not value or not value.strip():
        raise SignatureError(f"missing header {name}")
    return value.strip()


def _timestamp(value: str, tolerance: int, now: float) -> int:
    # ASCII digits only, and few enough of them to compare with a float clock
    # (int() would accept "١٢٣", "1_000" and numbers too large for a float).
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise SignatureError("malformed timestamp")
    ts = int(value)
    if abs(now - ts) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    return ts


def _unhex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise SignatureError("malformed hex signature") from None


def _unb64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed base64 signature") from None


def _id(value: str) -> str | None:
    """A delivery id as a dedupe key: PostgreSQL text cannot hold NUL, and the column holds 255."""
    return value.replace("\x00", "")[:255] or None


class Scheme:
    """Verify a delivery and name its dedupe key; subclasses fill in the scheme.

    ``delivery_id`` is the sender's id for a delivery, used as its dedupe key
    only where the signature covers it (``id_signed``): an id in an unsigned
    header could be changed to replay a captured delivery.
    """

    name = ""
    delivery_id_header = ""
    id_signed = False

    def verify(self, *, secrets: list[str], headers: dict, body: bytes, tolerance: int, now: float,
               signature_header: str = "") -> None:
        raise NotImplementedError

    def delivery_id(self, headers: dict, body: bytes) -> str | None:
        value = headers.get(self.delivery_id_header, "").strip() if self.delivery_id_header else ""
        return _id(value)

    def new_secret(self) -> str:
        return pysecrets.token_urlsafe(32)


class HmacSha256(Scheme):
    """Hex HMAC-SHA256 of the raw body (``sha256=`` prefix optional) in a configurable header."""

    name = SignatureScheme.HMAC_SHA256

    def verify(self, *, secrets, headers, body, tolerance, now, signature_header=""):
        value = _header(headers, signature_header or DEFAULT_HMAC_HEADER)
        if value.lower().startswith("sha256="):
            value = value[7:]
        given = _unhex(value)
        if not _any_match([_hmac(s.encode(), body) for s in secrets], [given]):
            raise SignatureError("signature mismatch")


class StandardWebhooks(Scheme):
    """webhook-id / webhook-timestamp / webhook-signature (``v1,<base64>`` …), content ``id.ts.body``."""

    name = SignatureScheme.STANDARD_WEBHOOKS
    delivery_id_header = "webhook-id"
    id_signed = True  # the signed content is id.timestamp.body

    @staticmethod
    def key(secret: str) -> bytes:
        raw = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("the endpoint secret is not valid base64") from None

    def verify(self, *, secrets, headers, body, tolerance, now, signature_header=""):
        msg_id = _header(headers, "webhook-id")
        ts = _header(headers, "webhook-timestamp")
        _timestamp(ts, tolerance, now)
        given = []
        for part in _header(headers, "webhook-signature").split(" "):
            version, _, sig = part.partition(",")
            if version == "v1" and sig:
                given.append(_unb64(sig))
        if not given:
            raise SignatureError("no v1 signature")
        content = f"{msg_id}.{ts}.".encode() + body
        if not _any_match([_hmac(self.key(s), content) for s in secrets], given):
            raise SignatureError("signature mismatch")

    def new_secret(self) -> str:
        return "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()


class Stripe(Scheme):
    """``Stripe-Signature: t=…,v1=…[,v1=…]`` over ``t.body``; the secret is used as given."""

    name = SignatureScheme.STRIPE

    def verify(self, *, secrets, headers, body, tolerance, now, signature_header=""):
        ts, given = None, []
        for item in _header(headers, "stripe-signature").split(","):
            key, _, value = item.strip().partition("=")
            if key == "t":
                ts = value
            elif key == "v1" and value:
                given.append(_unhex(value))
        if ts is None:
            raise SignatureError("missing timestamp")
        if not given:
            raise SignatureError("no v1 signature")
        _timestamp(ts, tolerance, now)
        content = ts.encode() + b"." + body
        if not _any_match([_hmac(s.encode(), content) for s in secrets], given):
            raise SignatureError("signature mismatch")

    id_signed = True  # the event's id is in the signed body

    def delivery_id(self, headers, body):
        try:
            data = bounds.loads(body)
        except bounds.JsonRefused:  # not JSON, or nested too deep to read: the body's hash stands for it
            return None
        event_id = data.get("id") if isinstance(data, dict) else None
        return _id(str(event_id)) if isinstance(event_id, (str, int)) and event_id != "" else None

    def new_secret(self) -> str:
        return "whsec_" + pysecrets.token_urlsafe(32)


class GitHub(Scheme):
    """``X-Hub-Signature-256: sha256=<hex>`` of the raw body."""

    name = SignatureScheme.GITHUB
    delivery_id_header = "x-github-delivery"

    def verify(self, *, secrets, headers, body, tolerance, now, signature_header=""):
        value = _header(headers, "x-hub-signature-256")
        if not value.startswith("sha256="):
            raise SignatureError("signature must start with sha256=")
        if not _any_match([_hmac(s.encode(), body) for s in secrets], [_unhex(value[7:])]):
            raise SignatureError("signature mismatch")


class Slack(Scheme):
    """``X-Slack-Signature: v0=<hex>`` over ``v0:ts:body`` with ``X-Slack-Request-Timestamp``."""

    name = SignatureScheme.SLACK

    def verify(self, *, secrets, headers, body, tolerance, now, signature_header=""):
        ts = _header(headers, "x-slack-request-timestamp")
        _timestamp(ts, tolerance, now)
        value = _header(headers, "x-slack-signature")
        if not value.startswith("v0="):
            raise SignatureError("signature must start with v0=")
        content = f"v0:{ts}:".encode() + body
        if not _any_match([_hmac(s.encode(), content) for s in secrets], [_unhex(value[3:])]):
            raise SignatureError("signature mismatch")


class Shopify(Scheme):
    """``X-Shopify-Hmac-Sha256``: base64 HMAC-SHA256 of the raw body."""

    name = SignatureScheme.SHOPIFY
    delivery_id_header = "x-shopify-webhook-id"

    def verify(self, *, secrets, headers, body, tolerance, now, signature_header=""):
        given = _unb64(_header(headers, "x-shopify-hmac-sha256"))
        if not _any_match([_hmac(s.encode(), body) for s in secrets], [given]):
            raise SignatureError("signature mismatch")


SCHEMES: dict[str, Scheme] = {
    s.name: s for s in (HmacSha256(), StandardWebhooks(), Stripe(), GitHub(), Slack(), Shopify())
}


def verify(scheme: str, *, secrets: list[str], headers: dict, body: bytes, tolerance: int,
           signature_header: str = "", now: float | None = None) -> None:
    """Raise SignatureError unless ``body`` is signed by one of ``secrets`` under ``scheme``.

    Only the signature decides: an empty body correctly signed verifies (some senders ping with one).
    """
    if not secrets:
        raise SignatureError("the endpoint has no secret")
    SCHEMES[scheme].verify(
        secrets=secrets, headers=headers, body=body, tolerance=tolerance,
        now=time.time() if now is None else now, signature_header=signature_header,
    )


def dedupe_key(scheme: str, headers: dict, body: bytes) -> str:
    """The delivery's signed id when the scheme signs one (standard_webhooks, stripe), else a hash of the body.

    GitHub's and Shopify's delivery id headers are not signed and their schemes carry no signed
    timestamp: keyed by the body's digest, a captured delivery sent again with another id header is
    still the duplicate it is (for as long as the event is kept).
    """
    chosen = SCHEMES[scheme]
    delivery_id = chosen.delivery_id(headers, body) if chosen.id_signed else None
    return delivery_id or "sha256:" + hashlib.sha256(body).hexdigest()


def new_secret(scheme: str) -> str:
    return SCHEMES[scheme].new_secret()


MIN_SECRET_LENGTH = 16


def secret_problem(scheme: str, secret: str) -> str | None:
    """Why ``secret`` cannot sign deliveries under ``scheme``, or None when it can."""
    if len(secret) < MIN_SECRET_LENGTH:
        return f"Must be at least {MIN_SECRET_LENGTH} characters."
    if scheme == SignatureScheme.STANDARD_WEBHOOKS:
        raw = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return "A Standard Webhooks secret is 'whsec_' + base64."
        if not 24 <= len(key) <= 64:
            return "A Standard Webhooks secret holds 24 to 64 bytes."
    return None
