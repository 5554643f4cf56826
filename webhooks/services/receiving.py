"""Receiving a delivery: the hot path of ``POST /hooks/{path}``.

``webhook_receive`` is the whole receiver (the view only adapts Django's
request to it): body limit, rate limit, signature check with one fresh
re-read of the endpoint before refusing, the insert committed before the
answer, the batched hand-off and the usage count. Per process, no round trip
is spent on what rarely changes (the endpoint, cached) or on what only needs
to be about right (the rate counter, synced in batches).
"""
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache as memoize

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections
from django.utils import timezone

from connections.services import usage
from integrations_site import bounds
from integrations_site.api.errors import envelope
from integrations_site.prepared import statement_rows
from integrations_site.writegate import gated_commit

from .. import signatures
from ..choices import PATH_CHARS, EventStatus
from ..models import WebhookEndpoint, WebhookEvent
from . import handoff
from .endpoints import ENDPOINTS_MAX, endpoint_for_path, signature_failure_count

logger = logging.getLogger("webhooks")

DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key"}


class _RateWindow:
    __slots__ = ("window", "shared", "unsent", "sent_at")

    def __init__(self, window: int):
        self.window, self.shared, self.unsent, self.sent_at = window, 0, 0, 0.0


_rates: dict = {}
_rates_lock = threading.Lock()


