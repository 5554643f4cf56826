"""Usage counting (batched: memory, then one write per integration and day) and the per-integration hard limits.

``record`` adds to this process's buffer and to the current minute's counter
in the cache; ``usage.flush()`` writes the buffer now, as the background
thread does every USAGE_FLUSH_SECONDS. The thread is held back during these
tests (a long interval) so each test decides when its counts are written.
"""
import socket
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import Integration, UsageDaily
from connections.services import checks, probes, usage
from tests.connections.factories import IntegrationFactory


@pytest.fixture(autouse=True)
def empty_buffer():
    usage.batcher.take()
    yield
    usage.batcher.take()


def fresh_minute():
    into = time.time() % 60
    if into > 50:
        time.sleep(60 - into + 0.2)


@pytest.fixture
def far_side(settings, httpserver):
    """A local API that reports usage in its answer headers."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    httpserver.expect_request("/ping").respond_with_json(
        {"ok": True}, headers={"X-Usage-Tokens": "120", "X-Usage-Cost": "0.25"}
    )
    httpserver.expect_request("/custom").respond_with_json(
        {"ok": True}, headers={"X-Tokens-Used": "7", "X-Bill": "1.5", "X-Usage-Tokens": "999"}
    )
    httpserver.expect_request("/broken").respond_with_data("down", status=500)
    return httpserver


def make(tenant, provider, server=None, **fields):
    base = server.url_for("/").rstrip("/") if server is not None else "https://api.example.com"
    fields.setdefault("retry_count", 0)
    return IntegrationFactory(tenant=tenant, provider=provider, api_base_url=base, **fields)


def rows(integration):
    return list(UsageDaily.objects.filter(integration=integration).values(
        "date", "requests", "errors", "webhooks", "tokens", "cost"))


# --- counting ---------------------------------------------------------------------------------------------------


def test_record_makes_no_database_query_and_flush_writes_one_summed_row(
    integration, django_assert_num_queries
):
    with django_assert_num_queries(0):
        for _ in range(50):
            usage.record(integration.pk, integration.tenant_id, requests=1, tokens=10, cost=Decimal("0.01"))
        usage.record(integration.pk, integration.tenant_id, requests=1, errors=1)
        usage.record(integration.pk, integration.tenant_id, webhooks=3)
    assert rows(integration) == []

    usage.flush()
    assert rows(integration) == [{
        "date": timezone.localdate(), "requests": 51, "errors": 1, "webhooks": 3, "tokens": 500,
        "cost": Decimal("0.500000"),
    }]


def test_flush_adds_to_the_day_rows_of_every_integration_in_one_statement(tenant, provider, integration):
    other = make(tenant, provider, name="Other")
    for target in (integration, other):
        usage.record(target.pk, tenant.pk, requests=1)
    usage.flush()

    for _ in range(40):
        usage.record(integration.pk, tenant.pk, requests=2, tokens=5)
        usage.record(other.pk, tenant.pk, requests=1, cost=Decimal("0.25"))
    with CaptureQueriesContext(connection) as queries:
        usage.flush()
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) == 1 and "ON CONFLICT" in writes[0]
    assert rows(integration)[0]["requests"] == 81 and rows(integration)[0]["tokens"] == 200
    assert rows(other)[0]["requests"] == 41 and rows(other)[0]["cost"] == Decimal("10")


def test_a_flush_that_meets_a_deleted_integration_still_counts_the_others(tenant, provider, integration):
    gone = make(tenant, provider, name="Gone")
    gone_id = gone.pk
    usage.record(integration.pk, tenant.pk, requests=3)
    usage.record(gone_id, tenant.pk, requests=2)
    Integration.objects.filter(pk=gone_id).delete()

    usage.flush()

    assert rows(integration)[0]["requests"] == 3
    assert not UsageDaily.objects.filter(integration_id=gone_id).exists()


def test_flush_with_nothing_counted_writes_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        usage.flush()


def test_a_zero_record_writes_no_row(integration):
    usage.record(integration.pk, integration.tenant_id)
    usage.flush()
    assert rows(integration) == []


def test_the_minute_counter_is_written_with_the_flush_unless_a_rate_limit_is_enforced(
    tenant, provider, integration, django_assert_num_queries
):
    fresh_minute()
    other = make(tenant, provider, name="Other")
    usage.record(integration.pk, tenant.pk, requests=2)
    usage.record(integration.pk, tenant.pk, requests=1)
    usage.record(integration.pk, tenant.pk, webhooks=5)  # inbound: not an outbound request
    assert usage.requests_this_minute(integration) == 0  # nothing written yet, not even to the cache
    with django_assert_num_queries(0):
        usage.record(other.pk, tenant.pk, requests=1, enforce_rate=True)
    assert usage.requests_this_minute(other) == 1  # a limited integration is counted in the cache at once
    usage.flush()
    assert usage.requests_this_minute(integration) == 3
    assert usage.requests_this_minute(other) == 1  # not counted twice by the flush


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_background_thread_writes_the_counts_without_a_flush_call(integration, tmp_path):
    """In a process of its own with the thread on: record, wait, and the row is there (before any exit flush)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import current_database_url

    script = (
        "import django, os, time\n"
        "django.setup()\n"
        "from connections.services import usage\n"
        "from connections.models import UsageDaily\n"
        f"usage.record('{integration.pk}', '{integration.tenant_id}', requests=3, tokens=9)\n"
        "deadline = time.monotonic() + 10\n"
        f"while not UsageDaily.objects.filter(integration_id='{integration.pk}').exists():\n"
        "    assert time.monotonic() < deadline, 'no flush'\n"
        "    time.sleep(0.05)\n"
        "print('flushed by', usage.batcher._thread.name)\n"
        "os._exit(0)\n"  # skip the exit-time flush: the thread alone wrote the row
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test",
           "DATABASE_URL": current_database_url(), "BATCHING_BACKGROUND": "1", "USAGE_FLUSH_SECONDS": "0.2"}
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "flushed by usage-flush" in done.stdout
    assert rows(integration)[0]["requests"] == 3 and rows(integration)[0]["tokens"] == 9


