"""Operations views of one integration: /limits, /usage, /activity, /widgets/status, /widgets/activity,
and a connection test or poll refused past a hard limit."""
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM, audit_record
from connections import services
from connections.models import ConnectionCheck, Integration, UsageDaily
from connections.services import usage
from tenants.choices import Role
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_envelope
from webhooks import services as webhook_services
from webhooks.models import WebhookEvent

BASE = "/api/v1/integrations"


@pytest.fixture(autouse=True)
def empty_buffer():
    usage.batcher.take()
    yield
    usage.batcher.take()


@pytest.fixture
def api(client_for):
    return client_for(Role.MEMBER.value)


def fresh_minute():
    into = time.time() % 60
    if into > 50:
        time.sleep(60 - into + 0.2)


def usage_row(integration, day: date, **counts):
    return UsageDaily.objects.create(integration=integration, tenant=integration.tenant, date=day, **counts)


# --- /limits -----------------------------------------------------------------------------------------------------


def test_limits_report_used_limit_and_percent_for_each(api, integration):
    fresh_minute()
    Integration.objects.filter(pk=integration.pk).update(
        limit_monthly_budget=Decimal("80.00"), limit_tokens=4000, limit_requests_per_minute=8)
    today = timezone.localdate()
    usage_row(integration, today, requests=5, tokens=1000, cost=Decimal("10.25"))
    usage_row(integration, today.replace(day=1) - timedelta(days=3), tokens=99999, cost=Decimal("999"))
    for _ in range(2):
        usage.record(integration.pk, integration.tenant_id, requests=1, enforce_rate=True)
    usage.flush()

    response = api.get(f"{BASE}/{integration.pk}/limits")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "budget_percent": 12.81, "token_percent": 25.0, "rate_percent": 25.0,
        "budget": {"used": "10.25", "limit": "80.00"},
        "tokens": {"used": 1000, "limit": 4000},
        "rate": {"used": 2, "limit": 8},
    }


def test_limits_with_none_set_answer_null_percentages(api, integration):
    body = api.get(f"{BASE}/{integration.pk}/limits").json()
    assert body == {
        "budget_percent": None, "token_percent": None, "rate_percent": None,
        "budget": {"used": "0.00", "limit": None}, "tokens": {"used": 0, "limit": None},
        "rate": {"used": 0, "limit": None},
    }


def test_limits_set_through_the_api_show_in_the_limits(client_for, integration):
    manager = client_for(Role.INTEGRATION_MANAGER.value)
    patched = manager.patch(f"{BASE}/{integration.pk}/", {"limit_tokens": 200, "limit_monthly_budget": "5.00"},
                            format="json")
    assert patched.status_code == 200, patched.content
    usage_row(integration, timezone.localdate(), tokens=50, cost=Decimal("4.5"))
    body = manager.get(f"{BASE}/{integration.pk}/limits").json()
    assert (body["token_percent"], body["budget_percent"]) == (25.0, 90.0)


def test_another_tenants_limits_and_usage_are_not_found(client_for, integration):
    other = client_for("other_tenant")
    for path in ("limits", "usage", "activity", "widgets/status", "widgets/activity"):
        assert_envelope(other.get(f"{BASE}/{integration.pk}/{path}"), 404, "INTEGRATION_NOT_FOUND")


def test_limits_need_a_login(client_for, integration):
    assert_envelope(client_for("anonymous").get(f"{BASE}/{integration.pk}/limits"), 401, "NOT_AUTHENTICATED")


# --- /usage ------------------------------------------------------------------------------------------------------


