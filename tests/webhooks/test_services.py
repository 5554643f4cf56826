"""Processing accepted events: status updates shared with polling, retries with backoff, replay, sweep, prune."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections import tasks as connection_tasks
from connections.models import ExternalStatus, Integration, StatusChange
from connections.services import integration_delete, statuses_store
from integrations_site.api.errors import ConflictError
from tests.connections.factories import IntegrationFactory
from webhooks import services
from webhooks.models import WebhookEvent
from webhooks.services import processing

pytestmark = pytest.mark.usefixtures("queued")

MAPPING = {"hold": ["open"], "reserved": ["held-for-you"]}
PROVIDER_MAPPING = {"available": ["open", "Free"], "sold": ["gone"]}


@pytest.fixture
def webhook_integration(integration):
    integration.provider.default_status_mapping = PROVIDER_MAPPING
    integration.provider.save(update_fields=["default_status_mapping"])
    Integration.objects.filter(pk=integration.pk).update(update_method="webhook", status_mapping=MAPPING)
    integration.refresh_from_db()
    return integration


@pytest.fixture
def endpoint(make_endpoint, webhook_integration):
    return make_endpoint(verify_signature=False, integration=webhook_integration)[0]


def accept(endpoint, body, content_type="application/json", dedupe_key=None):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    event, created = services.event_accept(endpoint=endpoint, body=body, headers={}, content_type=content_type,
                                           source_ip="127.0.0.1", dedupe_key=dedupe_key)
    assert created
    return event


def statuses(integration) -> dict:
    return {
        row.external_id: (row.raw_status, row.canonical_status, row.is_unknown)
        for row in ExternalStatus.objects.filter(integration=integration)
    }


# --- status updates --------------------------------------------------------------------------------------------


def test_a_single_status_object_is_mapped_into_external_status(endpoint, webhook_integration):
    event = accept(endpoint, {"id": "sku-1", "status": "open"})
    assert services.event_process(event_id=event.pk) == "processed"
    event.refresh_from_db()
    assert event.result == {"handled": "statuses", "seen": 1, "changed": 0, "unknown": {}}
    assert event.attempts == 1 and event.processed_at is not None and event.last_error == ""
    assert statuses(webhook_integration) == {"sku-1": ("open", "hold", False)}  # the integration's mapping wins


def test_a_list_of_statuses_with_an_unknown_value_maps_it_to_unavailable(endpoint, webhook_integration):
    accept_first = accept(endpoint, {"id": "a", "status": "open"})
    services.event_process(event_id=accept_first.pk)
    event = accept(endpoint, [{"id": "a", "status": "gone"}, {"id": "b", "status": "mystery"},
                              {"id": "c", "status": "FREE"}, "not an item"])
    assert services.event_process(event_id=event.pk) == "processed"
    event.refresh_from_db()
    assert event.result == {"handled": "statuses", "seen": 3, "changed": 1, "unknown": {"mystery": 1}}
    assert statuses(webhook_integration) == {
        "a": ("gone", "sold", False), "b": ("mystery", "unavailable", True), "c": ("FREE", "available", False),
    }
    change = StatusChange.objects.get(integration=webhook_integration)
    assert (change.external_id, change.old_canonical, change.new_canonical) == ("a", "hold", "sold")


def test_a_wrapped_list_and_a_configured_items_path_are_read(endpoint, webhook_integration):
    services.event_process(event_id=accept(endpoint, {"items": [{"id": "a", "status": "open"}]}).pk)
    Integration.objects.filter(pk=webhook_integration.pk).update(
        status_items_path="data.units", status_id_field="sku", status_field="state"
    )
    event = accept(endpoint, {"data": {"units": [{"sku": "z", "state": "held-for-you"}]}})
    assert services.event_process(event_id=event.pk) == "processed"
    assert statuses(webhook_integration) == {"a": ("open", "hold", False), "z": ("held-for-you", "reserved", False)}


@pytest.fixture
def polled_twin(webhook_integration, httpserver, settings):
    """A polling integration with the same mappings, pointed at a real HTTP server."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return IntegrationFactory(
        tenant=webhook_integration.tenant, provider=webhook_integration.provider, name="Polled twin",
        api_base_url=httpserver.url_for("/").rstrip("/"), status_endpoint="/statuses", retry_count=0,
        status_mapping=MAPPING,
    )


