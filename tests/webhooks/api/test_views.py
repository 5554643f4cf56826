"""The webhooks API: endpoints CRUD with the role matrix, secrets shown once, rotation, and received events."""
import base64
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.models import AuditEvent
from audit.services import SYSTEM
from tenants.choices import SUPER_ADMIN, Role
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_error, raw_value
from webhooks import services
from webhooks.models import WebhookEndpoint, WebhookEvent

pytestmark = pytest.mark.usefixtures("queued")

URL = "/api/v1/webhooks/"
EVENTS = "/api/v1/webhook-events/"
TA, IM, MB = Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value
URLSAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture
def api(client_for):
    return client_for(TA)


def create(api, integration, **fields):
    return api.post(URL, {"integration": str(integration.pk), "name": "Orders", **fields}, format="json")


# --- create ----------------------------------------------------------------------------------------------------


def test_create_answers_the_secret_once_uncacheable_and_audits_without_it(api, integration):
    response = create(api, integration, signature_scheme="github", description="orders")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert body["secret"] == endpoint.secret and len(body["secret"]) >= 32
    assert body["url"] == f"/hooks/{endpoint.path}" and body["integration"] == str(integration.pk)
    assert (body["tolerance_seconds"], body["max_body_bytes"], body["dedupe"], body["active"]) == (
        300, 1024 * 1024, True, True)
    stored = raw_value(WebhookEndpoint, "secret", endpoint.pk)
    assert body["secret"] not in stored  # encrypted at rest
    audit = AuditEvent.objects.get(action="webhook_endpoint.created")
    assert body["secret"] not in json.dumps(audit.changes)


def test_the_secret_is_never_in_list_detail_or_patch_answers(api, client_for, integration):
    created = create(api, integration).json()
    for client in (api, client_for(MB)):
        for response in (client.get(URL), client.get(f"{URL}{created['id']}/")):
            assert response.status_code == 200
            assert "secret" not in (response.json()["results"][0] if "results" in response.json()
                                    else response.json())
            assert created["secret"] not in response.content.decode()
    patched = api.patch(f"{URL}{created['id']}/", {"name": "Renamed"}, format="json")
    assert patched.status_code == 200 and "secret" not in patched.json()
    assert patched.get("Cache-Control", "") != "no-store"


def test_a_generated_path_has_128_random_bits_and_is_unique(api, integration):
    paths = [create(api, integration, name=f"n{i}").json()["path"] for i in range(20)]
    assert all(len(path) >= 22 and URLSAFE.match(path) for path in paths)
    assert len(set(paths)) == 20


def test_a_custom_path_is_kept_and_a_taken_one_is_a_conflict(api, integration):
    assert create(api, integration, path="orders-inbound").json()["url"] == "/hooks/orders-inbound"
    assert_error(create(api, integration, name="Two", path="orders-inbound"), 409, "CONFLICT")
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize("path", ["short", "has space here", "slash/inside", "ünïcode-path", "x" * 101])
def test_a_path_that_is_not_url_safe_is_refused(api, integration, path):
    assert_error(create(api, integration, path=path), 400, "VALIDATION_ERROR")


