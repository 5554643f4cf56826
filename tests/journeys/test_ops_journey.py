"""Issue 6: an operator's view of one scripted journey.

A tenant admin creates integrations over the API, sets credentials, tests
them against a local HTTP server, creates a webhook endpoint, deliveries
arrive and are processed, and an OAuth2 connection is made, refreshed and
fails to refresh against a local authorization server. Then:

- ``/metrics`` (parsed with prometheus_client's parser) agrees with the database;
- every log line of the journey (all levels, JSON formatted) holds no secret;
- ``/usage`` shows the counted webhooks and requests.
"""
import json
import logging
import uuid
from dataclasses import dataclass, field

import pytest
from django.db.models import Count
from prometheus_client.parser import text_string_to_metric_families

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Credential, Integration, UsageDaily
from connections.services import usage
from tenants.choices import Role
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.connections.oauth_server import CLIENT_SECRET, OAuthServer, connect
from tests.helpers import JsonLines, celery_broker
from tests.webhooks.signing import signed_headers
from webhooks import services as webhook_services
from webhooks.models import WebhookEndpoint, WebhookEvent

BEARER = "tok_ops_journey_live_0123456789abcdef"


@dataclass
class Journey:
    good: Integration
    bad: Integration
    crm: Integration
    endpoint: WebhookEndpoint
    secrets: set = field(default_factory=set)
    test_answers: list = field(default_factory=list)


