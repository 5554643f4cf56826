"""The dashboard on the admin index as staff see it: only staff, one tenant or all, charts with text alternatives,
nothing loaded from elsewhere, and a query count that does not grow with the number of integrations."""
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Credential, Integration, StreamLease
from integrations_site.dashboard import figures as dash
from tenants.choices import SUPER_ADMIN_GROUP
from tests.admin import dashboard_rows as rows
from tests.tenants.factories import MembershipFactory, UserFactory
from webhooks.models import WebhookEvent

INDEX = "/admin/"


@pytest.fixture(autouse=True)
def uncached(settings):
    settings.ADMIN_DASHBOARD_CACHE_SECONDS = 0


def figure(response, name) -> str:
    """The text of the element marked ``data-figure="<name>"``."""
    match = re.search(rf'data-figure="{name}">([^<]*)<', response.content.decode())
    assert match, f"no figure {name}"
    return match.group(1).strip()


def dashboard_html(response) -> str:
    body = response.content.decode()
    start = body.index('<section class="dash"')
    return body[start:body.index("</section>", start)]


@pytest.fixture
def seeded(tenant, other_tenant, provider):
    """Rows of two tenants: Acme's healthy and failing integrations with checks, events, credential and stream;
    one of Globex's, unhealthy, with a failed event."""
    now = timezone.now()
    ok = rows.integration(tenant, provider, "Billing", health_state="healthy", status="connected")
    bad = rows.integration(tenant, provider, "Shipping", health_state="unhealthy", status="error",
                           consecutive_failures=4, last_success_at=now - timedelta(days=2),
                           last_error={"code": "INVALID_CREDENTIALS", "message": "401 from the provider"})
    rows.checks(ok, now - timedelta(hours=2), ok=[100, 200, 300, 400])
    rows.checks(bad, now - timedelta(hours=2), failed=[50])
    rows.events(rows.endpoint(ok, "acme-orders"), now - timedelta(hours=1), processed=3, failed=1)
    rows.credential(ok, now + timedelta(days=2))
    rows.lease(ok, "connected", now + timedelta(seconds=30))
    theirs = rows.integration(other_tenant, provider, "Globex CRM", health_state="unhealthy", status="error",
                              consecutive_failures=1)
    rows.events(rows.endpoint(theirs, "globex-orders"), now - timedelta(hours=1), failed=2)
    return {"ok": ok, "bad": bad, "theirs": theirs}


def test_a_super_admin_sees_every_tenants_figures(staff_client, seeded):
    response = staff_client.get(INDEX)

    assert response.status_code == 200
    assert figure(response, "integrations-total") == "3"
    assert figure(response, "health-healthy") == "1" and figure(response, "health-unhealthy") == "2"
    assert figure(response, "status-error") == "2" and figure(response, "status-connected") == "1"
    assert figure(response, "events-total") == "6" and figure(response, "events-failed") == "3"
    assert figure(response, "checks-rate") == "80.0%"
    assert (figure(response, "checks-succeeded"), figure(response, "checks-total")) == ("4", "5")
    assert figure(response, "credentials-expiring") == "1" and figure(response, "streams-connected") == "1"
    html = dashboard_html(response)
    assert "Dashboard: every tenant" in html and '<option value="" selected>All tenants</option>' in html
    assert "INVALID_CREDENTIALS: 401 from the provider" in html
    assert reverse("admin:connections_integration_change", args=[seeded["bad"].pk]) in html
    failed_event = WebhookEvent.objects.filter(status="failed").first()
    assert reverse("admin:webhooks_webhookevent_change", args=[failed_event.pk]) in html


def test_the_tenant_filter_narrows_every_figure_to_that_tenant(staff_client, seeded, tenant, other_tenant):
    response = staff_client.get(INDEX, {"tenant": str(other_tenant.pk)})

    d = response.context["dashboard"]
    assert d["tenant"] == other_tenant
    assert figure(response, "integrations-total") == "1" and figure(response, "health-unhealthy") == "1"
    assert figure(response, "events-total") == "2" and figure(response, "events-failed") == "2"
    assert figure(response, "checks-total") == "0" and figure(response, "checks-rate") == "–"
    assert figure(response, "credentials-expiring") == "0" and figure(response, "streams-connected") == "0"
    f = d["figures"]
    assert [row["name"] for row in f["failing"]] == ["Globex CRM"]
    assert {row["tenant"] for row in f["failed_events"]} == {other_tenant.name}
    assert sum(h["received"] for h in f["webhook_hours"]) == 2 and sum(h["total"] for h in f["check_hours"]) == 0
    assert sum(day["unhealthy"] for day in f["health_days"][-1:]) == 1
    html = dashboard_html(response)
    assert f'<option value="{other_tenant.pk}" selected>' in html and "Dashboard: Globex" in html
    assert "Shipping" not in html and "Billing" not in html
    assert f"tenant__id__exact={other_tenant.pk}" in html  # the tiles' links keep the filter


