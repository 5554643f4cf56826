"""Prepared statements (integrations_site/prepared.py) answer what the ORM answers for the same queryset,
with other ids than the ones they were compiled with, on either database."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Credential, Integration
from integrations_site.prepared import Prepared, bound_cursor
from tests.connections.factories import IntegrationFactory

COLUMNS = ("pk", "name", "created_at", "health_checked_at", "settings", "tenant_id", "provider__slug")


def _builder(ordering, tenant):
    return Integration.objects.filter(tenant_id=tenant, deleted_at__isnull=True).order_by(*ordering).values(*COLUMNS)


PREPARED = Prepared(_builder, ids=("tenant",))


@pytest.fixture
def rows(tenant, other_tenant, provider):
    now = timezone.now()
    made = [IntegrationFactory(tenant=tenant, provider=provider, name=f"Item {n:02d}", settings={"n": n},
                               health_checked_at=now - timedelta(minutes=n) if n % 2 else None)
            for n in range(7)]
    IntegrationFactory(tenant=other_tenant, provider=provider, name="Theirs")
    Integration.objects.filter(pk=made[3].pk).update(deleted_at=now)
    return made


@pytest.mark.parametrize("ordering", [("-created_at",), ("name",), ("-name",), ("health_checked_at", "name")])
def test_rows_are_the_orm_rows_for_every_ordering_limit_and_offset(rows, tenant, ordering):
    expected = list(_builder(ordering, tenant.pk))
    assert len(expected) == 6
    assert PREPARED.rows(ordering, tenant=tenant.pk) == expected
    for limit, offset in ((2, 0), (2, 4), (50, 5), (50, 6), (3, 100)):
        assert PREPARED.rows(ordering, limit=limit, offset=offset, tenant=tenant.pk) == expected[offset:offset + limit]
    assert PREPARED.rows(ordering, offset=2, tenant=str(tenant.pk)) == expected[2:]
    row = PREPARED.rows(ordering, limit=1, tenant=tenant.pk)[0]
    assert isinstance(row["pk"], uuid.UUID) and row["created_at"].tzinfo is not None
    assert row["created_at"] == Integration.objects.get(pk=row["pk"]).created_at


def test_count_and_other_tenants_ids(rows, tenant, other_tenant):
    assert PREPARED.count(("name",), tenant=tenant.pk) == 6
    assert PREPARED.count(("name",), tenant=other_tenant.pk) == 1
    assert [row["name"] for row in PREPARED.rows(("name",), tenant=other_tenant.pk)] == ["Theirs"]
    assert PREPARED.rows(("name",), tenant=uuid.uuid4()) == [] and PREPARED.count(("name",), tenant=uuid.uuid4()) == 0


def test_a_later_write_is_seen(rows, tenant, provider):
    PREPARED.rows(("name",), tenant=tenant.pk)
    IntegrationFactory(tenant=tenant, provider=provider, name="Item 99")
    assert PREPARED.rows(("name",), tenant=tenant.pk)[-1]["name"] == "Item 99"


def test_ids_that_are_not_uuids_and_missing_ids_are_refused(db):
    with pytest.raises(ValueError):
        PREPARED.rows(("name",), tenant="not-a-uuid")
    with pytest.raises(TypeError):
        PREPARED.rows(("name",))


def test_a_builder_that_ignores_an_id_or_is_not_a_values_queryset_is_refused(db):
    ignoring = Prepared(lambda shape, tenant, pk: Integration.objects.filter(pk=pk).values("pk"), ids=("tenant", "pk"))
    with pytest.raises(ValueError, match="tenant"):
        ignoring.rows(tenant=uuid.uuid4(), pk=uuid.uuid4())
    models = Prepared(lambda shape, tenant: Integration.objects.filter(tenant_id=tenant), ids=("tenant",))
    with pytest.raises(ValueError, match="values"):
        models.rows(tenant=uuid.uuid4())
    sliced = Prepared(lambda shape, tenant: Integration.objects.filter(tenant_id=tenant).values("pk")[:5],
                      ids=("tenant",))
    with pytest.raises(ValueError, match="sliced"):
        sliced.rows(tenant=uuid.uuid4())


def test_json_and_joined_columns_convert_as_values_does(rows, tenant):
    Credential.objects.create(tenant=tenant, integration=rows[0], type="bearer", payload={"token": "t" * 20})
    joined = Prepared(lambda shape, tenant: Credential.objects.filter(tenant_id=tenant)
                      .values("pk", "integration__settings", "integration__name", "created_at"), ids=("tenant",))
    expected = list(Credential.objects.filter(tenant_id=tenant.pk)
                    .values("pk", "integration__settings", "integration__name", "created_at"))
    assert joined.rows(tenant=tenant.pk) == expected
    assert expected[0]["integration__settings"] == {"n": 0}


@pytest.mark.database_server
def test_bound_cursor_binds_on_the_server_and_postgres_prepares_a_statement_run_often(rows, tenant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sql = "SELECT COUNT(*) FROM connections_integration WHERE tenant_id = %s AND deleted_at IS NULL"
    with CaptureQueriesContext(connection) as captured:
        for _ in range(8):
            with bound_cursor(connection) as cursor:
                cursor.execute(sql, [tenant.pk])
                assert cursor.fetchone()[0] == 6
    assert len(captured.captured_queries) == 8  # Django's wrappers still see every query
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("connections_integration" in statement and "$1" in statement for statement in prepared), prepared


def test_bound_cursor_is_the_usual_cursor_for_the_orm_and_on_sqlite(rows, tenant):
    from django.db import connection

    with bound_cursor(connection) as cursor:
        cursor.execute("SELECT name FROM connections_integration WHERE tenant_id = %s ORDER BY name",
                       [tenant.pk.hex if connection.vendor == "sqlite" else tenant.pk])
        assert [row[0] for row in cursor.fetchall()][:2] == ["Item 00", "Item 01"]


def test_db_prepared_statements_off_names_no_prepare_threshold(monkeypatch):
    from integrations_site.settings.base import database_settings

    url = "postgres://ih:ih@127.0.0.1:5432/ih"
    monkeypatch.setenv("DATABASE_URL", url)
    assert "prepare_threshold" not in database_settings(url).get("OPTIONS", {})
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "0")
    assert database_settings(url)["OPTIONS"]["prepare_threshold"] is None


@pytest.mark.database_server
@pytest.mark.django_db(transaction=True)
def test_a_prepared_read_on_a_kept_connection_the_database_dropped_answers_on_a_new_one(tenant, provider):
    """With CONN_HEALTH_CHECKS the read itself checks the kept connection (no SELECT 1 round trip first)."""
    from django.db import connection

    from tests.helpers import kept_connection_dropped

    IntegrationFactory(tenant=tenant, provider=provider, name="Kept")
    with kept_connection_dropped() as dropped:
        assert [row["name"] for row in PREPARED.rows(("name",), tenant=tenant.pk)] == ["Kept"]
        assert connection.connection.info.backend_pid != dropped
