"""Each web process's copies of the rows an integration's detail answers from (connections.selectors,
``INTEGRATION_COPIES``): on PostgreSQL kept outside transactions and forgotten the moment a write to the
integration, its credential or its provider commits, whoever made it (the ORM, ``update()``, raw SQL,
another process), and by this process's own writes before they run; on SQLite never kept, so every
detail reads the table, as before.

Transactional tests: a change is notified only when it commits.
"""
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from audit.services import SYSTEM
from connections.models import Credential, Integration
from connections.selectors import INTEGRATION_COPIES
from tenants.choices import Role
from tenants.services import api_key_create
from tests.connections.factories import IntegrationFactory
from tests.helpers import current_database_url

pytestmark = pytest.mark.django_db(transaction=True)

POSTGRES = connection.vendor == "postgresql"


@pytest.fixture
def reader(tenant):
    _, raw = api_key_create(actor=SYSTEM, tenant=tenant, name="reader", role=Role.MEMBER.value)
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw)
    return api


def detail(api, integration) -> dict:
    answer = api.get(f"/api/v1/integrations/{integration.pk}/")
    assert answer.status_code == 200, answer.content
    return answer.json()


def forgotten(integration, timeout: float = 5.0) -> bool:
    """This process no longer holds a copy of ``integration``'s rows (the notification arrived)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if str(integration.pk) not in INTEGRATION_COPIES._entries:
            return True
        time.sleep(0.005)
    return False


def kept(api, integration, django_assert_num_queries) -> dict:
    """Read once (kept), then once more from the copy: no query at all (the key is kept too)."""
    if POSTGRES:
        assert INTEGRATION_COPIES.wait_listening()
    first = detail(api, integration)
    expected = 0 if POSTGRES else 1
    with django_assert_num_queries(expected):
        assert detail(api, integration) == first
    return first


def elsewhere(sql: str, params: list, *forgotten_after) -> None:
    """``sql`` run and committed as another process would: on PostgreSQL on a connection Django knows nothing
    of, so only the notification tells this process (which then no longer holds ``forgotten_after``'s
    copies); on SQLite (nothing kept) on Django's."""
    if POSTGRES:
        import psycopg

        with psycopg.connect(current_database_url(), autocommit=True) as other:
            other.execute(sql, params)
        for integration in forgotten_after:
            assert forgotten(integration), integration
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def kept_with_credential(tenant, provider, reader, django_assert_num_queries):
    """An integration with a tenant-wide credential (hint ``tttt``), its detail kept here."""
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Credentialed")
    Credential.objects.create(tenant=tenant, integration=integration, type="bearer", payload={"token": "t" * 20},
                              hint="tttt")
    assert kept(reader, integration, django_assert_num_queries)["credential"]["hint"] == "tttt"
    return integration


def stored(obj):
    """``obj``'s primary key as its database stores it."""
    return obj._meta.pk.get_db_prep_value(obj.pk, connection)


def test_this_process_reads_its_own_update_past_the_orm_at_once(tenant, provider, reader,
                                                               django_assert_num_queries):
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Before")
    assert kept(reader, integration, django_assert_num_queries)["name"] == "Before"
    Integration.objects.filter(pk=integration.pk).update(name="After")  # no signal; the write itself forgets
    assert detail(reader, integration)["name"] == "After"


def test_another_process_s_credential_change_is_notified(tenant, provider, reader, django_assert_num_queries):
    integration = kept_with_credential(tenant, provider, reader, django_assert_num_queries)
    elsewhere("UPDATE connections_credential SET hint = %s WHERE integration_id = %s", ["zzzz", stored(integration)],
              integration)
    assert detail(reader, integration)["credential"]["hint"] == "zzzz"


def test_another_process_s_provider_change_forgets_every_copy(tenant, provider, reader, django_assert_num_queries):
    one = IntegrationFactory(tenant=tenant, provider=provider, name="One")
    two = IntegrationFactory(tenant=tenant, provider=provider, name="Two")
    kept(reader, one, django_assert_num_queries)
    kept(reader, two, django_assert_num_queries)
    elsewhere("UPDATE catalog_integrationprovider SET display_name = %s WHERE id = %s",
              ["Renamed provider", stored(provider)], one, two)
    assert detail(reader, one)["provider_name"] == detail(reader, two)["provider_name"] == "Renamed provider"


def test_another_process_s_integration_update_is_notified(tenant, provider, reader, django_assert_num_queries):
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Mine")
    kept(reader, integration, django_assert_num_queries)
    elsewhere("UPDATE connections_integration SET name = %s WHERE id = %s", ["Theirs", stored(integration)],
              integration)
    assert detail(reader, integration)["name"] == "Theirs"


def test_another_process_s_truncate_forgets_every_copy(tenant, provider, reader, django_assert_num_queries):
    integration = kept_with_credential(tenant, provider, reader, django_assert_num_queries)
    elsewhere("TRUNCATE connections_credential CASCADE" if POSTGRES else "DELETE FROM connections_credential", [],
              integration)
    assert detail(reader, integration)["credential"] is None


def test_a_deleted_integration_is_not_found_at_once(tenant, provider, reader, django_assert_num_queries):
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Gone")
    kept(reader, integration, django_assert_num_queries)
    Integration.objects.filter(pk=integration.pk).delete()
    answer = reader.get(f"/api/v1/integrations/{integration.pk}/")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "INTEGRATION_NOT_FOUND"


def test_a_copy_is_only_given_to_its_tenant(tenant, other_tenant, provider, reader, django_assert_num_queries):
    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Mine")
    kept(reader, integration, django_assert_num_queries)
    _, raw = api_key_create(actor=SYSTEM, tenant=other_tenant, name="other", role=Role.MEMBER.value)
    other = APIClient()
    other.credentials(HTTP_X_API_KEY=raw)
    answer = other.get(f"/api/v1/integrations/{integration.pk}/")
    assert answer.status_code == 404


def test_nothing_is_kept_inside_a_transaction(tenant, provider, reader):
    from django.db import transaction

    from connections.selectors import tenant_integration_rows

    integration = IntegrationFactory(tenant=tenant, provider=provider, name="Atomic")
    if POSTGRES:
        assert INTEGRATION_COPIES.wait_listening()
    with transaction.atomic():
        Integration.objects.filter(pk=integration.pk).update(name="Written, not yet committed")
        rows = tenant_integration_rows(("id", "name"), tenant.pk, integration.pk)
        assert rows[0]["name"] == "Written, not yet committed"
    assert str(integration.pk) not in INTEGRATION_COPIES._entries
