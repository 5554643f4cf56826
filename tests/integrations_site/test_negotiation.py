"""The API's content negotiation: its shortcut answers exactly what DRF's own negotiation answers."""
import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from integrations_site.api.negotiation import ContentNegotiation

RENDERERS = [JSONRenderer(), BrowsableAPIRenderer()]


def negotiated(negotiation, path: str, accept: str | None, format_suffix=None):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(path, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, RENDERERS, format_suffix)
    except Exception as exc:  # noqa: BLE001 (compared by type: 404 for an unknown format, 406 for no match)
        return type(exc)
    return type(renderer), media_type


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html", "application/json; indent=4",
                                    "application/*", "text/html, */*;q=0.8", "", "image/png", " */*"])
@pytest.mark.parametrize("path,format_suffix", [("/api/v1/integrations/", None),
                                                ("/api/v1/integrations/?format=api", None),
                                                ("/api/v1/integrations/?format=json", None),
                                                ("/api/v1/integrations/?format=xml", None),
                                                ("/api/v1/integrations/", "api")])
def test_every_accept_header_gets_what_drf_would_choose(accept, path, format_suffix):
    assert negotiated(ContentNegotiation(), path, accept, format_suffix) == negotiated(
        DefaultContentNegotiation(), path, accept, format_suffix)


def test_the_common_headers_are_answered_without_parsing_them(monkeypatch):
    def parse(*args):
        raise AssertionError("the Accept header was parsed")

    monkeypatch.setattr(DefaultContentNegotiation, "_get_parsed_accept_list", parse)
    for accept in (None, "*/*", "application/json"):
        assert negotiated(ContentNegotiation(), "/api/v1/integrations/", accept) == (JSONRenderer, "application/json")
    assert negotiated(ContentNegotiation(), "/api/v1/integrations/", "text/html") is AssertionError


def test_the_api_uses_it(client_for):
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is ContentNegotiation
    response = client_for("tenant_admin").get("/api/v1/integrations/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    response = client_for("tenant_admin").get("/api/v1/integrations/")
    assert response["Content-Type"] == "application/json"
