"""Webhook endpoints, secret rotation, accepting and processing events.

Writes are atomic and audited, except the receiver's insert, which is the
hot path: one statement, committed before the caller gets its 202.
"""
import json
import logging
import random
import secrets as pysecrets
import threading
import time
import uuid
from datetime import timedelta
from functools import cache as memoize
from urllib.parse import parse_qs

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from audit.services import Actor, audit_record
from connections.choices import UpdateMethod
from connections.polling import PollError, extract_items, statuses_store
from integrations_site import bounds
from integrations_site.api.errors import ConflictError, ValidationFailed

from . import signatures
from .choices import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS, EventStatus
from .models import WebhookEndpoint, WebhookEvent

logger = logging.getLogger("webhooks")

ENDPOINT_FIELDS = (
    "name", "description", "active", "verify_signature", "signature_scheme", "signature_header",
    "tolerance_seconds", "max_body_bytes", "dedupe", "rate_limit_per_minute",
)
DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key"}


def _new_path() -> str:
    return pysecrets.token_urlsafe(16)  # 128 random bits


def _check_path_free(path: str, exclude_pk=None) -> None:
    taken = WebhookEndpoint.objects.filter(path=path)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ConflictError(f"The path '{path}' is taken.", details={"path": path})


@transaction.atomic
def endpoint_create(*, actor: Actor, tenant, integration, data: dict) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint; returns it and its secret (shown this once)."""
    path = data.get("path") or _new_path()
    _check_path_free(path)
    scheme = data.get("signature_scheme") or integration.provider.default_webhook_signature_scheme or "hmac_sha256"
    secret = data.get("secret") or signatures.new_secret(scheme)
    endpoint = WebhookEndpoint(
        tenant=tenant, integration=integration, path=path, secret=secret,
        **{k: v for k, v in data.items() if k in ENDPOINT_FIELDS and k != "signature_scheme"},
        signature_scheme=scheme,
    )
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError:
        raise ConflictError(f"The path '{path}' is taken.", details={"path": path}) from None
    audit_record(actor=actor, action="webhook_endpoint.created", target=endpoint, tenant=tenant,
                 changes={"path": {"to": path}, "signature_scheme": {"to": scheme}, "secret": "set"},
                 secret_fields=frozenset({"secret"}))
    return endpoint, secret


@transaction.atomic
def endpoint_update(*, actor: Actor, endpoint: WebhookEndpoint, data: dict) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    new_scheme = data.get("signature_scheme")
    if new_scheme and new_scheme != endpoint.signature_scheme and endpoint.secret:
        problem = signatures.secret_problem(new_scheme, endpoint.secret)
        if problem:
            raise ValidationFailed(
                f"The current secret cannot sign {new_scheme} deliveries; rotate to a fitting secret first.",
                details={"signature_scheme": [problem]},
            )
    changes = {}
    for field, value in data.items():
        if field == "path" and value != endpoint.path:
            _check_path_free(value, exclude_pk=endpoint.pk)
        if (field in ENDPOINT_FIELDS or field == "path") and getattr(endpoint, field) != value:
            changes[field] = {"from": getattr(endpoint, field), "to": value}
            setattr(endpoint, field, value)
    if changes:
        endpoint.save()
        audit_record(actor=actor, action="webhook_endpoint.updated", target=endpoint, changes=changes)
    return endpoint


@transaction.atomic
def endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    """Soft delete: the path stops answering; its events stay readable and replayable."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.deleted_at = timezone.now()
    endpoint.active = False
    endpoint.save(update_fields=["deleted_at", "active", "updated_at"])
    audit_record(actor=actor, action="webhook_endpoint.deleted", target=endpoint)


def endpoints_disable_for_integration(*, actor: Actor, integration) -> int:
    """Deleting an integration turns its endpoints off (their events are kept)."""
    endpoints = list(WebhookEndpoint.objects.live().filter(integration=integration, active=True))
    for endpoint in endpoints:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False, updated_at=timezone.now())
        audit_record(actor=actor, action="webhook_endpoint.disabled", target=endpoint,
                     changes={"active": {"from": True, "to": False}, "reason": "integration deleted"})
    if endpoints:
        endpoint_cache_clear()
    return len(endpoints)