def test_a_generated_standard_webhooks_secret_is_whsec_and_base64_of_24_to_64_bytes(api, integration):
    secret = create(api, integration, signature_scheme="standard_webhooks").json()["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret[6:], validate=True)) <= 64


def test_a_generated_stripe_secret_is_whsec_prefixed(api, integration):
    assert create(api, integration, signature_scheme="stripe").json()["secret"].startswith("whsec_")


@pytest.mark.parametrize("secret", [
    "whsec_not base64!!",
    "whsec_" + base64.b64encode(b"x" * 16).decode(),
    "whsec_" + base64.b64encode(b"x" * 65).decode(),
])
def test_a_bad_custom_standard_webhooks_secret_is_refused(api, integration, secret):
    error = assert_error(create(api, integration, signature_scheme="standard_webhooks", secret=secret),
                         400, "VALIDATION_ERROR")
    assert "secret" in error["details"]


def test_a_custom_secret_is_checked_against_the_providers_default_scheme(api, tenant):
    provider = ProviderFactory(default_webhook_signature_scheme="standard_webhooks")
    integration = IntegrationFactory(tenant=tenant, provider=provider)
    error = assert_error(create(api, integration, secret="a-plain-secret-that-is-long"), 400, "VALIDATION_ERROR")
    assert "secret" in error["details"]
    good = "whsec_" + base64.b64encode(b"k" * 32).decode()
    created = create(api, integration, secret=good)
    assert created.status_code == 201 and created.json()["signature_scheme"] == "standard_webhooks"


def test_a_custom_secret_must_be_long_enough(api, integration):
    assert_error(create(api, integration, secret="short"), 400, "VALIDATION_ERROR")
    response = create(api, integration, secret="a-long-enough-custom-secret")
    assert response.status_code == 201 and response.json()["secret"] == "a-long-enough-custom-secret"


def test_an_integration_of_another_tenant_is_integration_not_found(api, other_tenant, provider):
    foreign = IntegrationFactory(tenant=other_tenant, provider=provider)
    assert_error(create(api, foreign), 404, "INTEGRATION_NOT_FOUND")
    assert_error(create(api, type("I", (), {"pk": uuid.uuid4()})), 404, "INTEGRATION_NOT_FOUND")


def test_a_deleted_integration_cannot_get_an_endpoint(api, integration):
    assert api.delete(f"/api/v1/integrations/{integration.pk}/").status_code == 204
    assert_error(create(api, integration), 404, "INTEGRATION_NOT_FOUND")


@pytest.mark.parametrize("fields", [
    {"colour": "red"}, {"signature_failures": 5}, {"id": str(uuid.uuid4())}, {"previous_secret_expires_at": None},
    {"signature_scheme": "md5"}, {"max_body_bytes": 10 * 1024 * 1024 + 1}, {"tolerance_seconds": 0},
    {"signature_header": "bad header"},
])
def test_unknown_read_only_or_invalid_fields_are_refused(api, integration, fields):
    assert_error(create(api, integration, **fields), 400, "VALIDATION_ERROR")
    assert not WebhookEndpoint.objects.exists()


def test_the_integration_is_required(api):
    assert_error(api.post(URL, {"name": "x"}, format="json"), 400, "VALIDATION_ERROR")


# --- update and delete -----------------------------------------------------------------------------------------


@pytest.fixture
def endpoint(api, integration):
    return WebhookEndpoint.objects.get(pk=create(api, integration).json()["id"])


def test_patch_changes_settings_and_is_audited(api, endpoint):
    response = api.patch(f"{URL}{endpoint.pk}/", {"name": "New", "tolerance_seconds": 60, "dedupe": False,
                                                  "path": "renamed-path"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["tolerance_seconds"], response.json()["url"]) == (
        "New", 60, "/hooks/renamed-path")
    audit = AuditEvent.objects.get(action="webhook_endpoint.updated")
    assert audit.changes["name"] == {"from": "Orders", "to": "New"}


def test_patch_cannot_set_the_secret_or_move_the_endpoint(api, endpoint, tenant, provider):
    error = assert_error(api.patch(f"{URL}{endpoint.pk}/", {"secret": "a-new-secret-0123456789"}, format="json"),
                         400, "VALIDATION_ERROR")
    assert "secret" in error["details"]
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    assert_error(api.patch(f"{URL}{endpoint.pk}/", {"integration": str(other.pk)}, format="json"),
                 400, "VALIDATION_ERROR")
    assert_error(api.patch(f"{URL}{endpoint.pk}/", {"unknown": 1}, format="json"), 400, "VALIDATION_ERROR")
    fresh = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert fresh.secret == endpoint.secret and fresh.integration_id == endpoint.integration_id


def test_patch_to_a_taken_path_is_a_conflict(api, endpoint, integration):
    create(api, integration, name="Two", path="taken-path")
    assert_error(api.patch(f"{URL}{endpoint.pk}/", {"path": "taken-path"}, format="json"), 409, "CONFLICT")


@pytest.mark.parametrize("role", [TA, MB])
def test_put_is_not_served(client_for, endpoint, role):
    response = client_for(role).put(f"{URL}{endpoint.pk}/", {"name": "x"}, format="json")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


def test_delete_is_soft_and_hides_the_endpoint_but_keeps_its_events(api, endpoint):
    event, _ = services.event_accept(endpoint=endpoint, body=b"{}", headers={}, content_type="application/json",
                                     source_ip=None, dedupe_key=None)
    assert api.delete(f"{URL}{endpoint.pk}/").status_code == 204
    assert_error(api.get(f"{URL}{endpoint.pk}/"), 404, "NOT_FOUND")
    assert api.get(URL).json()["total"] == 0
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).deleted_at is not None
    assert api.get(f"{EVENTS}{event.pk}/").status_code == 200
    assert AuditEvent.objects.filter(action="webhook_endpoint.deleted").count() == 1


def test_deleting_the_integration_disables_its_endpoints_and_keeps_events(api, endpoint, integration):
    event, _ = services.event_accept(endpoint=endpoint, body=b"{}", headers={}, content_type="application/json",
                                     source_ip=None, dedupe_key=None)
    assert api.delete(f"/api/v1/integrations/{integration.pk}/").status_code == 204
    detail = api.get(f"{URL}{endpoint.pk}/")
    assert detail.status_code == 200 and detail.json()["active"] is False
    assert api.get(EVENTS).json()["total"] == 1 and WebhookEvent.objects.filter(pk=event.pk).exists()


def test_endpoints_filter_by_integration_active_scheme_and_name(api, integration, tenant, provider):
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    create(api, integration, name="Orders A", signature_scheme="github")
    create(api, other, name="Billing", signature_scheme="stripe", active=False)

    def names(**params):
        return sorted(row["name"] for row in api.get(URL, params).json()["results"])

    assert names(integration=str(other.pk)) == ["Billing"]
    assert names(active="false") == ["Billing"]
    assert names(signature_scheme="github") == ["Orders A"]
    assert names(search="orders") == ["Orders A"]


# --- roles and tenants -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role, create_status, patch_status, rotate_status, delete_status", [
    (SUPER_ADMIN, 201, 200, 200, 204),
    (TA, 201, 200, 200, 204),
    (IM, 201, 200, 200, 403),
    (MB, 403, 403, 403, 403),
])
def test_the_role_matrix(client_for, integration, role, create_status, patch_status, rotate_status,
                         delete_status):
    client = client_for(role, scoped=True)
    endpoint, _ = services.endpoint_create(actor=SYSTEM, tenant=integration.tenant, integration=integration,
                                           data={"name": "Seed"})
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}{endpoint.pk}/").status_code == 200
    assert create(client, integration, name="Mine").status_code == create_status
    assert client.patch(f"{URL}{endpoint.pk}/", {"name": "X"}, format="json").status_code == patch_status
    assert client.post(f"{URL}{endpoint.pk}/rotate-secret", {}, format="json").status_code == rotate_status
    assert client.delete(f"{URL}{endpoint.pk}/").status_code == delete_status
    if create_status == 403:
        assert WebhookEndpoint.objects.count() == 1


