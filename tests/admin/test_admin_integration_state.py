"""An integration's state in the admin: the list's key columns and 24-hour success ratio (one query for the
page), and the change page's State block first, with the last error and the last check in words."""
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections.admin import IntegrationAdmin
from connections.models import ConnectionCheck, Integration
from tests.connections.factories import IntegrationFactory


def changelist() -> str:
    return reverse("admin:connections_integration_changelist")


def change_page(integration) -> str:
    return reverse("admin:connections_integration_change", args=[integration.pk])


def add_checks(integration, *, ok: int = 0, failed: int = 0, hours_ago: float = 1, **fields) -> None:
    at = timezone.now() - timedelta(hours=hours_ago)
    outcomes = [True] * ok + [False] * failed
    made = ConnectionCheck.objects.bulk_create([
        ConnectionCheck(tenant=integration.tenant, integration=integration, success=success,
                        **{"kind": "health", **fields})
        for success in outcomes
    ])
    ConnectionCheck.objects.filter(pk__in=[c.pk for c in made]).update(created_at=at)


def cell(html: str, integration, column: str) -> str:
    """The text of ``column`` in the row of ``integration`` (tags stripped)."""
    row = next(r for r in re.findall(r"<tr>.*?</tr>", html, re.S) if f"/{integration.pk}/change/" in r)
    content = re.search(rf'<td class="field-{column}[^"]*">(.*?)</td>', row, re.S)[1]
    return re.sub(r"<[^>]+>", " ", content).split()


# --- the list ----------------------------------------------------------------------------------------------------


def test_the_list_shows_the_key_columns_only(staff_client, integration):
    # Narrow enough for a 1,280 px screen: low-value columns are filters or notes under a badge.
    assert IntegrationAdmin.list_display == (
        "name", "tenant", "provider", "status_column", "health_column", "success_24h", "last_check",
    )
    html = staff_client.get(changelist()).content.decode()
    for header in ("name", "tenant", "provider", "status_column", "health_column", "success_24h", "last_check"):
        assert f"column-{header}" in html
    for dropped in ("environment", "created_at", "has_credentials", "consecutive_failures", "last_success_at"):
        assert f"column-{dropped}" not in html


def test_the_ratio_counts_the_tests_and_health_checks_of_the_last_24_hours(staff_client, tenant, provider,
                                                                          integration):
    add_checks(integration, ok=30, failed=1)
    add_checks(integration, ok=3, kind="test", hours_ago=23)
    add_checks(integration, failed=5, hours_ago=25)  # older than 24 h
    add_checks(integration, failed=2, kind="system")  # not a test of this integration's connection
    ConnectionCheck.objects.create(tenant=tenant, integration=integration, state="queued")  # no outcome yet
    perfect = IntegrationFactory(tenant=tenant, provider=provider, name="Perfect")
    add_checks(perfect, ok=2)
    silent = IntegrationFactory(tenant=tenant, provider=provider, name="Silent")

    html = staff_client.get(changelist()).content.decode()

    assert cell(html, integration, "success_24h") == ["97", "%", "(33/34)"]
    assert cell(html, perfect, "success_24h") == ["100", "%", "(2/2)"]
    assert cell(html, silent, "success_24h") == ["—"]


def test_the_list_sorts_by_the_ratio(staff_client, tenant, provider, integration):
    add_checks(integration, ok=1, failed=1)
    perfect = IntegrationFactory(tenant=tenant, provider=provider, name="Perfect")
    add_checks(perfect, ok=2)
    column = staff_client.get(changelist()).context["cl"].list_display.index("success_24h")

    rows = {}
    for order in (str(column), f"-{column}"):
        response = staff_client.get(changelist() + f"?o={order}")
        assert response.status_code == 200
        rows[order] = [i.pk for i in response.context["cl"].result_list if i.pk in (integration.pk, perfect.pk)]

    assert rows[str(column)] == [integration.pk, perfect.pk]
    assert rows[f"-{column}"] == [perfect.pk, integration.pk]


def test_the_list_costs_the_same_queries_whatever_its_rows_and_checks(staff_client, tenant, provider):
    def add(n: int, tag: str) -> None:
        for i in range(n):
            target = IntegrationFactory(tenant=tenant, provider=provider, name=f"{tag} {i}",
                                        consecutive_failures=i, last_error={"code": "TIMEOUT", "message": "slow"})
            add_checks(target, ok=i + 1, failed=1)

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(changelist()).status_code == 200
        return len(queries)

    add(3, "few")
    few = page_queries()
    add(25, "many")

    assert page_queries() == few


def test_the_list_puts_failures_under_health_and_the_error_code_under_the_last_check(staff_client, integration):
    Integration.objects.filter(pk=integration.pk).update(
        health_state="unhealthy", consecutive_failures=4, health_checked_at=timezone.now() - timedelta(minutes=3),
        last_error={"code": "TIMEOUT", "message": "slow"},
    )

    html = staff_client.get(changelist()).content.decode()

    assert cell(html, integration, "health_column") == ["Unhealthy", "4", "failures", "in", "a", "row"]
    assert cell(html, integration, "last_check") == ["3", "minutes", "ago", "TIMEOUT"]
    assert cell(html, integration, "status_column") == ["Pending", "no", "credentials"]


# --- the change page ---------------------------------------------------------------------------------------------