# --- the receiver's hot path ------------------------------------------------------------------------------------
# Per process (gunicorn sync workers: one request at a time, plus the hand-off thread), so no round trip is
# spent on what rarely changes (the endpoint) or on what only needs to be about right (the rate counter).

_endpoints: dict[str, tuple[float, WebhookEndpoint]] = {}
_ENDPOINTS_MAX = 10_000


def endpoint_for_path(path: str, *, fresh: bool = False) -> WebhookEndpoint | None:
    """The live, active endpoint at ``path``, or None.

    Found endpoints are kept in this process for WEBHOOK_ENDPOINT_CACHE_SECONDS
    (0 = always read the database). A change saved in this process clears the
    cache at once; other processes see it within that many seconds. Unknown
    paths are not cached, so a new endpoint answers at once everywhere.
    ``fresh`` reads the database and renews the cached copy (the receiver does
    so before refusing a signature, so a secret rotated elsewhere works at once).
    """
    ttl = settings.WEBHOOK_ENDPOINT_CACHE_SECONDS
    if ttl > 0 and not fresh:
        hit = _endpoints.get(path)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    endpoint = WebhookEndpoint.objects.filter(path=path, active=True, deleted_at__isnull=True).first()
    if endpoint is None:
        _endpoints.pop(path, None)
    elif ttl > 0:
        if len(_endpoints) >= _ENDPOINTS_MAX:
            _endpoints.clear()
        _endpoints[path] = (time.monotonic() + ttl, endpoint)
    return endpoint


def endpoint_cache_clear(**_kwargs) -> None:
    _endpoints.clear()