def test_a_member_can_read_events_but_not_replay(client_for, endpoint):
    event, _ = services.event_accept(endpoint=endpoint, body=b"{}", headers={}, content_type="application/json",
                                     source_ip=None, dedupe_key=None)
    WebhookEvent.objects.filter(pk=event.pk).update(status="processed")
    member = client_for(MB)
    assert member.get(EVENTS).json()["total"] == 1
    assert member.get(f"{EVENTS}{event.pk}/").status_code == 200
    assert_error(member.post(f"{EVENTS}{event.pk}/replay"), 403, "PERMISSION_DENIED")


def test_another_tenant_sees_none_of_it(client_for, endpoint):
    event, _ = services.event_accept(endpoint=endpoint, body=b"{}", headers={}, content_type="application/json",
                                     source_ip=None, dedupe_key=None)
    other = client_for("other_tenant")
    assert other.get(URL).json()["total"] == 0 and other.get(EVENTS).json()["total"] == 0
    for response in (
        other.get(f"{URL}{endpoint.pk}/"), other.patch(f"{URL}{endpoint.pk}/", {"name": "x"}, format="json"),
        other.delete(f"{URL}{endpoint.pk}/"), other.post(f"{URL}{endpoint.pk}/rotate-secret", {}, format="json"),
        other.get(f"{EVENTS}{event.pk}/"), other.post(f"{EVENTS}{event.pk}/replay"),
    ):
        assert response.status_code == 404, response.content
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).name == "Orders"


def test_anonymous_callers_are_refused(client_for, endpoint):
    anonymous = client_for("anonymous")
    assert anonymous.get(URL).status_code == 401
    assert anonymous.post(f"{URL}{endpoint.pk}/rotate-secret", {}, format="json").status_code == 401
    assert anonymous.get(EVENTS).status_code == 401


