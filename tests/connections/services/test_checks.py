"""Connection checks: recording outcomes in bulk, running a test now or queued, the sweep and prune."""
import threading
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections import tasks
from connections.models import ConnectionCheck, Integration
from connections.services import checks, probes, queueing
from tests.connections.factories import IntegrationFactory


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


# --- recording outcomes ------------------------------------------------------------------------------------------


def test_recorded_results_move_health_and_audit_only_transitions(integration):
    ok = probes.ProbeResult(success=True, status_code=200, latency_ms=5)
    bad = probes.ProbeResult(success=False, error_code="TIMEOUT", error_message="slow")

    for result in (ok, ok, bad, bad, bad, bad, ok):
        checks.checks_record(results={integration.pk: result}, kind="health")

    integration.refresh_from_db()
    assert integration.health_state == "healthy" and integration.consecutive_failures == 0
    assert integration.status == "connected" and integration.last_error == {}
    transitions = [
        (e.changes["health_state"]["from"], e.changes["health_state"]["to"])
        for e in AuditEvent.objects.filter(action="integration.health_changed").order_by("created_at", "id")
    ]
    assert transitions == [
        ("unknown", "healthy"), ("healthy", "degraded"), ("degraded", "unhealthy"), ("unhealthy", "healthy"),
    ]
    assert ConnectionCheck.objects.filter(integration=integration, kind="health").count() == 7


def test_a_check_keeps_a_disabled_integration_disabled(integration):
    Integration.objects.filter(pk=integration.pk).update(status="disabled")

    checks.checks_record(results={integration.pk: probes.ProbeResult(success=True, latency_ms=1)}, kind="test")

    integration.refresh_from_db()
    assert integration.status == "disabled" and integration.health_state == "healthy"


def test_a_result_the_batch_cannot_write_is_left_out_and_the_others_are_recorded(
    tenant, other_tenant, provider, caplog
):
    """Whatever still breaks the batch's statements (here a latency past every integer column, on both
    databases), the batch is written row by row and only that integration's check is missing."""
    poisoned = IntegrationFactory(tenant=tenant, provider=provider, name="Poisoned")
    others = [IntegrationFactory(tenant=other_tenant, provider=provider, name=f"Other {k}") for k in range(3)]
    results = {i.pk: probes.ProbeResult(success=True, status_code=200, latency_ms=12, attempts=1) for i in others}
    results[poisoned.pk] = probes.ProbeResult(success=True, status_code=200, latency_ms=2**64, attempts=1)

    with caplog.at_level("ERROR", logger="connections"):
        written = checks.checks_record(results=results, kind="health")

    assert {c.integration_id for c in written} == {i.pk for i in others}
    assert set(ConnectionCheck.objects.values_list("integration_id", flat=True)) == {i.pk for i in others}
    assert set(Integration.objects.filter(pk__in=[i.pk for i in others]).values_list("health_state", flat=True)) == {
        "healthy"}
    assert Integration.objects.get(pk=poisoned.pk).health_state == "unknown"
    dropped = [r.getMessage() for r in caplog.records if "record_dropped" in r.getMessage()]
    assert len(dropped) == 1 and f"integration={poisoned.pk}" in dropped[0]


# --- queued checks, sweep and prune ------------------------------------------------------------------------------


def aged(check: ConnectionCheck, **delta) -> ConnectionCheck:
    ConnectionCheck.objects.filter(pk=check.pk).update(created_at=timezone.now() - timedelta(**delta))
    return check


def new_check(integration, **fields) -> ConnectionCheck:
    return ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, **fields)


def test_prune_deletes_only_checks_older_than_the_retention(integration, settings):
    settings.CHECK_RETENTION_DAYS = 30
    old = aged(new_check(integration, success=True), days=31)
    recent = aged(new_check(integration, success=True), days=29)
    today = new_check(integration, success=False)

    assert checks.checks_prune() == 1

    assert set(ConnectionCheck.objects.values_list("pk", flat=True)) == {recent.pk, today.pk}
    assert not ConnectionCheck.objects.filter(pk=old.pk).exists()
    settings.CHECK_RETENTION_DAYS = 10
    assert checks.checks_prune() == 1
    assert list(ConnectionCheck.objects.values_list("pk", flat=True)) == [today.pk]


def test_sweep_requeues_only_checks_left_queued_too_long(integration, settings, sent_tasks):
    settings.QUEUED_CHECK_SWEEP_SECONDS = 120
    requeued = sent_tasks[queueing.RUN_CONNECTION_CHECK]
    stale = aged(new_check(integration, state="queued", success=None), minutes=10)
    aged(new_check(integration, state="completed", success=True), minutes=10)
    new_check(integration, state="queued", success=None)

    assert checks.queued_checks_sweep() == 1

    assert requeued == [str(stale.pk)]


def test_executing_an_unknown_or_finished_check_is_a_no_op(integration):
    done = new_check(integration, state="completed", success=True)

    assert checks.connection_check_execute(check_id=done.pk) is None
    assert checks.connection_check_execute(check_id="00000000-0000-0000-0000-000000000000") is None
    done.refresh_from_db()
    assert done.state == "completed"


def test_the_worker_task_completes_a_queued_check(integration, httpserver):
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), test_endpoint="/ping", retry_count=0
    )
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)

    tasks.run_connection_check(str(check.pk))
    tasks.run_connection_check(str(check.pk))

    check.refresh_from_db()
    assert check.state == "completed" and check.success is True and check.finished_at is not None
    assert len(httpserver.log) == 1


def test_a_check_left_running_by_a_lost_worker_runs_again_and_is_swept(integration, httpserver, settings,
                                                                         sent_tasks):
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), test_endpoint="/ping", retry_count=0
    )
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    recent = new_check(integration, state="running", success=None, started_at=timezone.now())
    lost = new_check(integration, state="running", success=None,
                     started_at=timezone.now() - timedelta(seconds=checks.RUNNING_STALE_SECONDS + 60))
    aged(lost, seconds=checks.RUNNING_STALE_SECONDS + 60)
    aged(recent, seconds=checks.RUNNING_STALE_SECONDS + 60)
    requeued = sent_tasks[queueing.RUN_CONNECTION_CHECK]

    assert checks.queued_checks_sweep() == 1
    assert requeued == [str(lost.pk)]
    assert checks.connection_check_execute(check_id=recent.pk) is None  # still in a worker's hands
    assert checks.connection_check_execute(check_id=lost.pk) is not None

    lost.refresh_from_db()
    assert lost.state == "completed" and lost.success is True


def test_a_refused_url_is_recorded_as_url_not_allowed_without_a_request(integration, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    Integration.objects.filter(pk=integration.pk).update(api_base_url="http://127.0.0.1:9", retry_count=0)
    integration.refresh_from_db()

    check = checks.connection_test_run(integration=integration, actor=SYSTEM)

    assert check.error_code == "URL_NOT_ALLOWED" and check.success is False and check.status_code is None


@pytest.mark.django_db(transaction=True)
def test_a_queued_check_runs_even_while_its_integration_row_is_locked(integration):
    """Claiming the check locks the check row only; a health check recording at that moment must not hide it."""
    Integration.objects.filter(pk=integration.pk).update(api_base_url="")  # NOT_CONFIGURED: no network needed
    check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                list(Integration.objects.select_for_update().filter(pk=integration.pk))
                locked.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(timeout=10)
    threading.Timer(0.5, release.set).start()

    done = checks.connection_check_execute(check_id=check.pk)
    holder.join(timeout=10)

    assert done is not None
    check.refresh_from_db()
    assert check.state == "completed" and check.error_code == "NOT_CONFIGURED"