def test_each_tiles_link_opens_the_admin_list_of_what_it_counts(staff_client, seeded, other_tenant):
    for scope in ({}, {"tenant": str(other_tenant.pk)}):
        tiles = staff_client.get(INDEX, scope).context["dashboard"]["tiles"]
        for entry in tiles["by_health"] + tiles["by_status"] + tiles["events_by_status"]:
            listed = staff_client.get(entry["url"])
            assert listed.status_code == 200, entry["url"]
            assert listed.context["cl"].result_count == entry["count"], entry["url"]


def test_an_unknown_or_malformed_tenant_shows_every_tenant(staff_client, seeded):
    for value in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = staff_client.get(INDEX, {"tenant": value})
        assert response.context["dashboard"]["tenant"] is None
        assert figure(response, "integrations-total") == "3"


@pytest.mark.parametrize("who", ["anonymous", "active user", "inactive staff"])
def test_anyone_but_active_staff_gets_the_login_page_and_no_figure(db, seeded, who):
    client = Client()
    if who != "anonymous":
        client.force_login(UserFactory(username="someone", is_staff=who == "inactive staff",
                                       is_active=who != "inactive staff"))

    response = client.get(INDEX)

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    page = client.get(response["Location"])
    body = page.content.decode()
    assert page.status_code == 200 and 'name="password"' in body
    assert "data-figure" not in body and "dash-chart" not in body and "Shipping" not in body


def test_staff_who_are_not_super_admins_see_only_their_own_tenants(db, seeded, tenant, other_tenant):
    operator = UserFactory(username="operator", is_staff=True)
    MembershipFactory(user=operator, tenant=tenant)
    client = Client()
    client.force_login(operator)

    response = client.get(INDEX, {"tenant": str(other_tenant.pk)})  # not theirs: ignored

    assert response.context["dashboard"]["tenant"] == tenant
    assert figure(response, "integrations-total") == "2"
    html = dashboard_html(response)
    assert "All tenants" not in html and other_tenant.name not in html and "Globex CRM" not in html


def test_staff_of_no_tenant_get_a_note_instead_of_figures(db, seeded):
    client = Client()
    client.force_login(UserFactory(username="newcomer", is_staff=True))

    response = client.get(INDEX)

    assert response.status_code == 200 and "dashboard" not in response.context
    assert "you are a member of none" in response.content.decode()
    assert "data-figure" not in response.content.decode()


def test_staff_in_the_super_admin_group_see_every_tenant(db, seeded):
    operator = UserFactory(username="platform", is_staff=True)
    operator.groups.add(Group.objects.get_or_create(name=SUPER_ADMIN_GROUP)[0])
    client = Client()
    client.force_login(operator)

    assert figure(client.get(INDEX), "integrations-total") == "3"