# --- rotation --------------------------------------------------------------------------------------------------


def test_rotate_answers_the_new_secret_once_with_a_24_hour_grace(api, endpoint):
    old = endpoint.secret
    response = api.post(f"{URL}{endpoint.pk}/rotate-secret", {}, format="json")
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"secret", "previous_secret_expires_at"} and body["secret"] != old
    expires = parse_datetime(body["previous_secret_expires_at"])
    assert abs((expires - (timezone.now() + timedelta(hours=24))).total_seconds()) < 60
    fresh = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (fresh.secret, fresh.previous_secret) == (body["secret"], old)
    detail = api.get(f"{URL}{endpoint.pk}/").json()
    assert parse_datetime(detail["previous_secret_expires_at"]) == expires and detail["secret_rotated_at"]
    audit = AuditEvent.objects.get(action="webhook_endpoint.secret_rotated")
    assert body["secret"] not in json.dumps(audit.changes) and old not in json.dumps(audit.changes)


def test_rotate_with_a_chosen_grace_and_secret(api, endpoint):
    response = api.post(f"{URL}{endpoint.pk}/rotate-secret",
                        {"grace_seconds": 3600, "secret": "my-chosen-secret-0123456789"}, format="json")
    assert response.status_code == 200 and response.json()["secret"] == "my-chosen-secret-0123456789"
    expires = parse_datetime(response.json()["previous_secret_expires_at"])
    assert abs((expires - timezone.now() - timedelta(hours=1)).total_seconds()) < 60


def test_rotate_with_no_grace_drops_the_previous_secret(api, endpoint):
    response = api.post(f"{URL}{endpoint.pk}/rotate-secret", {"grace_seconds": 0}, format="json")
    assert response.status_code == 200 and response.json()["previous_secret_expires_at"] is None
    fresh = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert fresh.previous_secret == "" and fresh.verifying_secrets() == [response.json()["secret"]]