def test_usage_lists_the_days_in_range_oldest_first(api, integration):
    for day, n in ((date(2026, 3, 1), 1), (date(2026, 3, 3), 3), (date(2026, 3, 2), 2), (date(2026, 2, 28), 9)):
        usage_row(integration, day, requests=n, errors=n - 1, webhooks=n * 2, tokens=n * 100,
                  cost=Decimal("0.5") * n)
    response = api.get(f"{BASE}/{integration.pk}/usage", {"from": "2026-03-01", "to": "2026-03-31"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["integration_id"], body["from"], body["to"]) == (str(integration.pk), "2026-03-01", "2026-03-31")
    assert [(d["date"], d["requests"], d["errors"], d["webhooks"], d["tokens"]) for d in body["days"]] == [
        ("2026-03-01", 1, 0, 2, 100), ("2026-03-02", 2, 1, 4, 200), ("2026-03-03", 3, 2, 6, 300),
    ]
    assert Decimal(body["days"][2]["cost"]) == Decimal("1.5")


def test_usage_defaults_to_the_last_30_days_and_shows_flushed_counts(api, integration):
    today = timezone.localdate()
    usage_row(integration, today - timedelta(days=29), requests=1)
    usage_row(integration, today - timedelta(days=30), requests=1)
    usage.record(integration.pk, integration.tenant_id, requests=4, tokens=40)
    usage.flush()
    body = api.get(f"{BASE}/{integration.pk}/usage").json()
    assert (body["from"], body["to"]) == (str(today - timedelta(days=29)), str(today))
    assert [(d["date"], d["requests"]) for d in body["days"]] == [
        (str(today - timedelta(days=29)), 1), (str(today), 4),
    ]


def test_usage_of_another_integration_is_not_mixed_in(api, tenant, provider, integration):
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    usage_row(other, timezone.localdate(), requests=7)
    assert api.get(f"{BASE}/{integration.pk}/usage").json()["days"] == []


@pytest.mark.parametrize("query", [
    {"from": "2026-03-05", "to": "2026-03-01"},
    {"from": "yesterday"},
    {"to": "2026-13-01"},
    {"from": "2024-01-01", "to": "2026-01-01"},
])
def test_usage_with_a_bad_range_is_a_400(api, integration, query):
    error = assert_envelope(api.get(f"{BASE}/{integration.pk}/usage", query), 400, "VALIDATION_ERROR")
    assert set(error["details"]) & {"from", "to"}


# --- a call past a hard limit ------------------------------------------------------------------------------------


@pytest.fixture
def far_side(settings, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    httpserver.expect_request("/ping").respond_with_json({"ok": True}, headers={"X-Usage-Tokens": "10"})
    httpserver.expect_request("/statuses").respond_with_json([{"id": "a", "status": "open"}])
    return httpserver


def limited(tenant, provider, server, **limits):
    return IntegrationFactory(tenant=tenant, provider=provider, api_base_url=server.url_for("/").rstrip("/"),
                              test_endpoint="/ping", status_endpoint="/statuses", retry_count=0, **limits)


def test_a_test_past_the_rate_limit_is_a_429_limit_exceeded_audited_once(client_for, tenant, provider, far_side):
    fresh_minute()
    integration = limited(tenant, provider, far_side, limit_requests_per_minute=2)
    manager = client_for(Role.INTEGRATION_MANAGER.value)
    for _ in range(2):
        passed = manager.post(f"{BASE}/{integration.pk}/test")
        assert passed.status_code == 200 and passed.json()["success"] is True, passed.content
    for _ in range(2):
        error = assert_envelope(manager.post(f"{BASE}/{integration.pk}/test"), 429, "LIMIT_EXCEEDED")
        assert ConnectionCheck.objects.get(pk=error["details"]["check_id"]).error_code == "LIMIT_EXCEEDED"
        assert "Retry-After" not in error  # the limit is the integration's, not the API's
    assert len(far_side.log) == 2
    refusals = AuditEvent.objects.filter(action="integration.limit_exceeded", target_id=str(integration.pk))
    assert [(e.changes["limit"], e.outcome) for e in refusals] == [("rate", "denied")]
    limits = manager.get(f"{BASE}/{integration.pk}/limits").json()
    assert limits["rate"] == {"used": 2, "limit": 2} and limits["rate_percent"] == 100.0


def test_a_test_past_the_monthly_budget_is_a_429(client_for, tenant, provider, far_side):
    integration = limited(tenant, provider, far_side, limit_monthly_budget=Decimal("1.00"))
    usage_row(integration, timezone.localdate(), cost=Decimal("1.00"))
    manager = client_for(Role.INTEGRATION_MANAGER.value)
    error = assert_envelope(manager.post(f"{BASE}/{integration.pk}/test"), 429, "LIMIT_EXCEEDED")
    assert "budget" in error["message"]
    assert len(far_side.log) == 0


def test_a_test_past_the_monthly_tokens_is_a_429(client_for, tenant, provider, far_side):
    integration = limited(tenant, provider, far_side, limit_tokens=100)
    usage_row(integration, timezone.localdate(), tokens=100)
    manager = client_for(Role.INTEGRATION_MANAGER.value)
    for _ in range(2):
        assert_envelope(manager.post(f"{BASE}/{integration.pk}/test"), 429, "LIMIT_EXCEEDED")
    assert AuditEvent.objects.filter(action="integration.limit_exceeded", target_id=str(integration.pk)).count() == 1


def test_a_poll_past_a_limit_is_a_429(client_for, tenant, provider, far_side):
    integration = limited(tenant, provider, far_side, limit_tokens=100)
    usage_row(integration, timezone.localdate(), tokens=150)
    manager = client_for(Role.INTEGRATION_MANAGER.value)
    assert_envelope(manager.post(f"{BASE}/{integration.pk}/poll"), 429, "LIMIT_EXCEEDED")
    assert len(far_side.log) == 0


# --- /activity ---------------------------------------------------------------------------------------------------


def _age(model, pk, field: str, delta: timedelta):
    model.objects.filter(pk=pk).update(**{field: timezone.now() - delta})


def _audit(integration, action, delta, outcome="success"):
    event = audit_record(actor=SYSTEM, action=action, target=integration, outcome=outcome)
    _age(AuditEvent, event.pk, "created_at", delta)
    return event


def _check(integration, delta, success, **fields):
    check = ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, success=success,
                                           state="completed" if success is not None else "running", **fields)
    _age(ConnectionCheck, check.pk, "created_at", delta)
    return check


def _event(endpoint, delta, status):
    event, _ = webhook_services.event_accept(endpoint=endpoint, body=b'{"id": 1}', headers={},
                                             content_type="application/json", source_ip=None, dedupe_key=None)
    WebhookEvent.objects.filter(pk=event.pk).update(status=status, attempts=1 if status != "pending" else 0)
    _age(WebhookEvent, event.pk, "received_at", delta)
    return event


@pytest.fixture
def feed(tenant, provider, integration):
    """Activity of every kind at known ages (newest first), plus rows that must not show."""
    endpoint, _ = webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                   data={"name": "hook", "signature_scheme": "hmac_sha256"})
    m, h, d = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
    expected = [  # (age, type, status)
        (_audit(integration, "integration.updated", 10 * m), "config", "success"),
        (_check(integration, 30 * m, True, status_code=200, latency_ms=12), "test", "success"),
        (_event(endpoint, 50 * m, "processed"), "webhook", "success"),
        (_audit(integration, "credential.set", 3 * h), "connect", "success"),
        (_check(integration, 5 * h, False, error_code="TIMEOUT"), "test", "failed"),
        (_event(endpoint, 20 * h, "pending"), "webhook", "running"),
        (_audit(integration, "credential.removed", 2 * d, outcome="failure"), "disconnect", "failed"),
        (_event(endpoint, 3 * d, "failed"), "webhook", "failed"),
        (_audit(integration, "integration.polled", 6 * d), "sync", "success"),
        (_check(integration, 10 * d, None, kind="health"), "test", "running"),
        (_audit(integration, "oauth.connected", 29 * d), "connect", "success"),
    ]
    # Not in the feed: too old, not a feed action (the test itself shows as its check), another integration.
    _audit(integration, "integration.updated", 31 * d)
    _audit(integration, "integration.tested", 5 * m)
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    _audit(other, "integration.updated", 5 * m)
    _check(other, 5 * m, True)
    return [(str(row.pk), kind, status) for row, kind, status in expected]