def test_a_webhook_maps_statuses_exactly_as_a_poll_of_the_same_data_does(endpoint, webhook_integration,
                                                                          polled_twin, httpserver):
    rounds = [
        [{"id": "a", "status": "open"}, {"id": "b", "status": "Free"}, {"id": "c", "status": "??"}],
        [{"id": "a", "status": "gone"}, {"id": "b", "status": "held-for-you"}, {"id": "c", "status": "open"}],
    ]
    for items in rounds:
        httpserver.clear()
        httpserver.expect_request("/statuses").respond_with_json({"items": items})
        connection_tasks.run_status_poll(str(polled_twin.pk))
        services.event_process(event_id=accept(endpoint, {"items": items}).pk)
        assert statuses(webhook_integration) == statuses(polled_twin)
    changes = lambda integration: sorted(  # noqa: E731
        StatusChange.objects.filter(integration=integration).values_list("external_id", "old_canonical",
                                                                         "new_canonical", "old_raw", "new_raw")
    )
    assert changes(webhook_integration) == changes(polled_twin) and len(changes(polled_twin)) == 3


def test_a_form_body_is_read_as_fields(endpoint, webhook_integration):
    event = accept(endpoint, b"id=sku-9&status=gone", "application/x-www-form-urlencoded; charset=utf-8")
    assert services.event_process(event_id=event.pk) == "processed"
    assert statuses(webhook_integration) == {"sku-9": ("gone", "sold", False)}


def test_slacks_payload_field_is_unpacked_as_json(endpoint, webhook_integration):
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps({"items": [{"id": "s1", "status": "open"}]}), "token": "t"}).encode()
    event = accept(endpoint, body, "application/x-www-form-urlencoded")
    assert services.event_process(event_id=event.pk) == "processed"
    assert statuses(webhook_integration) == {"s1": ("open", "hold", False)}


def test_parse_body_reads_json_forms_and_slack_payloads():
    assert services.parse_body(b'{"a": [1]}', "application/json") == {"a": [1]}
    assert services.parse_body(b"a=1&b=2&b=3", "application/x-www-form-urlencoded") == {"a": "1", "b": ["2", "3"]}
    assert services.parse_body(b"payload=%7B%22x%22%3A1%7D", "application/x-www-form-urlencoded") == {"x": 1}
    assert services.parse_body(b"payload=not-json", "application/x-www-form-urlencoded") == {"payload": "not-json"}


def test_a_status_payload_without_a_list_fails_at_once_with_the_reason(endpoint, webhook_integration):
    event = accept(endpoint, {"type": "ping"})
    assert services.event_process(event_id=event.pk) == "failed"
    event.refresh_from_db()
    assert (event.attempts, event.next_attempt_at, event.processed_at) == (1, None, None)
    assert "no list of items" in event.last_error
    assert not ExternalStatus.objects.exists()


def test_an_integration_without_webhook_updates_records_the_event(make_endpoint, integration):
    endpoint, _ = make_endpoint(verify_signature=False)
    event = accept(endpoint, {"id": "sku-1", "status": "open"})
    assert services.event_process(event_id=event.pk) == "processed"
    event.refresh_from_db()
    assert event.result == {"handled": "recorded"} and event.status == "processed"
    assert not ExternalStatus.objects.exists()


# --- idempotence, retries, failure -----------------------------------------------------------------------------


def test_a_second_run_of_a_processed_event_is_a_no_op(endpoint, webhook_integration):
    event = accept(endpoint, {"id": "sku-1", "status": "open"})
    assert services.event_process(event_id=event.pk) == "processed"
    first = WebhookEvent.objects.get(pk=event.pk)
    assert services.event_process(event_id=event.pk) is None
    again = WebhookEvent.objects.get(pk=event.pk)
    assert (again.attempts, again.processed_at, again.status) == (1, first.processed_at, "processed")
    assert ExternalStatus.objects.count() == 1


