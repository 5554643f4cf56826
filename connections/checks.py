"""Connection tests and scheduled health checks.

A check has two halves: ``probe_many`` talks to the outside and touches no
database while requests are in flight (many run at once on one event loop,
see ``http.request_many``), and ``checks_record`` writes
the outcomes in bulk: ConnectionCheck rows, the integration's health and
status, the credential's status, and audit events for health transitions.
"""
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache as memoize
from urllib.parse import urljoin

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, Value
from django.db.models.functions import Random
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM, Actor, audit_record
from integrations_site import bounds, bulk

from . import adapters, http, usage
from .choices import CheckError, CheckKind, CheckState, CredentialStatus, HealthState, IntegrationStatus
from .models import ConnectionCheck, Credential, Integration

logger = logging.getLogger("connections.checks")

SAMPLE_ITEMS = 3
SAMPLE_BYTES = 2048
# A check still "running" after this long lost its worker (the task's hard time limit is 760 s):
# the redelivered task (acks_late) or the sweep may run it again.
RUNNING_STALE_SECONDS = 900


@dataclass
class ProbeResult:
    success: bool
    status_code: int | None = None
    latency_ms: int | None = None
    attempts: int = 0
    error_code: str = ""
    error_message: str = ""
    sample: object = None
    url: str = ""
    started_at: object = field(default_factory=timezone.now)
    finished_at: object = None

    @property
    def error(self) -> dict | None:
        return {"code": self.error_code, "message": self.error_message} if self.error_code else None


def endpoint_url(integration: Integration, endpoint: str) -> str | None:
    """``endpoint`` joined to the base URL (an absolute endpoint stands alone)."""
    if endpoint.startswith(("http://", "https://")):
        return endpoint
    if not integration.api_base_url:
        return None
    return urljoin(integration.api_base_url.rstrip("/") + "/", endpoint.lstrip("/")) if endpoint else (
        integration.api_base_url
    )


def make_sample(body: bytes):
    """At most 3 items and 2 KB of a JSON answer (bounded: integrations_site.bounds), else None."""
    try:
        data = bounds.loads(body)
    except bounds.JsonRefused:
        return None
    if isinstance(data, list):
        data = data[:SAMPLE_ITEMS]
    elif isinstance(data, dict):
        data = {k: (v[:SAMPLE_ITEMS] if isinstance(v, list) else v) for k, v in data.items()}
    while len(json.dumps(data, default=str)) > SAMPLE_BYTES:
        if isinstance(data, list) and len(data) > 1:
            data = data[:-1]
        elif isinstance(data, dict) and (longest := _longest_list_key(data)) is not None:
            data = {**data, longest: data[longest][:-1]}  # trim the object's lists before dropping keys
        elif isinstance(data, dict) and len(data) > 1:
            data = dict(list(data.items())[:-1])
        else:
            return {"truncated": True}
    return data


def _longest_list_key(data: dict):
    """The key of the largest list with more than one item in ``data``, or None."""
    lists = [(len(json.dumps(v, default=str)), k) for k, v in data.items() if isinstance(v, list) and len(v) > 1]
    return max(lists)[1] if lists else None


def probe(integration: Integration, credential: Credential | None) -> ProbeResult:
    """Call the integration's test endpoint once (with its retries), within the integration's limits."""
    return probe_many([(integration, credential)])[0]


def probe_many(
    pairs: list[tuple[Integration, Credential | None]], *, concurrency: int = 1, process_wide: bool = False
) -> list[ProbeResult]:
    """``probe`` for many (integration, credential) pairs (``concurrency`` as in ``http.request_many``)."""
    results, waiting, calls = [None] * len(pairs), [], []
    for index, (integration, credential) in enumerate(pairs):
        url = endpoint_url(integration, integration.test_endpoint or "")
        if not url:
            results[index] = _not_configured("Set api_base_url (and test_endpoint) before testing the connection.")
        elif integration.provider.auth_type != "none" and (credential is None or not credential.is_set):
            results[index] = _not_configured("Set the integration's credentials before testing the connection.")
        else:
            waiting.append(index)
            calls.append((integration, {
                "method": "GET", "url": url, "headers": adapters.auth_headers(credential, integration.provider),
            }))
    for index, (_, call), outcome in zip(
        waiting, calls, usage.metered_many(calls, concurrency=concurrency, process_wide=process_wide), strict=True
    ):
        results[index] = _probe_result(call["url"], outcome)
    return results


