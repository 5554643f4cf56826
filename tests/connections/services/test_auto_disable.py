"""The tenant's policy in the health state machine, and the failing streak: a warning once, then auto-disable
after the counts and hours the policy sets; one success resets the streak; 0 turns either rule off."""
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.models import Integration
from connections.services import checks_record, connection_test_run, integration_disable, integration_enable
from connections.services.probes import ProbeResult
from notifications.models import NotificationDelivery, NotificationEndpoint
from tenants.models import TenantPolicy
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import TenantFactory

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAIL = ProbeResult(success=False, status_code=503, latency_ms=5, error_code="UNEXPECTED_STATUS",
                   error_message="The API answered 503.")
OK = ProbeResult(success=True, status_code=200, latency_ms=10)


@pytest.fixture(autouse=True)
def platform(settings):
    settings.HEALTH_FAILURE_THRESHOLD, settings.HEALTH_LATENCY_BUDGET_MS = 3, 2000
    settings.FAILURE_WARNING_AFTER, settings.AUTO_DISABLE_AFTER, settings.AUTO_DISABLE_MIN_HOURS = 20, 30, 24
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def policy(tenant, **values) -> TenantPolicy:
    return TenantPolicy.objects.update_or_create(tenant=tenant, defaults=values)[0]


def record(integration, result=FAIL, times: int = 1) -> Integration:
    for _ in range(times):
        checks_record(results={integration.pk: result}, kind="health")
    return Integration.objects.get(pk=integration.pk)


def actions(integration) -> list[str]:
    return sorted(AuditEvent.objects.filter(target_id=str(integration.pk)).exclude(
        action__in=["integration.tested"]).values_list("action", flat=True))


# --- the tenant's thresholds --------------------------------------------------------------------------------------


def test_a_tenants_own_failure_threshold_decides_unhealthy_in_a_batch_of_many_tenants(tenant, other_tenant, provider):
    policy(tenant, health_failure_threshold=1)
    strict = IntegrationFactory(tenant=tenant, provider=provider, health_state="healthy")
    lenient = IntegrationFactory(tenant=other_tenant, provider=provider, health_state="healthy")

    checks_record(results={strict.pk: FAIL, lenient.pk: FAIL}, kind="health")

    states = dict(Integration.objects.values_list("pk", "health_state"))
    assert states == {strict.pk: "unhealthy", lenient.pk: "degraded"}


def test_a_tenants_own_latency_budget_decides_degraded(tenant, other_tenant, provider):
    policy(tenant, health_latency_budget_ms=100)
    tight = IntegrationFactory(tenant=tenant, provider=provider)
    relaxed = IntegrationFactory(tenant=other_tenant, provider=provider)
    slow = ProbeResult(success=True, status_code=200, latency_ms=500)

    checks_record(results={tight.pk: slow, relaxed.pk: slow}, kind="health")

    assert dict(Integration.objects.values_list("pk", "health_state")) == {tight.pk: "degraded",
                                                                          relaxed.pk: "healthy"}


def test_a_batch_resolves_its_tenants_policies_in_a_fixed_number_of_queries(provider):
    def batch(n):
        rows = []
        for k in range(n):
            tenant = TenantFactory()
            policy(tenant, health_failure_threshold=1 + k % 3, failure_warning_after=1)
            rows.append(IntegrationFactory(tenant=tenant, provider=provider, health_state="healthy"))
        return rows

    few, many = batch(2), batch(7)
    with CaptureQueriesContext(connection) as small:
        checks_record(results={i.pk: FAIL for i in few}, kind="health")
    with CaptureQueriesContext(connection) as large:
        checks_record(results={i.pk: FAIL for i in many}, kind="health")

    assert len(large) == len(small)
    assert AuditEvent.objects.filter(action="integration.failure_warning").count() == 9


# --- the failing streak -------------------------------------------------------------------------------------------


def test_the_first_failure_starts_the_streak_and_a_success_ends_it(integration, clock):
    row = record(integration)
    assert (row.consecutive_failures, row.failing_since) == (1, START)

    clock.shift(timedelta(minutes=5))
    row = record(integration)
    assert (row.consecutive_failures, row.failing_since) == (2, START)  # the streak's first failure, kept

    row = record(integration, OK)
    assert (row.consecutive_failures, row.failing_since, row.failure_warned_at) == (0, None, None)