def test_an_unknown_event_id_is_nothing_to_do(db):
    import uuid

    assert services.event_process(event_id=uuid.uuid4()) is None


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
])
def test_a_body_that_cannot_be_read_fails_at_once_with_the_reason(endpoint, body, reason):
    """A permanent failure: retrying an unreadable body on the six-step schedule would change nothing."""
    event = accept(endpoint, body)
    assert services.event_process(event_id=event.pk) == "failed"
    event.refresh_from_db()
    assert (event.status, event.attempts, event.next_attempt_at) == ("failed", 1, None)
    assert reason in event.last_error
    assert services.event_process(event_id=event.pk) is None


@pytest.fixture
def database_hiccup(monkeypatch):
    """A transient failure while the event's statuses are stored (the database refusing the statement)."""
    from django.db import OperationalError

    def refuse(*, integration, pairs):
        raise OperationalError("could not obtain lock")

    monkeypatch.setattr(processing, "statuses_store", refuse)


def test_a_transient_failure_is_retried_after_about_five_seconds(endpoint, database_hiccup):
    event = accept(endpoint, {"id": "sku-1", "status": "open"})
    before = timezone.now()
    assert services.event_process(event_id=event.pk) == "pending"
    event.refresh_from_db()
    assert event.status == "pending" and event.attempts == 1 and event.processed_at is None
    assert event.last_error.startswith("OperationalError")
    wait = (event.next_attempt_at - before).total_seconds()
    assert 4 <= wait <= 5.6  # 5 s ± 10 % jitter


def test_after_the_last_scheduled_try_the_event_is_failed(endpoint, settings, database_hiccup):
    event = accept(endpoint, {"id": "sku-1", "status": "open"})
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    waits = []
    for attempt in range(1, len(schedule) + 1):
        assert services.event_process(event_id=event.pk) == "pending"
        event.refresh_from_db()
        waits.append((event.next_attempt_at - timezone.now()).total_seconds())
        assert event.attempts == attempt
    for wait, base in zip(waits, schedule, strict=True):
        assert base * 0.9 - 2 <= wait <= base * 1.1 + 1
    assert services.event_process(event_id=event.pk) == "failed"
    event.refresh_from_db()
    assert event.status == "failed" and event.attempts == len(schedule) + 1
    assert event.next_attempt_at is None and event.last_error.startswith("OperationalError")
    assert services.event_process(event_id=event.pk) is None


def test_a_failure_after_a_success_path_rolls_its_effects_back(endpoint, webhook_integration, monkeypatch):
    def store_then_fail(*, integration, pairs):
        statuses_store(integration=integration, pairs=pairs)
        raise RuntimeError("worker fell over")

    monkeypatch.setattr(processing, "statuses_store", store_then_fail)
    event = accept(endpoint, {"id": "sku-1", "status": "open"})
    assert services.event_process(event_id=event.pk) == "pending"
    assert not ExternalStatus.objects.exists()
    assert WebhookEvent.objects.get(pk=event.pk).last_error == "RuntimeError: worker fell over"


