"""The notifications API: endpoints CRUD for tenant admins only, the secret in the create and rotate answers
only, the test ping, deliveries with their attempts, redelivery, and another tenant's rows answered 404."""
import json
import uuid

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from audit.models import AuditEvent
from notifications import services
from notifications.models import NotificationDelivery, NotificationEndpoint
from tenants.choices import SUPER_ADMIN, Role
from tests.helpers import assert_error, raw_value

pytestmark = pytest.mark.usefixtures("queued")

URL = "/api/v1/notification-endpoints/"
DELIVERIES = "/api/v1/notification-deliveries/"
TA, IM, MB = Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value
HEALTH = "integration.health_changed"


@pytest.fixture
def api(client_for):
    return client_for(TA)


def create(api, **fields):
    return api.post(URL, {"url": "https://hooks.example.com/notify", **fields}, format="json")


def test_create_answers_the_secret_once_uncacheable_encrypted_and_audited_without_it(api, tenant):
    response = create(api, events=[HEALTH, "credential.expired", HEALTH], description="ops")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == [HEALTH, "credential.expired"]  # each once, in the type list's order
    assert (body["url"], body["active"], body["description"], body["disabled_reason"]) == (
        "https://hooks.example.com/notify", True, "ops", "")
    endpoint = NotificationEndpoint.objects.get(pk=body["id"])
    assert endpoint.tenant == tenant and endpoint.secret == body["secret"]
    assert body["secret"] not in raw_value(NotificationEndpoint, "secret", endpoint.pk)  # encrypted at rest
    audit = AuditEvent.objects.get(action="notification_endpoint.created")
    assert body["secret"] not in json.dumps(audit.changes, default=str)


def test_events_default_to_every_type(api):
    body = create(api).json()
    assert body["events"] == ["integration.health_changed", "integration.failure_warning",
                              "integration.auto_disabled", "credential.expiring", "credential.expired",
                              "webhook_event.failed"]


def test_the_secret_is_never_in_list_detail_or_patch_answers(api):
    created = create(api).json()
    secret = created["secret"]
    for response in (api.get(URL), api.get(f"{URL}{created['id']}/"),
                     api.patch(f"{URL}{created['id']}/", {"description": "x"}, format="json")):
        assert response.status_code == 200
        assert secret not in response.content.decode()
        assert "secret" not in response.json().get("results", [response.json()])[0]


@pytest.mark.parametrize("payload, field", [
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "https://user:pw@hooks.example.com/x"}, "url"),
    ({"url": "https://hooks.example.com/x#frag"}, "url"),
    ({"url": "https://hooks.example.com/" + "a" * 500}, "url"),
    ({"url": "https://hooks.example.com/x", "events": []}, "events"),
    ({"url": "https://hooks.example.com/x", "events": ["ping"]}, "events"),
    ({"url": "https://hooks.example.com/x", "events": "credential.expired"}, "events"),
    ({"url": "https://hooks.example.com/x", "secret": "whsec_mine"}, "secret"),
    ({"url": "https://hooks.example.com/x", "description": "d" * 501}, "description"),
    ({}, "url"),
])
def test_bad_input_is_a_400_naming_the_field(api, payload, field):
    assert_error(api.post(URL, payload, format="json"), 400, "VALIDATION_ERROR", field)
    assert NotificationEndpoint.objects.count() == 0


def test_a_tenant_has_a_bounded_number_of_endpoints(api, settings):
    settings.NOTIFICATION_ENDPOINTS_PER_TENANT = 2
    for _ in range(2):
        assert create(api).status_code == 201
    assert_error(create(api), 409, "CONFLICT")


@pytest.mark.parametrize("role, allowed", [(SUPER_ADMIN, True), (TA, True), (IM, False), (MB, False)])
def test_only_tenant_admins_manage_endpoints_and_read_deliveries(client_for, make_endpoint, role, allowed):
    endpoint, _ = make_endpoint()
    client = client_for(role, scoped=role == SUPER_ADMIN)
    answers = [
        client.get(URL), client.get(f"{URL}{endpoint.pk}/"), client.get(DELIVERIES),
        client.post(URL, {"url": "https://a.example.com/x"}, format="json"),
        client.patch(f"{URL}{endpoint.pk}/", {"description": "x"}, format="json"),
        client.post(f"{URL}{endpoint.pk}/rotate-secret", {}, format="json"),
    ]
    for response in answers:
        if allowed:
            assert response.status_code in (200, 201), response.content
        else:
            assert_error(response, 403, "PERMISSION_DENIED")
    assert_error(client_for("anonymous").get(URL), 401, "NOT_AUTHENTICATED")


def test_another_tenants_endpoints_and_deliveries_are_404_and_unchanged(client_for, make_endpoint, tenant):
    endpoint, _ = make_endpoint()
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery = NotificationDelivery.objects.get()
    other = client_for("other_tenant")
    audit_before = AuditEvent.objects.count()
    for response in (
        other.get(f"{URL}{endpoint.pk}/"),
        other.patch(f"{URL}{endpoint.pk}/", {"active": False}, format="json"),
        other.delete(f"{URL}{endpoint.pk}/"),
        other.post(f"{URL}{endpoint.pk}/rotate-secret", {}, format="json"),
        other.post(f"{URL}{endpoint.pk}/test"),
        other.get(f"{DELIVERIES}{delivery.pk}/"),
        other.post(f"{DELIVERIES}{delivery.pk}/redeliver"),
        other.get(f"{URL}{uuid.uuid4()}/"),
    ):
        assert_error(response, 404, "NOT_FOUND")
    assert other.get(URL).json()["total"] == 0 and other.get(DELIVERIES).json()["total"] == 0
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.deleted_at is None and endpoint.secret_rotated_at is None
    assert NotificationDelivery.objects.count() == 1 and AuditEvent.objects.count() == audit_before