# --- what an outbound call reports -------------------------------------------------------------------------------


def test_a_connection_test_counts_the_request_and_the_reported_tokens_and_cost(tenant, provider, far_side):
    integration = make(tenant, provider, far_side, test_endpoint="/ping")
    result = probes.probe(integration, None)
    assert result.success is True
    usage.flush()
    assert rows(integration) == [{"date": timezone.localdate(), "requests": 1, "errors": 0, "webhooks": 0,
                                  "tokens": 120, "cost": Decimal("0.250000")}]


def test_usage_header_names_can_be_set_per_integration(tenant, provider, far_side):
    integration = make(tenant, provider, far_side, test_endpoint="/custom",
                       settings={"usage_tokens_header": "X-Tokens-Used", "usage_cost_header": "X-Bill"})
    assert probes.probe(integration, None).success is True
    usage.flush()
    assert (rows(integration)[0]["tokens"], rows(integration)[0]["cost"]) == (7, Decimal("1.500000"))


def test_an_error_answer_counts_a_request_and_an_error(tenant, provider, far_side):
    integration = make(tenant, provider, far_side, test_endpoint="/broken")
    assert probes.probe(integration, None).success is False
    usage.flush()
    assert (rows(integration)[0]["requests"], rows(integration)[0]["errors"]) == (1, 1)


