"""Scheduled health checks: which integrations are due, claiming them, and running a claimed chunk.

Beat runs ``health_checks_dispatch`` every few seconds; it claims what is due and queues
it in chunks (``queueing.health_checks_queue``); a worker runs each chunk with
``health_checks_run``: the probes of a chunk run concurrently and their outcomes are
written in bulk by ``checks.checks_record``.
"""
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, DurationField, ExpressionWrapper, F, IntegerField, Q, Value, When
from django.db.models.functions import Coalesce, Random
from django.utils import timezone

from catalog.models import IntegrationProvider
from integrations_site import bulk
from tenants.selectors import effective_policies

from ..choices import CheckKind, IntegrationStatus
from ..models import Integration
from ..selectors import has_tenant_credential, tenant_credentials
from . import queueing
from .checks import checks_record
from .health import next_check_time
from .probes import probe_many

# What probe_many reads of an integration (its URL, limits, timeouts, usage headers): loading whole
# rows, with their JSON columns, cost more than the probes.
PROBE_FIELDS = (
    "id", "tenant_id", "provider_id", "api_base_url", "test_endpoint", "timeout_seconds", "retry_count", "settings",
    "limit_monthly_budget", "limit_tokens", "limit_requests_per_minute",
)


def health_checks_run(*, integration_ids: list) -> int:
    """Scheduled checks for many integrations: probes run concurrently, results are written in bulk."""
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
    credentials = {c.integration_id: c for c in tenant_credentials(integration_id__in=[i.pk for i in integrations])}
    # HEALTH_CHECK_CONCURRENCY bounds the probes in flight in the whole worker process, whatever
    # the number of tasks running in it.
    outcomes = probe_many(
        [(i, credentials.get(i.pk)) for i in integrations], concurrency=settings.HEALTH_CHECK_CONCURRENCY,
        process_wide=True,
    )
    results = {integration.pk: result for integration, result in zip(integrations, outcomes, strict=True)}
    checks_record(results=results, kind=CheckKind.HEALTH)
    return len(results)


def due_for_check(now):
    """Live, enabled integrations whose check is due and that can be checked at all.

    An integration without a base URL, or without a tenant-wide credential
    while its provider needs one, is not claimed: probing it would only record
    NOT_CONFIGURED every interval. It stays ``unknown`` until it is configured;
    setting a credential (or a URL) makes it due at once (its ``next_check_at``
    has passed, or was never set).
    """
    return (
        Integration.objects.live().exclude(status=IntegrationStatus.DISABLED).exclude(api_base_url="")
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        .filter(Q(provider__auth_type="none") | Q(has_tenant_credential()))
    )


def health_checks_dispatch(*, now=None) -> int:
    """Claim due integrations and queue their checks; returns how many were claimed.

    Each batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL;
    SQLite serialises writers instead), its ``next_check_at`` moved by the
    interval plus jitter in the same transaction, and queued in chunks after
    commit: two dispatchers never claim the same row, and a row whose tick was
    missed stays due until one claims it.
    """
    now = now or timezone.now()
    batch, chunk, total = settings.HEALTH_DISPATCH_BATCH, settings.HEALTH_TASK_CHUNK, 0
    while True:
        with transaction.atomic():
            claimed = list(
                due_for_check(now).order_by("next_check_at").select_for_update(skip_locked=True, of=("self",))
                .values_list("id", "tenant_id", "health_check_interval_seconds")[:batch]
            )
            _move_next_check(claimed, now)
            ids = [str(pk) for pk, _, _ in claimed]
            queueing.health_checks_queue([ids[k:k + chunk] for k in range(0, len(ids), chunk)])
        total += len(ids)
        if len(ids) < batch:
            return total


def _move_next_check(claimed: list, now) -> None:
    """next_check_at = now + interval × (1 + up to 10 % jitter), for a whole batch of claimed
    (id, tenant id, own interval) rows; a row without its own interval takes its tenant policy's
    (``health.check_interval``), each tenant's policy read once for the batch.

    One set-based UPDATE on PostgreSQL; row by row elsewhere (SQLite's
    interval arithmetic is emulated).
    """
    if not claimed:
        return
    ids = [pk for pk, _, _ in claimed]
    policies = effective_policies({tenant_id for _, tenant_id, own in claimed if own is None})
    if connection.vendor == "postgresql":
        # The row's own interval, else its tenant's default as resolved above: one WHEN per distinct default.
        seconds = F("health_check_interval_seconds")
        if policies:
            tenants_by_default = {}
            for tenant_id, policy in policies.items():
                tenants_by_default.setdefault(policy.default_check_interval_seconds, []).append(tenant_id)
            defaults = Case(*(When(tenant_id__in=tenant_ids, then=Value(default))
                              for default, tenant_ids in tenants_by_default.items()), output_field=IntegerField())
            seconds = Coalesce(seconds, defaults, output_field=IntegerField())
        interval = ExpressionWrapper(
            Value(timedelta(seconds=1)) * seconds * (1 + Random() * 0.1), output_field=DurationField(),
        )
        Integration.objects.filter(pk__in=ids).update(next_check_at=Value(now) + interval)
        return
    due = []
    for pk, tenant_id, own in claimed:
        integration = Integration(pk=pk, tenant_id=tenant_id, health_check_interval_seconds=own)
        integration.next_check_at = next_check_time(integration, now, policy=policies.get(tenant_id))
        due.append(integration)
    Integration.objects.bulk_update(due, ["next_check_at"])
