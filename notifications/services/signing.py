"""Standard Webhooks signatures (https://www.standardwebhooks.com/): secrets and the three headers.

A secret is ``whsec_`` + base64 of random bytes; the key is those bytes. The
signature is ``v1,`` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
and ``webhook-signature`` carries one per secret, space-separated, so that a
receiver still holding the previous secret verifies during a rotation's grace
period. Written here rather than taken from the ``standardwebhooks`` package:
signing is these few lines, and the tests verify them with that package.
"""
import base64
import hashlib
import hmac
import secrets as pysecrets

from ..choices import SECRET_BYTES, SECRET_PREFIX


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(pysecrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> dict:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (one signature per secret)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, message_id, timestamp, body) for secret in secrets),
    }
