"""Producing and sending notifications: rows in the caller's transaction, Standard Webhooks signatures checked
with the reference library, the retry schedule against a real loopback receiver, 410, the address policy,
and nothing lost while the broker is down."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from audit.models import AuditEvent
from audit.services import SYSTEM
from integrations_site import queueing
from notifications import services, tasks
from notifications.choices import DeliveryStatus
from notifications.models import NotificationDelivery, NotificationMarker
from tests.conftest import STORED_SECRETS

pytestmark = pytest.mark.django_db

HEALTH = "integration.health_changed"


def only_delivery() -> NotificationDelivery:
    return NotificationDelivery.objects.get()


def test_notify_makes_one_pending_delivery_per_subscribed_active_endpoint_and_queues_them_after_commit(
        tenant, other_tenant, make_endpoint, queued, django_capture_on_commit_callbacks):
    first, _ = make_endpoint()
    second, _ = make_endpoint("https://b.example.com/n", events=[HEALTH, "credential.expired"])
    make_endpoint("https://c.example.com/n", events=["credential.expired"])  # not subscribed
    make_endpoint("https://d.example.com/n", active=False)
    make_endpoint("https://e.example.com/n", tenant=other_tenant)
    with django_capture_on_commit_callbacks(execute=True):
        made = services.notify(tenant_id=tenant.pk, type=HEALTH, data={"from": "healthy", "to": "unhealthy"})
        assert queued == []  # nothing is sent before the caller's transaction commits
    assert made == 2
    rows = list(NotificationDelivery.objects.all())
    assert {row.endpoint_id for row in rows} == {first.pk, second.pk}
    assert {row.status for row in rows} == {DeliveryStatus.PENDING}
    assert len({row.notification_id for row in rows}) == 1  # one webhook-id for the notification
    assert rows[0].payload["data"] == {"from": "healthy", "to": "unhealthy"}
    assert rows[0].payload["tenant_id"] == str(tenant.pk) and rows[0].payload["type"] == HEALTH
    assert sorted(queued[0]) == sorted(str(row.pk) for row in rows)


def test_notify_without_a_subscribed_endpoint_makes_and_queues_nothing(tenant, make_endpoint, queued,
                                                                       django_capture_on_commit_callbacks):
    make_endpoint(events=["credential.expired"])
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notify(tenant_id=tenant.pk, type=HEALTH, data={}) == 0
    assert NotificationDelivery.objects.count() == 0 and queued == []


def test_a_tenant_nobody_listens_to_costs_one_query(tenant, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert services.notify(tenant_id=tenant.pk, type=HEALTH, data={}) == 0


def test_notify_many_reads_the_subscribers_once_and_inserts_every_delivery_together(
        tenant, other_tenant, make_endpoint, queued, django_capture_on_commit_callbacks, django_assert_num_queries):
    make_endpoint(events=[HEALTH])
    make_endpoint("https://b.example.com/n", tenant=other_tenant, events=["integration.auto_disabled"])
    notes = [(tenant.pk, HEALTH, {"n": n}) for n in range(5)] + [
        (str(other_tenant.pk), "integration.auto_disabled", {}), (other_tenant.pk, HEALTH, {})]
    # The read; then a savepoint, the insert and its release.
    with django_capture_on_commit_callbacks(execute=True), django_assert_num_queries(4):
        assert services.notify_many(notes) == 6
    assert NotificationDelivery.objects.filter(tenant=tenant).count() == 5
    assert len(set(NotificationDelivery.objects.values_list("notification_id", flat=True))) == 6
    assert sum(len(batch) for batch in queued) == 6
    with pytest.raises(ValueError):
        services.notify_many([(tenant.pk, "nope", {})])


def test_notify_rolls_back_with_the_callers_transaction(tenant, make_endpoint, queued,
                                                        django_capture_on_commit_callbacks):
    make_endpoint()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
            raise RuntimeError("the state change failed")
    assert NotificationDelivery.objects.count() == 0 and queued == []


def test_a_once_key_sends_a_notification_once_per_tenant(tenant, other_tenant, make_endpoint):
    make_endpoint()
    make_endpoint("https://x.example.com/n", tenant=other_tenant)
    for _ in range(2):
        services.notify(tenant_id=tenant.pk, type="credential.expiring", data={}, once_key="credential:1:window")
    assert services.notify(tenant_id=other_tenant.pk, type="credential.expiring", data={},
                           once_key="credential:1:window") == 1
    assert NotificationDelivery.objects.filter(tenant=tenant).count() == 1
    assert NotificationMarker.objects.count() == 2


def test_unknown_types_and_the_test_ping_cannot_be_notified(tenant):
    for bad in ("integration.exploded", "ping"):
        with pytest.raises(ValueError):
            services.notify(tenant_id=tenant.pk, type=bad, data={})


def test_the_secret_is_whsec_base64_and_registered_with_the_suite_secret_guard(make_endpoint):
    endpoint, secret = make_endpoint()
    assert secret.startswith("whsec_") and len(secret) > 40
    assert secret in STORED_SECRETS  # encrypted at rest through integrations_site.crypto
    endpoint.refresh_from_db()
    assert endpoint.secret == secret


def test_a_delivery_is_signed_per_standard_webhooks_and_verifies_with_the_reference_library(
        tenant, make_endpoint, receiver):
    _, secret = make_endpoint(receiver.url)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={"integration_id": "abc", "to": "degraded"})
    assert services.delivery_attempt(delivery_id=only_delivery().pk) == DeliveryStatus.DELIVERED
    (headers, body), = receiver.received
    verified = Webhook(secret).verify(body, headers)
    assert set(verified) == {"type", "timestamp", "tenant_id", "data"}
    assert verified["type"] == HEALTH and verified["tenant_id"] == str(tenant.pk)
    assert verified["data"] == {"integration_id": "abc", "to": "degraded"}
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == only_delivery().notification_id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)
    delivery = only_delivery()
    assert delivery.response_status == 200 and delivery.latency_ms is not None and delivery.attempts == 1
    assert [a.outcome for a in delivery.history.all()] == ["delivered"]


def test_rotated_secret_still_verifies_during_grace_and_not_after(tenant, make_endpoint, receiver):
    endpoint, old = make_endpoint(receiver.url)
    endpoint, new = services.notification_secret_rotate(actor=SYSTEM, endpoint=endpoint, grace_seconds=3600)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    services.delivery_attempt(delivery_id=only_delivery().pk)
    headers, body = receiver.received[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)

    endpoint.previous_secret_expires_at = timezone.now() - timedelta(seconds=1)  # the grace period is over
    endpoint.save()
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    services.delivery_attempt(delivery_id=NotificationDelivery.objects.get(status="pending").pk)
    headers, body = receiver.received[-1]
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)


def test_receiver_answering_500_500_200_ends_delivered_after_three_attempts(tenant, make_endpoint, receiver, queued):
    make_endpoint(receiver.url)
    receiver.answer(500, 500, 200)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery, now = only_delivery(), timezone.now()
    assert services.delivery_attempt(delivery_id=delivery.pk, now=now) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert 4 <= (delivery.next_attempt_at - now).total_seconds() <= 6  # the first step of 5,60,300,…
    assert delivery.last_error == {"code": "UNEXPECTED_STATUS", "message": "The receiver answered 500."}
    assert services.delivery_attempt(delivery_id=delivery.pk, now=now) is None  # not due yet: nothing sent
    assert services.delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(seconds=10)) == "pending"
    assert services.delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(seconds=100)) == "delivered"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.response_status == 200 and delivery.last_error is None
    assert [a.outcome for a in delivery.history.all()] == ["retry", "retry", "delivered"]
    assert [a.response_status for a in delivery.history.all()] == [500, 500, 200]
    assert len(receiver.received) == 3
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1  # the same id on every attempt


def test_retries_stop_after_the_schedule_and_the_delivery_fails(tenant, make_endpoint, receiver, settings):
    settings.NOTIFICATION_RETRY_SCHEDULE = [1, 1]
    make_endpoint(receiver.url)
    receiver.answer(503)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery, now = only_delivery(), timezone.now()
    outcomes = [services.delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(seconds=10 * i))
                for i in range(4)]
    assert outcomes == ["pending", "pending", "failed", None]
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.next_attempt_at is None and len(receiver.received) == 3


def test_410_gone_disables_the_endpoint_and_is_not_retried(tenant, make_endpoint, receiver):
    endpoint, _ = make_endpoint(receiver.url)
    receiver.answer(410)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    first, second = NotificationDelivery.objects.order_by("created_at", "id")
    assert services.delivery_attempt(delivery_id=first.pk) == DeliveryStatus.FAILED
    endpoint.refresh_from_db()
    assert endpoint.active is False and endpoint.disabled_reason == "gone" and endpoint.disabled_at is not None
    assert AuditEvent.objects.filter(action="notification_endpoint.disabled", target_id=str(endpoint.pk)).exists()
    first.refresh_from_db()
    assert first.last_error["code"] == "ENDPOINT_GONE" and first.response_status == 410
    # What was queued before is not sent to a receiver that said it is gone; nothing new is made for it.
    assert services.delivery_attempt(delivery_id=second.pk) == DeliveryStatus.FAILED
    second.refresh_from_db()
    assert second.last_error["code"] == "ENDPOINT_DISABLED" and len(receiver.received) == 1
    assert services.notify(tenant_id=tenant.pk, type=HEALTH, data={}) == 0
    # A person turns it on again: the reason goes.
    endpoint = services.notification_endpoint_update(actor=SYSTEM, endpoint=endpoint, data={"active": True})
    assert endpoint.disabled_reason == "" and endpoint.disabled_at is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/x"])
def test_a_url_the_address_policy_refuses_fails_the_delivery_with_url_not_allowed(tenant, make_endpoint, url,
                                                                                 settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    make_endpoint(url)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    assert services.delivery_attempt(delivery_id=only_delivery().pk) == DeliveryStatus.FAILED  # never retried
    delivery = only_delivery()
    assert delivery.last_error["code"] == "URL_NOT_ALLOWED" and delivery.response_status is None
    assert delivery.history.get().error_code == "URL_NOT_ALLOWED"


def test_broker_down_during_a_burst_then_the_sweep_delivers_every_one(tenant, make_endpoint, receiver, sent_tasks,
                                                                     django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(queueing, "RETRY_PAUSE_SECONDS", 0)
    make_endpoint(receiver.url)
    make_endpoint(receiver.url.replace("/hooks/notify", "/other"))
    sent_tasks.broker_down = True
    for number in range(15):
        with django_capture_on_commit_callbacks(execute=True):
            services.notify(tenant_id=tenant.pk, type=HEALTH, data={"n": number})
    assert NotificationDelivery.objects.filter(status="pending").count() == 30
    assert sent_tasks[services.dispatch.DELIVER] == []  # every hand-off failed; the rows wait

    sent_tasks.broker_down = False
    assert services.deliveries_sweep() == 0  # not overdue yet: the queue had its chance first
    assert services.deliveries_sweep(now=timezone.now() + timedelta(seconds=60)) == 30
    batches = sent_tasks[services.dispatch.DELIVER]
    assert all(len(batch) <= 10 for batch in batches)
    assert sum(tasks.deliver_notifications(batch) for batch in batches) == 30
    assert NotificationDelivery.objects.filter(status="delivered").count() == 30
    assert sorted(body["data"]["n"] for body in receiver.bodies()) == sorted(list(range(15)) * 2)
    assert sum(tasks.deliver_notifications(batch) for batch in batches) == 0  # a second run sends nothing


def test_a_delivery_whose_worker_died_mid_send_is_swept_after_its_lease(tenant, make_endpoint, receiver, sent_tasks,
                                                                       settings):
    make_endpoint(receiver.url)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery, now = only_delivery(), timezone.now()
    services.delivery._claim(delivery.pk, now)  # claimed, then the worker is gone before sending
    assert services.deliveries_sweep(now=now + timedelta(seconds=30)) == 0  # the lease still holds
    later = now + timedelta(seconds=settings.NOTIFICATION_TIMEOUT_SECONDS + 120)
    assert services.deliveries_sweep(now=later) == 1
    assert services.delivery_attempt(delivery_id=delivery.pk, now=later) == DeliveryStatus.DELIVERED
    assert only_delivery().attempts == 2  # the lost attempt counts


def test_a_retry_soon_is_queued_with_a_countdown_and_a_late_one_left_to_the_sweep(tenant, make_endpoint, receiver,
                                                                                 sent_tasks, settings,
                                                                                 django_capture_on_commit_callbacks):
    calls = []
    sent_tasks.on_send = lambda name, args: calls.append(name)
    settings.NOTIFICATION_RETRY_SCHEDULE = [5, 3600]
    make_endpoint(receiver.url)
    receiver.answer(500)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery, now = only_delivery(), timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_attempt(delivery_id=delivery.pk, now=now)
    assert sent_tasks[services.dispatch.DELIVER] == [[str(delivery.pk)]]
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(seconds=10))
    assert sent_tasks[services.dispatch.DELIVER] == [[str(delivery.pk)]]  # an hour off: the sweep's job


def test_redeliver_sends_a_finished_delivery_again_with_the_same_id(tenant, make_endpoint, receiver, queued,
                                                                    django_capture_on_commit_callbacks):
    make_endpoint(receiver.url)
    services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    delivery = only_delivery()
    services.delivery_attempt(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_redeliver(actor=SYSTEM, delivery=delivery)
    assert queued == [[str(delivery.pk)]]
    assert services.delivery_attempt(delivery_id=delivery.pk) == DeliveryStatus.DELIVERED
    assert receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"]
    assert only_delivery().history.count() == 2
    assert AuditEvent.objects.filter(action="notification_delivery.redelivered").count() == 1


def test_prune_deletes_finished_deliveries_past_retention_only(tenant, make_endpoint, receiver):
    make_endpoint(receiver.url)
    for _ in range(2):
        services.notify(tenant_id=tenant.pk, type=HEALTH, data={})
    old, new = NotificationDelivery.objects.order_by("created_at", "id")
    services.delivery_attempt(delivery_id=old.pk)
    NotificationDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    NotificationDelivery.objects.filter(pk=new.pk).update(created_at=timezone.now() - timedelta(days=40))
    assert services.deliveries_prune() == 1  # the pending one stays, however old
    assert list(NotificationDelivery.objects.values_list("pk", flat=True)) == [new.pk]
