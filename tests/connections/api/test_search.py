"""Search across connected systems (DESIGN.md, "Search"), against real local HTTP servers as upstreams."""
import json
import time
import uuid

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from audit.services import SYSTEM
from connections.models import Integration
from connections.services import credential_set
from tenants.choices import Role
from tests.catalog.factories import ProviderFactory
from tests.conftest import make_user, token_client
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_error

SEARCH = "/api/v1/search"
URL = "/api/v1/integrations/"
TOKEN = "tok_search_secret_0001"


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def upstream():
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def api(client_for):
    return client_for(Role.TENANT_ADMIN.value)


@pytest.fixture
def searchy(db):
    return ProviderFactory(slug="searchy", name="Searchy", auth_type="bearer", supports_search=True,
                           search_config={"items_path": "data.hits", "total_path": "data.total",
                                          "fields": {"title": "props.name", "snippet": "props.summary"}})


def searchable(tenant, provider, server, name: str, *, base: str | None = None, token: str = TOKEN, **fields):
    integration = IntegrationFactory(tenant=tenant, provider=provider, name=name, search_enabled=True,
                                     api_base_url=server.url_for(base or f"/{name}").rstrip("/"), retry_count=0,
                                     timeout_seconds=fields.pop("timeout_seconds", 5), **fields)
    if token:
        credential_set(actor=SYSTEM, integration=integration, credential_type="bearer", data={"token": token})
    return integration


def hits(*items, total=None):
    return {"data": {"hits": list(items), "total": len(items) if total is None else total}}


def hit(n: int, **extra):
    return {"id": f"h{n}", "type": "contact", "props": {"name": f"Hit {n}", "summary": f"about {n}"},
            "url": f"https://x.example.com/{n}", "score": extra.pop("score", 1.0),
            "updated_at": extra.pop("updated_at", f"2026-01-0{n % 9 + 1}T00:00:00Z"), **extra}


def test_mapping_with_defaults_and_overrides_and_what_the_upstream_received(api, tenant, searchy, upstream,
                                                                           settings):
    seen = []

    def answer(request):
        seen.append({"args": dict(request.args), "auth": request.headers.get("Authorization")})
        found = hits(hit(1, score=0.5), hit(2, score=0.9), hit(3, score=0.1, big="x" * 6000), total=7)
        return Response(json.dumps(found), content_type="application/json")

    upstream.expect_request("/crm/find").respond_with_handler(answer)
    integration = searchable(tenant, searchy, upstream, "crm", settings={"search": {
        "endpoint": "/find", "query_param": "term", "fields": {"url": ""}}})
    response = api.get(f"{URL}{integration.pk}/search?query=acme&entities=contact,deal&limit=3")
    assert response.status_code == 200, response.content
    body = response.json()
    assert seen == [{"args": {"term": "acme", "limit": "3", "type": "contact,deal"}, "auth": f"Bearer {TOKEN}"}]
    assert [item["id"] for item in body["results"]] == ["h2", "h1", "h3"]  # score, highest first
    first = body["results"][0]
    assert first == {
        "integration_id": str(integration.pk), "integration_name": "crm", "provider": "searchy", "entity": "contact",
        "id": "h2", "title": "Hit 2", "snippet": "about 2", "url": None, "score": 0.9,
        "updated_at": "2026-01-03T00:00:00Z", "data": hit(2, score=0.9),
    }
    big = body["results"][2]["data"]
    assert len(json.dumps(big).encode()) <= 4096 and big["truncated"] is True and big["id"] == "h3"
    assert body["total"] == 7 and body["has_more"] is True and body["errors"] == {}
    assert isinstance(body["took"], int) and body["took"] >= 0
    assert response["X-RateLimit-Limit"] == settings.API_RATE_LIMITS["search"].split("/")[0]


def test_three_slow_upstreams_are_asked_at_once(api, tenant, searchy, upstream):
    def slow(request):
        time.sleep(1.5)
        return Response(json.dumps(hits(hit(len(request.path)))), content_type="application/json")

    integrations = []
    for name in ("one", "two", "three"):
        upstream.expect_request(f"/{name}/search").respond_with_handler(slow)
        integrations.append(searchable(tenant, searchy, upstream, name))
    started = time.monotonic()
    response = api.post(SEARCH, {"query": "acme"}, format="json")
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.content
    body = response.json()
    assert elapsed < 3.5, elapsed  # one after the other would take 4.5 s
    assert set(body["by_integration"]) == {str(i.pk) for i in integrations} and body["errors"] == {}
    assert len(body["results"]) == 3 and set(body["by_entity"]) == {"contact"}


