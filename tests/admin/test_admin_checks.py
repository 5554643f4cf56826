"""Integration admin: "Test connection" and "Poll statuses now" actions, health columns and recent checks."""
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections.models import ConnectionCheck, Integration
from connections.services import checks
from connections.services.queueing import RUN_CONNECTION_CHECK, RUN_STATUS_POLL
from tests.connections.factories import IntegrationFactory

CHANGELIST = "admin:connections_integration_changelist"


@pytest.fixture
def sent(sent_tasks):
    """What reaches the queue: the checks and the polls sent to the workers, as they are sent."""
    return {"checks": sent_tasks[RUN_CONNECTION_CHECK], "polls": sent_tasks[RUN_STATUS_POLL]}


def run_action(client, action: str, integrations, capture):
    with capture(execute=True) as callbacks:
        response = client.post(
            reverse(CHANGELIST), {"action": action, "_selected_action": [i.pk for i in integrations]}, follow=True
        )
    assert response.status_code == 200
    return response, callbacks


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_test_connection_action_queues_one_check_per_integration_as_the_staff_user(
    staff_client, staff, tenant, provider, integration, sent, django_capture_on_commit_callbacks
):
    second = IntegrationFactory(tenant=tenant, provider=provider, name="Second")

    response, callbacks = run_action(staff_client, "test_connection", [integration, second],
                                     django_capture_on_commit_callbacks)

    assert "Queued 2 connection test(s)." in texts(response)
    queued = ConnectionCheck.objects.filter(state="queued")
    assert {c.integration_id for c in queued} == {integration.pk, second.pk}
    assert {c.requested_by for c in queued} == {staff.username}
    assert {c.kind for c in queued} == {"test"}
    assert sorted(sent["checks"]) == sorted(str(c.pk) for c in queued)
    assert len(callbacks) == 2


def test_a_check_queued_from_the_admin_is_completed_by_the_worker(
    staff_client, integration, httpserver, settings, sent, django_capture_on_commit_callbacks
):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), test_endpoint="/ping", retry_count=0
    )
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    run_action(staff_client, "test_connection", [integration], django_capture_on_commit_callbacks)

    checks.connection_check_execute(check_id=sent["checks"][0])

    check = ConnectionCheck.objects.get()
    assert check.state == "completed" and check.success is True
    integration.refresh_from_db()
    assert integration.health_state == "healthy"


def test_test_connection_skips_deleted_integrations(
    staff_client, integration, sent, django_capture_on_commit_callbacks
):
    Integration.objects.filter(pk=integration.pk).update(deleted_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse(CHANGELIST) + "?deleted=yes",
            {"action": "test_connection", "_selected_action": [integration.pk]}, follow=True,
        )

    assert "Queued 0 connection test(s)." in texts(response)
    assert any("Skipped 1 deleted" in t for t in texts(response))
    assert not ConnectionCheck.objects.exists() and not sent["checks"]


def test_poll_action_queues_integrations_with_a_status_endpoint_and_names_the_others(
    staff_client, tenant, provider, integration, sent, django_capture_on_commit_callbacks
):
    pollable = IntegrationFactory(tenant=tenant, provider=provider, name="Pollable", status_endpoint="/statuses")

    response, _ = run_action(staff_client, "poll_statuses", [integration, pollable],
                             django_capture_on_commit_callbacks)

    messages = texts(response)
    assert "Queued 1 status poll(s)." in messages
    assert any("no status endpoint" in m and "Main API" in m for m in messages)
    assert sent["polls"] == [str(pollable.pk)]


def test_integration_changelist_shows_health_columns(staff_client, integration):
    Integration.objects.filter(pk=integration.pk).update(
        health_state="degraded", consecutive_failures=2, last_error={"code": "TIMEOUT", "message": "slow"},
        health_checked_at=timezone.now(),
    )

    response = staff_client.get(reverse(CHANGELIST))

    html = response.content.decode()
    assert response.status_code == 200
    # Failures in a row are under the health badge, the last error's code under the last check.
    for header in ("column-health_column", "column-success_24h", "column-last_check"):
        assert header in html
    assert "TIMEOUT" in html and "Degraded" in html and "2 failures in a row" in html


def test_change_page_lists_the_latest_checks_newest_first(staff_client, integration):
    now = timezone.now()
    for minutes in range(25):
        check = ConnectionCheck.objects.create(
            tenant=integration.tenant, integration=integration, kind="health", success=minutes != 0,
            status_code=500 if minutes == 0 else 200, latency_ms=100 + minutes,
            error_code="UNEXPECTED_STATUS" if minutes == 0 else "",
        )
        ConnectionCheck.objects.filter(pk=check.pk).update(created_at=now - timedelta(minutes=minutes))

    response = staff_client.get(reverse("admin:connections_integration_change", args=[integration.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<tr><td><a href=") == 20
    assert "100 ms" in html and "119 ms" in html and "120 ms" not in html  # the 20 newest only
    assert html.index("100 ms") < html.index("119 ms")  # newest first
    assert "UNEXPECTED_STATUS" in html


def test_change_page_check_history_link_filters_by_integration(staff_client, tenant, provider, integration):
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    for target in (integration, other):
        ConnectionCheck.objects.create(tenant=tenant, integration=target, success=True)
    page = staff_client.get(reverse("admin:connections_integration_change", args=[integration.pk]))
    history = reverse("admin:connections_connectioncheck_changelist") + f"?integration__id__exact={integration.pk}"
    assert history in page.content.decode()

    response = staff_client.get(history)

    assert response.status_code == 200
    assert [c.integration_id for c in response.context["cl"].result_list] == [integration.pk]


def test_change_page_without_checks_says_so(staff_client, integration):
    response = staff_client.get(reverse("admin:connections_integration_change", args=[integration.pk]))

    assert "No checks yet." in response.content.decode()


def test_recent_checks_cost_one_query_whatever_their_number(staff_client, integration):
    def page_queries():
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(
                reverse("admin:connections_integration_change", args=[integration.pk])
            ).status_code == 200
        return len(queries)

    ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, success=True)
    one = page_queries()
    for _ in range(10):
        ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, success=False)

    assert page_queries() == one