def _not_configured(message: str) -> ProbeResult:
    now = timezone.now()
    return ProbeResult(success=False, error_code=CheckError.NOT_CONFIGURED, error_message=message,
                       started_at=now, finished_at=now)


def _probe_result(url: str, outcome) -> ProbeResult:
    """The ProbeResult of one answer (or the OutboundError that stood for it)."""
    if outcome.started_at is None or outcome.elapsed_ms is None:  # refused before it was sent
        started = finished = timezone.now()
    else:
        started = datetime.fromtimestamp(outcome.started_at, tz=UTC)
        finished = started + timedelta(milliseconds=outcome.elapsed_ms)
    if isinstance(outcome, http.OutboundError):
        return ProbeResult(
            success=False, error_code=outcome.code, error_message=bounds.clean_text(outcome.message, 500), url=url,
            started_at=started, finished_at=finished,
            latency_ms=outcome.elapsed_ms,
        )
    result = ProbeResult(
        success=200 <= outcome.status_code < 300, status_code=outcome.status_code,
        latency_ms=outcome.elapsed_ms, attempts=outcome.attempts, url=url, started_at=started,
        finished_at=finished,
    )
    if outcome.status_code in (401, 403):
        result.error_code = CheckError.INVALID_CREDENTIALS
        result.error_message = f"The API answered {outcome.status_code}: the credentials were refused."
    elif not result.success:
        result.error_code = CheckError.UNEXPECTED_STATUS
        result.error_message = f"The API answered {outcome.status_code}."
    else:
        result.sample = make_sample(outcome.body)
    return result


def next_health_state(*, success: bool, latency_ms: int | None, consecutive_failures: int) -> str:
    """healthy / degraded (slow, or 1..N-1 failures in a row) / unhealthy (N failures in a row)."""
    if success:
        slow = latency_ms is not None and latency_ms > settings.HEALTH_LATENCY_BUDGET_MS
        return HealthState.DEGRADED if slow else HealthState.HEALTHY
    if consecutive_failures >= settings.HEALTH_FAILURE_THRESHOLD:
        return HealthState.UNHEALTHY
    return HealthState.DEGRADED


def next_check_time(integration: Integration, now=None):
    """The next scheduled check: the interval plus up to 10 % jitter, so checks spread out."""
    now = now or timezone.now()
    interval = integration.health_check_interval_seconds
    return now + timedelta(seconds=interval + random.uniform(0, interval * 0.1))


def _apply(integration: Integration, credential: Credential | None, result: ProbeResult, now) -> tuple:
    """Update the in-memory rows from one result; returns (health transition or None, credential changed).

    A NOT_CONFIGURED or LIMIT_EXCEEDED result says nothing about the far side: it is recorded as
    the last error but moves neither the health state nor the status.
    """
    if result.error_code in (CheckError.NOT_CONFIGURED, CheckError.LIMIT_EXCEEDED):
        integration.health_checked_at = now
        integration.last_error = {"code": result.error_code, "message": result.error_message, "at": now.isoformat()}
        return None, False
    failures = 0 if result.success else integration.consecutive_failures + 1
    old_state = integration.health_state
    integration.consecutive_failures = failures
    integration.health_state = next_health_state(
        success=result.success, latency_ms=result.latency_ms, consecutive_failures=failures
    )
    integration.health_checked_at = now
    if result.success:
        integration.last_success_at = now
        integration.last_error = {}
    elif (result.error_code == CheckError.INVALID_CREDENTIALS and credential is not None
          and credential.status in (CredentialStatus.EXPIRED, CredentialStatus.REVOKED)):
        # The refresh that followed the 401 was refused: what the user must do is re-authorize.
        integration.last_error = {"code": result.error_code, "at": now.isoformat(),
                                  "message": credential.validation_error or "Re-authorization needed."}
    else:
        integration.last_error = {"code": result.error_code, "message": result.error_message, "at": now.isoformat()}
    if integration.status != IntegrationStatus.DISABLED:
        integration.status = IntegrationStatus.CONNECTED if result.success else IntegrationStatus.ERROR
    credential_changed = False
    if credential is not None and credential.is_set:
        if result.success:
            credential.status, credential.last_validated_at, credential.validation_error = (
                CredentialStatus.ACTIVE, now, ""
            )
            credential_changed = True
        elif result.error_code == CheckError.INVALID_CREDENTIALS and credential.status not in (
            CredentialStatus.EXPIRED, CredentialStatus.REVOKED
        ):
            # An expired or revoked credential keeps its state and its re-authorization message.
            credential.status, credential.validation_error = CredentialStatus.ERROR, result.error_message
            credential_changed = True
    transition = (old_state, integration.health_state) if old_state != integration.health_state else None
    return transition, credential_changed


