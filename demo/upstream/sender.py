"""The demo upstream's webhook sender: signed status updates to the hub, every few seconds.

Every ``every`` seconds the sender reads the live, active webhook endpoints of
the demo payments provider's integrations (their path, signature scheme and
secret come from the database: the sender runs inside Django, like the
provider's own delivery system would hold its subscribers), and POSTs each one
delivery: ``{"id", "type", "created_at", "items": [{"id", "status", …}]}``
with the payments feed's current statuses, signed the way the endpoint
verifies (``hmac_sha256`` or ``standard_webhooks``; see webhooks/signatures.py).

While the hub is not up yet (or restarts), deliveries fail quietly and are
tried again on the next round; the log says once that the hub is unreachable
and once that it is back.
"""
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from django.db import close_old_connections, connections

from catalog.choices import SignatureScheme
from webhooks.models import WebhookEndpoint
from webhooks.signatures import DEFAULT_HMAC_HEADER, StandardWebhooks

from .api import StatusFeed

logger = logging.getLogger("demo.upstream.sender")

PAYMENTS_PROVIDER = "demo-payments"
EVENT_TYPE = "payment.status_updated"
SEND_EVERY_SECONDS = 5.0
POST_TIMEOUT_SECONDS = 5.0

# (url, body, headers) → HTTP status; raises OSError when the hub cannot be reached.
Post = Callable[[str, bytes, dict], int]


@dataclass
class Delivery:
    endpoint_id: str
    url: str
    status: int | None  # None: the hub could not be reached


def sign(*, scheme: str, secret: str, body: bytes, signature_header: str = "", now: float | None = None) -> dict:
    """The headers that make ``body`` verify under ``scheme`` with ``secret``."""
    if scheme == SignatureScheme.HMAC_SHA256:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return {signature_header or DEFAULT_HMAC_HEADER: f"sha256={digest}"}
    if scheme == SignatureScheme.STANDARD_WEBHOOKS:
        msg_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(time.time() if now is None else now))
        content = f"{msg_id}.{timestamp}.".encode() + body
        signature = base64.b64encode(hmac.new(StandardWebhooks.key(secret), content, hashlib.sha256).digest())
        return {"webhook-id": msg_id, "webhook-timestamp": timestamp,
                "webhook-signature": f"v1,{signature.decode()}"}
    raise ValueError(f"the demo sender does not sign {scheme} deliveries")


_local = threading.local()


def hub_post(url: str, body: bytes, headers: dict) -> int:
    """POST one delivery to the hub and return its status (a session per thread keeps the connection)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = False  # the hub is a known address: no proxy or netrc from the environment
    response = session.post(url, data=body, timeout=POST_TIMEOUT_SECONDS, allow_redirects=False,
                            headers={**headers, "Content-Type": "application/json", "User-Agent": "DemoUpstream/1.0"})
    return response.status_code


def endpoints() -> list[WebhookEndpoint]:
    """Where deliveries go: live, active endpoints of live demo payments integrations."""
    return list(
        WebhookEndpoint.objects.live().filter(
            active=True, integration__provider__slug=PAYMENTS_PROVIDER, integration__deleted_at__isnull=True,
        ).order_by("created_at")
    )


class WebhookSender:
    """Posts one signed delivery to each demo endpoint per round; ``start`` runs rounds in a thread."""

    def __init__(self, *, hub_url: str, feed: StatusFeed, every: float = SEND_EVERY_SECONDS,
                 post: Post = hub_post):
        self.hub_url = hub_url.rstrip("/")
        self.feed = feed
        self.every = every
        self.post = post
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reachable: bool | None = None

    def payload(self) -> bytes:
        items = [{"id": item["id"], "status": item["status"], "description": item["name"],
                  "updated_at": item["updated_at"]} for item in self.feed.items()]
        return json.dumps({
            "id": f"evt_{uuid.uuid4().hex}", "type": EVENT_TYPE,
            "created_at": datetime.now(tz=UTC).isoformat().replace("+00:00", "Z"), "items": items,
        }).encode()

    def send_once(self) -> list[Delivery]:
        """One round: a delivery to each endpoint. Never raises for an unreachable hub."""
        deliveries = []
        for endpoint in endpoints():
            url = f"{self.hub_url}{endpoint.url_path}"
            body = self.payload()
            try:
                headers = sign(scheme=endpoint.signature_scheme, secret=endpoint.secret, body=body,
                               signature_header=endpoint.signature_header)
            except ValueError as exc:
                logger.warning("demo.sender.skipped endpoint=%s reason=%s", endpoint.pk, exc)
                continue
            try:
                status = self.post(url, body, headers)
            except OSError:
                status = None
            deliveries.append(Delivery(endpoint_id=str(endpoint.pk), url=url, status=status))
            self._note(endpoint, status)
        return deliveries

    def _note(self, endpoint: WebhookEndpoint, status: int | None) -> None:
        reachable = status is not None
        if reachable != self._reachable:
            if reachable:
                logger.info("demo.sender.hub_reachable hub=%s", self.hub_url)
            elif self._reachable is not None:
                logger.info("demo.sender.hub_unreachable hub=%s (trying again every %ss)", self.hub_url, self.every)
            self._reachable = reachable
        if reachable and not 200 <= status < 300:
            logger.warning("demo.sender.refused endpoint=%s status=%s", endpoint.pk, status)
        elif reachable:
            logger.info("demo.sender.delivered endpoint=%s status=%s", endpoint.pk, status)

    # --- the thread ---------------------------------------------------------------------------------------

    def start(self) -> "WebhookSender":
        self._thread = threading.Thread(target=self._run, name="demo-webhook-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            # This thread's database connection, like a request's: dropped when broken or too old.
            close_old_connections()
            try:
                self.send_once()
            except Exception:  # a database hiccup must not end the thread; the next round tries again
                logger.exception("demo.sender.round_failed")
        connections.close_all()
