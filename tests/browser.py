"""A real browser for the tests: Debian's Chromium driven by Playwright, its traffic recorded and held
to one origin (any request elsewhere is aborted and kept, and the tests assert there is none).

Playwright's own browser download cannot work here, so the tests launch the system Chromium
(``apt-get install chromium``); without it they fail, they are never skipped. Playwright's sync
API runs an event loop in the test's thread, in which Django refuses synchronous database calls:
use the ORM before the browser starts and after it closes.
"""
import shutil
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
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
