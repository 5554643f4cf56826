"""The landing page at ``/``: where the admin's "View site" leads, linking everything a user opens first."""
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.test import Client

from tests.tenants.factories import UserFactory

EXPECTED_LINKS = {
    "/admin/": "the admin",
    "/api/docs/": "Swagger UI",
    "/api/redoc/": "ReDoc",
    "/api/schema/": "the OpenAPI schema",
    "/healthz": "liveness",
    "/readyz": "readiness",
    "/metrics": "Prometheus metrics",
}


class _Links(HTMLParser):
    """Every ``href`` and ``src`` of a page, with the text of each link."""

    def __init__(self):
        super().__init__()
        self.links: dict[str, str] = {}
        self.resources: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self._open = attrs["href"]
            self.links.setdefault(self._open, "")
        for name in ("href", "src"):
            if attrs.get(name) and tag != "a":
                self.resources.append(attrs[name])

    def handle_data(self, data):
        if self._open is not None:
            self.links[self._open] += data

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None


def parse(response) -> _Links:
    parser = _Links()
    parser.feed(response.content.decode())
    return parser


@pytest.mark.django_db
def test_landing_page_links_the_admin_docs_schema_and_ops_endpoints():
    response = Client().get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = parse(response)
    missing = [f"{href} ({what})" for href, what in EXPECTED_LINKS.items() if href not in page.links]
    assert missing == []
    assert all(text.strip() for text in page.links.values()), page.links


@pytest.mark.django_db
def test_every_landing_page_link_is_served():
    client = Client()
    for href in parse(client.get("/")).links:
        response = client.get(href)
        # The admin sends an anonymous visitor to its login page; readiness may be 503 on a broken stack.
        assert response.status_code in (200, 302, 503), (href, response.status_code)
        assert response.status_code != 302 or href == "/admin/", href


@pytest.mark.django_db
def test_landing_page_loads_nothing_from_another_host():
    page = parse(Client().get("/"))
    outside = [url for url in [*page.links, *page.resources] if url.startswith(("http:", "https:", "//"))]
    assert outside == []


@pytest.mark.django_db
def test_landing_page_answers_get_and_head_only():
    client = Client()
    assert client.head("/").status_code == 200
    assert client.post("/").status_code == 405


def test_admin_site_url_is_the_landing_page():
    assert admin.site.site_url == "/"


@pytest.mark.django_db
def test_admin_index_has_a_view_site_link_to_the_landing_page():
    client = Client()
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    response = client.get("/admin/")
    assert response.status_code == 200
    links = parse(response).links
    assert links.get("/", "").strip() == "View site", links
