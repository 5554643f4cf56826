"""``GET /api/v1/integrations/{id}/stream``: who holds the event stream and what it has done, per the contract."""
from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from audit.services import SYSTEM
from connections import services
from connections.choices import IntegrationStatus, StreamState, UpdateMethod
from connections.models import StreamLease
from tenants.choices import SUPER_ADMIN, Role
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_envelope

BASE = "/api/v1/integrations"
FIELDS = {"state", "consumer", "connected_at", "last_event_at", "last_event_id", "events_total", "reconnects",
          "last_error"}


@pytest.fixture
def api(client_for):
    return client_for(Role.MEMBER.value)


@pytest.fixture
def sse(tenant, provider):
    return IntegrationFactory(tenant=tenant, provider=provider, name="Feed", update_method=UpdateMethod.SSE,
                              stream_endpoint="/events", status=IntegrationStatus.CONNECTED)


def json_schema(node):
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable: true`` becomes "this, or null"."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


@pytest.fixture(scope="module")
def answer_schema():
    """The 200 answer's schema in the OpenAPI document, with the components its $refs point into."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    operation = document["paths"]["/api/v1/integrations/{id}/stream"]["get"]
    return json_schema({**operation["responses"]["200"]["content"]["application/json"]["schema"],
                        "components": document["components"]})


def stream_of(client, integration, answer_schema=None) -> dict:
    response = client.get(f"{BASE}/{integration.pk}/stream")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == FIELDS
    if answer_schema is not None:
        import jsonschema

        jsonschema.Draft7Validator(answer_schema).validate(body)
    return body


def held_lease(integration, **fields) -> StreamLease:
    now = timezone.now()
    defaults = {"consumer": "host-a:101", "lease_until": now + timedelta(seconds=30), "state": StreamState.CONNECTED,
                "connected_at": now - timedelta(minutes=5)}
    return StreamLease.objects.create(integration=integration, tenant=integration.tenant, **{**defaults, **fields})


def test_an_sse_integration_without_a_lease_is_connecting_with_nothing_read(api, sse, answer_schema):
    assert stream_of(api, sse, answer_schema) == {
        "state": "connecting", "consumer": None, "connected_at": None, "last_event_at": None,
        "last_event_id": None, "events_total": 0, "reconnects": 0, "last_error": None,
    }


def test_a_held_connected_lease_answers_the_holders_view(api, sse, answer_schema):
    last_event = timezone.now() - timedelta(seconds=3)
    lease = held_lease(sse, last_event_at=last_event, last_event_id="evt-42", events_total=17, reconnects=2,
                       events_duplicate=5)
    body = stream_of(api, sse, answer_schema)
    assert (body["state"], body["consumer"], body["last_event_id"]) == ("connected", "host-a:101", "evt-42")
    assert (body["events_total"], body["reconnects"], body["last_error"]) == (17, 2, None)
    assert body["connected_at"] == lease.connected_at.isoformat().replace("+00:00", "Z")
    assert body["last_event_at"] == last_event.isoformat().replace("+00:00", "Z")


def test_a_backing_off_stream_shows_its_last_error_with_its_time(api, sse, answer_schema):
    at = timezone.now() - timedelta(seconds=20)
    held_lease(sse, state=StreamState.BACKOFF, reconnects=4,
               last_error={"code": "INVALID_CREDENTIALS", "message": "The stream answered 401.", "at": at.isoformat()})
    body = stream_of(api, sse, answer_schema)
    assert (body["state"], body["consumer"], body["connected_at"]) == ("backoff", "host-a:101", None)
    assert body["last_error"] == {"code": "INVALID_CREDENTIALS", "message": "The stream answered 401.",
                                  "at": at.isoformat().replace("+00:00", "Z")}


def test_an_expired_lease_is_connecting_with_no_consumer_and_keeps_its_counts(api, sse, answer_schema):
    held_lease(sse, lease_until=timezone.now() - timedelta(seconds=1), last_event_id="evt-9", events_total=9)
    body = stream_of(api, sse, answer_schema)
    assert (body["state"], body["consumer"], body["connected_at"]) == ("connecting", None, None)
    assert (body["last_event_id"], body["events_total"]) == ("evt-9", 9)


def test_a_polling_integration_is_stopped_without_an_error(api, integration, answer_schema):
    body = stream_of(api, integration, answer_schema)
    assert (body["state"], body["consumer"], body["last_error"]) == ("stopped", None, None)


def test_a_polling_integration_with_a_lease_left_over_is_stopped(api, integration, answer_schema):
    held_lease(integration, events_total=3)
    body = stream_of(api, integration, answer_schema)
    assert (body["state"], body["connected_at"], body["events_total"]) == ("stopped", None, 3)


def test_an_sse_integration_without_a_stream_endpoint_is_stopped_as_not_configured(api, tenant, provider,
                                                                                    answer_schema):
    bare = IntegrationFactory(tenant=tenant, provider=provider, name="Bare", update_method=UpdateMethod.SSE,
                              status=IntegrationStatus.CONNECTED)
    body = stream_of(api, bare, answer_schema)
    assert body["state"] == "stopped"
    assert body["last_error"]["code"] == "NOT_CONFIGURED" and "stream_endpoint" in body["last_error"]["message"]
    assert body["last_error"]["at"] is None


def test_a_disabled_sse_integration_is_stopped(api, sse):
    services.integration_disable(actor=SYSTEM, integration=sse)
    assert stream_of(api, sse)["state"] == "stopped"


@pytest.mark.parametrize("role", [SUPER_ADMIN, Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value,
                                  Role.MEMBER.value])
def test_every_role_that_reads_integrations_reads_the_stream(client_for, sse, role):
    assert stream_of(client_for(role), sse)["state"] == "connecting"


def test_another_tenants_stream_is_not_found_and_unchanged(client_for, sse):
    lease = held_lease(sse)
    assert_envelope(client_for("other_tenant").get(f"{BASE}/{sse.pk}/stream"), 404, "INTEGRATION_NOT_FOUND")
    lease.refresh_from_db()
    assert (lease.consumer, lease.restart_requested) == ("host-a:101", False)


def test_a_deleted_integrations_stream_is_not_found(api, sse):
    held_lease(sse)
    services.integration_delete(actor=SYSTEM, integration=sse)
    assert_envelope(api.get(f"{BASE}/{sse.pk}/stream"), 404, "INTEGRATION_NOT_FOUND")


def test_an_id_that_is_not_a_uuid_is_not_found(api):
    assert_envelope(api.get(f"{BASE}/not-a-uuid/stream"), 404, "INTEGRATION_NOT_FOUND")


def test_the_stream_needs_a_login(client_for, sse):
    assert_envelope(client_for("anonymous").get(f"{BASE}/{sse.pk}/stream"), 401, "NOT_AUTHENTICATED")


def test_the_path_answers_with_a_trailing_slash_too(api, sse):
    assert api.get(f"{BASE}/{sse.pk}/stream/").status_code == 200