@pytest.mark.parametrize("payload", [
    {"grace_seconds": 7 * 24 * 3600 + 1}, {"grace_seconds": -1}, {"grace_seconds": "soon"}, {"secret": "short"},
    {"keep_old": True},
])
def test_rotate_refuses_bad_input(api, endpoint, payload):
    assert_error(api.post(f"{URL}{endpoint.pk}/rotate-secret", payload, format="json"), 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret


def test_rotate_allows_the_full_seven_days(api, endpoint):
    response = api.post(f"{URL}{endpoint.pk}/rotate-secret", {"grace_seconds": 7 * 24 * 3600}, format="json")
    assert response.status_code == 200


def test_rotate_checks_a_chosen_secret_against_the_scheme(api, integration):
    created = create(api, integration, signature_scheme="standard_webhooks").json()
    url = f"{URL}{created['id']}/rotate-secret"
    assert_error(api.post(url, {"secret": "plain-text-not-base64!!"}, format="json"), 400, "VALIDATION_ERROR")
    generated = api.post(url, {}, format="json").json()["secret"]
    assert generated.startswith("whsec_") and 24 <= len(base64.b64decode(generated[6:])) <= 64


def test_rotate_on_an_unknown_endpoint_is_404(api, db):
    assert_error(api.post(f"{URL}{uuid.uuid4()}/rotate-secret", {}, format="json"), 404, "NOT_FOUND")


# --- events ----------------------------------------------------------------------------------------------------


def _event(endpoint, body=b'{"a": 1}', **fields):
    event, _ = services.event_accept(endpoint=endpoint, body=body, headers={"x-trace": "t1"},
                                     content_type="application/json", source_ip="198.51.100.7", dedupe_key=None)
    if fields:
        WebhookEvent.objects.filter(pk=event.pk).update(**fields)
    return event


def test_events_list_newest_first_without_bodies(api, endpoint):
    older = _event(endpoint, received_at=timezone.now() - timedelta(minutes=5))
    newer = _event(endpoint, b'{"b": 22}')
    body = api.get(EVENTS).json()
    assert [row["id"] for row in body["results"]] == [str(newer.pk), str(older.pk)]
    row = body["results"][0]
    assert "body" not in row and "headers" not in row
    assert (row["size"], row["status"], row["endpoint"], row["source_ip"]) == (
        9, "pending", str(endpoint.pk), "198.51.100.7")


def test_events_filter_by_endpoint_integration_status_and_received_range(api, endpoint, integration, tenant,
                                                                         provider):
    other_integration = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    other = WebhookEndpoint.objects.get(pk=create(api, other_integration, name="o").json()["id"])
    now = timezone.now()
    a = _event(endpoint, received_at=now - timedelta(hours=3), status="processed")
    b = _event(endpoint, received_at=now - timedelta(hours=1), status="failed")
    c = _event(other, received_at=now)

    def ids(**params):
        response = api.get(EVENTS, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids(endpoint=str(endpoint.pk)) == {str(a.pk), str(b.pk)}
    assert ids(integration=str(other_integration.pk)) == {str(c.pk)}
    assert ids(status="failed") == {str(b.pk)}
    after = (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert ids(received_after=after) == {str(b.pk), str(c.pk)}
    assert ids(received_before=after) == {str(a.pk)}
    assert ids(received_after=after, received_before=(now - timedelta(minutes=30)).isoformat()
               .replace("+00:00", "Z")) == {str(b.pk)}


@pytest.mark.parametrize("params", [{"status": "exploded"}, {"endpoint": "not-a-uuid"},
                                    {"received_after": "yesterday"}])
def test_events_refuse_bad_filters(api, endpoint, params):
    assert_error(api.get(EVENTS, params), 400, "VALIDATION_ERROR")


def test_an_event_detail_shows_the_body_headers_and_result(api, endpoint):
    event = _event(endpoint, "{\"note\": \"café\"}".encode())
    services.event_process(event_id=event.pk)
    detail = api.get(f"{EVENTS}{event.pk}/").json()
    assert detail["body"] == "{\"note\": \"café\"}" and detail["body_encoding"] == "utf-8"
    assert detail["headers"] == {"x-trace": "t1"} and detail["result"] == {"handled": "recorded"}
    assert detail["status"] == "processed" and detail["attempts"] == 1 and detail["integration"] == str(
        endpoint.integration_id)


def test_a_body_that_is_not_utf8_is_shown_as_base64(api, endpoint):
    raw = b"\x00\xff\xfebinary\xc3\x28"
    detail = api.get(f"{EVENTS}{_event(endpoint, raw).pk}/").json()
    assert detail["body_encoding"] == "base64" and base64.b64decode(detail["body"]) == raw


def test_replay_of_a_finished_event_is_202_audited_and_queued(api, endpoint, queued, settings,
                                                            django_capture_on_commit_callbacks):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    event = _event(endpoint, b"{not json")
    assert services.event_process(event_id=event.pk) == "failed"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{EVENTS}{event.pk}/replay")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
    assert queued[-1] == [str(event.pk)]  # sent after the API's transaction commits
    assert AuditEvent.objects.filter(action="webhook_event.replayed", target_id=str(event.pk)).count() == 1


def test_replay_of_a_pending_event_is_a_conflict(api, endpoint):
    assert_error(api.post(f"{EVENTS}{_event(endpoint).pk}/replay"), 409, "CONFLICT")


def test_events_are_read_only(api, endpoint):
    event = _event(endpoint)
    assert api.post(EVENTS, {}, format="json").status_code == 405
    assert api.patch(f"{EVENTS}{event.pk}/", {"status": "processed"}, format="json").status_code == 405
    assert api.delete(f"{EVENTS}{event.pk}/").status_code == 405


def _count_queries(api, url):
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.json()


def test_the_lists_run_the_same_queries_for_5_and_50_rows(api, integration, tenant, provider):
    def add(count, start):
        for i in range(start, start + count):
            target = IntegrationFactory(tenant=tenant, provider=provider, name=f"I{i:03d}")
            endpoint, _ = services.endpoint_create(actor=SYSTEM, tenant=tenant, integration=target,
                                                   data={"name": f"E{i:03d}"})
            _event(endpoint, json.dumps({"i": i}).encode())

    add(5, 0)
    small_endpoints, small_body = _count_queries(api, URL)
    small_events, _ = _count_queries(api, EVENTS)
    add(45, 5)
    large_endpoints, large_body = _count_queries(api, URL)
    large_events, events_body = _count_queries(api, EVENTS)
    assert (small_body["total"], large_body["total"], events_body["total"]) == (5, 50, 50)
    assert len(events_body["results"]) == 50 and all(row["integration"] for row in events_body["results"])
    assert small_endpoints == large_endpoints
    assert small_events == large_events