post_save.connect(endpoint_cache_clear, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoint_cache.save")
post_delete.connect(endpoint_cache_clear, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoint_cache.delete")


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
            if len(_rates) >= _ENDPOINTS_MAX:
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


@transaction.atomic
def webhook_secret_rotate(
    *, actor: Actor, endpoint: WebhookEndpoint, secret: str | None = None, grace_seconds: int | None = None
) -> tuple[WebhookEndpoint, str]:
    """New secret; the old one keeps verifying for ``grace_seconds`` (default 24 h, max 7 days, 0 = none)."""
    grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ValidationFailed(
            f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}.",
            details={"grace_seconds": [f"Must be between 0 and {MAX_GRACE_SECONDS}."]},
        )
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    new = secret or signatures.new_secret(endpoint.signature_scheme)
    if grace and endpoint.secret:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(seconds=grace)
    else:
        endpoint.previous_secret = ""
        endpoint.previous_secret_expires_at = None
    endpoint.secret = new
    endpoint.secret_rotated_at = now
    endpoint.save()
    audit_record(actor=actor, action="webhook_endpoint.secret_rotated", target=endpoint,
                 changes={"secret": "rotated", "grace_seconds": grace,
                          "previous_secret_expires_at": endpoint.previous_secret_expires_at},
                 secret_fields=frozenset({"secret"}))
    return endpoint, new


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


def _accept_insert(params: list):
    """Run the insert; the first statement of a request checks the kept connection by itself.

    With CONN_HEALTH_CHECKS, Django sends ``SELECT 1`` before the first query
    of each request on a kept connection: on the receiver, whose endpoint is
    usually cached, that doubles the round trips. Here the insert is the check:
    if it fails because the connection was already dead (the server restarted),
    it runs once more on a new connection.
    """
    own_check = (not connection.in_atomic_block and connection.connection is not None
                 and connection.health_check_enabled and not connection.health_check_done)
    if own_check:
        connection.health_check_done = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(_accept_sql(), params)
            return cursor.fetchone()
    except (OperationalError, InterfaceError):
        if not own_check or connection.is_usable():
            raise
        logger.warning("webhooks.event.reconnect reason=kept database connection was closed")
        connection.close()
    with connection.cursor() as cursor:
        cursor.execute(_accept_sql(), params)
        return cursor.fetchone()


def event_accept(*, endpoint: WebhookEndpoint, body: bytes, headers: dict, content_type: str,
                 source_ip: str | None, dedupe_key: str | None) -> tuple[WebhookEvent, bool]:
    """Store a verified delivery; returns (event, created). A duplicate returns the original.

    One statement (``INSERT … ON CONFLICT DO NOTHING``, no ORM compilation on
    the hot path): in autocommit the event is committed when this returns; a
    duplicate, also one racing in from another process, is no error and does
    not break a caller's transaction.
    """
    event = WebhookEvent(
        id=uuid.uuid4(), endpoint=endpoint, tenant_id=endpoint.tenant_id, dedupe_key=dedupe_key, body=body,
        content_type=content_type.replace("\x00", "")[:200], headers=filtered_headers(headers), source_ip=source_ip,
        received_at=timezone.now(), status=EventStatus.PENDING, attempts=0, last_error="", result={},
    )
    # In the order of _ACCEPT_FIELDS; the JSON columns as JSON text (cast by the column's type).
    params = [event.id, endpoint.pk, endpoint.tenant_id, dedupe_key, body, event.content_type,
              json.dumps(event.headers), source_ip, event.received_at, event.status, 0, "", None, None, "{}"]
    for k, field in enumerate(_accept_preparers()):
        if field is not None and params[k] is not None:
            params[k] = field.get_db_prep_save(params[k], connection)
    for _ in range(2):
        inserted = _accept_insert(params)
        if inserted is not None:
            event._state.adding = False
            event._state.db = connection.alias
            return event, True
        original = WebhookEvent.objects.filter(endpoint=endpoint, dedupe_key=dedupe_key).first()
        if original is not None:
            return original, False
        # The conflicting row was deleted between the two statements: try the insert once more.
    raise IntegrityError(f"webhook event dedupe conflict on endpoint {endpoint.pk} could not be resolved")


class PermanentEventError(Exception):
    """Processing this event can never succeed (its body is not JSON we keep, its shape is not one the
    integration reads): it fails at once with the reason instead of being retried."""


def parse_body(body: bytes, content_type: str):
    """JSON or form bodies (a form's ``payload`` field holding JSON is unpacked, as Slack sends it), bounded
    as everything from outside is (integrations_site.bounds); PermanentEventError when it cannot be read.

    An empty body (some senders ping with one) holds nothing: None.
    """
    if not body.strip():
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PermanentEventError("The body is not UTF-8 text.") from None
    if kind == "application/x-www-form-urlencoded":
        form = {bounds.clean_text(k): bounds.clean_text(v[0]) if len(v) == 1 else [bounds.clean_text(x) for x in v]
                for k, v in parse_qs(text, keep_blank_values=True).items()}
        if isinstance(form.get("payload"), str):
            try:
                return bounds.loads(form["payload"])
            except bounds.JsonRefused:
                pass
        return form
    try:
        return bounds.loads(body)
    except bounds.JsonRefused as exc:
        raise PermanentEventError(f"The body cannot be read: {exc}.") from None


def handle_event(event: WebhookEvent) -> dict:
    """Dispatch by the integration's handler; returns what the processing did.

    PermanentEventError when the body cannot be read or holds no status items where the integration
    looks for them; any other exception is taken as transient (the database, a lock) and retried.
    """
    integration = event.endpoint.integration
    data = parse_body(bytes(event.body), event.content_type)
    if data is None or integration.update_method != UpdateMethod.WEBHOOK or integration.deleted_at is not None:
        return {"handled": "recorded"}
    if isinstance(data, dict) and integration.status_id_field in data and integration.status_field in data \
            and not integration.status_items_path:
        data = [data]
    try:
        pairs = extract_items(data, integration)
    except PollError as exc:
        raise PermanentEventError(exc.message) from None
    result = statuses_store(integration=integration, pairs=pairs)
    return {"handled": "statuses", **result.as_dict()}


def retry_delay(attempts: int) -> int | None:
    """Seconds before the next try (with ±10 % jitter), or None after the last one."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return max(1, int(base * random.uniform(0.9, 1.1)))


def event_process(*, event_id) -> str | None:
    """Process one event. Idempotent and safe to retry.

    The row is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` inside the same
    transaction that applies its effects and marks it processed: a worker that
    dies mid-way rolls everything back and leaves the event pending, and a
    second run of a processed event is a no-op. Returns the new status, or
    None when there was nothing to do.
    """
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint__integration__provider")
            .filter(pk=event_id, status=EventStatus.PENDING).first()
        )
        if event is None:
            return None
        event.attempts += 1
        try:
            with transaction.atomic():
                result = handle_event(event)
        except Exception as exc:  # a permanent failure fails now; any other is retried on the schedule
            permanent = isinstance(exc, PermanentEventError)
            delay = None if permanent else retry_delay(event.attempts)
            event.last_error = bounds.clean_text(str(exc) if permanent else f"{type(exc).__name__}: {exc}", 500)
            if delay is None:
                event.status = EventStatus.FAILED
                event.next_attempt_at = None
                logger.warning("webhooks.event.failed event=%s attempts=%s permanent=%s", event.pk, event.attempts,
                               permanent)
            else:
                event.next_attempt_at = timezone.now() + timedelta(seconds=delay)
                transaction.on_commit(lambda: _schedule_retry(event.pk, delay))
            event.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
            return event.status
        event.status = EventStatus.PROCESSED
        event.processed_at = timezone.now()
        event.result = result
        event.last_error = ""
        event.next_attempt_at = None
        event.save(update_fields=["attempts", "status", "processed_at", "result", "last_error", "next_attempt_at"])
        return event.status


def _schedule_retry(event_id, delay: int) -> None:
    from .tasks import process_webhook_event

    try:
        process_webhook_event.apply_async((str(event_id),), countdown=delay)
    except Exception:  # the sweep picks it up when next_attempt_at has passed
        logger.warning("webhooks.event.retry_enqueue_failed event=%s", event_id)


@transaction.atomic
def event_replay(*, actor: Actor, event: WebhookEvent) -> WebhookEvent:
    """Queue a processed or failed event again (attempts start over). Audited."""
    event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
    if event.status == EventStatus.PENDING:
        raise ConflictError("The event is already waiting to be processed.", details={"status": event.status})
    old = event.status
    event.status = EventStatus.PENDING
    event.attempts = 0
    event.next_attempt_at = None
    event.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_record(actor=actor, action="webhook_event.replayed", target=event, tenant=event.tenant,
                 changes={"status": {"from": old, "to": EventStatus.PENDING}})
    from . import handoff

    transaction.on_commit(lambda: handoff.queue_now([str(event.pk)]))
    return event


def events_sweep(*, now=None) -> int:
    """Queue again pending events that waited longer than WEBHOOK_SWEEP_AFTER_SECONDS
    (the broker was down, or a process died before handing them off).

    Queued in tasks of WEBHOOK_HANDOFF_BATCH ids, so that a backlog is shared
    by every worker instead of running in one task.
    """
    from . import handoff

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_AFTER_SECONDS)
    ids = [
        str(pk) for pk in WebhookEvent.objects.filter(status=EventStatus.PENDING, received_at__lte=cutoff)
        .exclude(next_attempt_at__gt=now).order_by("received_at").values_list("pk", flat=True)[:5000]
    ]
    batch = settings.WEBHOOK_HANDOFF_BATCH
    for start in range(0, len(ids), batch):
        handoff.queue_now(ids[start:start + batch])
    return len(ids)


def events_prune(*, now=None) -> int:
    """Delete processed events older than WEBHOOK_EVENT_RETENTION_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    deleted, _ = WebhookEvent.objects.filter(status=EventStatus.PROCESSED, received_at__lt=cutoff).delete()
    return deleted


def signature_failure_count(*, endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(signature_failures=F("signature_failures") + 1)
