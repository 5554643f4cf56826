"""Issue 3: scheduled health checks through real beat, a real worker, Redis and PostgreSQL.

Beat (DatabaseScheduler) runs the dispatcher every second; the dispatcher
claims the due integration and queues its check on Redis; a thread-pool
worker probes a local HTTP server and records the result. The server is
switched healthy → failing → healthy, and the integration's health follows.
"""
import time

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Integration
from tests.connections.factories import IntegrationFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DISPATCH_TASK = "connections.dispatch_health_checks"
STATE_TIMEOUT = 30


def dispatch_every_second() -> None:
    """The data migration's rows are flushed by transactional tests: make the dispatcher entry again."""
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name="Dispatch due health checks",
        defaults={"task": DISPATCH_TASK, "interval": every_second, "enabled": True},
    )


def wait_for_state(integration_id, state: str, processes, timeout: float = STATE_TIMEOUT) -> Integration:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        processes.assert_running()
        integration = Integration.objects.get(pk=integration_id)
        if not seen or seen[-1] != integration.health_state:
            seen.append(integration.health_state)
        if integration.health_state == state:
            return integration
        time.sleep(0.2)
    raise AssertionError(f"health_state never became {state!r} within {timeout}s; states seen: {seen}")


def test_beat_driven_health_checks_take_an_integration_healthy_degraded_unhealthy_and_back(
    tenant, provider, switchable_server, celery_processes
):
    started = time.monotonic()
    integration = IntegrationFactory(
        tenant=tenant, provider=provider, name="Worker journey", api_base_url=switchable_server.url,
        test_endpoint="/ping",
    )
    # Below the API's minimum interval on purpose: the test needs a check every second.
    Integration.objects.filter(pk=integration.pk).update(
        health_check_interval_seconds=1, retry_count=0, timeout_seconds=5, next_check_at=None,
    )
    dispatch_every_second()
    celery_processes.worker(pool="threads", concurrency=4)
    celery_processes.beat()

    healthy = wait_for_state(integration.pk, "healthy", celery_processes)
    assert healthy.status == "connected"
    assert healthy.consecutive_failures == 0 and healthy.last_success_at is not None

    switchable_server.answer(500)
    degraded = wait_for_state(integration.pk, "degraded", celery_processes)
    assert 1 <= degraded.consecutive_failures < 3
    unhealthy = wait_for_state(integration.pk, "unhealthy", celery_processes)
    assert unhealthy.consecutive_failures >= 3
    assert unhealthy.status == "error"
    assert unhealthy.last_error["code"] == "UNEXPECTED_STATUS"

    switchable_server.answer(200)
    recovered = wait_for_state(integration.pk, "healthy", celery_processes)
    assert recovered.consecutive_failures == 0
    assert recovered.status == "connected" and recovered.last_error == {}
    assert recovered.last_success_at > unhealthy.health_checked_at
    # Warm shutdown: checks in flight finish, so every request the server saw has its row.
    celery_processes.stop()

    checks = ConnectionCheck.objects.filter(integration_id=integration.pk)
    assert checks.exclude(kind="health").count() == 0
    failures = checks.filter(success=False)
    assert failures.count() >= 3
    assert set(failures.values_list("status_code", "error_code", "state")) == {
        (500, "UNEXPECTED_STATUS", "completed")
    }
    assert checks.filter(success=True, status_code=200).count() >= 2
    assert all(url == f"{switchable_server.url}/ping" for url in checks.values_list("url", flat=True))

    transitions = [
        (e.changes["health_state"]["from"], e.changes["health_state"]["to"], e.actor, e.tenant_id)
        for e in AuditEvent.objects.filter(
            action="integration.health_changed", target_id=str(integration.pk)
        ).order_by("created_at")
    ]
    assert transitions == [
        ("unknown", "healthy", "system", tenant.pk),
        ("healthy", "degraded", "system", tenant.pk),
        ("degraded", "unhealthy", "system", tenant.pk),
        ("unhealthy", "healthy", "system", tenant.pk),
    ]
    assert switchable_server.hits == checks.count()
    assert time.monotonic() - started < 60
