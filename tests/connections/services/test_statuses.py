"""External statuses: mapping raw statuses, reading them out of an answer, storing changes."""
import threading

import pytest
from django.db import connections, transaction

from connections.models import ExternalStatus, Integration, StatusChange
from connections.services import statuses
from tests.connections.factories import IntegrationFactory

# --- mapping -----------------------------------------------------------------------------------------------------


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


# --- reading the answer ------------------------------------------------------------------------------------------


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


# --- storing -----------------------------------------------------------------------------------------------------


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