def test_warned_once_then_auto_disabled_at_the_count_and_the_hours_set(integration, tenant, clock):
    policy(tenant, failure_warning_after=2, auto_disable_after=4, auto_disable_min_hours=6)

    row = record(integration)
    assert row.failure_warned_at is None and "integration.failure_warning" not in actions(integration)
    clock.shift(timedelta(minutes=1))
    row = record(integration)
    assert row.failure_warned_at == START + timedelta(minutes=1)
    row = record(integration, times=3)  # 5 failures: past the count, but not yet 6 hours
    assert row.status == "error" and row.disabled_reason == ""
    assert actions(integration).count("integration.failure_warning") == 1

    clock.shift(timedelta(hours=5, minutes=58))  # 5 h 59 min after the first failure
    assert record(integration).status == "error"
    clock.shift(timedelta(minutes=1))
    row = record(integration)

    assert (row.status, row.disabled_reason, row.next_check_at) == ("disabled", "auto_disabled", None)
    assert actions(integration).count("integration.failure_warning") == 1
    event = AuditEvent.objects.get(action="integration.auto_disabled", target_id=str(integration.pk))
    assert event.actor == "system" and event.tenant_id == tenant.pk
    assert event.changes == {
        "status": {"from": "error", "to": "disabled"}, "disabled_reason": {"from": "", "to": "auto_disabled"},
        "consecutive_failures": 7, "failing_since": START.isoformat(),
    }
    warning = AuditEvent.objects.get(action="integration.failure_warning")
    assert warning.changes == {"consecutive_failures": 2, "failing_since": START.isoformat()}


def test_the_platform_defaults_warn_at_20_and_disable_at_30_after_24_hours(integration, clock):
    row = record(integration, times=19)
    assert row.failure_warned_at is None
    row = record(integration)
    assert row.failure_warned_at is not None
    row = record(integration, times=15)
    assert row.status == "error"  # 35 failures, not yet 24 hours
    clock.shift(timedelta(hours=24))
    assert record(integration).disabled_reason == "auto_disabled"


def test_a_success_resets_the_streak_and_the_next_streak_is_warned_again(integration, tenant, clock):
    policy(tenant, failure_warning_after=2, auto_disable_after=3, auto_disable_min_hours=1)
    record(integration, times=2)
    clock.shift(timedelta(hours=2))
    row = record(integration, OK)
    assert (row.consecutive_failures, row.failing_since, row.failure_warned_at, row.status) == (0, None, None,
                                                                                               "connected")

    row = record(integration, times=2)  # a new streak, two hours after the old one began: not old enough
    assert row.status == "error" and row.failing_since == START + timedelta(hours=2)
    assert actions(integration).count("integration.failure_warning") == 2
    row = record(integration)
    assert row.status == "error"  # 3 failures, but this streak is not an hour old
    clock.shift(timedelta(hours=1))
    assert record(integration).disabled_reason == "auto_disabled"


def test_zero_turns_the_warning_off(integration, tenant, clock):
    policy(tenant, failure_warning_after=0, auto_disable_after=3, auto_disable_min_hours=0)

    row = record(integration, times=3)

    assert row.disabled_reason == "auto_disabled" and row.failure_warned_at is None
    assert "integration.failure_warning" not in actions(integration)


def test_zero_turns_auto_disable_off(integration, tenant, clock):
    policy(tenant, failure_warning_after=1, auto_disable_after=0, auto_disable_min_hours=0)

    record(integration, times=50)
    clock.shift(timedelta(days=30))
    row = record(integration, times=50)

    assert (row.status, row.disabled_reason, row.consecutive_failures) == ("error", "", 100)
    assert actions(integration).count("integration.failure_warning") == 1


def test_zero_hours_disables_at_the_count_alone(integration, tenant, clock):
    policy(tenant, auto_disable_after=2, auto_disable_min_hours=0)
    assert record(integration).status == "error"
    assert record(integration).disabled_reason == "auto_disabled"


def test_on_demand_tests_count_toward_the_streak(integration, tenant, httpserver):
    httpserver.expect_request("/ping").respond_with_data("down", status=503)
    Integration.objects.filter(pk=integration.pk).update(api_base_url=httpserver.url_for("/"), retry_count=0)
    integration.refresh_from_db()
    policy(tenant, failure_warning_after=1, auto_disable_after=2, auto_disable_min_hours=0)

    for _ in range(2):
        connection_test_run(integration=integration, actor=SYSTEM)

    row = Integration.objects.get(pk=integration.pk)
    assert (row.consecutive_failures, row.disabled_reason) == (2, "auto_disabled")
    assert actions(integration).count("integration.failure_warning") == 1