def test_an_upstream_past_the_deadline_is_a_timeout_and_the_others_answer(api, tenant, searchy, upstream, settings):
    settings.SEARCH_DEADLINE_SECONDS = 2

    def stuck(request):
        time.sleep(10)
        return Response("{}", content_type="application/json")

    upstream.expect_request("/stuck/search").respond_with_handler(stuck)
    upstream.expect_request("/quick/search").respond_with_json(hits(hit(1)))
    stuck_one = searchable(tenant, searchy, upstream, "stuck", timeout_seconds=30)
    quick = searchable(tenant, searchy, upstream, "quick")
    started = time.monotonic()
    body = api.post(SEARCH, {"query": "acme"}, format="json").json()
    assert time.monotonic() - started < 4
    assert body["errors"][str(stuck_one.pk)]["code"] == "TIMEOUT"
    assert [item["integration_id"] for item in body["results"]] == [str(quick.pk)]


def test_each_failure_is_its_code_in_errors_and_the_answer_is_still_200(api, tenant, searchy, upstream):
    upstream.expect_request("/refused/search").respond_with_data("no", status=401)
    upstream.expect_request("/broken/search").respond_with_data("oops", status=500)
    upstream.expect_request("/notjson/search").respond_with_data("<html>", status=200)
    refused = searchable(tenant, searchy, upstream, "refused")
    broken = searchable(tenant, searchy, upstream, "broken")
    not_json = searchable(tenant, searchy, upstream, "notjson")
    private = IntegrationFactory(tenant=tenant, provider=searchy, name="private", search_enabled=True,
                                 api_base_url="http://10.1.2.3", retry_count=0, timeout_seconds=2)
    credential_set(actor=SYSTEM, integration=private, credential_type="bearer", data={"token": TOKEN})
    import socket

    with socket.socket() as closed:  # a port nothing listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refusing = IntegrationFactory(tenant=tenant, provider=searchy, name="refusing", search_enabled=True,
                                  api_base_url=f"http://127.0.0.1:{port}", retry_count=0, timeout_seconds=2)
    credential_set(actor=SYSTEM, integration=refusing, credential_type="bearer", data={"token": TOKEN})
    response = api.post(SEARCH, {"query": "acme"}, format="json")
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert {k: v["code"] for k, v in errors.items()} == {
        str(refused.pk): "INVALID_CREDENTIALS", str(broken.pk): "UNEXPECTED_STATUS",
        str(not_json.pk): "UNEXPECTED_STATUS", str(private.pk): "URL_NOT_ALLOWED",
        str(refusing.pk): "CONNECTION_FAILED"}
    assert all(error["message"] for error in errors.values())
    assert TOKEN not in response.content.decode()


def test_ids_that_are_not_searchable_or_not_ours_get_not_searchable_and_no_request(
    api, tenant, other_tenant, searchy, upstream
):
    upstream.expect_request("/mine/search").respond_with_json(hits(hit(1)))
    mine = searchable(tenant, searchy, upstream, "mine")
    theirs = searchable(other_tenant, searchy, upstream, "theirs")
    disabled = searchable(tenant, searchy, upstream, "disabled", status="disabled")
    off = searchable(tenant, searchy, upstream, "off")
    Integration.objects.filter(pk=off.pk).update(search_enabled=False)
    no_credential = searchable(tenant, searchy, upstream, "nocred", token="")
    named = [mine, theirs, disabled, off, no_credential]
    missing = uuid.uuid4()
    body = api.post(SEARCH, {"query": "acme", "integrations": [str(i.pk) for i in named] + [str(missing)]},
                    format="json").json()
    assert {k: v["code"] for k, v in body["errors"].items()} == {
        str(i.pk): "NOT_SEARCHABLE" for i in [theirs, disabled, off, no_credential]} | {str(missing): "NOT_SEARCHABLE"}
    assert [item["integration_id"] for item in body["results"]] == [str(mine.pk)]
    assert [entry[0].path for entry in upstream.log] == ["/mine/search"]
    assert api.get(f"{URL}{theirs.pk}/search?query=acme").status_code == 404


