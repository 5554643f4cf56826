"""The list and the detail are read as rows (integrations_site/api/rows.py): their answer must be
IntegrationSerializer's over model instances, field for field, in every state a row can be in."""
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from connections.api.serializers import IntegrationSerializer
from connections.models import Credential, Integration
from connections.selectors import integration_list_queryset
from tenants.choices import Role
from tests.conftest import make_user
from tests.connections.factories import IntegrationFactory

URL = "/api/v1/integrations/"


@pytest.fixture
def api(client_for):
    return client_for(Role.TENANT_ADMIN.value)


def as_serializer_shows(integration_ids) -> dict:
    rows = integration_list_queryset().filter(pk__in=integration_ids)
    return {str(item.pk): json.loads(JSONRenderer().render(IntegrationSerializer(item).data)) for item in rows}


@pytest.fixture
def varied(tenant, provider):
    """Integrations in each state a row can be in: no credential, a set one, a removed one, only a user's
    own connection, decimals, dates, settings and mappings, an other provider."""
    now = timezone.now()
    plain = IntegrationFactory(tenant=tenant, provider=provider, name="Plain", description="")
    full = IntegrationFactory(
        tenant=tenant, provider=provider, name="Full", description="déjà vu ✓", environment="sandbox",
        status="active", health_state="degraded", health_checked_at=now, consecutive_failures=2,
        last_success_at=now - timedelta(hours=1, microseconds=123), status_mapping={"ok": ["fine", "good"]},
        settings={"tls": None, "nested": {"a": [1, 2.5, None, True]}}, limit_monthly_budget=Decimal("12.5"),
        limit_tokens=10_000, limit_requests_per_minute=60, polling_interval_seconds=120, user_scoped=True,
        search_enabled=True,
    )
    Credential.objects.create(tenant=tenant, integration=full, type="bearer", payload={"token": "t" * 20},
                              hint="tttt", version=3)
    removed = IntegrationFactory(tenant=tenant, provider=provider, name="Removed")
    Credential.objects.create(tenant=tenant, integration=removed, type="basic", payload=None, status="revoked")
    mine = IntegrationFactory(tenant=tenant, provider=provider, name="Only mine", user_scoped=True)
    Credential.objects.create(tenant=tenant, integration=mine, user=make_user(Role.MEMBER, tenant, "row-user"),
                              type="oauth2", payload={"access_token": "a" * 20}, hint="aaaa")
    other = IntegrationFactory(tenant=tenant, name="Other provider", limit_monthly_budget=Decimal("0"))
    return [plain, full, removed, mine, other]


def test_the_list_answers_what_the_serializer_shows_for_every_row(api, varied):
    expected = as_serializer_shows([item.pk for item in varied])

    body = api.get(URL).json()

    assert {row["id"]: row for row in body["results"]} == expected
    assert [list(row) for row in body["results"]] == [list(expected[row["id"]]) for row in body["results"]]
    assert expected[str(varied[1].pk)]["limit_monthly_budget"] == "12.50"
    assert expected[str(varied[2].pk)]["credential"] is None and expected[str(varied[3].pk)]["credential"] is None


def test_the_detail_answers_what_the_serializer_shows(api, varied):
    expected = as_serializer_shows([item.pk for item in varied])
    for item in varied:
        response = api.get(f"{URL}{item.pk}/")
        assert response.status_code == 200
        assert response.json() == expected[str(item.pk)]
        assert list(response.json()) == list(expected[str(item.pk)])


def test_the_detail_of_a_missing_deleted_or_other_tenants_integration_is_not_found(api, varied, other_tenant):
    Integration.objects.filter(pk=varied[0].pk).update(deleted_at=timezone.now())
    theirs = IntegrationFactory(tenant=other_tenant)
    for pk in (varied[0].pk, theirs.pk, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = api.get(f"{URL}{pk}/")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "INTEGRATION_NOT_FOUND"


def test_a_page_and_a_detail_take_one_query_each_beside_authentication(api, varied, tenant, provider):
    for n in range(60):
        item = IntegrationFactory(tenant=tenant, provider=provider, name=f"Many {n:02d}")
        Credential.objects.create(tenant=tenant, integration=item, type="bearer", payload={"token": "x" * 20})
    counts = {}
    for limit in (5, 20, 50):
        api.get(f"{URL}?limit={limit}")
        with CaptureQueriesContext(connection) as captured:
            assert len(api.get(f"{URL}?limit={limit}").json()["results"]) == limit
        counts[limit] = [q["sql"].split()[0:3] for q in captured.captured_queries]
    assert counts[5] == counts[20] == counts[50]
    integration_queries = [q for q in counts[50] if "connections_integration" in " ".join(q)
                           or "COUNT(*)" in " ".join(q)]
    assert len(integration_queries) <= 2  # the total and the page, the credential joined in
    with CaptureQueriesContext(connection) as captured:
        api.get(f"{URL}{varied[1].pk}/")
    assert sum("connections_credential" in q["sql"] and "connections_integration" not in q["sql"]
               for q in captured.captured_queries) == 0


def test_a_page_takes_the_same_queries_at_ten_thousand_integrations(api, tenant, provider):
    def page_queries(limit):
        api.get(f"{URL}?limit={limit}")
        with CaptureQueriesContext(connection) as captured:
            answer = api.get(f"{URL}?limit={limit}").json()
        return answer, [q["sql"].split()[0:3] for q in captured.captured_queries]

    few = [IntegrationFactory(tenant=tenant, provider=provider, name=f"Few {n}") for n in range(3)]
    _, small = page_queries(50)
    made = Integration.objects.bulk_create(
        [Integration(tenant=tenant, provider=provider, name=f"Many {n:05d}", api_base_url="https://api.example.com")
         for n in range(10_000 - len(few))], batch_size=2000)
    Credential.objects.bulk_create([Credential(tenant=tenant, integration=item, type="bearer",
                                               payload={"token": "x" * 20}) for item in made[::2]], batch_size=2000)
    for limit in (5, 50):
        answer, queries = page_queries(limit)
        assert answer["total"] == 10_000 and len(answer["results"]) == limit
        assert queries == small


@pytest.mark.parametrize("ordering", ["", "name", "-name", "health_checked_at", "-updated_at", "status"])
def test_a_page_without_filters_answers_what_the_filtered_path_answers(api, varied, tenant, ordering):
    """A page that filters nothing runs prepared statements; one with a filter the ORM: same rows."""
    Integration.objects.filter(pk=varied[1].pk).update(deleted_at=timezone.now())
    for limit, offset in ((2, 0), (2, 2), (50, 0), (50, 3), (10, 40)):
        query = f"?limit={limit}&offset={offset}" + (f"&ordering={ordering}" if ordering else "")
        prepared = api.get(URL + query).json()
        filtered = api.get(URL + query + "&search=").json()  # an empty filter: the ORM path, nothing left out
        assert prepared == filtered
        assert prepared["total"] == 4


def test_an_unknown_ordering_is_refused_on_the_prepared_path(api, varied):
    response = api.get(URL + "?ordering=secret_field")
    assert response.status_code == 400
