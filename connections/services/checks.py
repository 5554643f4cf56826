"""Connection checks: a test run now or by a worker, the sweep and pruning, and recording outcomes.

Scheduled health checks are claimed and run in ``schedule``. A check has two halves: a
probe (``probes``) talks to the outside and touches no database while requests are in
flight, and ``checks_record`` writes the outcomes in bulk: ConnectionCheck rows, the
integration's health and status and the credential's status (as ``health.health_apply``
moves them), and audit events for health transitions.
"""
import json
import logging
import uuid
from datetime import timedelta
from functools import cache as memoize

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM, Actor, audit_record
from integrations_site import bulk
from notifications.services import notify_many
from tenants.selectors import effective_policies

from ..choices import CheckError, CheckKind, CheckState, DisabledReason
from ..models import ConnectionCheck, Credential, Integration
from ..selectors import credential_for, tenant_credentials
from . import oauth, queueing
from .health import (
    AUTO_DISABLE,
    CREDENTIAL_READ,
    CREDENTIAL_WRITTEN,
    INTEGRATION_READ,
    INTEGRATION_WRITTEN,
    WARN,
    health_apply,
    streak_action,
)
from .integrations import integration_disable
from .probes import ProbeResult, probe

logger = logging.getLogger("connections.checks")

# A check still "running" after this long lost its worker (the task's hard time limit is 760 s):
# the redelivered task (acks_late) or the sweep may run it again.
RUNNING_STALE_SECONDS = 900


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


def _event(integration: Integration, action: str, changes: dict, actor: Actor) -> AuditEvent:
    """An unsaved audit event of ``integration`` (written in bulk with the batch)."""
    return AuditEvent(
        tenant_id=integration.tenant_id, actor=actor.label, action=action,
        target_type=integration._meta.label_lower, target_id=str(integration.pk), target_repr=str(integration)[:255],
        outcome="success", changes=changes,
        actor_user_id=None, actor_api_key_id=None,  # given: an unset foreign key's default is looked up per row
    )


def _transition_note(integration: Integration, transition: tuple) -> tuple:
    last_error = integration.last_error or None
    return (integration.tenant_id, "integration.health_changed", {
        "integration_id": str(integration.pk), "integration_name": integration.name,
        "old_state": transition[0], "new_state": transition[1],
        "last_error": {"code": last_error["code"], "message": last_error["message"]} if last_error else None,
    })


def _streak(integration: Integration) -> dict:
    return {"consecutive_failures": integration.consecutive_failures,
            "failing_since": integration.failing_since.isoformat() if integration.failing_since else None}


def _warning(integration: Integration) -> tuple[AuditEvent, tuple]:
    """The failing streak's one warning: its audit event and its notification."""
    event = _event(integration, "integration.failure_warning", _streak(integration), SYSTEM)
    return event, (integration.tenant_id, "integration.failure_warning",
                   {"integration_id": str(integration.pk), "integration_name": integration.name,
                    **_streak(integration)})


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
    """Integrations by id, locked, with only what health_apply and the check rows read: a full Integration
    (and its provider) per row costs more CPU than the statements. Callers that need more of
    check.integration load it lazily."""
    fields = ("id", "tenant_id", "name", *INTEGRATION_READ)
    if connection.vendor != "postgresql":
        return {i.pk: i for i in Integration.objects.select_for_update(of=("self",)).only(*fields).filter(pk__in=ids)}
    # Locked in the order the ORM's query locks them (the model's ordering).
    rows = bulk.fetch(
        Integration, fields, "id = ANY(%s::uuid[]) ORDER BY created_at DESC FOR UPDATE", [bulk.pg_array(ids)]
    )
    return {i.pk: i for i in rows}


def _tenant_credentials(ids: list) -> dict:
    """Tenant-wide credentials by integration id, with only what health_apply reads: not the encrypted payload
    (decrypting it is the most expensive part of a row), health_apply asks only is_set."""
    fields = ("id", "integration_id", *CREDENTIAL_READ)
    if connection.vendor != "postgresql":
        rows = (
            tenant_credentials(integration_id__in=ids).order_by().only(*fields)
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
    # Each tenant's policy once for the batch (one query), not once per row.
    policies = effective_policies({i.tenant_id for i in integrations.values()})
    # The loaded values (vars: a field not loaded is not in it, and reading it would load it).
    before = {
        **{("i", i.pk): _loaded(i, INTEGRATION_WRITTEN) for i in integrations.values()},
        **{("c", c.pk): _loaded(c, CREDENTIAL_WRITTEN) for c in credentials.values()},
    }
    rows, created, changed_credentials, events, notes, to_disable = [], [], [], [], [], []
    for integration_id, result in results.items():
        integration = integrations.get(integration_id)
        if integration is None:
            continue
        credential = credentials.get(integration_id)
        policy = policies[integration.tenant_id]
        transition, credential_changed = health_apply(
            integration=integration, credential=credential, result=result, now=now, policy=policy
        )
        if credential_changed:
            changed_credentials.append(credential)
        if transition:
            events.append(_event(integration, "integration.health_changed",
                                 {"health_state": {"from": transition[0], "to": transition[1]}}, actor))
            notes.append(_transition_note(integration, transition))
            logger.info(
                "connections.health.changed integration=%s from=%s to=%s", integration.pk, *transition
            )
        action = streak_action(integration=integration, policy=policy, now=now)
        if action == WARN:
            event, note = _warning(integration)
            events.append(event)
            notes.append(note)
            logger.warning("connections.health.failure_warning integration=%s failures=%s", integration.pk,
                           integration.consecutive_failures)
        elif action == AUTO_DISABLE:
            to_disable.append(integration)
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
        (Integration, "i", integrations.values(), INTEGRATION_WRITTEN),
        (Credential, "c", changed_credentials, CREDENTIAL_WRITTEN),
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
    notify_many(notes)
    # After the batch's own writes, which would otherwise put back the status the disable sets. Rare (once per
    # failing streak), so one disable (a few statements) per integration is fine.
    for integration in to_disable:
        integration_disable(actor=SYSTEM, integration=integration, reason=DisabledReason.AUTO_DISABLED,
                            streak=_streak(integration))
    return created + rows



# --- connection tests ----------------------------------------------------------------------------------------


def probe_with_refresh(integration: Integration, credential: Credential | None) -> ProbeResult:
    """``probe``; a 401/403 with an OAuth2 credential triggers one refresh and one retry."""
    result = probe(integration, credential)
    if result.error_code == CheckError.INVALID_CREDENTIALS:
        fresh = oauth.refresh_for_retry(credential)
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


def queued_checks_sweep() -> int:
    """Queue again the checks still queued after a delay (the broker may have been down),
    and those left running by a lost worker."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.QUEUED_CHECK_SWEEP_SECONDS)
    ids = list(
        _runnable_checks(now).filter(created_at__lte=cutoff).order_by("created_at").values_list("pk", flat=True)[:1000]
    )
    for check_id in ids:
        queueing.connection_check_send(check_id)
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