def test_a_user_scoped_integration_is_searched_with_the_callers_own_connection_only(tenant, searchy, upstream):
    seen = []

    def answer(request):
        seen.append(request.headers.get("Authorization"))
        return Response(json.dumps(hits(hit(1))), content_type="application/json")

    upstream.expect_request("/personal/search").respond_with_handler(answer)
    integration = searchable(tenant, searchy, upstream, "personal", token="", user_scoped=True)
    alice, bob = make_user(Role.MEMBER.value, tenant, "alice"), make_user(Role.MEMBER.value, tenant, "bob")
    credential_set(actor=SYSTEM, integration=integration, credential_type="bearer", data={"token": "alice-token"},
                   user=alice)
    as_alice, as_bob = token_client(alice, tenant), token_client(bob, tenant)
    assert as_alice.post(SEARCH, {"query": "acme"}, format="json").json()["errors"] == {}
    bob_body = as_bob.post(SEARCH, {"query": "acme", "integrations": [str(integration.pk)]}, format="json").json()
    assert bob_body["errors"][str(integration.pk)]["code"] == "NOT_SEARCHABLE" and bob_body["results"] == []
    assert seen == ["Bearer alice-token"]


@pytest.mark.parametrize(("body", "field"), [
    ({"query": ""}, "query"),
    ({"query": "x" * 257}, "query"),
    ({}, "query"),
    ({"query": "a", "limit": 51}, "limit"),
    ({"query": "a", "limit": 0}, "limit"),
    ({"query": "a", "offset": -1}, "offset"),
    ({"query": "a", "integrations": ["not-a-uuid"]}, "integrations"),
    ({"query": "a", "colour": "red"}, "colour"),
    ({"query": "a", "filters": {"sort": "x"}}, "filters"),
    ({"query": "a", "filters": {"date_range": {"start": "yesterday"}}}, "filters"),
    ({"query": "a", "entities": ["no spaces"]}, "entities"),
])
def test_bad_global_search_input_is_400_naming_the_field(api, body, field):
    error = assert_error(api.post(SEARCH, body, format="json"), 400, "VALIDATION_ERROR")
    assert field in error["details"]


@pytest.mark.parametrize(("query", "field"), [
    ("", "query"), ("?query=", "query"), ("?query=a&limit=51", "limit"), ("?query=a&limit=abc", "limit"),
    ("?query=a&offset=-2", "offset"),
])
def test_bad_integration_search_input_is_400_naming_the_field(api, integration, query, field):
    error = assert_error(api.get(f"{URL}{integration.pk}/search{query}"), 400, "VALIDATION_ERROR")
    assert field in error["details"]


def test_date_range_and_custom_filters(api, tenant, searchy, upstream):
    seen = []

    def answer(request):
        seen.append(dict(request.args))
        return Response(json.dumps(hits(hit(1, updated_at="2026-01-01T00:00:00Z"),
                                         hit(2, updated_at="2026-03-01T00:00:00Z"), hit(3, updated_at=None))),
                        content_type="application/json")

    upstream.expect_request("/f/search").respond_with_handler(answer)
    searchable(tenant, searchy, upstream, "f")
    body = api.post(SEARCH, {"query": "acme", "filters": {
        "date_range": {"start": "2026-02-01T00:00:00Z"}, "entity_types": ["contact"],
        "custom_filters": {"owner": "me"}}}, format="json").json()
    assert [item["id"] for item in body["results"]] == ["h2"]
    assert seen == [{"owner": "me", "q": "acme", "limit": "10", "type": "contact"}]


@pytest.mark.parametrize("role", [Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value])
def test_every_tenant_role_may_search_and_anonymous_may_not(client_for, role, db):
    assert client_for(role).post(SEARCH, {"query": "acme"}, format="json").status_code == 200
    assert client_for("anonymous").post(SEARCH, {"query": "acme"}, format="json").status_code == 401


