"""The dashboard's figures (integrations_site.dashboard.figures) hold the numbers of the rows seeded: tiles, hourly
charts with portable percentiles, the 7-day health chart worked back from the audit trail, and the tables."""
import random
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.services import integration_disable
from integrations_site.dashboard import figures as dash
from tests.admin import dashboard_rows as rows
from tests.tenants.factories import TenantFactory


@pytest.fixture(autouse=True)
def uncached(settings):
    settings.ADMIN_DASHBOARD_CACHE_SECONDS = 0


def reference_percentile(values, p):
    """Linear interpolation between closest ranks: what PostgreSQL's percentile_cont answers."""
    values = sorted(values)
    position = p * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def test_tiles_count_the_seeded_rows(tenant, provider):
    now = timezone.now()
    recent = now - timedelta(hours=2)
    make = rows.integration
    ok_a = make(tenant, provider, "A", health_state="healthy", status="connected")
    ok_b = make(tenant, provider, "B", health_state="healthy", status="connected")
    slow = make(tenant, provider, "C", health_state="degraded", status="error")
    down = make(tenant, provider, "D", health_state="unhealthy", status="error")
    make(tenant, provider, "E")  # unknown, pending
    make(tenant, provider, "F", status="disabled")
    make(tenant, provider, "Gone", health_state="healthy", status="connected", deleted_at=now)

    rows.checks(ok_a, recent, ok=[100, 120, 130], failed=[900])
    rows.checks(ok_b, recent, kind="test", ok=[80], failed=[50])
    rows.checks(ok_b, recent, kind="system", ok=[80])  # a provider's system test: not a tenant's check
    rows.checks(ok_a, now - timedelta(hours=30), ok=[100])  # older than 24 h
    hook = rows.endpoint(ok_a, "orders")
    rows.events(hook, recent, processed=2, failed=1, pending=1)
    rows.events(hook, now - timedelta(hours=30), processed=5)
    rows.credential(ok_a, now + timedelta(days=3))
    rows.credential(ok_b, now + timedelta(days=10))
    rows.credential(slow, now + timedelta(days=2), status="revoked")
    rows.credential(down, now - timedelta(days=1))
    rows.lease(ok_a, "connected", now + timedelta(seconds=30))
    rows.lease(ok_b, "connected", now - timedelta(seconds=1))  # its consumer died
    rows.lease(slow, "backoff", now + timedelta(seconds=30))

    f = dash.compute_figures(tenant=None, now=now)

    assert f["integrations_total"] == 6
    assert dict((v, n) for v, _, n in f["integrations_by_health"]) == {
        "healthy": 2, "degraded": 1, "unhealthy": 1, "unknown": 2}
    assert dict((v, n) for v, _, n in f["integrations_by_status"]) == {
        "pending": 1, "connected": 2, "error": 2, "disabled": 1}
    assert f["webhooks_24h"]["total"] == 4
    assert f["webhooks_24h"]["since"] == now - timedelta(hours=24)
    assert dict((v, n) for v, _, n in f["webhooks_24h"]["by_status"]) == {
        "pending": 1, "processing": 0, "processed": 2, "failed": 1}
    assert f["checks_24h"] == {"total": 6, "succeeded": 4, "rate": 66.7}
    assert f["credentials_expiring"] == 1
    assert f["streams_connected"] == 1


def test_scheduled_checks_per_hour_have_the_success_rate_and_interpolated_percentiles(tenant, provider):
    now = timezone.now()
    first = rows.integration(tenant, provider, "First")
    second = rows.integration(tenant, provider, "Second")
    three_ago, one_ago = rows.hour_of(now, 3), rows.hour_of(now, 1)
    rows.checks(first, three_ago + timedelta(minutes=5), ok=[400, 100])
    rows.checks(second, three_ago + timedelta(minutes=50), ok=[300, 200])
    rows.checks(first, one_ago + timedelta(minutes=1), ok=[50], failed=[1000], failed_without_latency=1)
    rows.checks(first, one_ago + timedelta(minutes=2), kind="test", ok=[5000])  # on demand: not charted

    hours = {row["hour"]: row for row in dash.compute_figures(tenant=None, now=now)["check_hours"]}

    assert len(hours) == 24 and max(hours) == rows.hour_of(now, 0)
    assert hours[three_ago] == {"hour": three_ago, "total": 4, "succeeded": 4, "rate": 100.0, "p50": 250.0,
                                "p95": pytest.approx(385.0)}
    assert hours[one_ago] == {"hour": one_ago, "total": 3, "succeeded": 1, "rate": 33.3, "p50": 525.0,
                              "p95": pytest.approx(952.5)}
    quiet = hours[rows.hour_of(now, 2)]
    assert (quiet["total"], quiet["rate"], quiet["p50"], quiet["p95"]) == (0, None, None, None)