class Charts(HTMLParser):
    """The SVG charts of a page: each one's accessible name and description, and its data table's rows."""

    def __init__(self):
        super().__init__()
        self.charts, self.texts, self.tables, self._into, self._table = [], {}, {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and attrs.get("role") == "img":
            self.charts.append(attrs["aria-labelledby"].split())
        if tag in ("title", "desc") and attrs.get("id"):
            self._into = attrs["id"]
        if tag == "table" and (attrs.get("id") or "").endswith("-data"):
            self._table = attrs["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])

    def handle_endtag(self, tag):
        if tag in ("title", "desc"):
            self._into = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._into:
            self.texts[self._into] = self.texts.get(self._into, "") + data
        elif self._table and self.tables[self._table] and data.strip():
            self.tables[self._table][-1].append(data.strip())


def test_every_chart_is_svg_with_a_text_alternative_holding_the_seeded_numbers(staff_client, seeded):
    parsed = Charts()
    parsed.feed(staff_client.get(INDEX).content.decode())

    assert len(parsed.charts) == 4
    for title_id, desc_id in parsed.charts:
        assert parsed.texts[title_id].strip() and parsed.texts[desc_id].strip()
    tables = parsed.tables
    assert set(tables) == {"chart-check-success-data", "chart-check-latency-data", "chart-webhooks-data",
                           "chart-health-days-data"}
    assert all(len(tables[name]) == 25 for name in tables if name != "chart-health-days-data")  # head + 24 h
    assert len(tables["chart-health-days-data"]) == 8  # head + 7 days
    assert ["80%"] == [cells[1] for cells in tables["chart-check-success-data"][1:] if cells[1] != "no data"]
    latency = [cells[1:] for cells in tables["chart-check-latency-data"][1:] if cells[1] != "no data"]
    assert latency == [["200 ms", "380 ms"]]  # p50 / p95 of 50, 100, 200, 300, 400
    hooks = [cells[1:] for cells in tables["chart-webhooks-data"][1:] if cells[1] != "0"]
    assert hooks == [["6", "3", "3"]]
    assert tables["chart-health-days-data"][0] == ["Day", "Healthy", "Degraded", "Unhealthy", "Unknown"]
    assert tables["chart-health-days-data"][-1][1:] == ["1", "0", "2", "0"]
    assert parsed.texts["chart-webhooks-desc"].startswith("6 webhook events received in the last 24 hours; 3 of")


def test_the_dashboard_loads_nothing_from_elsewhere(staff_client, seeded):
    response = staff_client.get(INDEX)
    html = dashboard_html(response)

    assert "<script" not in html and "<img" not in html and "<iframe" not in html
    assert not re.search(r"https?://", html)
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', response.content.decode())
    assert "/static/admin/hub-dashboard.css" in response.content.decode()


def _bulk_rows(tenant, provider, count, tag):
    """``count`` integrations, each with what the dashboard counts: checks, a transition, an event, a credential,
    a stream, a failure."""
    now = timezone.now()
    made = Integration.objects.bulk_create(
        Integration(tenant=tenant, provider=provider, name=f"{tag} {i}", health_state="unhealthy", status="error",
                    consecutive_failures=i % 7 + 1, last_error={"code": "TIMEOUT", "message": "slow"})
        for i in range(count)
    )
    ConnectionCheck.objects.bulk_create(
        ConnectionCheck(tenant=tenant, integration=row, kind="health", success=i % 2 == 0, latency_ms=i)
        for i, row in enumerate(made)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(tenant=tenant, actor="system", action="integration.health_changed", target_id=str(row.pk),
                   changes={"health_state": {"from": "healthy", "to": "unhealthy"}}) for row in made
    )
    Credential.objects.bulk_create(
        Credential(tenant=tenant, integration=row, type="bearer", expires_at=now + timedelta(days=1)) for row in made
    )
    StreamLease.objects.bulk_create(
        StreamLease(integration=row, tenant=tenant, state="connected", lease_until=now + timedelta(minutes=1))
        for row in made
    )
    hook = rows.endpoint(made[0], f"{tag}-hook")
    WebhookEvent.objects.bulk_create(
        WebhookEvent(endpoint=hook, tenant=tenant, body=b"{}", status="failed" if i % 3 else "processed")
        for i in range(count)
    )


def test_the_dashboard_query_count_does_not_grow_with_the_integrations(staff_client, tenant, other_tenant, provider):
    def measure():
        with CaptureQueriesContext(connection) as page:
            response = staff_client.get(INDEX)
        with CaptureQueriesContext(connection) as figures_only:
            dash.compute_figures(tenant=None, now=timezone.now())
        return response, len(page.captured_queries), len(figures_only.captured_queries)

    _bulk_rows(tenant, provider, 10, "few")
    few, few_page, few_figures = measure()
    _bulk_rows(other_tenant, provider, 990, "many")
    many, many_page, many_figures = measure()

    assert figure(few, "integrations-total") == "10" and figure(many, "integrations-total") == "1000"
    assert figure(many, "streams-connected") == "1000" and figure(many, "credentials-expiring") == "1000"
    # 13 queries compute every figure (dash.QUERIES), whatever the number of rows; the whole index page adds
    # Django's own (session, user, recent actions) and one for the tenant filter's choices.
    assert few_figures == many_figures == dash.QUERIES == 13
    assert few_page == many_page