INTEGRATION_HEALTH_FIELDS = [
    "consecutive_failures", "health_state", "health_checked_at", "last_success_at", "last_error", "status",
]
# The ones _apply reads; the others it only sets, so checks_record does not load them (loading a timestamp
# costs more CPU than writing it) and writes them whenever they are set.
_INTEGRATION_HEALTH_READ = ["consecutive_failures", "health_state", "status"]
_CREDENTIAL_STATUS_FIELDS = ["status", "last_validated_at", "validation_error"]
_CREDENTIAL_STATUS_READ = ["status", "validation_error"]


def _check_fields(result: ProbeResult) -> dict:
    return {
        "state": CheckState.COMPLETED,
        "success": result.success,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "attempts": result.attempts,
        "error_code": result.error_code,
        "error_message": result.error_message,
        "sample": result.sample,
        "url": result.url[:1000],
        "started_at": result.started_at,
        "finished_at": result.finished_at,
    }


def _transition_event(integration: Integration, transition: tuple, actor: Actor) -> AuditEvent:
    return AuditEvent(
        tenant_id=integration.tenant_id, actor=actor.label, action="integration.health_changed",
        target_type=integration._meta.label_lower, target_id=str(integration.pk), target_repr=str(integration)[:255],
        outcome="success", changes={"health_state": {"from": transition[0], "to": transition[1]}},
        actor_user_id=None, actor_api_key_id=None,  # given: an unset foreign key's default is looked up per row
    )


@memoize
def _check_attnames() -> tuple:
    return tuple(f.attname for f in ConnectionCheck._meta.concrete_fields)


def _new_check(integration: Integration, kind: str, requested_by: str, result: ProbeResult) -> ConnectionCheck:
    """An unsaved completed check, every field given (created_at too, as auto_now_add would set it)."""
    values = {
        "id": uuid.uuid4(), "tenant_id": integration.tenant_id, "integration_id": integration.pk, "kind": kind,
        "requested_by": requested_by, "requested_by_user_id": None, "requested_by_api_key_id": None,
        "created_at": timezone.now(), **_check_fields(result),
    }
    # Positional, as the ORM builds rows it reads: half the CPU of keyword arguments.
    check = ConnectionCheck(*[values[attname] for attname in _check_attnames()])
    ConnectionCheck.integration.field.set_cached_value(check, integration)
    return check


def _locked_integrations(ids: list) -> dict:
    """Integrations by id, locked, with only what _apply and the check rows read: a full Integration
    (and its provider) per row costs more CPU than the statements. Callers that need more of
    check.integration load it lazily."""
    fields = ("id", "tenant_id", "name", *_INTEGRATION_HEALTH_READ)
    if connection.vendor != "postgresql":
        return {i.pk: i for i in Integration.objects.select_for_update(of=("self",)).only(*fields).filter(pk__in=ids)}
    # Locked in the order the ORM's query locks them (the model's ordering).
    rows = bulk.fetch(
        Integration, fields, "id = ANY(%s::uuid[]) ORDER BY created_at DESC FOR UPDATE", [bulk.pg_array(ids)]
    )
    return {i.pk: i for i in rows}


def _tenant_credentials(ids: list) -> dict:
    """Tenant-wide credentials by integration id, with only what _apply reads: not the encrypted payload
    (decrypting it is the most expensive part of a row), _apply asks only is_set."""
    fields = ("id", "integration_id", *_CREDENTIAL_STATUS_READ)
    if connection.vendor != "postgresql":
        rows = (
            Credential.objects.filter(integration_id__in=ids, user__isnull=True).order_by().only(*fields)
            .annotate(payload_present=ExpressionWrapper(Q(payload__isnull=False), output_field=BooleanField()))
        )
    else:
        rows = bulk.fetch(
            Credential, fields, "integration_id = ANY(%s::uuid[]) AND user_id IS NULL", [bulk.pg_array(ids)],
            annotation=("payload_present", "payload IS NOT NULL"),
        )
    return {c.integration_id: c for c in rows}


def _loaded(obj, fields: list) -> dict:
    values = vars(obj)
    return {f: values[f] for f in fields if f in values}


def _group_key(values: dict) -> tuple:
    """Rows whose changed values are equal share one UPDATE; a dict (last_error) compares as its JSON."""
    return tuple(
        (f, json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict) else value)
        for f, value in values.items()
    )


