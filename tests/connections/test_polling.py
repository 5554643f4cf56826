"""Status polling: reading the answer, mapping raw statuses, storing changes, and the poll dispatcher."""
import json
import threading
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone
from werkzeug import Response

from connections import tasks
from connections.models import ExternalStatus, Integration, StatusChange
from connections.services import polling, queueing, statuses
from tests.connections.factories import IntegrationFactory


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def mapped(integration):
    integration.provider.default_status_mapping = {"available": ["open", "Free"], "sold": ["gone"]}
    integration.provider.save(update_fields=["default_status_mapping"])
    integration.status_mapping = {"hold": ["open"], "reserved": ["held-for-you"]}
    return integration


# --- mapping ----------------------------------------------------------------------------------------------------


def test_provider_mapping_is_merged_with_the_integrations_and_the_integration_wins(mapped):
    mapping = statuses.raw_to_canonical(mapped)

    assert mapping == {"open": "hold", "Free": "available", "gone": "sold", "held-for-you": "reserved"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("open", "hold"), ("OPEN", "hold"), ("free", "available"), ("Free", "available"), ("GONE", "sold"),
     ("unheard-of", None), ("", None)],
)
def test_map_status_is_exact_first_then_case_insensitive(mapped, raw, expected):
    assert statuses.map_status(raw, statuses.raw_to_canonical(mapped)) == expected


def test_exact_match_beats_a_case_insensitive_one():
    assert statuses.map_status("Open", {"open": "hold", "Open": "available"}) == "available"


# --- reading the answer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["items", "data", "results", "statuses"])
def test_default_list_keys_are_found(integration, key):
    data = {"meta": {"n": 1}, key: [{"id": 1, "status": "open"}]}

    assert statuses.extract_items(data, integration) == [("1", "open")]


def test_a_root_list_is_read_and_bad_items_are_skipped(integration):
    data = [{"id": "a", "status": "open"}, {"id": "b"}, {"status": "open"}, "junk", {"id": "c", "status": {"x": 1}},
            {"id": 7, "status": 3}]

    assert statuses.extract_items(data, integration) == [("a", "open"), ("7", "3")]


def test_a_dotted_path_with_an_index_reaches_nested_items(integration):
    integration.status_items_path = "pages.0.units"
    integration.status_id_field = "ref.code"
    integration.status_field = "state"
    data = {"pages": [{"units": [{"ref": {"code": "U1"}, "state": "vacant"}]}]}

    assert statuses.extract_items(data, integration) == [("U1", "vacant")]


@pytest.mark.parametrize("data", [{"nothing": "here"}, "text", {"items": "not a list"}, 42])
def test_an_answer_without_a_list_is_a_poll_error(integration, data):
    with pytest.raises(statuses.PollError) as caught:
        statuses.extract_items(data, integration)

    assert caught.value.code == "UNEXPECTED_STATUS"


def test_a_configured_path_that_is_missing_is_a_poll_error(integration):
    integration.status_items_path = "data.units"

    with pytest.raises(statuses.PollError):
        statuses.extract_items({"items": [{"id": 1, "status": "open"}]}, integration)


# --- storing ----------------------------------------------------------------------------------------------------


def test_storing_upserts_rows_and_records_each_change(mapped):
    first = statuses.statuses_store(integration=mapped, pairs=[("a", "open"), ("b", "mystery"), ("a", "gone")])

    assert first.as_dict() == {"seen": 2, "changed": 0, "unknown": {"mystery": 1}}
    assert ExternalStatus.objects.get(external_id="a").canonical_status == "sold"  # the last value of a repeated id

    second = statuses.statuses_store(integration=mapped, pairs=[("a", "gone"), ("b", "open"), ("c", "FREE")])

    assert second.as_dict() == {"seen": 3, "changed": 1, "unknown": {}}
    b = ExternalStatus.objects.get(external_id="b")
    assert (b.canonical_status, b.raw_status, b.is_unknown) == ("hold", "open", False)
    change = StatusChange.objects.get()
    assert (change.external_id, change.old_canonical, change.new_canonical, change.old_raw, change.new_raw) == (
        "b", "unavailable", "hold", "mystery", "open"
    )
    mapped.refresh_from_db()
    assert mapped.last_polled_at is not None


def test_a_mapping_fix_turns_an_unknown_value_into_a_change(mapped):
    statuses.statuses_store(integration=mapped, pairs=[("a", "paused")])
    mapped.status_mapping = {**mapped.status_mapping, "unreleased": ["paused"]}

    result = statuses.statuses_store(integration=mapped, pairs=[("a", "paused")])

    assert result.changed == 1 and result.unknown == {}
    row = ExternalStatus.objects.get(external_id="a")
    assert row.canonical_status == "unreleased" and row.is_unknown is False


def test_statuses_are_kept_per_integration(mapped, tenant, provider):
    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    statuses.statuses_store(integration=mapped, pairs=[("a", "open")])

    statuses.statuses_store(integration=other, pairs=[("a", "gone")])

    assert ExternalStatus.objects.filter(external_id="a").count() == 2
    assert not StatusChange.objects.exists()


# --- polling a real server ------------------------------------------------------------------------------------------