@pytest.mark.parametrize("time_range, count", [("1h", 3), ("24h", 6), ("7d", 9), ("30d", 11)])
def test_activity_over_each_time_range_is_newest_first_with_types_and_statuses(api, integration, feed, time_range,
                                                                                count):
    response = api.get(f"{BASE}/{integration.pk}/activity", {"time_range": time_range})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"] == count
    assert [(a["id"], a["type"], a["status"]) for a in body["activities"]] == feed[:count]
    stamps = [a["timestamp"] for a in body["activities"]]
    assert stamps == sorted(stamps, reverse=True)


def test_activity_defaults_to_24h_and_carries_details(api, integration, feed):
    body = api.get(f"{BASE}/{integration.pk}/activity").json()
    assert body["total"] == 6
    assert api.get(f"{BASE}/{integration.pk}/activity", {"time_range": ""}).json()["total"] == 6  # empty = unset
    by_id = {a["id"]: a for a in body["activities"]}
    assert by_id[feed[0][0]]["details"] == {"action": "integration.updated", "actor": "system"}
    assert by_id[feed[1][0]]["details"] == {"kind": "test", "status_code": 200, "latency_ms": 12, "error_code": None}
    assert by_id[feed[4][0]]["details"]["error_code"] == "TIMEOUT"
    assert set(by_id[feed[2][0]]["details"]) == {"endpoint_id", "attempts"}


def test_activity_limit_cuts_the_list_but_not_the_total(api, integration, feed):
    body = api.get(f"{BASE}/{integration.pk}/activity", {"time_range": "30d", "limit": 4}).json()
    assert body["total"] == 11
    assert [a["id"] for a in body["activities"]] == [row[0] for row in feed[:4]]