def checks_record(
    *, results: dict, kind: str, actor: Actor = SYSTEM, checks: dict | None = None
) -> list[ConnectionCheck]:
    """Persist probe results for many integrations in a few statements.

    ``results`` maps integration id → ProbeResult; ``checks`` (optional) maps
    integration id → an existing queued ConnectionCheck to complete instead of
    creating one. Integrations are locked while their health is updated, so a
    concurrent check cannot lose a failure count.

    A batch holds integrations of many tenants: should its statements fail,
    each integration is recorded on its own, and one that still fails is
    logged and left out (its next check records it), so one tenant's result
    never stops another's from being written. A single result that fails
    raises.
    """
    try:
        with transaction.atomic():
            return _checks_write(results=results, kind=kind, actor=actor, checks=checks)
    except Exception:  # noqa: BLE001 (whatever broke the batch, the rows are tried one by one)
        if len(results) == 1:
            raise
        logger.warning("connections.checks.batch_failed integrations=%s: recording them one by one", len(results))
    written = []
    for integration_id, result in results.items():
        one = {integration_id: checks[integration_id]} if checks and integration_id in checks else None
        try:
            with transaction.atomic():
                written += _checks_write(results={integration_id: result}, kind=kind, actor=actor, checks=one)
        except Exception as exc:  # noqa: BLE001
            logger.error("connections.checks.record_dropped integration=%s error=%s", integration_id,
                         type(exc).__name__)
    return written


def _checks_write(*, results: dict, kind: str, actor: Actor, checks: dict | None) -> list[ConnectionCheck]:
    now = timezone.now()
    integrations = _locked_integrations(list(results))
    credentials = _tenant_credentials(list(results))
    # The loaded values (vars: a field not loaded is not in it, and reading it would load it).
    before = {
        **{("i", i.pk): _loaded(i, INTEGRATION_HEALTH_FIELDS) for i in integrations.values()},
        **{("c", c.pk): _loaded(c, _CREDENTIAL_STATUS_FIELDS) for c in credentials.values()},
    }
    rows, created, changed_credentials, events = [], [], [], []
    for integration_id, result in results.items():
        integration = integrations.get(integration_id)
        if integration is None:
            continue
        credential = credentials.get(integration_id)
        transition, credential_changed = _apply(integration, credential, result, now)
        if credential_changed:
            changed_credentials.append(credential)
        if transition:
            events.append(_transition_event(integration, transition, actor))
            logger.info(
                "connections.health.changed integration=%s from=%s to=%s", integration.pk, *transition
            )
        existing = (checks or {}).get(integration_id)
        if existing is not None:
            for name, value in _check_fields(result).items():
                setattr(existing, name, value)
            rows.append(existing)
        else:
            created.append(_new_check(integration, kind, actor.label[:200], result))
    # One UPDATE per distinct set of changed values (a batch of checks mostly shares a few): bulk_update's
    # CASE per row and field costs more CPU than the probes themselves.
    for model, tag, objects, fields in (
        (Integration, "i", integrations.values(), INTEGRATION_HEALTH_FIELDS),
        (Credential, "c", changed_credentials, _CREDENTIAL_STATUS_FIELDS),
    ):
        groups = {}
        for obj in objects:
            old, new = before[(tag, obj.pk)], _loaded(obj, fields)
            values = {f: value for f, value in new.items() if f not in old or value != old[f]}
            if values:
                groups.setdefault(_group_key(values), (values, []))[1].append(obj.pk)
        for values, pks in groups.values():
            bulk.update(model, pks, values)
    # bulk.insert: bulk_create's per-value work in Python cost more than the rest of checks_record.
    bulk.insert(created)
    for row in rows:
        row.save()
    bulk.insert(events)
    return created + rows


def credential_for(integration: Integration, user=None) -> Credential | None:
    """The credential a call uses: the calling user's on a user-scoped integration, else the tenant's."""
    if integration.user_scoped and getattr(user, "pk", None):
        return Credential.objects.filter(integration=integration, user=user).first()
    return Credential.objects.filter(integration=integration, user__isnull=True).first()


def probe_with_refresh(integration: Integration, credential: Credential | None) -> ProbeResult:
    """``probe``; a 401/403 with an OAuth2 credential triggers one refresh and one retry."""
    result = probe(integration, credential)
    if result.error_code == CheckError.INVALID_CREDENTIALS:
        from .oauth import refresh_for_retry

        fresh = refresh_for_retry(credential)
        if fresh is not None:
            result = probe(integration, fresh)
    return result


