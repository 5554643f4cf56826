"""A demo upstream on a free loopback port, with a clock the tests move, and a small HTTP client for it."""
import base64
import html
import http.client
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from demo.upstream import DemoUpstream

ROTATE_EVERY = 4.0
CALLBACK = "http://127.0.0.1:8000/api/v1/oauth/callback"


class Clock:
    """Starts on a tick boundary; ``advance`` moves it."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def location_query(self) -> dict:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.headers["location"]).query).items()}


def call(url: str, method: str = "GET", *, headers: dict | None = None, form: dict | None = None) -> Answer:
    """One request, redirects not followed."""
    parts = urlsplit(url)
    body = urlencode(form).encode() if form is not None else None
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=sent)
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def basic(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def consent_form(page: bytes) -> dict:
    """The hidden fields of the consent page's form."""
    text = page.decode()
    return {name: html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', text)}


def approve(authorization_url: str) -> Answer:
    """What a user's browser does: open the consent page, press Allow. The upstream's redirect."""
    page = call(authorization_url)
    assert page.status == 200, page.body[:300]
    assert b"Allow" in page.body
    parts = urlsplit(authorization_url)
    return call(f"{parts.scheme}://{parts.netloc}/oauth/authorize", "POST",
                form={**consent_form(page.body), "decision": "allow"})


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def upstream(clock):
    server = DemoUpstream(port=0, rotate_every=ROTATE_EVERY, clock=clock, redirect_uris=[CALLBACK]).start()
    yield server
    server.stop()