@pytest.mark.parametrize("query", [{"time_range": "2h"}, {"time_range": "1H"}, {"limit": 0}, {"limit": 101},
                                   {"limit": "ten"}])
def test_activity_with_a_bad_query_is_a_400(api, integration, query):
    error = assert_envelope(api.get(f"{BASE}/{integration.pk}/activity", query), 400, "VALIDATION_ERROR")
    assert set(error["details"]) <= {"time_range", "limit"}


def test_activity_of_a_quiet_integration_is_empty(api, integration):
    assert api.get(f"{BASE}/{integration.pk}/activity", {"time_range": "30d"}).json() == {"activities": [], "total": 0}


def test_activity_shows_what_the_api_did(client_for, integration):
    manager = client_for(Role.INTEGRATION_MANAGER.value)
    assert manager.patch(f"{BASE}/{integration.pk}/", {"description": "changed"}, format="json").status_code == 200
    assert manager.put(f"{BASE}/{integration.pk}/credentials", {"type": "bearer", "token": "tok-feed-0123456789"},
                       format="json").status_code == 200
    assert manager.post(f"{BASE}/{integration.pk}/test").status_code == 200  # not configured: a failed test
    assert manager.delete(f"{BASE}/{integration.pk}/credentials").status_code == 204
    body = manager.get(f"{BASE}/{integration.pk}/activity", {"time_range": "1h"}).json()
    assert [(a["type"], a["status"]) for a in body["activities"]] == [
        ("disconnect", "success"),
        ("test", "failed"),  # the test run now
        ("test", "running"),  # the test queued by setting credentials, not run yet
        ("connect", "success"),
        ("config", "success"),
    ]


# --- widgets -------------------------------------------------------------------------------------------------------


def test_widget_status_of_a_connected_integration(api, integration):
    services.credential_set(actor=SYSTEM, integration=integration, credential_type="bearer",
                            data={"token": "tok-widget-0123456789"})
    now = timezone.now()
    Integration.objects.filter(pk=integration.pk).update(
        status="connected", health_state="healthy", last_success_at=now - timedelta(minutes=5),
        last_polled_at=now - timedelta(minutes=1))
    response = api.get(f"{BASE}/{integration.pk}/widgets/status")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["last_connected_at"] and body["last_sync_at"] > body["last_connected_at"]
    assert {k: v for k, v in body.items() if k not in ("last_connected_at", "last_sync_at")} == {
        "integration_id": str(integration.pk), "name": "Main API", "status": "connected",
        "connection_status": "active", "health_state": "healthy", "error": None,
    }


def test_widget_status_of_a_new_integration_has_no_connection(api, integration):
    body = api.get(f"{BASE}/{integration.pk}/widgets/status").json()
    assert (body["status"], body["connection_status"], body["last_connected_at"], body["last_sync_at"],
            body["error"]) == ("pending", None, None, None, None)


def test_widget_status_shows_the_error_of_a_failing_integration(api, integration):
    Integration.objects.filter(pk=integration.pk).update(
        status="error", last_error={"code": "TIMEOUT", "message": "The far side did not answer in 10 s."})
    body = api.get(f"{BASE}/{integration.pk}/widgets/status").json()
    assert (body["status"], body["error"]) == ("error", "The far side did not answer in 10 s.")


def test_widget_status_shows_an_expired_credential_as_the_error(api, integration):
    credential = services.credential_set(actor=SYSTEM, integration=integration, credential_type="bearer",
                                         data={"token": "tok-expired-0123456789"})
    type(credential).objects.filter(pk=credential.pk).update(status="expired", validation_error="")
    body = api.get(f"{BASE}/{integration.pk}/widgets/status").json()
    assert (body["connection_status"], body["error"]) == ("expired", "The credential is expired.")


def test_widget_activity_is_the_feed_compact_ten_by_default(api, integration):
    for n in range(12):
        _check(integration, timedelta(minutes=n + 1), True)
    body = api.get(f"{BASE}/{integration.pk}/widgets/activity").json()
    assert body["total"] == 12
    assert len(body["activities"]) == 10
    limited_body = api.get(f"{BASE}/{integration.pk}/widgets/activity", {"limit": 3, "time_range": "1h"}).json()
    assert len(limited_body["activities"]) == 3


def test_widget_activity_uses_the_same_time_ranges(api, integration, feed):
    assert api.get(f"{BASE}/{integration.pk}/widgets/activity", {"time_range": "7d"}).json()["total"] == 9
    assert_envelope(api.get(f"{BASE}/{integration.pk}/widgets/activity", {"time_range": "1y"}), 400,
                    "VALIDATION_ERROR")