def rate_limit_wait(endpoint: WebhookEndpoint, now: float | None = None) -> int | None:
    """Seconds to wait when the endpoint's per-minute budget is spent, else None.

    The count of the current minute lives in the shared cache; each process
    adds its deliveries there in one INCRBY every WEBHOOK_RATE_SYNC_SECONDS or
    WEBHOOK_RATE_SYNC_EVERY deliveries, and at once when its estimate reaches
    the limit, so the answer is exact near the limit and costs no round trip
    below it. The cache being down never refuses a delivery.
    """
    now = time.time() if now is None else now
    window = int(now // 60)
    limit = endpoint.rate_limit_per_minute
    with _rates_lock:
        state = _rates.get(endpoint.pk)
        if state is None or state.window != window:
            if len(_rates) >= ENDPOINTS_MAX:
                _rates.clear()
            state = _rates[endpoint.pk] = _RateWindow(window)
        state.unsent += 1
        count = state.shared + state.unsent
        due = (count >= limit or state.unsent >= settings.WEBHOOK_RATE_SYNC_EVERY
               or now - state.sent_at >= settings.WEBHOOK_RATE_SYNC_SECONDS)
        if due:
            unsent, state.unsent, state.sent_at = state.unsent, 0, now
    if due:
        key = f"webhooks:rate:{endpoint.pk}:{window}"
        try:
            if cache.add(key, unsent, timeout=90):
                total = unsent
            else:
                total = cache.incr(key, unsent)
        except Exception:  # the cache being down must not refuse deliveries
            return None
        with _rates_lock:
            state.shared = total
            count = total + state.unsent
    if count > limit:
        return max(1, 60 - int(now) % 60)
    return None


def filtered_headers(headers: dict) -> dict:
    """Headers worth keeping: no credentials or cookies, bounded (no NUL, values cut; integrations_site.bounds)."""
    return bounds.clean_headers({k: v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS})


_ACCEPT_FIELDS = ("id", "endpoint", "tenant", "dedupe_key", "body", "content_type", "headers", "source_ip",
                  "received_at", "status", "attempts", "last_error", "next_attempt_at", "processed_at", "result")


@memoize
def _accept_sql() -> str:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id``, written once from the model's metadata
    (PostgreSQL and SQLite ≥ 3.35 both take this form)."""
    meta, quote = WebhookEvent._meta, connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in _ACCEPT_FIELDS)
    endpoint, dedupe = (quote(meta.get_field(name).column) for name in ("endpoint", "dedupe_key"))
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(_ACCEPT_FIELDS))}) "
        f"ON CONFLICT ({endpoint}, {dedupe}) WHERE {dedupe} IS NOT NULL DO NOTHING RETURNING {quote(meta.pk.column)}"
    )


@memoize
def _accept_preparers() -> tuple:
    """For each column of the insert, the field's conversion to what this database stores, or None
    where the value is passed as it is (the ORM's conversion of a UUID or a datetime differs per
    database: PostgreSQL takes them natively, SQLite as hex and ISO text)."""
    fields = [WebhookEvent._meta.get_field(name) for name in _ACCEPT_FIELDS]
    native = connection.vendor == "postgresql"
    return tuple(
        None if native or f.get_internal_type() not in ("UUIDField", "ForeignKey", "DateTimeField") else f
        for f in fields
    )


def _accept_insert(db, params: list) -> tuple | None:
    """Run the insert on ``db`` (its own health check of a kept connection: statement_rows); the new id, or None."""
    with gated_commit(db):
        rows = statement_rows(db, _accept_sql(), params)
    return rows[0] if rows else None


def event_store(*, endpoint: WebhookEndpoint, body: bytes, headers: dict, content_type: str,
                source_ip: str | None, dedupe_key: str | None) -> tuple[uuid.UUID, bool]:
    """Store a verified delivery; returns (event id, created). A duplicate returns the original's id.

    One statement (``INSERT … ON CONFLICT DO NOTHING``, no ORM compilation and
    no model instance on the hot path): in autocommit the event is committed
    when this returns; a duplicate, also one racing in from another process,
    is no error and does not break a caller's transaction.
    """
    event_id = uuid.uuid4()
    # This thread's connection itself: each attribute read through ``django.db.connection`` looks it up again.
    db = connections[DEFAULT_DB_ALIAS]
    # In the order of _ACCEPT_FIELDS; the JSON columns as JSON text (cast by the column's type).
    params = [event_id, endpoint.pk, endpoint.tenant_id, dedupe_key, body, content_type.replace("\x00", "")[:200],
              json.dumps(filtered_headers(headers)), source_ip, timezone.now(), EventStatus.PENDING.value, 0, "",
              None, None, "{}"]
    for k, column in enumerate(_accept_preparers()):
        if column is not None and params[k] is not None:
            params[k] = column.get_db_prep_save(params[k], db)
    for _ in range(2):
        if _accept_insert(db, params) is not None:
            return event_id, True
        original = WebhookEvent.objects.filter(endpoint=endpoint, dedupe_key=dedupe_key).values_list("pk", flat=True)
        if original := original.first():
            return original, False
        # The conflicting row was deleted between the two statements: try the insert once more.
    raise IntegrityError(f"webhook event dedupe conflict on endpoint {endpoint.pk} could not be resolved")


def event_accept(**delivery) -> tuple[WebhookEvent, bool]:
    """``event_store`` (same arguments), answering with the stored event itself."""
    event_id, created = event_store(**delivery)
    return WebhookEvent.objects.get(pk=event_id), created


# --- the receiver ------------------------------------------------------------------------------------------------

_PATH = re.compile(PATH_CHARS)


@dataclass
class Receipt:
    """What the receiver answers: a status, a JSON body and extra headers."""

    status: int
    body: dict
    headers: dict = field(default_factory=dict)


def _refused(status: int, code: str, message: str, headers: dict | None = None) -> Receipt:
    return Receipt(status, envelope(code, message), headers or {})


def _refusal(endpoint: WebhookEndpoint, headers: dict, body: bytes) -> signatures.SignatureError | None:
    try:
        signatures.verify(
            endpoint.signature_scheme, secrets=endpoint.verifying_secrets(), headers=headers, body=body,
            tolerance=endpoint.tolerance_seconds, signature_header=endpoint.signature_header,
        )
    except signatures.SignatureError as exc:
        return exc
    return None


def webhook_receive(*, path: str, content_length: str, read_body: Callable[[int], bytes], headers: dict,
                    content_type: str, source_ip: str | None) -> Receipt:
    """Receive one delivery to ``/hooks/{path}``; never raises for anything the sender controls.

    In order: 404 for a path no endpoint has (or can have), 400 for a
    Content-Length that is not a number, 413 past the endpoint's body limit,
    429 past its per-minute rate, 401 when the signature is refused (after
    re-reading the endpoint once, in case the cached copy predates a secret
    rotated in another process), 200 for a duplicate, else 202 once the event
    is committed; then the event is handed to the queue in a batch and
    counted. ``read_body(limit)`` returns at most ``limit`` bytes of the body;
    ``headers`` have lower-case names.
    """
    endpoint = endpoint_for_path(path) if _PATH.fullmatch(path) else None
    if endpoint is None:
        return _refused(404, "NOT_FOUND", "No webhook endpoint at this path.")
    if content_length and not (content_length.isascii() and content_length.isdigit()):
        # Django would read such a body as empty, and an empty body is a valid delivery.
        return _refused(400, "VALIDATION_ERROR", "The Content-Length header is not a number.")
    too_large = f"The body is larger than {endpoint.max_body_bytes} bytes."
    if content_length and int(content_length) > endpoint.max_body_bytes:
        logger.info("webhooks.event.rejected endpoint=%s reason=too_large", endpoint.pk)
        return _refused(413, "PAYLOAD_TOO_LARGE", too_large)
    wait = rate_limit_wait(endpoint)
    if wait is not None:
        logger.info("webhooks.event.rejected endpoint=%s reason=rate_limited", endpoint.pk)
        return _refused(429, "RATE_LIMIT_EXCEEDED", "Too many deliveries to this endpoint.", {"Retry-After": str(wait)})
    body = read_body(endpoint.max_body_bytes + 1)
    if len(body) > endpoint.max_body_bytes:
        return _refused(413, "PAYLOAD_TOO_LARGE", too_large)

    if endpoint.verify_signature:
        refused = _refusal(endpoint, headers, body)
        if refused is not None and settings.WEBHOOK_ENDPOINT_CACHE_SECONDS:
            endpoint = endpoint_for_path(path, fresh=True)
            if endpoint is None:
                return _refused(404, "NOT_FOUND", "No webhook endpoint at this path.")
            refused = _refusal(endpoint, headers, body)
        if refused is not None:
            signature_failure_count(endpoint=endpoint)
            logger.info("webhooks.event.rejected endpoint=%s reason=signature detail=%s", endpoint.pk, refused.reason)
            return _refused(401, "SIGNATURE_INVALID", f"The signature was refused: {refused.reason}.")

    dedupe_key = signatures.dedupe_key(endpoint.signature_scheme, headers, body) if endpoint.dedupe else None
    event_id, created = event_store(endpoint=endpoint, body=body, headers=headers, content_type=content_type,
                                    source_ip=source_ip, dedupe_key=dedupe_key)
    if not created:
        return Receipt(200, {"status": "duplicate", "event_id": str(event_id)})
    handoff.hand_off(str(event_id))
    usage.record(endpoint.integration_id, endpoint.tenant_id, webhooks=1)
    return Receipt(202, {"status": "accepted", "event_id": str(event_id)})