def test_a_connection_failure_counts_a_request_and_an_error(tenant, provider, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    integration = IntegrationFactory(tenant=tenant, provider=provider, api_base_url=f"http://127.0.0.1:{port}",
                                     test_endpoint="/ping", retry_count=0, timeout_seconds=2)
    result = probes.probe(integration, None)
    assert result.error_code == "CONNECTION_FAILED"
    usage.flush()
    assert (rows(integration)[0]["requests"], rows(integration)[0]["errors"]) == (1, 1)


@pytest.mark.parametrize("headers, expected", [
    ({"x-usage-tokens": "42", "x-usage-cost": "0.125"}, (42, Decimal("0.125"))),
    ({}, (0, Decimal(0))),
    ({"x-usage-tokens": "lots", "x-usage-cost": "cheap"}, (0, Decimal(0))),
    ({"x-usage-tokens": "-5", "x-usage-cost": "-1"}, (0, Decimal(0))),
    ({"x-usage-tokens": "1e3", "x-usage-cost": "NaN"}, (0, Decimal(0))),
    ({"x-usage-cost": "Infinity"}, (0, Decimal(0))),
    # What a hostile upstream sends: clamped to what one call may report, never past the columns.
    ({"x-usage-tokens": "99999999999999999999999999", "x-usage-cost": "1e400"},
     (usage.MAX_TOKENS_PER_CALL, usage.MAX_COST_PER_CALL)),
    ({"x-usage-cost": "0.12345678"}, (0, Decimal("0.123457"))),
])
def test_reported_usage_takes_only_sane_numbers(integration, headers, expected):
    assert usage.reported_usage(integration, headers) == expected


# --- limits ---------------------------------------------------------------------------------------------------------


def month_rows(integration, *, today_tokens: int, today_cost: str, earlier_tokens: int, earlier_cost: str):
    """Rows for this month (today, and the 1st when that is another day) plus one last month that must not count."""
    today = timezone.localdate()
    first = today.replace(day=1)
    UsageDaily.objects.create(integration=integration, tenant=integration.tenant, date=today, requests=9,
                              tokens=today_tokens, cost=Decimal(today_cost))
    if first != today:
        UsageDaily.objects.create(integration=integration, tenant=integration.tenant, date=first, requests=1,
                                  tokens=earlier_tokens, cost=Decimal(earlier_cost))
    else:  # the 1st: everything of the month is today's
        UsageDaily.objects.filter(integration=integration, date=today).update(
            tokens=today_tokens + earlier_tokens, cost=Decimal(today_cost) + Decimal(earlier_cost))
    UsageDaily.objects.create(integration=integration, tenant=integration.tenant, date=first - timedelta(days=1),
                              requests=1000, tokens=10**9, cost=Decimal("9999"))


def test_limits_are_percentages_of_this_months_rows_and_this_minutes_requests(tenant, provider):
    fresh_minute()
    integration = make(tenant, provider, limit_monthly_budget=Decimal("200.00"), limit_tokens=10_000,
                       limit_requests_per_minute=40)
    month_rows(integration, today_tokens=1500, today_cost="30.50", earlier_tokens=1000, earlier_cost="19.50")
    for _ in range(6):  # as the outbound client counts for a rate-limited integration
        usage.record(integration.pk, tenant.pk, requests=1, enforce_rate=True)
    for _ in range(4):  # counted in the cache by the flush
        usage.record(integration.pk, tenant.pk, requests=1)
    usage.flush()

    assert usage.limits(integration) == {
        "budget_percent": 25.0, "token_percent": 25.0, "rate_percent": 25.0,
        "budget": {"used": "50.00", "limit": "200.00"},
        "tokens": {"used": 2500, "limit": 10_000},
        "rate": {"used": 10, "limit": 40},
    }


def test_limits_without_limits_set_have_no_percentages(integration):
    result = usage.limits(integration)
    assert (result["budget_percent"], result["token_percent"], result["rate_percent"]) == (None, None, None)
    assert result["budget"] == {"used": "0.00", "limit": None}
    assert result["rate"] == {"used": 0, "limit": None}


def test_past_the_requests_per_minute_limit_a_call_is_refused_unsent_and_audited_once(
    tenant, provider, far_side
):
    fresh_minute()
    integration = make(tenant, provider, far_side, test_endpoint="/ping", limit_requests_per_minute=2)
    assert probes.probe(integration, None).success is True
    assert probes.probe(integration, None).success is True
    sent = len(far_side.log)
    for _ in range(3):
        with pytest.raises(usage.LimitRefused) as refused:
            usage.metered_request(integration, "GET", far_side.url_for("/ping"), headers={})
        assert refused.value.code == "LIMIT_EXCEEDED"
    assert len(far_side.log) == sent  # nothing went out
    events = AuditEvent.objects.filter(action="integration.limit_exceeded", target_id=str(integration.pk))
    assert events.count() == 1
    event = events.get()
    assert (event.outcome, event.changes["limit"], event.actor) == ("denied", "rate", "system")


def test_past_the_monthly_budget_a_call_is_refused_and_audited_once(tenant, provider, far_side):
    integration = make(tenant, provider, far_side, test_endpoint="/ping", limit_monthly_budget=Decimal("50.00"))
    month_rows(integration, today_tokens=0, today_cost="30", earlier_tokens=0, earlier_cost="20")
    first, second = probes.probe(integration, None), probes.probe(integration, None)
    assert first.error_code == second.error_code == "LIMIT_EXCEEDED"
    assert "budget" in first.error_message
    assert len(far_side.log) == 0
    events = AuditEvent.objects.filter(action="integration.limit_exceeded", target_id=str(integration.pk))
    assert [e.changes["limit"] for e in events] == ["budget"]


def test_past_the_monthly_tokens_a_call_is_refused_and_audited_once(tenant, provider, far_side):
    integration = make(tenant, provider, far_side, test_endpoint="/ping", limit_tokens=1000)
    month_rows(integration, today_tokens=600, today_cost="0", earlier_tokens=400, earlier_cost="0")
    for _ in range(2):
        assert probes.probe(integration, None).error_code == "LIMIT_EXCEEDED"
    assert len(far_side.log) == 0
    events = AuditEvent.objects.filter(action="integration.limit_exceeded", target_id=str(integration.pk))
    assert [e.changes["limit"] for e in events] == ["tokens"]


def test_below_every_limit_a_call_goes_out(tenant, provider, far_side):
    integration = make(tenant, provider, far_side, test_endpoint="/ping", limit_tokens=1001,
                       limit_monthly_budget=Decimal("50.01"), limit_requests_per_minute=1000)
    month_rows(integration, today_tokens=600, today_cost="30", earlier_tokens=400, earlier_cost="20")
    assert probes.probe(integration, None).success is True
    assert not AuditEvent.objects.filter(action="integration.limit_exceeded").exists()


def test_a_refused_test_leaves_the_health_state_alone(tenant, provider, far_side):
    from audit.services import SYSTEM

    integration = make(tenant, provider, far_side, test_endpoint="/ping", limit_tokens=10,
                       status="connected", health_state="healthy")
    month_rows(integration, today_tokens=10, today_cost="0", earlier_tokens=0, earlier_cost="0")
    check = checks.connection_test_run(integration=integration, actor=SYSTEM)
    assert (check.success, check.error_code) == (False, "LIMIT_EXCEEDED")
    integration.refresh_from_db()
    assert (integration.status, integration.health_state) == ("connected", "healthy")
    assert integration.last_error["code"] == "LIMIT_EXCEEDED"


def test_a_row_the_flush_cannot_write_is_dropped_and_the_other_tenants_counts_are_written(
    tenant, other_tenant, provider, caplog
):
    """The flush writes every tenant's counts in one statement: one row past its column's range (a DataError
    on PostgreSQL, an OverflowError on SQLite) must cost only that row."""
    poisoned = IntegrationFactory(tenant=tenant, provider=provider, name="Poisoned")
    healthy = [IntegrationFactory(tenant=other_tenant, provider=provider, name=f"Other {k}") for k in range(3)]
    usage.record(poisoned.pk, tenant.pk, requests=1, tokens=2**64)
    for k, integration in enumerate(healthy):
        usage.record(integration.pk, other_tenant.pk, requests=k + 1, webhooks=1)
    with caplog.at_level("ERROR", logger="connections.usage"):
        usage.flush()
    assert [rows(i)[0]["requests"] for i in healthy] == [1, 2, 3]
    assert all(rows(i)[0]["webhooks"] == 1 for i in healthy)
    assert rows(poisoned) == []
    dropped = [r.getMessage() for r in caplog.records if "row_dropped" in r.getMessage()]
    assert len(dropped) == 1 and f"integration={poisoned.pk}" in dropped[0]
    usage.record(poisoned.pk, tenant.pk, requests=2)  # the integration itself counts again
    usage.flush()
    assert rows(poisoned)[0]["requests"] == 2