def test_retry_delay_follows_the_schedule_with_jitter(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [10, 100]
    for _ in range(50):
        assert 9 <= services.retry_delay(1) <= 11
        assert 90 <= services.retry_delay(2) <= 110
    assert services.retry_delay(3) is None


# --- replay ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, final", [({"id": "a", "status": "open"}, "processed"), (b"{bad", "failed")])
def test_replay_of_a_finished_event_queues_it_again_and_is_audited(endpoint, settings, queued,
                                                                  django_capture_on_commit_callbacks, body, final):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    event = accept(endpoint, body)
    assert services.event_process(event_id=event.pk) == final
    with django_capture_on_commit_callbacks(execute=True):
        replayed = services.event_replay(actor=SYSTEM, event=event)
    assert replayed.status == "pending" and replayed.attempts == 0 and replayed.next_attempt_at is None
    assert queued[-1] == [str(event.pk)]
    audit = AuditEvent.objects.get(action="webhook_event.replayed")
    assert audit.tenant_id == endpoint.tenant_id and audit.target_id == str(event.pk)
    assert services.event_process(event_id=event.pk) == final


def test_replay_of_a_pending_event_is_a_conflict(endpoint):
    event = accept(endpoint, {"id": "a", "status": "open"})
    with pytest.raises(ConflictError):
        services.event_replay(actor=SYSTEM, event=event)
    assert not AuditEvent.objects.filter(action="webhook_event.replayed").exists()


# --- prune -----------------------------------------------------------------------------------------------------


def test_prune_deletes_only_processed_events_older_than_the_retention(endpoint, settings):
    settings.WEBHOOK_EVENT_RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    rows = {}
    for name, status, received in [
        ("old_processed", "processed", old), ("new_processed", "processed", timezone.now() - timedelta(days=29)),
        ("old_failed", "failed", old), ("old_pending", "pending", old),
    ]:
        event = accept(endpoint, {"n": name})
        WebhookEvent.objects.filter(pk=event.pk).update(status=status, received_at=received)
        rows[name] = event.pk
    assert services.events_prune() == 1
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {
        rows["new_processed"], rows["old_failed"], rows["old_pending"]
    }


# --- endpoints and the integration ---------------------------------------------------------------------------


def test_deleting_the_integration_disables_its_endpoints_and_keeps_their_events(make_endpoint, integration):
    (one, _), (two, _) = make_endpoint(), make_endpoint()
    event = accept(one, {"a": 1})
    integration_delete(actor=SYSTEM, integration=integration)
    one.refresh_from_db()
    two.refresh_from_db()
    assert not one.active and not two.active and one.deleted_at is None
    assert WebhookEvent.objects.filter(pk=event.pk).exists()
    assert AuditEvent.objects.filter(action="webhook_endpoint.disabled").count() == 2


def test_events_of_a_deleted_integration_are_recorded_not_applied(endpoint, webhook_integration):
    event = accept(endpoint, {"id": "a", "status": "open"})
    integration_delete(actor=SYSTEM, integration=webhook_integration)
    assert services.event_process(event_id=event.pk) == "processed"
    assert WebhookEvent.objects.get(pk=event.pk).result == {"handled": "recorded"}
    assert not ExternalStatus.objects.exists()


def test_verifying_secrets_hold_the_previous_one_only_while_its_grace_lasts(make_endpoint):
    endpoint, old = make_endpoint()
    endpoint, new = services.webhook_secret_rotate(actor=SYSTEM, endpoint=endpoint, grace_seconds=60)
    assert endpoint.verifying_secrets() == [new, old]
    assert endpoint.verifying_secrets(now=timezone.now() + timedelta(seconds=61)) == [new]
    endpoint, newer = services.webhook_secret_rotate(actor=SYSTEM, endpoint=endpoint, grace_seconds=0)
    assert endpoint.verifying_secrets() == [newer] and endpoint.previous_secret == ""


def test_changing_the_scheme_to_one_the_secret_cannot_sign_is_refused(db, tenant, integration):
    from audit.services import SYSTEM
    from integrations_site.api.errors import ValidationFailed
    from webhooks.services import endpoint_create, endpoint_update

    endpoint, _ = endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                                  data={"name": "hmac", "signature_scheme": "hmac_sha256",
                                        "secret": "plain-secret-not-base64-!!"})
    with pytest.raises(ValidationFailed) as refused:
        endpoint_update(actor=SYSTEM, endpoint=endpoint, data={"signature_scheme": "standard_webhooks"})
    assert "signature_scheme" in refused.value.details
    endpoint.refresh_from_db()
    assert endpoint.signature_scheme == "hmac_sha256"
    changed = endpoint_update(actor=SYSTEM, endpoint=endpoint, data={"signature_scheme": "github"})
    assert changed.signature_scheme == "github"


def test_nul_characters_in_headers_are_dropped_before_storing(db, tenant, integration):
    from audit.services import SYSTEM
    from webhooks.services import endpoint_create, event_accept

    endpoint, _ = endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration, data={"name": "nul"})
    event, created = event_accept(endpoint=endpoint, body=b"{}", headers={"x-odd": "a\x00b"},
                                  content_type="application/json\x00", source_ip=None, dedupe_key=None)
    event.refresh_from_db()
    assert created and event.headers == {"x-odd": "ab"} and event.content_type == "application/json"