def test_rotate_answers_the_new_secret_once_and_keeps_the_old_one_signing_for_the_grace(api):
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/rotate-secret", {"grace_seconds": 600}, format="json")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    endpoint = NotificationEndpoint.objects.get(pk=created["id"])
    assert endpoint.signing_secrets() == [body["secret"], created["secret"]]
    assert 590 <= (endpoint.previous_secret_expires_at - timezone.now()).total_seconds() <= 600
    assert_error(api.post(f"{URL}{created['id']}/rotate-secret", {"grace_seconds": 10**7}, format="json"), 400,
                 "VALIDATION_ERROR", "grace_seconds")
    changes = AuditEvent.objects.get(action="notification_endpoint.secret_rotated").changes
    assert body["secret"] not in json.dumps(changes) and created["secret"] not in json.dumps(changes)


def test_test_sends_a_signed_ping_and_answers_its_delivery(api, receiver):
    created = create(api, url=receiver.url).json()
    response = api.post(f"{URL}{created['id']}/test")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["type"], body["status"], body["attempts"], body["response_status"]) == ("ping", "delivered", 1, 200)
    assert body["history"][0]["outcome"] == "delivered" and body["payload"]["type"] == "ping"
    (headers, raw), = receiver.received
    assert Webhook(created["secret"]).verify(raw, headers)["data"] == {"endpoint_id": created["id"]}


def test_a_failed_ping_is_not_retried_and_says_why(api, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    created = create(api, url="http://127.0.0.1:9/x").json()
    body = api.post(f"{URL}{created['id']}/test").json()
    assert (body["status"], body["next_attempt_at"]) == ("failed", None)
    assert body["last_error"]["code"] == "URL_NOT_ALLOWED"


def test_delete_is_soft_erases_the_secrets_and_keeps_the_deliveries(api, tenant):
    created = create(api).json()
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    assert api.delete(f"{URL}{created['id']}/").status_code == 204
    assert_error(api.get(f"{URL}{created['id']}/"), 404, "NOT_FOUND")
    endpoint = NotificationEndpoint.objects.get(pk=created["id"])
    assert endpoint.deleted_at and endpoint.secret == "" and not endpoint.active
    assert api.get(DELIVERIES).json()["total"] == 1
    assert services.notify(tenant_id=tenant.pk, type=HEALTH, data={}) == 0


def test_deliveries_list_filters_and_detail_shows_body_and_attempts(api, tenant, make_endpoint, receiver):
    first, _ = make_endpoint(receiver.url)
    second, _ = make_endpoint("https://b.example.com/x", events=["credential.expired"])
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={"to": "unhealthy"})
    services.notify(tenant_id=tenant.pk, type="credential.expired", data={})
    delivered = NotificationDelivery.objects.get(type=HEALTH)
    services.delivery_attempt(delivery_id=delivered.pk)
    listing = api.get(DELIVERIES).json()
    assert listing["total"] == 3 and "payload" not in listing["results"][0]
    assert api.get(DELIVERIES, {"status": "delivered"}).json()["total"] == 1
    assert api.get(DELIVERIES, {"type": "credential.expired"}).json()["total"] == 2
    assert api.get(DELIVERIES, {"endpoint": str(second.pk)}).json()["total"] == 1
    assert_error(api.get(DELIVERIES, {"status": "lost"}), 400, "VALIDATION_ERROR", "status")
    detail = api.get(f"{DELIVERIES}{delivered.pk}/").json()
    assert detail["payload"]["data"] == {"to": "unhealthy"} and detail["endpoint"] == str(first.pk)
    assert [a["response_status"] for a in detail["history"]] == [200]
    assert detail["notification_id"].startswith("msg_")


def test_redeliver_queues_a_finished_delivery_and_refuses_a_pending_one(api, tenant, make_endpoint, receiver, queued):
    make_endpoint(receiver.url)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery = NotificationDelivery.objects.get()
    assert_error(api.post(f"{DELIVERIES}{delivery.pk}/redeliver"), 409, "CONFLICT")
    services.delivery_attempt(delivery_id=delivery.pk)
    response = api.post(f"{DELIVERIES}{delivery.pk}/redeliver")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert response.json()["attempts"] == 0 and len(response.json()["history"]) == 1


def test_patch_changes_the_endpoint_and_is_audited(api):
    created = create(api).json()
    response = api.patch(f"{URL}{created['id']}/", {"events": ["credential.expired"], "active": False},
                         format="json")
    assert response.status_code == 200
    assert response.json()["events"] == ["credential.expired"] and response.json()["active"] is False
    assert AuditEvent.objects.filter(action="notification_endpoint.updated").count() == 1
    assert_error(api.patch(f"{URL}{created['id']}/", {"url": "gopher://x.example.com"}, format="json"), 400,
                 "VALIDATION_ERROR", "url")
    assert_error(api.put(f"{URL}{created['id']}/", {"url": "https://a.example.com"}, format="json"), 405,
                 "METHOD_NOT_ALLOWED")