@pytest.fixture
def far(mapped, httpserver):
    Integration.objects.filter(pk=mapped.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), status_endpoint="/statuses", retry_count=0,
        status_mapping=mapped.status_mapping,
    )
    mapped.refresh_from_db()
    return mapped


def test_the_worker_task_polls_and_stores(far, httpserver):
    httpserver.expect_request("/statuses").respond_with_json({"items": [{"id": "a", "status": "open"}]})

    tasks.run_status_poll(str(far.pk))

    assert ExternalStatus.objects.get(integration=far).canonical_status == "hold"


def test_the_worker_task_logs_and_swallows_a_failed_poll(far, httpserver):
    httpserver.expect_request("/statuses").respond_with_data("nope", status=500)

    tasks.run_status_poll(str(far.pk))

    assert not ExternalStatus.objects.exists()


def test_the_worker_task_skips_a_deleted_integration(far, httpserver):
    Integration.objects.filter(pk=far.pk).update(deleted_at=timezone.now())

    tasks.run_status_poll(str(far.pk))

    assert not httpserver.log


def test_a_poll_sends_the_credential_and_retries_a_5xx(far, httpserver):
    from audit.services import SYSTEM
    from connections.services import credential_set

    Integration.objects.filter(pk=far.pk).update(retry_count=1)
    far.refresh_from_db()
    credential_set(actor=SYSTEM, integration=far, credential_type="bearer", data={"token": "tok_poll_secret_991"})
    httpserver.expect_oneshot_request("/statuses").respond_with_data("busy", status=503)
    httpserver.expect_request("/statuses").respond_with_handler(
        lambda request: Response(json.dumps([{"id": "a", "status": "gone"}]), content_type="application/json")
    )

    result = polling.status_poll(integration=far)

    assert result.seen == 1
    assert [r.headers.get("Authorization") for r, _ in httpserver.log] == ["Bearer tok_poll_secret_991"] * 2


# --- dispatcher ----------------------------------------------------------------------------------------------------


def test_poll_dispatcher_claims_only_due_polling_integrations_with_an_endpoint(
    tenant, provider, sent_tasks, django_capture_on_commit_callbacks
):
    sent = sent_tasks[queueing.RUN_STATUS_POLL]
    now = timezone.now()

    def make(name, **fields):
        values = {"update_method": "polling", "status_endpoint": "/statuses", "polling_interval_seconds": 30,
                  **fields}
        return IntegrationFactory(tenant=tenant, provider=provider, name=name, **values)

    due_null = make("never polled")
    due_past = make("past due", next_poll_at=now - timedelta(seconds=1))
    skipped = [
        make("webhook", update_method="webhook"),
        make("no endpoint", status_endpoint=""),
        make("future", next_poll_at=now + timedelta(seconds=20)),
        make("disabled", status="disabled"),
        make("deleted", deleted_at=now),
    ]
    before = {i.pk: i.next_poll_at for i in skipped}

    with django_capture_on_commit_callbacks(execute=True):
        assert polling.status_polls_dispatch(now=now) == 2

    assert sorted(sent) == sorted([str(due_null.pk), str(due_past.pk)])
    for row in Integration.objects.filter(pk__in=[due_null.pk, due_past.pk]):
        assert row.next_poll_at == now + timedelta(seconds=30)
    assert {i.pk: i.next_poll_at for i in Integration.objects.filter(pk__in=before)} == before
    with django_capture_on_commit_callbacks(execute=True):
        assert polling.status_polls_dispatch(now=now) == 0
    assert len(sent) == 2


def test_status_poll_queue_sends_the_integration_after_commit(integration, sent_tasks,
                                                              django_capture_on_commit_callbacks):
    sent = sent_tasks[queueing.RUN_STATUS_POLL]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        queueing.status_poll_queue(integration=integration)

    assert len(callbacks) == 1 and sent == [str(integration.pk)]


@pytest.mark.django_db(transaction=True)
def test_two_polls_of_the_same_integration_at_once_do_not_collide(mapped):
    """The second poll waits for the first instead of inserting the same new items again."""
    Integration.objects.filter(pk=mapped.pk).update(status_mapping=mapped.status_mapping)
    pairs = [("a", "open"), ("b", "gone")]
    stored, release = threading.Event(), threading.Event()
    errors, results = [], {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = statuses.statuses_store(integration=mapped, pairs=pairs)
                stored.set()
                release.wait(timeout=10)
        except Exception as exc:  # surfaced below
            errors.append(exc)
            stored.set()
        finally:
            connections.close_all()

    def second():
        try:
            results["second"] = statuses.statuses_store(integration=mapped, pairs=[("a", "gone"), ("b", "gone")])
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    one = threading.Thread(target=first)
    one.start()
    assert stored.wait(timeout=10)
    two = threading.Thread(target=second)
    two.start()
    two.join(timeout=0.5)
    assert two.is_alive()  # waiting for the first poll to commit
    release.set()
    one.join(timeout=10)
    two.join(timeout=10)

    assert not errors, errors
    assert results["first"].changed == 0 and results["second"].changed == 1
    assert ExternalStatus.objects.filter(integration=mapped).count() == 2
    assert StatusChange.objects.get().external_id == "a"