def connection_test_run(*, integration: Integration, actor: Actor, kind: str = CheckKind.TEST) -> ConnectionCheck:
    """Test the connection now and record it; the check row is returned. Audited."""
    result = probe_with_refresh(integration, credential_for(integration, actor.user))
    check = checks_record(results={integration.pk: result}, kind=kind, actor=actor)[0]
    _audit_check(check, actor)
    return check


def _audit_check(check: ConnectionCheck, actor: Actor) -> None:
    audit_record(
        actor=actor, action="integration.tested", target=check.integration, tenant=check.integration.tenant,
        outcome="success" if check.success else "failure",
        changes={"check_id": str(check.pk), "kind": check.kind, "status_code": check.status_code,
                 "error_code": check.error_code or None},
    )


def connection_test_queue(*, integration: Integration, actor: Actor, kind: str = CheckKind.TEST) -> ConnectionCheck:
    """Create a queued check and hand it to the worker after commit."""
    from .tasks import run_connection_check

    check = ConnectionCheck.objects.create(
        tenant_id=integration.tenant_id, integration=integration, kind=kind, state=CheckState.QUEUED,
        requested_by=actor.label[:200], requested_by_user=actor.user if getattr(actor.user, "pk", None) else None,
        requested_by_api_key=actor.api_key,
    )
    transaction.on_commit(lambda: _enqueue(run_connection_check, str(check.pk)))
    return check


def _enqueue(task, *args) -> None:
    try:
        task.delay(*args)
    except Exception:  # the broker being down must not fail the request; the sweep re-queues
        logger.warning("connections.check.enqueue_failed task=%s args=%s", task.name, args)


def _runnable_checks(now):
    """Queued checks, and running ones whose worker was lost (started too long ago)."""
    stale = now - timedelta(seconds=RUNNING_STALE_SECONDS)
    return ConnectionCheck.objects.filter(
        Q(state=CheckState.QUEUED) | Q(state=CheckState.RUNNING, started_at__lt=stale)
    )


def connection_check_execute(*, check_id) -> ConnectionCheck | None:
    """Run a queued check. Idempotent: a completed or running check is left alone
    (unless it has been running for longer than any worker may: its worker was lost)."""
    with transaction.atomic():
        check = (
            _runnable_checks(timezone.now()).select_for_update(skip_locked=True, of=("self",))
            .select_related("integration__provider").filter(pk=check_id).first()
        )
        if check is None:
            return None
        check.state = CheckState.RUNNING
        check.started_at = timezone.now()
        check.save(update_fields=["state", "started_at"])
    integration = check.integration
    # The audit trail names whoever asked for the check, not the worker.
    actor = Actor(user=check.requested_by_user, api_key=check.requested_by_api_key)
    result = probe_with_refresh(integration, credential_for(integration, check.requested_by_user))
    checks_record(results={integration.pk: result}, kind=check.kind, actor=actor, checks={integration.pk: check})
    _audit_check(check, actor)
    return check


# What probe_many reads of an integration (its URL, limits, timeouts, usage headers): loading whole
# rows, with their JSON columns, cost more than the probes.
PROBE_FIELDS = (
    "id", "tenant_id", "provider_id", "api_base_url", "test_endpoint", "timeout_seconds", "retry_count", "settings",
    "limit_monthly_budget", "limit_tokens", "limit_requests_per_minute",
)


def health_checks_run(*, integration_ids: list) -> int:
    """Scheduled checks for many integrations: probes run concurrently, results are written in bulk."""
    from catalog.models import IntegrationProvider

    if connection.vendor == "postgresql":
        integrations = bulk.fetch(
            Integration, PROBE_FIELDS, "id = ANY(%s::uuid[]) AND deleted_at IS NULL AND status <> %s",
            [bulk.pg_array(integration_ids), IntegrationStatus.DISABLED],
        )
    else:
        integrations = list(
            Integration.objects.live().exclude(status=IntegrationStatus.DISABLED).filter(pk__in=integration_ids)
            .only(*PROBE_FIELDS)
        )
    if not integrations:
        return 0
    # One provider object per provider, not per row (select_related builds one per row), with what
    # a probe reads of it.
    providers = IntegrationProvider.objects.only("id", "auth_type", "credential_fields").in_bulk(
        {i.provider_id for i in integrations}
    )
    for integration in integrations:
        integration.provider = providers[integration.provider_id]
    credentials = {
        c.integration_id: c for c in Credential.objects.filter(
            integration_id__in=[i.pk for i in integrations], user__isnull=True
        )
    }
    # HEALTH_CHECK_CONCURRENCY bounds the probes in flight in the whole worker process, whatever
    # the number of tasks running in it.
    outcomes = probe_many(
        [(i, credentials.get(i.pk)) for i in integrations], concurrency=settings.HEALTH_CHECK_CONCURRENCY,
        process_wide=True,
    )
    results = {integration.pk: result for integration, result in zip(integrations, outcomes, strict=True)}
    checks_record(results=results, kind=CheckKind.HEALTH)
    return len(results)