@pytest.fixture
def oauth_server():
    server = OAuthServer(client_secret=CLIENT_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def json_lines(caplog):
    """Every record at every level, as JSON lines formatted where it was logged; caplog sees them too."""
    caplog.set_level(logging.DEBUG)
    handler = JsonLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture
def journey(client_for, tenant, provider, oauth_server, httpserver, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.WEBHOOK_HANDOFF = "immediate"
    usage.batcher.take()
    httpserver.expect_request("/ok").respond_with_json({"ok": True, "items": [1, 2]},
                                                       headers={"X-Usage-Tokens": "30", "X-Usage-Cost": "0.02"})
    httpserver.expect_request("/fail").respond_with_data("down", status=500)
    far = httpserver.url_for("/").rstrip("/")
    api = client_for(Role.TENANT_ADMIN.value)

    with celery_broker("memory://"):  # hand-offs stay in this process; the events are processed below
        def create(name, endpoint):
            made = api.post("/api/v1/integrations/", {
                "provider": provider.slug, "name": name, "api_base_url": far, "test_endpoint": endpoint,
                "retry_count": 0, "update_method": "webhook",
            }, format="json")
            assert made.status_code == 201, made.content
            return Integration.objects.get(pk=made.json()["id"])

        good, bad = create("Good API", "/ok"), create("Bad API", "/fail")
        put = api.put(f"/api/v1/integrations/{good.pk}/credentials", {"type": "bearer", "token": BEARER},
                      format="json")
        assert put.status_code == 200, put.content

        answers = []
        for integration in (good, bad):
            tested = api.post(f"/api/v1/integrations/{integration.pk}/test")
            assert tested.status_code == 200, tested.content
            answers.append(tested.json())
        assert [a["success"] for a in answers] == [True, False]

        hook = api.post("/api/v1/webhooks/", {"integration": str(good.pk), "name": "Orders",
                                              "signature_scheme": "hmac_sha256"}, format="json")
        assert hook.status_code == 201, hook.content
        endpoint = WebhookEndpoint.objects.get(pk=hook.json()["id"])
        secret = hook.json()["secret"]
        event_ids = []
        for n in range(3):
            body = json.dumps({"id": f"ord-{n}-{uuid.uuid4().hex}", "status": "open"}).encode()
            received = api.post(endpoint.url_path, body, content_type="application/json",
                                headers=signed_headers("hmac_sha256", secret, body))
            assert received.status_code == 202, received.content
            event_ids.append(received.json()["event_id"])
        forged = api.post(endpoint.url_path, b'{"id": "x"}', content_type="application/json",
                          headers={"X-Signature": "00" * 32})
        assert forged.status_code == 401
        for event_id in event_ids[:2]:
            assert webhook_services.event_process(event_id=event_id) == "processed"

        # OAuth2: connect through the API, then a refresh that works and one the provider refuses.
        oauth_provider = ProviderFactory(slug="crm-ops", name="CRM", category="crm", auth_type="oauth2",
                                         oauth_client_secret=CLIENT_SECRET, oauth_config=oauth_server.oauth_config())
        tenant.allowed_return_hosts = ["app.example.com"]
        tenant.save()
        crm = IntegrationFactory(tenant=tenant, provider=oauth_provider, name="CRM", api_base_url=oauth_server.base_url,
                                 test_endpoint="/api/ping", retry_count=0)
        connected = connect(api, crm, oauth_server)
        assert connected.status_code == 302 and "status=connected" in connected["Location"]
        oauth_server.expire_access_tokens()
        refreshed = api.post(f"/api/v1/integrations/{crm.pk}/test")
        assert refreshed.json()["success"] is True, refreshed.content
        oauth_server.revoke_refresh_tokens()
        oauth_server.expire_access_tokens()
        refused = api.post(f"/api/v1/integrations/{crm.pk}/test")
        assert refused.json()["success"] is False, refused.content

    secrets = {BEARER, secret, CLIENT_SECRET, *oauth_server.access_tokens, *oauth_server.refresh_tokens,
               *oauth_server.codes}
    return Journey(good=good, bad=bad, crm=crm, endpoint=endpoint, secrets=secrets, test_answers=answers)


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def labelled(samples, name, label) -> dict[str, float]:
    return {lbl[label]: v for lbl, v in samples.get(name, [])}


def single(samples, name) -> float:
    [(_, value)] = samples[name]
    return value


def test_metrics_agree_with_the_database_after_the_journey(client, journey):
    samples = scrape(client)

    live = Integration.objects.live()
    statuses = dict(live.values_list("status").annotate(n=Count("id")).order_by())
    assert labelled(samples, "integrations_by_status", "status") == {
        s: statuses.get(s, 0) for s in ("pending", "connected", "error", "disabled")}
    assert statuses == {"connected": 1, "error": 2}  # good; bad failed its test; crm lost its refresh token
    types = dict(live.values_list("provider__category").annotate(n=Count("id")).order_by())
    assert labelled(samples, "integrations_by_type", "category") == types
    assert sum(types.values()) == 3

    assert single(samples, "webhook_endpoints_total") == WebhookEndpoint.objects.live().count() == 1
    assert single(samples, "webhook_endpoints_active") == 1
    events = dict(WebhookEvent.objects.values_list("status").annotate(n=Count("id")).order_by())
    assert events == {"processed": 2, "pending": 1}  # the forged delivery was never stored
    assert labelled(samples, "webhook_events_total", "status") == {
        "pending": 1, "processing": 0, "processed": 2, "failed": 0}
    assert single(samples, "webhook_events_last_24h") == 3
    assert single(samples, "webhook_processing_seconds_count") == 2
    assert labelled(samples, "webhook_processing_seconds_bucket", "le")["+Inf"] == 2

    done = ConnectionCheck.objects.filter(kind="test", success__isnull=False)
    assert labelled(samples, "connection_tests_total", "outcome") == {
        "success": done.filter(success=True).count(), "failure": done.filter(success=False).count()}
    assert labelled(samples, "connection_tests_total", "outcome") == {"success": 2, "failure": 2}
    assert labelled(samples, "health_checks_total", "outcome") == {"success": 0, "failure": 0}

    refreshes = AuditEvent.objects.filter(action__in=("oauth.refreshed", "oauth.refresh_failed"))
    assert labelled(samples, "oauth_refresh_total", "outcome") == {
        "success": refreshes.filter(action="oauth.refreshed").count(),
        "failure": refreshes.filter(action="oauth.refresh_failed").count(),
    } == {"success": 1, "failure": 1}

    def requests(route_test, status: str) -> float:
        return sum(v for lbl, v in samples["http_requests_total"]
                   if lbl["method"] == "POST" and route_test(lbl["route"]) and lbl["status"] == status)

    def integration_test(route: str) -> bool:
        return route == "/api/v1/integrations/{id}/test"

    # This process's counters (every test of the run adds to them): this journey's calls at least.
    assert requests(integration_test, "200") >= 4
    assert requests(lambda route: route == "/hooks/{path}", "202") >= 3
    assert requests(lambda route: route == "/hooks/{path}", "401") >= 1


def test_usage_counts_the_journeys_requests_and_webhooks(client_for, journey):
    usage.flush()
    good = UsageDaily.objects.get(integration=journey.good)
    assert (good.requests, good.errors, good.webhooks, good.tokens) == (1, 0, 3, 30)
    bad = UsageDaily.objects.get(integration=journey.bad)
    assert (bad.requests, bad.errors) == (1, 1)
    days = client_for(Role.MEMBER.value).get(f"/api/v1/integrations/{journey.good.pk}/usage").json()["days"]
    assert [(d["requests"], d["webhooks"], d["tokens"]) for d in days] == [(1, 3, 30)]


def test_no_secret_reaches_any_log_line_of_the_journey(json_lines, caplog, client_for, tenant, provider,
                                                      oauth_server, httpserver, settings, request):
    journey = request.getfixturevalue("journey")
    lines = json_lines.lines
    assert lines, "the journey logged nothing at all"
    objects = json_lines.objects()  # every line is one JSON object
    events = {o["event"] for o in objects}
    assert "connections.oauth.refreshed" in events and "connections.oauth.refresh_failed" in events
    refreshed = next(o for o in objects if o["event"] == "connections.oauth.refreshed")
    assert refreshed["integration"] == str(journey.crm.pk)
    assert refreshed["request_id"] not in ("", "-")

    everything = "\n".join(lines) + "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert all(len(s) >= 6 for s in journey.secrets)
    leaked = sorted(s[:4] + "…" for s in journey.secrets if s in everything)
    assert not leaked, f"secrets in log lines: {leaked}"
    # The stored credentials really are those secrets (so the search above looked for the right values).
    stored = Credential.objects.get(integration=journey.good, user__isnull=True).payload
    assert stored["token"] == BEARER
