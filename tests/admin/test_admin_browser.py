"""The staff cockpit in a real browser (``tests.browser``: the system Chromium, every request held to the
live server): log in, the dashboard, the integrations list, an integration page (Test connection), a
failed webhook event (Replay), the audit list. A screenshot of each page is saved under a folder the
run prints at its end (``IH_SCREENSHOTS_DIR``, which scripts/test.sh keeps after the pass, else
``VAR_DIR/screenshots``); no request leaves 127.0.0.1 during the whole session.

The ORM is used before the browser starts and after it closes (Playwright's sync API runs an event
loop in this thread, where Django refuses synchronous database calls).
"""
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Integration
from tests.admin import dashboard_rows as rows
from tests.browser import browser_page
from tests.catalog.factories import ProviderFactory
from tests.journeys.conftest import SwitchableServer
from tests.tenants.factories import TenantFactory
from webhooks.models import WebhookEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "cockpit-pass-123"
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture
def upstream():
    server = SwitchableServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shots(request) -> Path:
    """The folder of this run's screenshots, printed in the run's summary."""
    root = os.environ.get("IH_SCREENSHOTS_DIR") or Path(os.environ.get("VAR_DIR") or "var") / "screenshots"
    folder = Path(root) / "admin"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    request.config._ih_screenshots = str(folder.resolve())
    return folder


@pytest.fixture
def cockpit(settings, upstream):
    """A staff member, a tenant with a healthy integration (its test endpoint on a local server) and a
    failing one, 24 h of health checks, webhook events (two failed) and an audit trail."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.ADMIN_DASHBOARD_CACHE_SECONDS = 0
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    tenant, provider = TenantFactory(name="Acme Corp"), ProviderFactory(name="Billing REST", auth_type="none")
    now = timezone.now()
    healthy = rows.integration(tenant, provider, "Billing API", api_base_url=upstream.url, test_endpoint="/ping",
                               status="connected", health_state="healthy", retry_count=0)
    failing = rows.integration(tenant, provider, "Legacy CRM", status="error", health_state="unhealthy",
                               consecutive_failures=6, last_success_at=now - timedelta(hours=30),
                               health_checked_at=now - timedelta(minutes=5),
                               last_error={"code": "TIMEOUT", "message": "No answer within 10 s.",
                                           "at": (now - timedelta(minutes=5)).isoformat()})
    for hours_ago in range(1, 6):
        rows.checks(healthy, now - timedelta(hours=hours_ago), ok=(120, 180))
        rows.checks(failing, now - timedelta(hours=hours_ago), failed=(10_000,))
    hook = rows.endpoint(healthy, "billing-events")
    rows.events(hook, now - timedelta(hours=2), processed=3, failed=2)
    rows.transition(failing, now - timedelta(hours=3), "healthy", "unhealthy")
    return {"healthy": healthy, "failing": failing, "failed_event": WebhookEvent.objects.filter(status="failed")
            .order_by("received_at").first()}


def test_a_staff_member_works_through_the_cockpit_and_nothing_leaves_the_machine(live_server, cockpit, shots,
                                                                                upstream):
    origin, healthy, event = live_server.url, cockpit["healthy"], cockpit["failed_event"]
    checks_before = ConnectionCheck.objects.filter(integration=healthy).count()
    with browser_page(origin) as (page, traffic, errors):
        page.set_viewport_size(VIEWPORT)
        page.goto(f"{origin}/admin/login/?next=/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")

        # The dashboard: tiles and charts from the seeded rows.
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator('[data-figure="integrations-total"]')).to_have_text("2")
        expect(page.locator('[data-figure="health-unhealthy"]')).to_have_text("1")
        expect(page.locator('[data-figure="events-failed"]')).to_have_text("2")
        expect(page.locator('[data-figure="checks-total"]')).to_have_text("15")
        expect(page.locator('[data-figure="checks-succeeded"]')).to_have_text("10")
        charts = page.locator("svg.dash-chart")
        assert charts.count() >= 4
        for k in range(charts.count()):  # each chart names itself for screen readers and holds marks
            chart = charts.nth(k)
            assert chart.get_attribute("role") == "img" and chart.locator(":scope > title").count() == 1
            assert chart.locator("path, polyline, rect, circle").count() > 0
        tables = page.locator("details.dash-data table")
        assert tables.count() == charts.count()  # a table of numbers beside each chart
        expect(page.locator("#dashboard")).to_contain_text("Legacy CRM")  # failing longest
        expect(page.locator(".app-background-jobs, #content-main").first).to_contain_text("Background jobs")
        page.screenshot(path=str(shots / "1-dashboard.png"), full_page=True)

        # The integrations list: badges with their words, and no horizontal scrolling at 1,280 px.
        page.goto(f"{origin}/admin/connections/integration/")
        expect(page.locator('#result_list .hub-badge[data-value="unhealthy"]')).to_have_text("Unhealthy")
        expect(page.locator('#result_list .hub-badge[data-value="healthy"]')).to_have_text("Healthy")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(shots / "2-integrations.png"), full_page=True)

        # An integration page: the State block first; Test connection runs and shows its outcome.
        page.goto(f"{origin}/admin/connections/integration/{healthy.pk}/change/")
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator(".messagelist")).to_contain_text("200")
        page.screenshot(path=str(shots / "3-integration-tested.png"), full_page=True)

        # A failed webhook event: Replay queues it again.
        page.goto(f"{origin}/admin/webhooks/webhookevent/{event.pk}/change/")
        expect(page.locator('.hub-badge[data-value="failed"]').first).to_have_text("Failed")
        page.get_by_role("button", name="Replay").click()
        expect(page.locator(".messagelist")).to_be_visible()
        page.screenshot(path=str(shots / "4-webhook-event-replayed.png"), full_page=True)

        # The audit list shows what was just done.
        page.goto(f"{origin}/admin/audit/auditevent/")
        expect(page.locator("#result_list")).to_contain_text("integration.tested")
        page.screenshot(path=str(shots / "5-audit.png"), full_page=True)

    assert traffic.seen and traffic.refused == [] and traffic.outside == []
    assert errors == []
    assert upstream.hits >= 1  # the test connection reached the local server
    assert ConnectionCheck.objects.filter(integration=healthy).count() == checks_before + 1
    event.refresh_from_db()
    assert event.status != "failed"
    assert AuditEvent.objects.filter(action="webhook_event.replayed", target_id=str(event.pk)).exists()
    assert sorted(p.name for p in shots.glob("*.png")) == [
        "1-dashboard.png", "2-integrations.png", "3-integration-tested.png", "4-webhook-event-replayed.png",
        "5-audit.png",
    ]
    assert Integration.objects.get(pk=healthy.pk).health_checked_at is not None
