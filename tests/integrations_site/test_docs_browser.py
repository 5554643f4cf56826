"""The API docs in a real browser: Debian's Chromium, driven by Playwright, against a live server.

``/api/docs/`` (Swagger UI) and ``/api/redoc/`` must work with nothing but
this project: every request the page makes goes to the live server (anything
else is aborted and counted, and there must be none), every operation of the
schema is rendered, and a tenant API key entered through "Authorize" runs a
real call with "Try it out" → "Execute". The browser is ``tests.browser``'s.
"""
import json
import urllib.request

import pytest
from playwright.sync_api import expect

from audit.services import Actor
from tenants.choices import Role
from tenants.services import api_key_create
from tests.browser import TIMEOUT_MS, browser_page
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import TenantFactory, UserFactory

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def schema_operation_count(origin: str) -> int:
    with urllib.request.urlopen(f"{origin}/api/schema/?format=json", timeout=30) as answer:
        document = json.load(answer)
    return sum(1 for item in document["paths"].values() for method in item if method in HTTP_METHODS)


@pytest.fixture
def tenant_api_key(transactional_db):
    """A tenant with one integration, and the plaintext of a tenant-admin API key."""
    tenant = TenantFactory(slug="acme")
    IntegrationFactory(tenant=tenant, name="Main API")
    admin = UserFactory(username="acme-admin")
    _, plaintext = api_key_create(actor=Actor(user=admin), tenant=tenant, name="docs", role=Role.TENANT_ADMIN.value)
    return plaintext


def test_live_server_serves_the_docs_static_files(live_server):
    url = f"{live_server.url}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.status == 200
        assert len(answer.read()) > 100_000


def test_swagger_ui_renders_every_operation_and_runs_a_call_with_an_api_key(live_server, tenant_api_key):
    origin = live_server.url
    expected = schema_operation_count(origin)
    assert expected > 70
    with browser_page(origin) as (page, traffic, errors):
        page.goto(f"{origin}/api/docs/")
        page.wait_for_function(f"document.querySelectorAll('.opblock').length >= {expected}", timeout=TIMEOUT_MS)
        assert page.locator(".opblock").count() == expected

        page.locator("button.authorize").first.click()
        modal = page.locator(".modal-ux")
        scheme = modal.locator(".auth-container", has_text="ApiKeyAuth")
        scheme.locator("input").first.fill(tenant_api_key)
        scheme.locator("button.authorize").click()
        expect(scheme.locator("button", has_text="Logout")).to_be_visible()
        modal.locator("button.close-modal").click()

        operation = page.locator("#operations-integrations-integrations_list")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status").first
        expect(status).to_have_text("200")
        body = operation.locator(".live-responses-table .response-col_description pre").first.inner_text()
        assert json.loads(body)["results"][0]["name"] == "Main API"

    assert traffic.seen, "the page made no request at all"
    assert traffic.refused == []
    assert traffic.outside == []
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in traffic.seen)
    assert f"{origin}/api/v1/integrations/" in [url.split("?")[0] for url in traffic.seen]
    assert errors == []


def test_redoc_renders_and_nothing_leaves_the_machine(live_server):
    origin = live_server.url
    with browser_page(origin) as (page, traffic, errors):
        page.goto(f"{origin}/api/redoc/")
        page.locator(".api-content").wait_for()
        page.get_by_text("Integrations hub API").first.wait_for()
        page.wait_for_load_state("networkidle")
        assert page.locator("[data-section-id^='tag/']").count() > 0

    # Nothing reached the network for another host. ReDoc's sidebar asks for Redocly's logo from its CDN;
    # the page's Content-Security-Policy makes the browser drop that before any connection is made.
    assert traffic.refused == []
    assert {url: traffic.failed.get(url) for url in traffic.outside} == {url: "csp" for url in traffic.outside}
    assert any("/static/drf_spectacular_sidecar/redoc/" in url for url in traffic.seen)
    assert errors == []
