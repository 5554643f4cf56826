"""The demo tenant's notification receiver: what a tenant's own service does with the hub's notifications.

- ``POST /notifications`` verifies the Standard Webhooks signature
  (https://www.standardwebhooks.com/): HMAC-SHA256 with the base64-decoded key
  after ``whsec_``, over ``"{webhook-id}.{webhook-timestamp}.{body}"``, compared
  with each ``v1,<base64>`` in ``webhook-signature`` (several during a secret
  rotation's grace period), the timestamp within ``TOLERANCE_SECONDS`` of now.
  Verified: 204; anything else: 401. Both are recorded.
- ``GET /notifications`` lists the last ``KEEP`` received, newest first:
  ``[{"type", "id", "verified", "received_at"}]``.

The standard library does the verifying: the demo runs with requirements.txt,
where the ``standardwebhooks`` package is not (the tests check this receiver
against the hub's signer, and that signer against the package).

The secrets come from a callable, asked on each POST. ``run_demo_upstream``
gives it ``endpoint_secrets_in_thread``: the endpoints' secrets read from the
database, the way the webhook sender reads its endpoints' (``sender.py``), so
seed_demo creates the endpoint through the notification service (the secret
generated and stored encrypted, as the API does) and nothing else holds it.
"""
import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connections

from notifications.models import NotificationEndpoint

from .routing import Request, Response, Route, json_response

RECEIVER_PATH = "/notifications"
KEEP = 100
TOLERANCE_SECONDS = 5 * 60  # what the Standard Webhooks libraries accept
SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS = 20  # endpoints whose secrets a delivery is checked against


def _key(secret: str) -> bytes | None:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None


def verify(*, secrets: list[str], headers, body: bytes, now: float) -> bool:
    """Whether one of ``webhook-signature``'s ``v1`` signatures is ``body``'s under one of ``secrets``."""
    message_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature") or ""
    if not message_id or not timestamp or not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = [base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
                for key in map(_key, secrets) if key]
    for part in signatures.split():
        version, _, value = part.partition(",")
        if version == "v1" and any(hmac.compare_digest(value, good) for good in expected):
            return True
    return False


def _type_of(body: bytes) -> str | None:
    try:
        found = json.loads(body)
    except ValueError:
        return None
    kind = found.get("type") if isinstance(found, dict) else None
    return kind[:100] if isinstance(kind, str) else None


class NotificationReceiver:
    """Receives signed notifications and keeps the last ``keep`` of them in memory (thread-safe)."""

    def __init__(self, *, secrets: Callable[[], list[str]] = list, keep: int = KEEP,
                 clock: Callable[[], float] = time.time):
        self.secrets = secrets
        self.clock = clock
        self._received: deque[dict] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def receive(self, request: Request) -> Response:
        now = self.clock()
        verified = bool(request.headers.get("webhook-signature")) and verify(
            secrets=self.secrets(), headers=request.headers, body=request.body, now=now)
        entry = {"type": _type_of(request.body), "id": (request.headers.get("webhook-id") or "")[:100] or None,
                 "verified": verified,
                 "received_at": datetime.fromtimestamp(now, tz=UTC).isoformat().replace("+00:00", "Z")}
        with self._lock:
            self._received.append(entry)
        if not verified:
            return json_response({"error": "invalid_signature"}, 401)
        return Response(204, content_type="")

    def received(self) -> list[dict]:
        """The notifications received, newest first."""
        with self._lock:
            return [dict(entry) for entry in reversed(self._received)]

    def routes(self) -> dict:
        return {
            ("POST", RECEIVER_PATH): Route(self.receive),
            ("GET", RECEIVER_PATH): Route(lambda request: json_response(self.received())),
        }


def endpoint_secrets() -> list[str]:
    """The signing secrets of the live notification endpoints that send to this receiver (their URL's path is
    ``RECEIVER_PATH``): each one's current secret, and its previous one during a rotation's grace period."""
    rows = (NotificationEndpoint.objects.live().filter(url__endswith=RECEIVER_PATH).order_by("created_at")
            .only("secret", "previous_secret", "previous_secret_expires_at")[:MAX_ENDPOINTS])
    return [secret for row in rows for secret in row.signing_secrets()]


def endpoint_secrets_in_thread() -> list[str]:
    """``endpoint_secrets`` from one of the upstream's request threads (a thread per connection): the
    thread's database connection is closed once read, not left open by a thread about to end."""
    try:
        return endpoint_secrets()
    finally:
        connections.close_all()
