"""The API docs in a real browser: Debian's Chromium, driven by Playwright, against a live server.

``/api/docs/`` (Swagger UI) and ``/api/redoc/`` must work with nothing but
this project: every request the page makes goes to the live server (anything
else is aborted and counted, and there must be none), every operation of the
schema is rendered, and a tenant API key entered through "Authorize" runs a
real call with "Try it out" → "Execute".

Playwright's own browser download cannot work here, so the test launches the
system Chromium (``apt-get install chromium``); without it the test fails,
it is never skipped.

The Django ORM is used only before the browser starts: Playwright's sync API
runs an event loop in this thread, in which Django refuses synchronous
database calls.
"""
import json
import shutil
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from audit.services import Actor
from tenants.choices import Role
from tenants.services import api_key_create
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import TenantFactory, UserFactory

CHROMIUM = Path("/usr/bin/chromium")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
TIMEOUT_MS = 30_000


def chromium_path() -> str:
    found = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is not installed: run `apt-get install -y chromium` (Debian's package; "
                    "Playwright's own browser download does not work here).", pytrace=False)
    return found


class Traffic:
    """Every request the pages make; any not for the live server is aborted and kept."""

    def __init__(self, origin: str):
        self.origin = origin
        self.seen: list[str] = []
        self.refused: list[str] = []
        self.failed: dict[str, str] = {}

    def is_local(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" == self.origin

    def record(self, request) -> None:
        self.seen.append(request.url)

    def record_failure(self, request) -> None:
        self.failed[request.url] = request.failure or ""

    def route(self, route) -> None:
        url = route.request.url
        if self.is_local(url):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()

    @property
    def outside(self) -> list[str]:
        return [url for url in self.seen if not self.is_local(url)]


@contextmanager
def browser_page(origin: str):
    """A page of a fresh headless Chromium whose traffic is recorded and held to ``origin``."""
    executable = chromium_path()
    traffic = Traffic(origin)
    with sync_playwright() as playwright:
        # Root in a container has no user namespaces for Chromium's sandbox.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.set_default_timeout(TIMEOUT_MS)
            context.on("request", traffic.record)
            context.on("requestfailed", traffic.record_failure)
            context.route("**/*", traffic.route)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, traffic, errors
        finally:
            browser.close()


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
