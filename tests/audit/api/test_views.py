"""Audit trail API: tenant scoping, the platform-wide view, filters, and who may read."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import Actor, audit_record
from tests.helpers import assert_error
from tests.tenants.factories import UserFactory

URL = "/api/v1/audit-events/"
ADMIN_URL = "/api/v1/admin/audit-events/"


def actions(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["action"] for row in response.json()["results"]]


def _at(event, when):
    AuditEvent.objects.filter(pk=event.pk).update(created_at=when)


@pytest.fixture
def trail(tenant, other_tenant, integration):
    """Events in both tenants and one platform event, at known times."""
    alice = Actor(user=UserFactory(username="alice"))
    bob = Actor(user=UserFactory(username="bob"))
    now = timezone.now()
    events = {
        "created": audit_record(actor=alice, action="integration.created", target=integration),
        "enabled": audit_record(actor=bob, action="integration.enabled", target=integration),
        "key": audit_record(actor=alice, action="api_key.created", tenant=tenant),
        "theirs": audit_record(actor=bob, action="integration.created", tenant=other_tenant),
        "platform": audit_record(actor=alice, action="provider.created", target=integration.provider),
    }
    _at(events["created"], now - timedelta(days=3))
    _at(events["enabled"], now - timedelta(days=2))
    _at(events["key"], now - timedelta(days=1))
    _at(events["theirs"], now - timedelta(hours=12))
    _at(events["platform"], now - timedelta(hours=1))
    return events


def test_tenant_sees_only_its_own_events_newest_first(client_for, trail):
    response = client_for("tenant_admin").get(URL)
    assert actions(response) == ["api_key.created", "integration.enabled", "integration.created"]
    assert response.json()["total"] == 3
    ids = {row["id"] for row in response.json()["results"]}
    assert str(trail["theirs"].pk) not in ids and str(trail["platform"].pk) not in ids


def test_event_shape(client_for, trail, tenant, integration):
    row = client_for("integration_manager").get(f"{URL}{trail['created'].pk}/").json()
    assert row["tenant"] == str(tenant.pk)
    assert row["actor"] == "alice"
    assert row["action"] == "integration.created"
    assert row["target_type"] == "connections.integration"
    assert row["target_id"] == str(integration.pk)
    assert row["target_repr"] == str(integration)
    assert row["outcome"] == "success"
    assert set(row) >= {"changes", "request_id", "ip", "created_at"}


def test_other_tenants_event_is_404(client_for, trail):
    assert_error(client_for("tenant_admin").get(f"{URL}{trail['theirs'].pk}/"), 404, "NOT_FOUND")
    assert_error(client_for("tenant_admin").get(f"{URL}{trail['platform'].pk}/"), 404, "NOT_FOUND")
    assert_error(client_for("other_tenant").get(f"{URL}{trail['created'].pk}/"), 404, "NOT_FOUND")


def test_other_tenant_sees_only_its_events(client_for, trail):
    assert actions(client_for("other_tenant").get(URL)) == ["integration.created"]


def test_super_admin_sees_every_event_including_platform_ones(client_for, trail):
    response = client_for("super_admin").get(ADMIN_URL)
    assert response.json()["total"] == 5
    assert {row["id"] for row in response.json()["results"]} == {str(e.pk) for e in trail.values()}
    assert client_for("super_admin").get(f"{ADMIN_URL}{trail['theirs'].pk}/").status_code == 200


def test_super_admin_filters_by_tenant(client_for, trail, other_tenant):
    response = client_for("super_admin").get(f"{ADMIN_URL}?tenant={other_tenant.pk}")
    assert [row["id"] for row in response.json()["results"]] == [str(trail["theirs"].pk)]


def test_super_admin_scoped_to_a_tenant_sees_that_tenants_events_on_the_tenant_endpoint(client_for, trail):
    assert len(actions(client_for("super_admin", scoped=True).get(URL))) == 3


def test_filter_by_exact_action_and_by_prefix(client_for, trail):
    client = client_for("tenant_admin")
    assert actions(client.get(f"{URL}?action=integration.enabled")) == ["integration.enabled"]
    assert actions(client.get(f"{URL}?action=integration.")) == ["integration.enabled", "integration.created"]
    assert actions(client.get(f"{URL}?action=integration")) == []  # no prefix without the dot


def test_filter_by_actor(client_for, trail):
    client = client_for("tenant_admin")
    assert actions(client.get(f"{URL}?actor=bob")) == ["integration.enabled"]
    assert actions(client.get(f"{URL}?actor=ALI")) == ["api_key.created", "integration.created"]


def test_filter_by_target_id_and_type(client_for, trail, integration):
    client = client_for("tenant_admin")
    by_id = actions(client.get(f"{URL}?target={integration.pk}"))
    assert by_id == ["integration.enabled", "integration.created"]
    assert actions(client.get(f"{URL}?target=connections.integration")) == by_id
    assert actions(client.get(f"{URL}?target_type=connections.integration")) == by_id


def test_filter_by_date_range(client_for, trail):
    client = client_for("tenant_admin")
    now = timezone.now()
    after = (now - timedelta(days=2, hours=12)).isoformat()
    before = (now - timedelta(days=1, hours=12)).isoformat()
    assert actions(client.get(URL, {"created_after": after})) == ["api_key.created", "integration.enabled"]
    assert actions(client.get(URL, {"created_before": before})) == ["integration.enabled", "integration.created"]
    assert actions(client.get(URL, {"created_after": after, "created_before": before})) == ["integration.enabled"]


def test_filters_combine_on_the_admin_endpoint(client_for, trail):
    client = client_for("super_admin")
    response = client.get(ADMIN_URL, {"action": "integration.created", "actor": "bob"})
    assert [row["id"] for row in response.json()["results"]] == [str(trail["theirs"].pk)]


@pytest.mark.parametrize("query, field", [("created_after=yesterday", "created_after"), ("tenant=nope", "tenant"),
                                          ("outcome=maybe", "outcome")])
def test_bad_filter_value_is_400_naming_it(client_for, trail, query, field):
    url = ADMIN_URL if field == "tenant" else URL
    role = "super_admin" if field == "tenant" else "tenant_admin"
    error = assert_error(client_for(role).get(f"{url}?{query}"), 400, "VALIDATION_ERROR")
    assert field in error["details"]


def test_ordering_by_action(client_for, trail):
    assert actions(client_for("tenant_admin").get(f"{URL}?ordering=action")) == [
        "api_key.created", "integration.created", "integration.enabled",
    ]


@pytest.mark.parametrize("role, status", [("tenant_admin", 200), ("integration_manager", 200), ("member", 403)])
def test_who_may_read_the_tenant_audit_trail(client_for, trail, role, status):
    response = client_for(role).get(URL)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "PERMISSION_DENIED"
        assert_error(client_for(role).get(f"{URL}{trail['created'].pk}/"), 403, "PERMISSION_DENIED")


@pytest.mark.parametrize("role", ["tenant_admin", "integration_manager", "member", "other_tenant"])
def test_tenant_users_cannot_read_the_platform_audit_trail(client_for, trail, role):
    assert_error(client_for(role).get(ADMIN_URL), 403, "PERMISSION_DENIED")
    assert_error(client_for(role).get(f"{ADMIN_URL}{trail['created'].pk}/"), 403, "PERMISSION_DENIED")


def test_anonymous_cannot_read_audit(client, trail):
    assert_error(client.get(URL), 401, "NOT_AUTHENTICATED")
    assert_error(client.get(ADMIN_URL), 401, "NOT_AUTHENTICATED")


def test_audit_trail_is_read_only(client_for, trail):
    client = client_for("super_admin")
    assert_error(client.post(ADMIN_URL, {"action": "x"}, format="json"), 405, "METHOD_NOT_ALLOWED")
    assert_error(client.delete(f"{ADMIN_URL}{trail['created'].pk}/"), 405, "METHOD_NOT_ALLOWED")
    assert_error(client_for("tenant_admin").delete(f"{URL}{trail['created'].pk}/"), 405, "METHOD_NOT_ALLOWED")
    assert AuditEvent.objects.count() == 5


def test_api_calls_appear_in_the_trail_with_their_actor(client_for, provider):
    client = client_for("tenant_admin")
    created = client.post("/api/v1/integrations/", {"provider": provider.slug, "name": "Audited"}, format="json")
    client.post(f"/api/v1/integrations/{created.json()['id']}/disable")
    rows = client.get(f"{URL}?target={created.json()['id']}").json()["results"]
    assert [r["action"] for r in rows] == ["integration.disabled", "integration.created"]
    assert {r["actor"] for r in rows} == {"tenant_admin-acme"}
    assert rows[0]["changes"] == {"status": {"from": "pending", "to": "disabled"},
                                  "disabled_reason": {"from": "", "to": "manual"}}


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def _events(n, tenant, actor):
    for i in range(n):
        audit_record(actor=actor, action="integration.updated", tenant=tenant, changes={"name": {"to": f"n{i}"}})


@pytest.mark.parametrize("url, role", [(URL, "tenant_admin"), (ADMIN_URL, "super_admin")])
def test_audit_lists_run_the_same_queries_for_5_and_50_rows(client_for, tenant, url, role):
    client = client_for(role)
    actor = Actor(user=UserFactory(username="writer"))
    _events(5, tenant, actor)
    few = _count_queries(client, url)
    _events(45, tenant, actor)
    assert client.get(url).json()["total"] == 50
    assert _count_queries(client, url) == few