@pytest.fixture
def failing(integration):
    now = timezone.now()
    Integration.objects.filter(pk=integration.pk).update(
        health_state="unhealthy", status="error", consecutive_failures=3, health_checked_at=now,
        last_success_at=now - timedelta(hours=2),
        last_error={"code": "UNEXPECTED_STATUS", "message": "The API answered 503.",
                    "at": (now - timedelta(minutes=5)).isoformat()},
    )
    ConnectionCheck.objects.create(
        tenant=integration.tenant, integration=integration, kind="health", success=False, status_code=503,
        latency_ms=120, error_code="UNEXPECTED_STATUS", error_message="The API answered 503.",
    )
    integration.refresh_from_db()
    return integration


def test_the_state_block_comes_before_the_forms_fieldsets(staff_client, failing):
    response = staff_client.get(change_page(failing))

    assert response.status_code == 200
    titles = [fieldset.name for fieldset in response.context["adminform"]]
    assert titles[0] == "State"
    html = response.content.decode()
    state = html.index(">State</h2>")
    assert state < html.index('name="name"') < html.index(">Endpoints</h2>") < html.index(">Recent checks</h2>")
    labels = re.findall(r"<label>([^<]+):</label>", html[state:html.index("</fieldset>", state)])
    assert labels == ["Health", "Status", "Consecutive failures", "Last success", "Last check", "Last error",
                      "Success, 24 h", "Credential"]


def test_the_last_error_is_shown_in_words_not_json(staff_client, failing):
    html = staff_client.get(change_page(failing)).content.decode()

    assert "<strong>UNEXPECTED_STATUS</strong>: The API answered 503. (5\xa0minutes ago)" in html
    assert '"code"' not in html and "&quot;code&quot;" not in html


def test_the_state_block_shows_the_last_check_with_status_latency_and_error(staff_client, failing):
    html = staff_client.get(change_page(failing)).content.decode()
    state = html[html.index(">State</h2>"):html.index('name="name"')]

    assert re.search(r'data-value="failed">Failed</span> HTTP 503 · 120 ms · <strong>UNEXPECTED_STATUS</strong>: '
                     r"The API answered 503\. \(scheduled health check, 0\xa0minutes ago\)", state)
    assert "2\xa0hours ago" in state  # the last success
    assert "0\xa0% (0/1)" in state


def test_a_page_without_checks_says_so_and_the_add_page_has_no_state(staff_client, integration):
    html = staff_client.get(change_page(integration)).content.decode()
    assert "No checks yet." in html

    response = staff_client.get(reverse("admin:connections_integration_add"))
    assert response.status_code == 200
    assert "State" not in [fieldset.name for fieldset in response.context["adminform"]]


# --- disabled and failing ----------------------------------------------------------------------------------------


def state_labels(html: str) -> list[str]:
    state = html.index(">State</h2>")
    return re.findall(r"<label>([^<]+):</label>", html[state:html.index("</fieldset>", state)])


def test_an_auto_disabled_integration_says_why_and_how_long_it_has_been_failing(staff_client, integration):
    now = timezone.now()
    Integration.objects.filter(pk=integration.pk).update(
        status="disabled", disabled_reason="auto_disabled", health_state="unhealthy", consecutive_failures=30,
        failing_since=now - timedelta(hours=3, minutes=10), failure_warned_at=now - timedelta(hours=1, minutes=5),
    )

    html = staff_client.get(change_page(integration)).content.decode()

    assert state_labels(html)[:5] == ["Health", "Status", "Disabled", "Consecutive failures", "Failing"]
    state = html[html.index(">State</h2>"):html.index('name="name"')]
    assert 'data-value="auto_disabled">Disabled after failing checks</span>' in state
    assert re.search(r"<time [^>]+>failing for 3\xa0hours</time>; warning sent <time [^>]+>1\xa0hour ago</time>",
                     state)
    listed = staff_client.get(changelist()).content.decode()
    assert cell(listed, integration, "status_column") == ["Disabled", "no", "credentials", "after", "failing",
                                                          "checks"]


def test_a_manually_disabled_integration_says_so_without_a_streak(staff_client, integration):
    Integration.objects.filter(pk=integration.pk).update(status="disabled", disabled_reason="manual")

    html = staff_client.get(change_page(integration)).content.decode()

    assert "Failing" not in state_labels(html) and "Disabled" in state_labels(html)
    assert 'data-value="manual">Disabled on request</span>' in html


def test_the_changelist_filters_by_why_an_integration_is_disabled(staff_client, tenant, provider, integration):
    auto = IntegrationFactory(tenant=tenant, provider=provider, name="Auto", status="disabled",
                              disabled_reason="auto_disabled")
    manual = IntegrationFactory(tenant=tenant, provider=provider, name="Manual", status="disabled",
                                disabled_reason="manual")

    def listed(query: str) -> set:
        response = staff_client.get(changelist() + query)
        assert response.status_code == 200
        return {i.pk for i in response.context["cl"].result_list}

    assert listed("?disabled_reason__exact=auto_disabled") == {auto.pk}
    assert listed("?disabled_reason__exact=manual") == {manual.pk}
    assert listed("?disabled_reason__exact=") == {integration.pk}  # "Not disabled"
    assert listed("") == {integration.pk, auto.pk, manual.pk}
    html = staff_client.get(changelist()).content.decode()
    assert "By disabled reason" in html and "Disabled after failing checks" in html