def test_results_that_say_nothing_of_the_far_side_do_not_count(integration, tenant, clock):
    policy(tenant, auto_disable_after=1, auto_disable_min_hours=0)
    unprobed = ProbeResult(success=False, error_code="NOT_CONFIGURED", error_message="Set api_base_url.")

    row = record(integration, unprobed, times=3)

    assert (row.consecutive_failures, row.failing_since, row.status) == (0, None, "pending")


def test_a_person_disabled_integration_is_left_as_it_is(integration, tenant, clock):
    policy(tenant, failure_warning_after=1, auto_disable_after=1, auto_disable_min_hours=0)
    integration_disable(actor=SYSTEM, integration=integration)

    row = record(integration, times=3)  # asked for, as on-demand tests of a disabled integration are

    assert (row.status, row.disabled_reason, row.failure_warned_at) == ("disabled", "manual", None)
    assert "integration.auto_disabled" not in actions(integration)


def test_re_enabling_is_a_persons_act_that_clears_the_reason_and_restarts_the_clock(integration, tenant, clock):
    policy(tenant, failure_warning_after=1, auto_disable_after=2, auto_disable_min_hours=1)
    record(integration, times=2)
    clock.shift(timedelta(hours=1))
    assert record(integration).disabled_reason == "auto_disabled"

    clock.shift(timedelta(hours=3))
    integration_enable(actor=SYSTEM, integration=integration)

    row = Integration.objects.get(pk=integration.pk)
    assert (row.status, row.disabled_reason, row.failing_since, row.failure_warned_at) == ("pending", "", None,
                                                                                           None)
    event = AuditEvent.objects.get(action="integration.enabled")
    assert event.changes["disabled_reason"] == {"from": "auto_disabled", "to": ""}
    row = record(integration)  # still failing: warned again, disabled again only after another hour
    assert row.status == "error" and row.failure_warned_at is not None
    clock.shift(timedelta(hours=1))
    assert record(integration).disabled_reason == "auto_disabled"


# --- notifications ------------------------------------------------------------------------------------------------


def test_the_tenant_is_notified_of_health_changes_the_warning_and_the_auto_disable(integration, tenant, other_tenant,
                                                                                  clock):
    NotificationEndpoint.objects.create(
        tenant=tenant, url="https://hooks.example.com/hub",
        events=["integration.health_changed", "integration.failure_warning", "integration.auto_disabled"],
    )
    NotificationEndpoint.objects.create(tenant=other_tenant, url="https://other.example.com/hub",
                                        events=["integration.auto_disabled"])
    policy(tenant, failure_warning_after=2, auto_disable_after=3, auto_disable_min_hours=0)

    record(integration, times=3)

    deliveries = {d.type: d.payload["data"] for d in NotificationDelivery.objects.all()}
    assert set(deliveries) == {"integration.health_changed", "integration.failure_warning",
                               "integration.auto_disabled"}
    assert NotificationDelivery.objects.filter(tenant=tenant).count() == 4  # unknown→degraded→unhealthy, + 2
    changed = [d.payload["data"] for d in NotificationDelivery.objects.filter(type="integration.health_changed")]
    assert {(c["old_state"], c["new_state"]) for c in changed} == {("unknown", "degraded"), ("degraded", "unhealthy")}
    assert all(c["last_error"] == {"code": "UNEXPECTED_STATUS", "message": "The API answered 503."} for c in changed)
    assert deliveries["integration.failure_warning"] == {
        "integration_id": str(integration.pk), "integration_name": "Main API", "consecutive_failures": 2,
        "failing_since": START.isoformat(),
    }
    assert deliveries["integration.auto_disabled"]["reason"] == "auto_disabled"
    assert deliveries["integration.auto_disabled"]["consecutive_failures"] == 3


def test_a_tenant_not_subscribed_to_a_type_gets_none_of_it(integration, tenant, clock):
    NotificationEndpoint.objects.create(tenant=tenant, url="https://hooks.example.com/hub",
                                        events=["integration.auto_disabled"])
    policy(tenant, auto_disable_after=2, auto_disable_min_hours=0)

    record(integration, times=2)

    assert list(NotificationDelivery.objects.values_list("type", flat=True)) == ["integration.auto_disabled"]