def test_percentiles_match_linear_interpolation_for_any_hour_size(tenant, provider):
    now = timezone.now()
    target = rows.integration(tenant, provider, "Busy")
    generator = random.Random(16)
    samples = {}
    for hours_ago, size in ((5, 1), (4, 2), (3, 37), (2, 100)):
        latencies = [generator.randint(1, 5000) for _ in range(size)]
        rows.checks(target, rows.hour_of(now, hours_ago) + timedelta(minutes=7), ok=latencies)
        samples[rows.hour_of(now, hours_ago)] = latencies

    with CaptureQueriesContext(connection) as queries:
        found = dash.hourly_percentiles(dash.ConnectionCheck.objects.filter(kind="health"))

    assert len(queries) == 1
    for hour, latencies in samples.items():
        assert found[hour] == (pytest.approx(reference_percentile(latencies, 0.5)),
                               pytest.approx(reference_percentile(latencies, 0.95)))


@pytest.mark.database_server
def test_percentiles_are_what_postgresql_percentile_cont_answers(tenant, provider):
    now = timezone.now()
    target = rows.integration(tenant, provider, "Busy")
    generator = random.Random(17)
    for hours_ago in (4, 3, 2):
        size = generator.randint(1, 60)
        rows.checks(target, rows.hour_of(now, hours_ago) + timedelta(minutes=3),
                    ok=[generator.randint(1, 9000) for _ in range(size)])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('hour', created_at), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM connections_connectioncheck"
            " GROUP BY 1"
        )
        expected = {hour: (p50, p95) for hour, p50, p95 in cursor.fetchall()}

    found = dash.hourly_percentiles(dash.ConnectionCheck.objects.all())

    assert set(found) == set(expected)
    for hour, (p50, p95) in expected.items():
        assert found[hour] == (pytest.approx(p50), pytest.approx(p95))


def test_webhook_events_per_hour_are_received_processed_and_failed(tenant, provider, integration):
    now = timezone.now()
    hook = rows.endpoint(integration, "orders")
    rows.events(hook, rows.hour_of(now, 3) + timedelta(minutes=20), processed=2, failed=1, pending=1)
    rows.events(hook, rows.hour_of(now, 1) + timedelta(minutes=59), failed=2)

    hours = {row["hour"]: row for row in dash.compute_figures(tenant=None, now=now)["webhook_hours"]}

    assert hours[rows.hour_of(now, 3)] == {"hour": rows.hour_of(now, 3), "received": 4, "processed": 2, "failed": 1}
    assert hours[rows.hour_of(now, 1)] == {"hour": rows.hour_of(now, 1), "received": 2, "processed": 0, "failed": 2}
    assert sum(row["received"] for row in hours.values()) == 6


def test_health_over_seven_days_counts_who_existed_each_day_in_the_state_the_audit_trail_says(tenant, provider):
    now = timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)

    def noon(days_ago):
        return midnight - timedelta(days=days_ago) + timedelta(hours=12)

    old = midnight - timedelta(days=10)
    flapping = rows.integration(tenant, provider, "Flapping", created=old, health_state="unhealthy")
    rows.transition(flapping, noon(3), "unknown", "healthy")
    rows.transition(flapping, noon(1), "healthy", "unhealthy")
    rows.integration(tenant, provider, "Steady", created=old, health_state="healthy")  # no change all week
    newcomer = rows.integration(tenant, provider, "Newcomer", created=noon(1), health_state="degraded")
    rows.transition(newcomer, noon(1) + timedelta(hours=1), "unknown", "degraded")
    gone = rows.integration(tenant, provider, "Gone", created=old, health_state="unhealthy",
                            deleted_at=noon(2))
    rows.transition(gone, noon(4), "healthy", "unhealthy")

    days = dash.compute_figures(tenant=None, now=now)["health_days"]

    assert [d["day"] for d in days] == [(midnight - timedelta(days=6 - i)).date() for i in range(7)]
    states = [(d["healthy"], d["degraded"], d["unhealthy"], d["unknown"]) for d in days]
    assert states == [
        (2, 0, 0, 1), (2, 0, 0, 1),  # six and five days ago: Flapping not yet checked, Gone healthy
        (1, 0, 1, 1),  # four days ago: Gone down
        (2, 0, 1, 0),  # three days ago: Flapping healthy; Gone deleted two days ago at noon
        (2, 0, 0, 0),  # two days ago: Gone no more, Newcomer not yet
        (1, 1, 1, 0), (1, 1, 1, 0),  # yesterday and today: Flapping down, Newcomer degraded
    ]