def _chunks(items: list, size: int) -> list[list]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def due_for_check(now):
    """Live, enabled integrations whose check is due and that can be checked at all.

    An integration without a base URL, or without a tenant-wide credential
    while its provider needs one, is not claimed: probing it would only record
    NOT_CONFIGURED every interval. It stays ``unknown`` until it is configured;
    setting a credential (or a URL) makes it due at once (its ``next_check_at``
    has passed, or was never set).
    """
    has_credential = Exists(
        Credential.objects.filter(integration=OuterRef("pk"), user__isnull=True, payload__isnull=False)
    )
    return (
        Integration.objects.live().exclude(status=IntegrationStatus.DISABLED).exclude(api_base_url="")
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        .filter(Q(provider__auth_type="none") | Q(has_credential))
    )


def health_checks_dispatch(*, now=None) -> int:
    """Claim due integrations and queue their checks; returns how many were claimed.

    Each batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL;
    SQLite serialises writers instead), its ``next_check_at`` moved by the
    interval plus jitter in the same transaction, and queued in chunks after
    commit: two dispatchers never claim the same row, and a row whose tick was
    missed stays due until one claims it.
    """
    from .tasks import run_health_checks

    now = now or timezone.now()
    batch, total = settings.HEALTH_DISPATCH_BATCH, 0
    while True:
        with transaction.atomic():
            ids = list(
                due_for_check(now).order_by("next_check_at").select_for_update(skip_locked=True, of=("self",))
                .values_list("id", flat=True)[:batch]
            )
            _move_next_check(ids, now)
            chunks = _chunks([str(pk) for pk in ids], settings.HEALTH_TASK_CHUNK)
            transaction.on_commit(lambda chunks=chunks: [_enqueue(run_health_checks, c) for c in chunks])
        total += len(ids)
        if len(ids) < batch:
            return total


def _move_next_check(ids: list, now) -> None:
    """next_check_at = now + interval × (1 + up to 10 % jitter), for a whole batch.

    One set-based UPDATE on PostgreSQL; row by row elsewhere (SQLite's
    interval arithmetic is emulated).
    """
    if not ids:
        return
    if connection.vendor == "postgresql":
        interval = ExpressionWrapper(
            Value(timedelta(seconds=1)) * F("health_check_interval_seconds") * (1 + Random() * 0.1),
            output_field=DurationField(),
        )
        Integration.objects.filter(pk__in=ids).update(next_check_at=Value(now) + interval)
        return
    due = list(Integration.objects.filter(pk__in=ids).only("id", "health_check_interval_seconds"))
    for integration in due:
        integration.next_check_at = next_check_time(integration, now)
    Integration.objects.bulk_update(due, ["next_check_at"])


def queued_checks_sweep() -> int:
    """Queue again the checks still queued after a delay (the broker may have been down),
    and those left running by a lost worker."""
    from .tasks import run_connection_check

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.QUEUED_CHECK_SWEEP_SECONDS)
    ids = list(
        _runnable_checks(now).filter(created_at__lte=cutoff).order_by("created_at").values_list("pk", flat=True)[:1000]
    )
    for check_id in ids:
        _enqueue(run_connection_check, str(check_id))
    return len(ids)


def checks_prune(*, now=None) -> int:
    """Delete checks older than CHECK_RETENTION_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.CHECK_RETENTION_DAYS)
    deleted, _ = ConnectionCheck.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def system_provider_test(*, provider, actor: Actor) -> ConnectionCheck | None:
    """Test a system-audience provider through the platform tenant's integration of it.

    Returns None when the platform has no live integration of the provider.
    """
    integration = (
        Integration.objects.live().select_related("provider", "tenant")
        .filter(provider=provider, tenant__slug=settings.PLATFORM_TENANT_SLUG).order_by("created_at").first()
    )
    if integration is None:
        return None
    return connection_test_run(integration=integration, actor=actor, kind=CheckKind.SYSTEM)
