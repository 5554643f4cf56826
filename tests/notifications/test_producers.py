"""What produces notifications here: an inbound webhook event after its last retry, and credentials that
are about to expire or have (once per credential and window), reported after each OAuth refresh pass."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.services import SYSTEM
from connections.models import Credential, Integration
from connections.services import oauth
from connections.services.oauth import expiry, tokens
from notifications.models import NotificationDelivery
from webhooks import services as webhook_services
from webhooks.services import processing

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(make_endpoint):
    return make_endpoint()[0]


def deliveries(type: str) -> list[NotificationDelivery]:
    return list(NotificationDelivery.objects.filter(type=type).order_by("created_at", "id"))


# --- webhook_event.failed -------------------------------------------------------------------------------------


@pytest.fixture
def webhook_endpoint(integration):
    Integration.objects.filter(pk=integration.pk).update(update_method="webhook")
    integration.refresh_from_db()
    endpoint, _ = webhook_services.endpoint_create(actor=SYSTEM, tenant=integration.tenant,
                                                   integration=integration,
                                                   data={"name": "orders", "verify_signature": False})
    return endpoint


def accept(endpoint, body: bytes):
    event, _ = webhook_services.event_accept(endpoint=endpoint, body=body, headers={},
                                             content_type="application/json", source_ip="127.0.0.1", dedupe_key=None)
    return event


def test_an_inbound_event_failing_its_last_retry_notifies_the_tenant_once(webhook_endpoint, subscribed, settings,
                                                                          monkeypatch, sent_tasks):
    from django.db import OperationalError

    def refuse(*, integration, pairs):
        raise OperationalError("could not obtain lock")

    monkeypatch.setattr(processing, "statuses_store", refuse)
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    event = accept(webhook_endpoint, json.dumps({"id": "a", "status": "open"}).encode())
    assert webhook_services.event_process(event_id=event.pk) == "pending"
    assert deliveries("webhook_event.failed") == []  # a retry is still to come
    assert webhook_services.event_process(event_id=event.pk) == "failed"
    delivery, = deliveries("webhook_event.failed")
    data = delivery.payload["data"]
    assert data["event_id"] == str(event.pk) and data["endpoint_id"] == str(webhook_endpoint.pk)
    assert (data["attempts"], data["permanent"]) == (2, False)
    assert data["last_error"].startswith("OperationalError")
    assert delivery.tenant_id == webhook_endpoint.tenant_id and delivery.endpoint == subscribed


def test_an_event_that_can_never_be_processed_notifies_at_once(webhook_endpoint, subscribed, sent_tasks):
    event = accept(webhook_endpoint, b"{not json")
    assert webhook_services.event_process(event_id=event.pk) == "failed"
    delivery, = deliveries("webhook_event.failed")
    assert delivery.payload["data"]["permanent"] is True and delivery.payload["data"]["attempts"] == 1


# --- credential.expiring / credential.expired -------------------------------------------------------------------


def credential(integration, *, type="bearer", expires_in=None, refresh_token=None, **fields) -> Credential:
    payload = {"access_token": "at-0123456789", "refresh_token": refresh_token} if type == "oauth2" else {
        "token": "tok-0123456789"}
    if type == "oauth2" and not refresh_token:
        payload.pop("refresh_token")
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    return Credential.objects.create(tenant=integration.tenant, integration=integration, type=type, payload=payload,
                                     expires_at=expires_at, **fields)


def test_a_credential_expiring_within_seven_days_is_reported_once_per_window(integration, subscribed):
    cred = credential(integration, expires_in=timedelta(days=3))
    assert expiry.credentials_expiry_notify() == {"expiring": 1, "expired": 0}
    assert expiry.credentials_expiry_notify() == {"expiring": 0, "expired": 0}
    delivery, = deliveries("credential.expiring")
    data = delivery.payload["data"]
    assert (data["credential_id"], data["integration_id"], data["reason"]) == (
        str(cred.pk), str(integration.pk), "expires_soon")
    assert "tok-0123456789" not in json.dumps(delivery.payload)
    # Replaced (a new version and expiry): a new window, reported again.
    Credential.objects.filter(pk=cred.pk).update(version=2, expires_at=timezone.now() + timedelta(days=2))
    assert expiry.credentials_expiry_notify()["expiring"] == 1


def test_a_credential_further_off_or_without_expiry_is_not_reported(integration, other_tenant, subscribed):
    credential(integration, expires_in=timedelta(days=10))
    assert expiry.credentials_expiry_notify() == {"expiring": 0, "expired": 0}
    assert NotificationDelivery.objects.count() == 0


def test_an_oauth_token_that_renews_itself_is_not_reported_until_its_refresh_fails(integration, subscribed):
    cred = credential(integration, type="oauth2", refresh_token="rt-0123456789", expires_in=timedelta(minutes=5))
    assert expiry.credentials_expiry_notify()["expiring"] == 0
    Credential.objects.filter(pk=cred.pk).update(refresh_failures=2)
    assert expiry.credentials_expiry_notify()["expiring"] == 1
    assert deliveries("credential.expiring")[0].payload["data"]["reason"] == "refresh_failing"


def test_an_oauth_token_that_cannot_renew_is_reported_inside_the_refresh_margin(integration, subscribed):
    cred = credential(integration, type="oauth2", expires_in=timedelta(days=3))
    assert expiry.credentials_expiry_notify()["expiring"] == 0  # outside the margin: it is still good
    Credential.objects.filter(pk=cred.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    assert expiry.credentials_expiry_notify()["expiring"] == 1
    assert deliveries("credential.expiring")[0].payload["data"]["reason"] == "refresh_impossible"


def test_an_expired_credential_is_reported_once(integration, subscribed):
    cred = credential(integration, expires_in=-timedelta(hours=1))
    assert expiry.credentials_expiry_notify() == {"expiring": 0, "expired": 1}
    assert expiry.credentials_expiry_notify() == {"expiring": 0, "expired": 0}
    assert deliveries("credential.expired")[0].payload["data"]["credential_id"] == str(cred.pk)


def test_a_deleted_integrations_credentials_are_not_reported(integration, subscribed):
    credential(integration, expires_in=timedelta(days=1))
    Integration.objects.filter(pk=integration.pk).update(deleted_at=timezone.now())
    assert expiry.credentials_expiry_notify() == {"expiring": 0, "expired": 0}


def test_a_refused_refresh_reports_the_credential_expired_once(integration, subscribed, monkeypatch, sent_tasks):
    cred = credential(integration, type="oauth2", refresh_token="rt-0123456789", expires_in=timedelta(minutes=5))

    def refused(integration, form):
        raise tokens.RefreshFailed("The token endpoint refused the request (invalid_grant).", permanent=True)

    monkeypatch.setattr(tokens, "token_request", refused)
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 1}  # the pass reports what it could not renew
    delivery, = deliveries("credential.expired")
    assert delivery.payload["data"]["reason"] == "refresh_refused"
    cred.refresh_from_db()
    assert cred.status == "expired"
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 0}
    assert len(deliveries("credential.expired")) == 1 and deliveries("credential.expiring") == []


def test_the_refresh_pass_reports_expiring_credentials(integration, subscribed):
    credential(integration, expires_in=timedelta(days=2))
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 0}
    assert len(deliveries("credential.expiring")) == 1
