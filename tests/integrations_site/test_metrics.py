"""/metrics: Prometheus text parsed with prometheus_client's own parser, each figure checked against rows.

The business figures are computed from the database at scrape time, so each
test sees exactly its own rows. The HTTP counters are this process's and only
grow: they are compared before and after.
"""
import re
from datetime import timedelta

import pytest
from django.urls import resolve
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from prometheus_client.parser import text_string_to_metric_families

from audit.services import SYSTEM, audit_record
from connections import services as connection_services
from connections.models import ConnectionCheck, Integration
from integrations_site.metrics import route_label, route_template
from tenants.choices import Role
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import TenantFactory
from webhooks import services as webhook_services
from webhooks.models import WebhookEndpoint, WebhookEvent


def scrape(client, **headers) -> dict[str, list]:
    """{sample name: [(labels, value), …]} of one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name, **labels) -> float:
    found = [v for lbl, v in samples.get(name, []) if all(lbl.get(k) == str(w) for k, w in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


def by_label(samples, name, label) -> dict[str, float]:
    return {lbl[label]: v for lbl, v in samples.get(name, [])}


def http_total(samples, route: str, method: str = "GET", status: str | None = None) -> float:
    return sum(v for lbl, v in samples.get("http_requests_total", [])
               if lbl["route"] == route and lbl["method"] == method and (status is None or lbl["status"] == status))


# --- business figures ------------------------------------------------------------------------------------------


def test_integrations_by_status_and_by_type_count_live_integrations(client, tenant, other_tenant):
    crm = ProviderFactory(slug="crm-x", category="crm")
    sms = ProviderFactory(slug="sms-x", category="sms_provider")
    IntegrationFactory(tenant=tenant, provider=crm, status="connected")
    IntegrationFactory(tenant=tenant, provider=crm, status="connected")
    IntegrationFactory(tenant=other_tenant, provider=crm, status="error")
    IntegrationFactory(tenant=tenant, provider=sms, status="pending")
    gone = IntegrationFactory(tenant=tenant, provider=sms, status="connected")
    Integration.objects.filter(pk=gone.pk).update(deleted_at=timezone.now())

    samples = scrape(client)
    assert by_label(samples, "integrations_by_status", "status") == {
        "pending": 1, "connected": 2, "error": 1, "disabled": 0,
    }
    assert by_label(samples, "integrations_by_type", "category") == {"crm": 3, "sms_provider": 1}
    assert "tenant" not in samples["integrations_by_status"][0][0]


def test_integrations_by_health_state_counts_live_integrations_with_every_state_present(client, tenant,
                                                                                       other_tenant, provider):
    for owner, state in [(tenant, "healthy"), (tenant, "healthy"), (other_tenant, "healthy"), (tenant, "unhealthy"),
                         (tenant, "unknown")]:
        IntegrationFactory(tenant=owner, provider=provider, health_state=state)
    gone = IntegrationFactory(tenant=tenant, provider=provider, health_state="degraded")
    Integration.objects.filter(pk=gone.pk).update(deleted_at=timezone.now())

    samples = scrape(client)
    assert by_label(samples, "integrations_by_health_state", "health_state") == {
        "unknown": 1, "healthy": 3, "degraded": 0, "unhealthy": 1,
    }
    assert all(set(lbl) == {"health_state"} for lbl, _ in samples["integrations_by_health_state"])


def test_webhook_endpoints_and_events_by_status(client, tenant, integration):
    endpoints = [webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                  data={"name": f"hook {n}", "signature_scheme": "hmac_sha256"})[0]
                 for n in range(4)]
    WebhookEndpoint.objects.filter(pk=endpoints[1].pk).update(active=False)
    WebhookEndpoint.objects.filter(pk=endpoints[2].pk).update(deleted_at=timezone.now())
    statuses = ["pending", "processed", "processed", "failed", "processed"]
    for n, status in enumerate(statuses):
        event, _ = webhook_services.event_accept(endpoint=endpoints[0], body=b"{}", headers={},
                                                 content_type="application/json", source_ip=None, dedupe_key=None)
        WebhookEvent.objects.filter(pk=event.pk).update(status=status)
        if n == 0:
            WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(hours=25))

    samples = scrape(client)
    assert value(samples, "webhook_endpoints_total") == 3
    assert value(samples, "webhook_endpoints_active") == 2
    assert by_label(samples, "webhook_events_total", "status") == {
        "pending": 1, "processing": 0, "processed": 3, "failed": 1,
    }
    assert value(samples, "webhook_events_last_24h") == 4


def test_after_an_integration_is_deleted_its_endpoints_count_in_total_but_not_in_active(client, tenant, integration):
    """Deleting an integration turns its endpoints off (active=False) without deleting them."""
    for n in range(2):
        webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                         data={"name": f"hook {n}", "signature_scheme": "hmac_sha256"})
    other = IntegrationFactory(tenant=tenant, provider=integration.provider, name="Other API")
    webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=other,
                                     data={"name": "kept", "signature_scheme": "hmac_sha256"})
    before = scrape(client)
    assert (value(before, "webhook_endpoints_total"), value(before, "webhook_endpoints_active")) == (3, 3)

    connection_services.integration_delete(actor=SYSTEM, integration=integration)
    after = scrape(client)
    assert (value(after, "webhook_endpoints_total"), value(after, "webhook_endpoints_active")) == (3, 1)


def test_webhook_processing_seconds_is_a_cumulative_histogram_of_received_to_processed(client, tenant, integration):
    endpoint, _ = webhook_services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                                   data={"name": "hook", "signature_scheme": "hmac_sha256"})
    now = timezone.now()
    took = [0.03, 0.3, 4, 100]
    for seconds in took:
        event, _ = webhook_services.event_accept(endpoint=endpoint, body=b"{}", headers={},
                                                 content_type="application/json", source_ip=None, dedupe_key=None)
        WebhookEvent.objects.filter(pk=event.pk).update(
            status="processed", received_at=now - timedelta(seconds=seconds), processed_at=now)
    pending, _ = webhook_services.event_accept(endpoint=endpoint, body=b"{}", headers={},
                                               content_type="application/json", source_ip=None, dedupe_key=None)

    samples = scrape(client)
    buckets = by_label(samples, "webhook_processing_seconds_bucket", "le")
    assert buckets["0.05"] == 1
    assert buckets["0.5"] == 2
    assert buckets["5.0"] == 3
    assert buckets["60.0"] == 3
    assert buckets["300.0"] == 4
    assert buckets["+Inf"] == 4
    counts = [buckets[k] for k in sorted(buckets, key=lambda b: float(b))]
    assert counts == sorted(counts)
    assert value(samples, "webhook_processing_seconds_count") == 4
    assert value(samples, "webhook_processing_seconds_sum") == pytest.approx(sum(took), abs=0.01)
    assert pending.status == "pending"


def test_connection_tests_and_health_checks_by_outcome(client, integration):
    def check(kind, success):
        ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, kind=kind, success=success)

    for kind, success in [("test", True), ("test", True), ("test", False), ("system", False), ("test", None),
                          ("health", True), ("health", False), ("health", False), ("health", None)]:
        check(kind, success)
    samples = scrape(client)
    assert by_label(samples, "connection_tests_total", "outcome") == {"success": 2, "failure": 2}
    assert by_label(samples, "health_checks_total", "outcome") == {"success": 1, "failure": 2}


def test_oauth_refresh_by_outcome_counts_the_refresh_audit_events(client, integration):
    for action in ("oauth.refreshed", "oauth.refreshed", "oauth.refreshed", "oauth.refresh_failed",
                   "oauth.connected", "integration.updated"):
        audit_record(actor=SYSTEM, action=action, target=integration)
    samples = scrape(client)
    assert by_label(samples, "oauth_refresh_total", "outcome") == {"success": 3, "failure": 1}


def test_an_empty_database_scrapes_zeros(client, db):
    samples = scrape(client)
    assert set(by_label(samples, "integrations_by_status", "status").values()) == {0}
    assert by_label(samples, "integrations_by_health_state", "health_state") == {
        "unknown": 0, "healthy": 0, "degraded": 0, "unhealthy": 0,
    }
    assert value(samples, "webhook_endpoints_total") == 0
    assert value(samples, "webhook_processing_seconds_count") == 0
    assert value(samples, "webhook_processing_seconds_sum") == 0
    assert by_label(samples, "oauth_refresh_total", "outcome") == {"success": 0, "failure": 0}


# --- per-tenant labels ----------------------------------------------------------------------------------------


def test_tenant_labels_when_enabled_and_the_tenant_count_is_within_the_bound(client, settings, tenant,
                                                                              other_tenant, provider):
    settings.METRICS_TENANT_LABELS = True
    settings.METRICS_TENANT_LABEL_LIMIT = 2
    IntegrationFactory(tenant=tenant, provider=provider, status="connected")
    IntegrationFactory(tenant=tenant, provider=provider, status="connected")
    IntegrationFactory(tenant=other_tenant, provider=provider, status="connected")
    IntegrationFactory(tenant=other_tenant, provider=provider, status="error")
    samples = scrape(client)
    labelled = {(lbl["status"], lbl["tenant"]): v for lbl, v in samples["integrations_by_status"]}
    assert labelled == {("connected", "acme"): 2, ("connected", "globex"): 1, ("error", "globex"): 1}


def test_tenant_labels_are_dropped_past_the_bound(client, settings, tenant, other_tenant, provider):
    settings.METRICS_TENANT_LABELS = True
    settings.METRICS_TENANT_LABEL_LIMIT = 2
    TenantFactory()
    IntegrationFactory(tenant=tenant, provider=provider, status="connected")
    samples = scrape(client)
    assert all(set(lbl) == {"status"} for lbl, _ in samples["integrations_by_status"])
    assert value(samples, "integrations_by_status", status="connected") == 1


# --- HTTP requests by route -------------------------------------------------------------------------------------


def test_http_requests_are_counted_by_route_template_method_and_status(client, client_for, integration):
    api = client_for(Role.MEMBER.value)
    before = scrape(client)
    for _ in range(3):
        assert api.get("/api/v1/integrations/").status_code == 200
    assert api.get(f"/api/v1/integrations/{integration.pk}/").status_code == 200
    assert api.post("/api/v1/integrations/", {}, format="json").status_code == 403
    after = scrape(client)

    list_route, detail_route = "/api/v1/integrations/", "/api/v1/integrations/{id}/"
    assert http_total(after, list_route, status="200") - http_total(before, list_route, status="200") == 3
    assert http_total(after, list_route, "POST", "403") - http_total(before, list_route, "POST", "403") == 1
    assert http_total(after, detail_route, status="200") - http_total(before, detail_route, status="200") == 1
    routes = {lbl["route"] for lbl, _ in after["http_requests_total"]}
    assert not any(str(integration.pk) in route for route in routes)  # ids never become labels
    assert not any(set(route) & set("^$?()[]\\") for route in routes)  # templates, not regexes
    durations = {lbl["route"]: v for lbl, v in after["http_request_duration_seconds_count"] if lbl["method"] == "GET"}
    earlier = {lbl["route"]: v for lbl, v in before.get("http_request_duration_seconds_count", [])
               if lbl["method"] == "GET"}
    assert durations[list_route] - earlier.get(list_route, 0) == 3


def test_an_action_with_or_without_its_trailing_slash_is_one_route(client, client_for, integration):
    api = client_for(Role.TENANT_ADMIN.value)
    route = "/api/v1/integrations/{id}/enable"
    before = http_total(scrape(client), route, "POST")
    for path in (f"/api/v1/integrations/{integration.pk}/enable", f"/api/v1/integrations/{integration.pk}/enable/"):
        assert api.post(path, {}, format="json").status_code < 500
    assert http_total(scrape(client), route, "POST") - before == 2


def test_the_webhook_receiver_route_is_its_template(client, db):
    before = http_total(scrape(client), "/hooks/{path}", "POST", "404")
    assert client.post("/hooks/no-such-endpoint", b"{}", content_type="application/json").status_code == 404
    assert http_total(scrape(client), "/hooks/{path}", "POST", "404") - before == 1


def test_every_api_route_label_is_its_path_in_the_openapi_document():
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "/api/v1/integrations/{id}/enable" in paths and "/api/v1/admin/providers/{slug}/test" in paths
    labels = {path: route_label(resolve(re.sub(r"\{\w+\}", "1", path))) for path in paths}
    assert {path: label for path, label in labels.items() if label != path} == {}


@pytest.mark.parametrize("route, template", [
    ("api/v1/integrations/$", "/api/v1/integrations/"),
    ("api/v1/integrations/(?P<pk>[^/.]+)/$", "/api/v1/integrations/{id}/"),
    ("api/v1/integrations/(?P<pk>[^/.]+)/enable/?$", "/api/v1/integrations/{id}/enable"),
    ("api/v1/integrations/(?P<integration_pk>[^/.]+)/versions/(?P<number>[0-9]+)/restore/?$",
     "/api/v1/integrations/{integration_pk}/versions/{number}/restore"),
    ("api/v1/admin/providers/(?P<slug>[^/.]+)/$", "/api/v1/admin/providers/{slug}/"),
    ("hooks/<str:path>", "/hooks/{path}"),
    ("admin/connections/integration/<path:object_id>/change/", "/admin/connections/integration/{object_id}/change/"),
    ("items/<uuid:pk>/file\\.json$", "/items/{id}/file.json"),
    ("metrics", "/metrics"),
])
def test_route_templates_from_resolver_routes(route, template):
    assert route_template(route) == template


def test_the_template_is_computed_once_per_route(client, db):
    client.get("/healthz")
    misses = route_template.cache_info().misses
    for _ in range(5):
        client.get("/healthz")
        client.get("/no/such/page")
    assert route_template.cache_info().misses == misses


@pytest.mark.parametrize("path", ["/no/such/page", "/api/v1/no-such-collection/", "/admin/no/such/admin/page/"])
def test_a_path_that_matches_no_route_is_counted_as_unmatched(client, admin_user, path):
    client.force_login(admin_user)
    before = http_total(scrape(client), "unmatched", status="404")
    assert client.get(path).status_code == 404
    assert http_total(scrape(client), "unmatched", status="404") - before == 1


# --- protection -------------------------------------------------------------------------------------------------


def test_without_a_token_setting_metrics_are_open(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


def test_with_a_token_setting_metrics_need_the_bearer_token(client, db, settings):
    settings.METRICS_TOKEN = "scrape-token-0123456789"
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "scrape-token-0123456789"},
                    {"HTTP_AUTHORIZATION": "Bearer scrape-token-01234567890"}):
        refused = client.get("/metrics", **headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "NOT_AUTHENTICATED"
        assert refused["WWW-Authenticate"] == "Bearer"
        assert b"integrations_by_status" not in refused.content
    samples = scrape(client, HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")
    assert "integrations_by_status" in samples