def test_failing_longest_lists_enabled_live_failures_oldest_first_with_the_error_in_words(tenant, provider):
    now = timezone.now()
    error = {"code": "TIMEOUT", "message": "No answer within 10 s", "at": now.isoformat()}
    make = rows.integration
    make(tenant, provider, "Recent", consecutive_failures=1, last_success_at=now - timedelta(hours=1))
    make(tenant, provider, "Oldest", consecutive_failures=5, last_success_at=now - timedelta(days=3),
         last_error=error, health_state="unhealthy", health_checked_at=now)
    make(tenant, provider, "Never", consecutive_failures=2, created=now - timedelta(days=1))
    make(tenant, provider, "Off", consecutive_failures=9, status="disabled", last_success_at=now - timedelta(days=9))
    make(tenant, provider, "Fine", last_success_at=now - timedelta(days=20))
    for i in range(12):
        make(tenant, provider, f"Bulk {i}", consecutive_failures=1, last_success_at=now - timedelta(minutes=i))

    failing = dash.compute_figures(tenant=None, now=now)["failing"]

    assert len(failing) == dash.TOP_ROWS
    assert [row["name"] for row in failing[:3]] == ["Oldest", "Never", "Recent"]
    top = failing[0]
    assert top["error"] == "TIMEOUT: No answer within 10 s" and top["tenant"] == tenant.name
    assert top["provider"] == str(provider) and top["failures"] == 5 and not top["never_succeeded"]
    assert failing[1]["never_succeeded"]


def test_recent_disables_come_from_the_audit_trail_and_say_which_were_automatic(tenant, provider):
    first = rows.integration(tenant, provider, "First")
    rows.integration(tenant, provider, "Second")
    integration_disable(actor=SYSTEM, integration=first)
    integration_disable(actor=SYSTEM, integration=first)  # already disabled: audited, changes nothing
    AuditEvent.objects.create(tenant=tenant, actor="system", action="integration.auto_disabled",
                              target_type="connections.integration", target_id=str(first.pk), target_repr="First")

    disables = dash.compute_figures(tenant=None, now=timezone.now())["disables"]

    assert [(row["integration"], row["automatic"]) for row in disables] == [("First", True), ("First", False)]
    assert disables[1]["integration_id"] == str(first.pk) and disables[1]["tenant"] == tenant.name


def test_failed_events_are_the_latest_failures(tenant, integration):
    now = timezone.now()
    hook = rows.endpoint(integration, "orders")
    rows.events(hook, now - timedelta(days=3), failed=1)
    rows.events(hook, now - timedelta(minutes=5), processed=4, failed=1)

    failed = dash.compute_figures(tenant=None, now=now)["failed_events"]

    assert [row["received_at"] for row in failed] == [now - timedelta(minutes=5), now - timedelta(days=3)]
    assert failed[0]["endpoint"] == "Hook orders" and failed[0]["attempts"] == 3
    assert failed[0]["error"] == "HTTP 500 from the handler"


def test_one_tenant_scope_counts_only_that_tenants_rows(tenant, other_tenant, provider):
    now = timezone.now()
    mine = rows.integration(tenant, provider, "Mine", health_state="healthy")
    theirs = [rows.integration(other_tenant, provider, f"Theirs {i}", health_state="unhealthy",
                               consecutive_failures=3) for i in range(3)]
    rows.checks(mine, now - timedelta(hours=1), ok=[10])
    rows.checks(theirs[0], now - timedelta(hours=1), failed=[20, 30])
    rows.events(rows.endpoint(theirs[0], "theirs"), now - timedelta(hours=1), failed=2)

    f = dash.compute_figures(tenant=tenant, now=now)

    assert f["integrations_total"] == 1 and f["checks_24h"]["total"] == 1
    assert f["webhooks_24h"]["total"] == 0 and f["failing"] == [] and f["failed_events"] == []
    assert sum(hour["total"] for hour in f["check_hours"]) == 1


def test_figures_are_cached_per_scope_for_the_configured_time(settings, tenant, provider):
    settings.ADMIN_DASHBOARD_CACHE_SECONDS = 30
    scope = TenantFactory(name="Cached")
    rows.integration(scope, provider, "Counted")
    key = f"admin-dashboard:v1:{scope.pk}"
    cache.delete(key)
    try:
        assert dash.dashboard_figures(tenant=scope)["integrations_total"] == 1
        rows.integration(scope, provider, "Not yet counted")
        with CaptureQueriesContext(connection) as queries:
            assert dash.dashboard_figures(tenant=scope)["integrations_total"] == 1
        assert len(queries) == 0
    finally:
        cache.delete(key)
