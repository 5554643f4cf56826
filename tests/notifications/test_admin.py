"""Notifications in the admin: the secret shown once on uncacheable pages, never on the others; deliveries
read-only with their attempts and a redeliver action that audits; and the figures on /metrics."""
import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from notifications import services
from notifications.models import NotificationDelivery, NotificationEndpoint
from tests.tenants.factories import UserFactory

pytestmark = pytest.mark.django_db
HEALTH = "integration.health_changed"


@pytest.fixture
def staff_client(db):
    client = Client()
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def url(model, view, *args):
    return reverse(f"admin:notifications_{model._meta.model_name}_{view}", args=args)


def shown_secrets(response) -> list[str]:
    return re.findall(r"<code[^>]*>([^<]+)</code>", response.content.decode())


def test_adding_an_endpoint_shows_its_secret_once(staff_client, tenant, sent_tasks):
    response = staff_client.post(url(NotificationEndpoint, "add"), {
        "tenant": str(tenant.pk), "url": "https://hooks.example.com/n", "events": [HEALTH], "active": "on",
        "description": "",
    })
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    endpoint = NotificationEndpoint.objects.get()
    assert shown_secrets(response) == [endpoint.secret] and endpoint.events == [HEALTH]
    for page in (url(NotificationEndpoint, "changelist"), url(NotificationEndpoint, "change", endpoint.pk)):
        later = staff_client.get(page)
        assert later.status_code == 200 and endpoint.secret not in later.content.decode()


def test_the_add_form_refuses_a_url_that_is_not_http(staff_client, tenant):
    response = staff_client.post(url(NotificationEndpoint, "add"), {
        "tenant": str(tenant.pk), "url": "file:///etc/passwd", "events": [HEALTH], "active": "on",
    })
    assert response.status_code == 200 and "absolute http(s) URL" in response.content.decode()
    assert not NotificationEndpoint.objects.exists()


def test_rotating_in_the_admin_shows_the_new_secret_once(staff_client, make_endpoint):
    endpoint, old = make_endpoint()
    response = staff_client.post(url(NotificationEndpoint, "rotate_secret", endpoint.pk))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    endpoint.refresh_from_db()
    assert shown_secrets(response) == [endpoint.secret] and endpoint.signing_secrets() == [endpoint.secret, old]


def test_the_test_button_pings_and_says_how_it_went(staff_client, make_endpoint, receiver):
    endpoint, _ = make_endpoint(receiver.url)
    response = staff_client.post(url(NotificationEndpoint, "test", endpoint.pk), follow=True)
    assert "Ping delivered: 200" in response.content.decode()
    assert len(receiver.received) == 1


def test_a_delivery_page_shows_its_attempts_and_redeliver_queues_it_again(staff_client, tenant, make_endpoint,
                                                                        receiver, sent_tasks):
    make_endpoint(receiver.url)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={"to": "unhealthy"})
    delivery = NotificationDelivery.objects.get()
    services.delivery_attempt(delivery_id=delivery.pk)
    page = staff_client.get(url(NotificationDelivery, "change", delivery.pk)).content.decode()
    assert "unhealthy" in page and "Redeliver" in page and "hub-badge--ok" in page
    response = staff_client.post(url(NotificationDelivery, "changelist"),
                                 {"action": "redeliver", "_selected_action": [str(delivery.pk)]}, follow=True)
    assert "Queued again 1" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert AuditEvent.objects.filter(action="notification_delivery.redelivered").count() == 1
    assert staff_client.get(url(NotificationDelivery, "add")).status_code == 403


def test_metrics_count_notifications_by_type_and_outcome_and_time_each_post(client, tenant, make_endpoint, receiver):
    make_endpoint(receiver.url)
    receiver.answer(200, 500)
    for _ in range(2):
        services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    for delivery in NotificationDelivery.objects.all():
        services.delivery_attempt(delivery_id=delivery.pk)
    text = client.get("/metrics").content.decode()
    assert 'notifications_total{outcome="delivered",type="integration.health_changed"} 1.0' in text
    assert 'notifications_total{outcome="pending",type="integration.health_changed"} 1.0' in text
    assert 'notification_delivery_seconds_count 2.0' in text
    assert 'notification_delivery_seconds_bucket{le="+Inf"} 2.0' in text
