"""integrations_site.bulk: the hand-written statements read and write what the ORM would."""
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Integration, StreamLease
from integrations_site import bulk
from tests.connections.factories import IntegrationFactory


def test_insert_writes_rows_equal_to_bulk_create(tenant, integration):
    at = timezone.now() - timedelta(minutes=5)
    samples = [None, {"items": [1, 2], "nested": {"a": None}}, ["x", 1.5], "text", 0]

    def rows(prefix):
        return [
            ConnectionCheck(tenant=tenant, integration=integration, kind="health", success=k % 2 == 0,
                            status_code=200 + k, latency_ms=k, error_message=f"{prefix} é\n\"quoted\"",
                            sample=sample, url=f"https://x.test/{prefix}/{k}", started_at=at, finished_at=at)
            for k, sample in enumerate(samples)
        ]

    ours, theirs = rows("ours"), rows("orm")
    with CaptureQueriesContext(connection) as queries:
        bulk.insert(ours)
    ConnectionCheck.objects.bulk_create(theirs)

    assert len([q for q in queries.captured_queries if q["sql"].startswith("INSERT")]) == 1
    fields = [f.attname for f in ConnectionCheck._meta.concrete_fields if f.attname not in ("id", "created_at")]
    for mine, orm in zip(ours, theirs, strict=True):
        assert mine._state.adding is False and mine.created_at is not None  # auto_now_add set as bulk_create does
        stored = ConnectionCheck.objects.values(*fields).get(pk=mine.pk)
        expected = ConnectionCheck.objects.values(*fields).get(pk=orm.pk)
        assert {**stored, "error_message": None, "url": None} == {**expected, "error_message": None, "url": None}
        assert stored["error_message"] == mine.error_message and stored["url"] == mine.url
    assert ConnectionCheck.objects.get(pk=ours[0].pk).sample is None  # JSON null is stored as SQL NULL, like the ORM


def test_insert_of_audit_events_keeps_their_json_and_keys(tenant):
    key = uuid.uuid4()
    event = AuditEvent(tenant=tenant, actor="system", action="test.bulk", target_id=str(key),
                       changes={"amount": Decimal("1.50"), "when": timezone.now(), "id": key, "list": [None, True]})
    bulk.insert([event])
    stored = AuditEvent.objects.get(pk=event.pk)
    orm = AuditEvent.objects.create(tenant=tenant, actor="system", action="test.orm", changes=event.changes)
    assert stored.changes == AuditEvent.objects.get(pk=orm.pk).changes
    assert stored.changes["amount"] == "1.50" and stored.changes["id"] == str(key)
    assert stored.created_at == event.created_at


def test_insert_of_nothing_sends_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        bulk.insert([])


def test_fetch_loads_only_the_named_fields_with_their_python_types(integration):
    Integration.objects.filter(pk=integration.pk).update(last_error={"code": "TIMEOUT"}, consecutive_failures=2)
    # The statement the PostgreSQL paths send; elsewhere the same read with a plain key parameter.
    where, params = (("id = ANY(%s::uuid[])", [bulk.pg_array([integration.pk])]) if connection.vendor == "postgresql"
                     else ("id = %s", [Integration._meta.pk.get_db_prep_value(integration.pk, connection)]))
    [row] = bulk.fetch(Integration, ("id", "name", "last_error", "consecutive_failures", "created_at"),
                       where, params, annotation=("flag", "1 + 1"))
    assert row.pk == integration.pk and row.name == integration.name
    assert row.last_error == {"code": "TIMEOUT"} and row.consecutive_failures == 2 and row.flag == 2
    assert row.created_at == Integration.objects.get(pk=integration.pk).created_at
    assert row.get_deferred_fields() >= {"api_base_url", "settings"}


def test_update_sets_the_values_on_the_given_rows_only(tenant, provider, integration):
    from tests.connections.factories import IntegrationFactory

    other = IntegrationFactory(tenant=tenant, provider=provider, name="Other")
    now = timezone.now()
    bulk.update(Integration, [integration.pk], {"health_state": "degraded", "last_error": {"code": "X"},
                                                "health_checked_at": now})
    changed, untouched = Integration.objects.get(pk=integration.pk), Integration.objects.get(pk=other.pk)
    assert (changed.health_state, changed.last_error, changed.health_checked_at) == ("degraded", {"code": "X"}, now)
    assert untouched.health_state == "unknown" and untouched.last_error == {}


def test_rows_update_writes_each_rows_own_values_as_bulk_update_would(tenant, integration):
    other = IntegrationFactory(tenant=tenant)
    at = timezone.now() - timedelta(minutes=3)
    leases = [StreamLease.objects.create(integration=i, tenant=tenant) for i in (integration, other)]
    leases[0].last_event_id, leases[0].recent_event_ids, leases[0].last_event_at = "e-1", ["e-0", "e-1"], at
    leases[0].last_error, leases[0].lag_seconds, leases[0].events_total = {"code": "X", "message": "é\n"}, 0.25, 7
    leases[1].last_event_id, leases[1].recent_event_ids, leases[1].last_event_at = "", [], None
    leases[1].last_error, leases[1].lag_seconds, leases[1].events_total = {}, None, 2**40
    fields = ["last_event_id", "recent_event_ids", "last_event_at", "last_error", "lag_seconds", "events_total"]
    with CaptureQueriesContext(connection) as queries:
        bulk.rows_update(leases, fields)
    assert len(queries) == 1  # one executemany
    for lease in leases:
        stored = StreamLease.objects.get(pk=lease.pk)
        assert [getattr(stored, name) for name in fields] == [getattr(lease, name) for name in fields]
    bulk.rows_update([], fields)  # nothing to write: no statement
