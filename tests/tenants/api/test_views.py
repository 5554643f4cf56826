"""Tenants API: API keys, the caller's own tenant, and super-admin tenant management."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import SYSTEM
from tenants import services
from tenants.authentication import hash_api_key
from tenants.models import ApiKey, Tenant
from tests.helpers import assert_error
from tests.tenants.factories import TenantFactory

KEYS_URL = "/api/v1/api-keys/"
TENANT_URL = "/api/v1/tenant/"
ADMIN_TENANTS_URL = "/api/v1/admin/tenants/"


@pytest.fixture
def admin(client_for):
    return client_for("tenant_admin")


# --- API keys ----------------------------------------------------------------

def test_create_api_key_shows_the_full_key_once(admin, tenant):
    response = admin.post(KEYS_URL, {"name": "CI", "role": "integration_manager"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    raw = body["key"]
    assert raw.startswith(f"ihk_{body['prefix']}_")
    assert raw.endswith(body["last4"])
    assert body["display"] == f"ihk_{body['prefix']}_…{body['last4']}"
    assert body["role"] == "integration_manager"
    assert body["is_active"] is True
    assert "key_hash" not in body

    row = ApiKey.objects.get(pk=body["id"])
    assert row.tenant == tenant
    assert row.key_hash == hash_api_key(raw)
    assert raw not in row.key_hash
    assert row.created_by.username == "tenant_admin-acme"

    listed = admin.get(KEYS_URL)
    detail = admin.get(f"{KEYS_URL}{body['id']}/")
    for response in (listed, detail):
        assert response.status_code == 200
        text = response.content.decode()
        assert raw not in text
        assert row.key_hash not in text
        assert '"key"' not in text and "key_hash" not in text
    item = listed.json()["results"][0]
    assert {item["display"], item["prefix"], item["last4"]} == {body["display"], body["prefix"], body["last4"]}
    assert detail.json()["display"] == body["display"]


def test_created_key_authenticates_with_its_role(admin, provider):
    raw = admin.post(KEYS_URL, {"name": "ro", "role": "member"}, format="json").json()["key"]
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/integrations/").status_code == 200
    assert_error(client.post(KEYS_URL, {"name": "x"}, format="json"), 403, "PERMISSION_DENIED")


def test_api_key_role_defaults_to_member(admin):
    response = admin.post(KEYS_URL, {"name": "default"}, format="json")
    assert response.status_code == 201
    assert response.json()["role"] == "member"


def test_api_key_creation_is_audited_without_the_key(admin):
    raw = admin.post(KEYS_URL, {"name": "CI", "role": "member"}, format="json").json()["key"]
    event = AuditEvent.objects.get(action="api_key.created")
    assert event.tenant.slug == "acme"
    assert event.actor == "tenant_admin-acme"
    assert set(event.changes) == {"name", "role", "expires_at"}
    assert raw not in str(event.changes) and raw not in event.target_repr


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x", "role": "super_admin"}, "role"),
        ({"name": "x", "role": "owner"}, "role"),
        ({"role": "member"}, "name"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "prefix": "abc"}, "prefix"),
        ({"name": "x", "key_hash": "0" * 64}, "key_hash"),
        ({"name": "x", "revoked_at": None}, "revoked_at"),
    ],
)
def test_api_key_bad_input_is_400_naming_the_field(admin, body, field):
    error = assert_error(admin.post(KEYS_URL, body, format="json"), 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert not ApiKey.objects.exists()


def test_api_key_with_future_expiry_is_created(admin):
    expires = (timezone.now() + timedelta(days=30)).isoformat()
    response = admin.post(KEYS_URL, {"name": "temp", "expires_at": expires}, format="json")
    assert response.status_code == 201
    assert response.json()["expires_at"] is not None


def test_delete_revokes_the_key_and_it_stops_working(admin):
    created = admin.post(KEYS_URL, {"name": "old", "role": "member"}, format="json").json()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=created["key"])
    assert client.get(TENANT_URL).status_code == 200

    assert admin.delete(f"{KEYS_URL}{created['id']}/").status_code == 204
    row = ApiKey.objects.get(pk=created["id"])
    assert row.revoked_at is not None
    assert_error(client.get(TENANT_URL), 401, "NOT_AUTHENTICATED")
    detail = admin.get(f"{KEYS_URL}{created['id']}/").json()
    assert detail["is_active"] is False and detail["revoked_at"] is not None
    assert AuditEvent.objects.filter(action="api_key.revoked", target_id=created["id"]).count() == 1


def test_revoking_twice_is_a_no_op(admin):
    created = admin.post(KEYS_URL, {"name": "old"}, format="json").json()
    assert admin.delete(f"{KEYS_URL}{created['id']}/").status_code == 204
    first = ApiKey.objects.get(pk=created["id"]).revoked_at
    assert admin.delete(f"{KEYS_URL}{created['id']}/").status_code == 204
    assert ApiKey.objects.get(pk=created["id"]).revoked_at == first
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_other_tenants_api_key_is_404_and_not_revoked(client_for, other_tenant):
    theirs, _ = services.api_key_create(actor=SYSTEM, tenant=other_tenant, name="theirs", role="member")
    admin = client_for("tenant_admin")
    assert_error(admin.get(f"{KEYS_URL}{theirs.pk}/"), 404, "NOT_FOUND")
    assert_error(admin.delete(f"{KEYS_URL}{theirs.pk}/"), 404, "NOT_FOUND")
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert admin.get(KEYS_URL).json()["total"] == 0


def test_unknown_or_malformed_api_key_id_is_404(admin):
    assert_error(admin.get(f"{KEYS_URL}not-a-uuid/"), 404, "NOT_FOUND")
    assert_error(admin.delete("/api/v1/api-keys/00000000-0000-0000-0000-000000000000/"), 404, "NOT_FOUND")


def test_api_keys_cannot_be_edited(admin):
    created = admin.post(KEYS_URL, {"name": "k"}, format="json").json()
    assert_error(admin.patch(f"{KEYS_URL}{created['id']}/", {"role": "tenant_admin"}, format="json"),
                 405, "METHOD_NOT_ALLOWED")
    assert ApiKey.objects.get(pk=created["id"]).role == "member"


def test_api_key_filters_revoked_and_role(admin, tenant):
    live, _ = services.api_key_create(actor=SYSTEM, tenant=tenant, name="live", role="member")
    ops, _ = services.api_key_create(actor=SYSTEM, tenant=tenant, name="ops", role="integration_manager")
    dead, _ = services.api_key_create(actor=SYSTEM, tenant=tenant, name="dead", role="member")
    services.api_key_revoke(actor=SYSTEM, api_key=dead)

    def names(query):
        response = admin.get(f"{KEYS_URL}?{query}")
        assert response.status_code == 200
        return {row["name"] for row in response.json()["results"]}

    assert names("revoked=true") == {"dead"}
    assert names("revoked=false") == {"live", "ops"}
    assert names("role=integration_manager") == {"ops"}
    assert names("ordering=name") == {"dead", "live", "ops"}
    assert [r["name"] for r in admin.get(f"{KEYS_URL}?ordering=name").json()["results"]] == ["dead", "live", "ops"]


def test_platform_wide_super_admin_must_name_a_tenant_to_create_a_key(client_for):
    response = client_for("super_admin").post(KEYS_URL, {"name": "x"}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "tenant" in error["details"]
    assert not ApiKey.objects.exists()


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_api_key_list_query_count_does_not_grow_with_rows(admin, tenant):
    for n in range(5):
        services.api_key_create(actor=SYSTEM, tenant=tenant, name=f"k{n}", role="member")
    few = _count_queries(admin, KEYS_URL)
    for n in range(5, 50):
        services.api_key_create(actor=SYSTEM, tenant=tenant, name=f"k{n}", role="member")
    assert admin.get(KEYS_URL).json()["total"] == 50
    assert _count_queries(admin, KEYS_URL) == few


# --- own tenant --------------------------------------------------------------

def test_get_own_tenant(client_for, tenant):
    response = client_for("member").get(TENANT_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(tenant.pk)
    assert body["slug"] == "acme" and body["name"] == "Acme" and body["plan"] == "pro"
    assert body["allowed_return_hosts"] == []


def test_other_tenant_user_sees_its_own_tenant(client_for):
    assert client_for("other_tenant").get(TENANT_URL).json()["slug"] == "globex"


def test_tenant_admin_changes_name_and_allowed_return_hosts(admin, tenant):
    hosts = ["App.Example.com", "app.example.com", "localhost:8000"]
    response = admin.patch(TENANT_URL, {"name": "Acme Corp", "allowed_return_hosts": hosts}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "Acme Corp"
    assert body["allowed_return_hosts"] == ["app.example.com", "localhost:8000"]
    tenant.refresh_from_db()
    assert tenant.name == "Acme Corp"
    assert tenant.allowed_return_hosts == ["app.example.com", "localhost:8000"]

    event = AuditEvent.objects.get(action="tenant.updated")
    assert event.tenant == tenant
    assert event.target_id == str(tenant.pk)
    assert set(event.changes) == {"name", "allowed_return_hosts"}
    assert event.changes["name"] == {"from": "Acme", "to": "Acme Corp"}


def test_patch_without_changes_writes_no_audit_event(admin):
    assert admin.patch(TENANT_URL, {"name": "Acme"}, format="json").status_code == 200
    assert not AuditEvent.objects.filter(action="tenant.updated").exists()


@pytest.mark.parametrize(
    "hosts",
    [
        ["https://x.com"], ["a b"], ["x.com/path"], ["user@x.com"], [""], ["-bad.com"], "x.com",
        [{"host": "x.com"}], [None],
    ],
)
def test_invalid_allowed_return_hosts_are_400(admin, tenant, hosts):
    error = assert_error(admin.patch(TENANT_URL, {"allowed_return_hosts": hosts}, format="json"),
                         400, "VALIDATION_ERROR")
    assert "allowed_return_hosts" in error["details"]
    tenant.refresh_from_db()
    assert tenant.allowed_return_hosts == []
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"plan": "enterprise"}, "plan"),
        ({"slug": "hijack"}, "slug"),
        ({"is_active": False}, "is_active"),
        ({"id": "00000000-0000-0000-0000-000000000000"}, "id"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_tenant_patch_bad_or_read_only_field_is_400(admin, tenant, body, field):
    error = assert_error(admin.patch(TENANT_URL, body, format="json"), 400, "VALIDATION_ERROR")
    assert field in error["details"]
    tenant.refresh_from_db()
    assert (tenant.plan, tenant.slug, tenant.is_active, tenant.name) == ("pro", "acme", True, "Acme")


@pytest.mark.parametrize("role", ["integration_manager", "member"])
def test_non_admin_cannot_patch_the_tenant(client_for, tenant, role):
    assert_error(client_for(role).patch(TENANT_URL, {"name": "Mine"}, format="json"), 403, "PERMISSION_DENIED")
    tenant.refresh_from_db()
    assert tenant.name == "Acme"
    assert not AuditEvent.objects.exists()


def test_anonymous_cannot_read_a_tenant(client):
    assert_error(client.get(TENANT_URL), 401, "NOT_AUTHENTICATED")


# --- admin tenants -----------------------------------------------------------

def test_super_admin_lists_and_filters_tenants(client_for, tenant, other_tenant):
    TenantFactory(name="Initech", slug="initech", plan="free", is_active=False)
    client = client_for("super_admin")
    body = client.get(ADMIN_TENANTS_URL).json()
    assert body["total"] == 3
    assert [t["slug"] for t in body["results"]] == ["acme", "globex", "initech"]  # ordered by name
    assert {t["slug"] for t in client.get(f"{ADMIN_TENANTS_URL}?plan=free").json()["results"]} == {"initech"}
    assert {t["slug"] for t in client.get(f"{ADMIN_TENANTS_URL}?is_active=false").json()["results"]} == {"initech"}
    assert {t["slug"] for t in client.get(f"{ADMIN_TENANTS_URL}?search=glob").json()["results"]} == {"globex"}


def test_super_admin_creates_a_tenant(client_for, db):
    client = client_for("super_admin")
    response = client.post(
        ADMIN_TENANTS_URL, {"name": "Initech", "slug": "initech", "plan": "starter",
                            "allowed_return_hosts": ["initech.example"]}, format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "initech" and body["plan"] == "starter" and body["is_active"] is True
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.allowed_return_hosts == ["initech.example"]
    event = AuditEvent.objects.get(action="tenant.created")
    assert event.tenant == tenant and event.actor == "root"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "Bad", "slug": "not a slug"}, "slug"),
        ({"name": "Bad", "slug": "bad", "plan": "platinum"}, "plan"),
        ({"slug": "noname"}, "name"),
        ({"name": "Bad", "slug": "bad", "allowed_return_hosts": ["https://x.com"]}, "allowed_return_hosts"),
    ],
)
def test_admin_tenant_create_bad_input_is_400(client_for, tenant, body, field):
    error = assert_error(client_for("super_admin").post(ADMIN_TENANTS_URL, body, format="json"), 400,
                         "VALIDATION_ERROR")
    assert field in error["details"]
    assert Tenant.objects.count() == 2  # acme and globex from the fixtures


def test_admin_tenant_create_with_a_taken_slug_is_409(client_for, tenant):
    error = assert_error(client_for("super_admin").post(ADMIN_TENANTS_URL, {"name": "Dup", "slug": "acme"},
                                                         format="json"), 409, "CONFLICT")
    assert error["details"] == {"slug": "acme"}
    assert Tenant.objects.count() == 2


def test_super_admin_updates_plan_and_deactivates_a_tenant(client_for, tenant):
    client = client_for("super_admin")
    response = client.patch(f"{ADMIN_TENANTS_URL}{tenant.pk}/", {"plan": "enterprise", "is_active": False},
                            format="json")
    assert response.status_code == 200, response.content
    tenant.refresh_from_db()
    assert tenant.plan == "enterprise" and tenant.is_active is False
    event = AuditEvent.objects.get(action="tenant.updated")
    assert set(event.changes) == {"plan", "is_active"}
    # A deactivated tenant's users can no longer act in it.
    assert_error(client_for("tenant_admin").get(TENANT_URL), 401, "NOT_AUTHENTICATED")


def test_super_admin_deletes_a_tenant(client_for, db):
    client = client_for("super_admin")
    doomed = TenantFactory(name="Doomed", slug="doomed")
    assert client.get(f"{ADMIN_TENANTS_URL}{doomed.pk}/").status_code == 200
    assert client.delete(f"{ADMIN_TENANTS_URL}{doomed.pk}/").status_code == 204
    assert not Tenant.objects.filter(pk=doomed.pk).exists()
    event = AuditEvent.objects.get(action="tenant.deleted")
    assert event.target_id == str(doomed.pk) and event.target_repr == "Doomed"
    assert_error(client.get(f"{ADMIN_TENANTS_URL}{doomed.pk}/"), 404, "NOT_FOUND")


def test_unknown_tenant_id_is_404(client_for, db):
    client = client_for("super_admin")
    assert_error(client.get(f"{ADMIN_TENANTS_URL}00000000-0000-0000-0000-000000000000/"), 404, "NOT_FOUND")
    assert_error(client.get(f"{ADMIN_TENANTS_URL}not-a-uuid/"), 404, "NOT_FOUND")


@pytest.mark.parametrize("role", ["tenant_admin", "integration_manager", "member", "other_tenant"])
def test_tenant_users_cannot_manage_tenants(client_for, tenant, role):
    client = client_for(role)
    assert_error(client.get(f"{ADMIN_TENANTS_URL}{tenant.pk}/"), 403, "PERMISSION_DENIED")
    assert_error(client.patch(f"{ADMIN_TENANTS_URL}{tenant.pk}/", {"plan": "enterprise"}, format="json"),
                 403, "PERMISSION_DENIED")
    assert_error(client.delete(f"{ADMIN_TENANTS_URL}{tenant.pk}/"), 403, "PERMISSION_DENIED")
    tenant.refresh_from_db()
    assert tenant.plan == "pro"


def test_admin_tenant_list_query_count_does_not_grow_with_rows(client_for, tenant, other_tenant):
    client = client_for("super_admin")
    TenantFactory.create_batch(3)
    few = _count_queries(client, ADMIN_TENANTS_URL)  # 5 tenants
    TenantFactory.create_batch(45)
    assert client.get(ADMIN_TENANTS_URL).json()["total"] == 50
    assert _count_queries(client, ADMIN_TENANTS_URL) == few