def test_the_search_family_is_rate_limited_per_tenant(api, settings):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "search": "2/min"}
    from tests.integrations_site.test_throttles import fresh_window

    fresh_window()
    answers = [api.post(SEARCH, {"query": "acme"}, format="json") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert_error(answers[2], 429, "RATE_LIMIT_EXCEEDED")


def test_searches_and_upstream_errors_are_counted_in_metrics(api, client, tenant, searchy, upstream):
    from tests.integrations_site.test_metrics import scrape

    def value(samples, name, **labels):  # 0 before a first sample
        return sum(v for lbl, v in samples.get(name, []) if all(lbl.get(k) == w for k, w in labels.items()))

    upstream.expect_request("/ok/search").respond_with_json(hits(hit(1)))
    upstream.expect_request("/bad/search").respond_with_data("oops", status=500)
    searchable(tenant, searchy, upstream, "ok")
    before = scrape(client)
    assert api.post(SEARCH, {"query": "acme"}, format="json").json()["errors"] == {}
    searchable(tenant, searchy, upstream, "bad")
    assert api.post(SEARCH, {"query": "acme"}, format="json").status_code == 200
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("search_requests_total", outcome="ok") == 1 and grew("search_requests_total", outcome="partial") == 1
    assert grew("search_upstream_errors_total", code="UNEXPECTED_STATUS") == 1
    assert grew("search_upstream_seconds_count") == 3


# --- widget data ----------------------------------------------------------------------------------------------

ENTITIES = {"Account": {"endpoint": "/accounts", "items_path": "data", "total_path": "meta.total",
                        "fields": ["id", "name", "owner.email"], "filter_params": ["status", "region"]}}


@pytest.fixture
def widgety(db):
    return ProviderFactory(slug="widgety", name="Widgety", auth_type="bearer", entity_config=ENTITIES)


def widget_url(integration, **params):
    from urllib.parse import urlencode

    return f"{URL}{integration.pk}/widgets/data?{urlencode(params)}"


def accounts(n: int):
    return {"data": [{"id": f"a{k}", "name": f"Account {k}", "owner": {"email": f"o{k}@x.example.com"},
                      "secret_note": "not for widgets"} for k in range(n)], "meta": {"total": 42}}


def test_widget_data_passes_declared_fields_and_filters_only_and_is_cached(api, tenant, widgety, upstream, settings):
    settings.WIDGET_DATA_CACHE_SECONDS = 30
    seen = []

    def answer(request):
        seen.append((dict(request.args), request.headers.get("Authorization")))
        return Response(json.dumps(accounts(3)), content_type="application/json")

    upstream.expect_request("/w/accounts").respond_with_handler(answer)
    integration = searchable(tenant, widgety, upstream, "w")
    url = widget_url(integration, entity="Account", fields="id,owner.email", filters='{"status": "open"}', limit=2)
    first = api.get(url)
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["data"] == [{"id": "a0", "owner.email": "o0@x.example.com"},
                            {"id": "a1", "owner.email": "o1@x.example.com"}]
    assert body["total"] == 42 and body["entity"] == "Account" and body["cached"] is False and body["fetched_at"]
    assert seen == [({"status": "open", "limit": "2"}, f"Bearer {TOKEN}")]
    again = api.get(url).json()
    assert again["cached"] is True and again["data"] == body["data"] and len(seen) == 1
    other = api.get(widget_url(integration, entity="Account", limit=1)).json()  # another query: asked again
    assert other["data"] == [{"id": "a0", "name": "Account 0", "owner.email": "o0@x.example.com"}] and len(seen) == 2


@pytest.mark.parametrize(("params", "field"), [
    ({}, "entity"),
    ({"entity": "Invoice"}, "entity"),
    ({"entity": "Account", "fields": "id,secret_note"}, "fields"),
    ({"entity": "Account", "filters": '{"owner": "me"}'}, "filters"),
    ({"entity": "Account", "filters": "[1]"}, "filters"),
    ({"entity": "Account", "filters": "not json"}, "filters"),
    ({"entity": "Account", "filters": '{"status": {"in": [1]}}'}, "filters"),
    ({"entity": "Account", "limit": 101}, "limit"),
    ({"entity": "Account", "limit": 0}, "limit"),
])
def test_bad_widget_data_input_is_400_naming_the_field(api, tenant, widgety, upstream, params, field):
    integration = searchable(tenant, widgety, upstream, "w")
    error = assert_error(api.get(widget_url(integration, **params)), 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert upstream.log == []


def test_widget_data_upstream_failures_are_502_and_another_tenants_integration_is_404(
    api, tenant, other_tenant, widgety, upstream, settings
):
    settings.WIDGET_DATA_CACHE_SECONDS = 30
    upstream.expect_request("/down/accounts").respond_with_data("oops", status=500)
    upstream.expect_request("/denied/accounts").respond_with_data("no", status=401)
    down, denied = searchable(tenant, widgety, upstream, "down"), searchable(tenant, widgety, upstream, "denied")
    assert_error(api.get(widget_url(down, entity="Account")), 502, "CONNECTION_FAILED")
    assert_error(api.get(widget_url(denied, entity="Account")), 502, "INVALID_CREDENTIALS")
    assert_error(api.get(widget_url(down, entity="Account")), 502, "CONNECTION_FAILED")  # a failure is not cached
    assert len([entry for entry in upstream.log if entry[0].path == "/down/accounts"]) == 2
    theirs = searchable(other_tenant, widgety, upstream, "theirs")
    assert api.get(widget_url(theirs, entity="Account")).status_code == 404


def test_an_integration_past_its_hard_limit_is_skipped_with_limit_exceeded_and_searches_are_counted(
    api, tenant, searchy, upstream
):
    from connections.services import usage

    upstream.expect_request("/capped/search").respond_with_json(hits(hit(1)))
    upstream.expect_request("/counted/search").respond_with_json(hits(hit(2)))
    capped = searchable(tenant, searchy, upstream, "capped", limit_requests_per_minute=1)
    counted = searchable(tenant, searchy, upstream, "counted")
    first = api.post(SEARCH, {"query": "acme"}, format="json").json()
    assert first["errors"] == {} and len(first["results"]) == 2
    second = api.post(SEARCH, {"query": "acme"}, format="json").json()
    assert second["errors"][str(capped.pk)]["code"] == "LIMIT_EXCEEDED"
    assert [item["integration_id"] for item in second["results"]] == [str(counted.pk)]
    assert [entry[0].path for entry in upstream.log].count("/capped/search") == 1
    usage.flush()
    assert usage.requests_this_minute(counted) == 2


def test_a_provider_adapter_in_the_registry_replaces_the_generic_mapping(api, tenant, upstream):
    """GitHub's search API (pages, total_count, html_url) through its registered adapter, not search_config."""
    seen = []

    def answer(request):
        seen.append((request.path, dict(request.args)))
        return Response(json.dumps({"total_count": 31, "items": [
            {"id": 7, "title": "Crash on start", "body": "It crashes", "html_url": "https://github.com/o/r/issues/7",
             "updated_at": "2026-02-01T00:00:00Z", "score": 3.5}]}), content_type="application/json")

    upstream.expect_request("/gh/search/issues").respond_with_handler(answer)
    github = ProviderFactory(slug="github", name="GitHub", auth_type="bearer", supports_search=True,
                             search_config={"endpoint": "/ignored", "items_path": "nope"})
    integration = searchable(tenant, github, upstream, "gh")
    body = api.get(f"{URL}{integration.pk}/search?query=crash&limit=10&offset=20&entities=issues").json()
    assert seen == [("/gh/search/issues", {"q": "crash", "per_page": "10", "page": "3"})]
    assert body["errors"] == {} and body["total"] == 31 and body["has_more"] is True  # 21 of 31 seen
    item = body["results"][0]
    assert (item["id"], item["title"], item["url"], item["entity"], item["score"]) == (
        "7", "Crash on start", "https://github.com/o/r/issues/7", "issues", 3.5)


@pytest.mark.parametrize("override", [
    {"verb": "GET"}, {"endpoint": "https://elsewhere.example.com/s"}, {"fields": {"headline": "x"}}, "not an object",
])
def test_an_integrations_search_override_is_validated_on_write(api, integration, override):
    error = assert_error(api.patch(f"{URL}{integration.pk}/", {"settings": {"search": override}}, format="json"),
                         400, "VALIDATION_ERROR")
    assert "settings" in error["details"]
    assert "search" not in (Integration.objects.get(pk=integration.pk).settings or {})


def test_a_valid_search_override_is_kept(api, integration):
    answer = api.patch(f"{URL}{integration.pk}/", {"settings": {"search": {"query_param": "term"}}}, format="json")
    assert answer.status_code == 200, answer.content
    assert Integration.objects.get(pk=integration.pk).settings["search"] == {"query_param": "term"}
