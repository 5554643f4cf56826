"""The role matrix: every endpoint family × every kind of caller.

The expected table below is written from DESIGN.md's role table; one test
checks that ``integrations_site.api.permissions.MATRIX`` says the same, the
parametrized test checks that the API enforces it.
"""
from dataclasses import dataclass

import pytest

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.models import Integration
from integrations_site.api.permissions import MATRIX
from tenants import services as tenant_services
from tenants.choices import SUPER_ADMIN, Role

SA, TA, IM, MB = SUPER_ADMIN, Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value
ANON, OTHER = "anonymous", "other_tenant"
ALL_ROLES = (SA, TA, IM, MB, ANON, OTHER)
EVERYONE = frozenset({SA, TA, IM, MB})

# DESIGN.md "Tenancy and roles", one row per permission the views name.
EXPECTED_ROLES = {
    "catalog.manage": frozenset({SA}),
    "tenants.manage": frozenset({SA}),
    "audit.read_all": frozenset({SA}),
    "catalog.read": EVERYONE,
    "integrations.read": EVERYONE,
    "integrations.write": frozenset({SA, TA, IM}),
    "integrations.delete": frozenset({SA, TA}),
    "api_keys.manage": frozenset({SA, TA}),
    "tenant.read": EVERYONE,
    "tenant.update": frozenset({SA, TA}),
    "audit.read": frozenset({SA, TA, IM}),
    # Own user-scoped connections (/me/): everyone; who is connected, and revoking one: admins.
    "me.connect": EVERYONE,
    "user_connections.manage": frozenset({SA, TA}),
}

# How the other tenant's admin fares: platform endpoints refuse it, tenant
# collections answer it about its own tenant, our objects do not exist for it.
PLATFORM, OWN_TENANT, OUR_OBJECT = "platform", "own_tenant", "our_object"


@dataclass(frozen=True)
class Family:
    name: str
    method: str
    path: str
    permission: str
    success: int
    kind: str
    body: dict | None = None
    not_found_code: str = "NOT_FOUND"

    def __str__(self):
        return self.name


FAMILIES = [
    Family("admin providers list", "get", "/api/v1/admin/providers/", "catalog.manage", 200, PLATFORM),
    Family("admin providers create", "post", "/api/v1/admin/providers/", "catalog.manage", 201, PLATFORM,
           body={"slug": "new-crm", "name": "New CRM", "category": "crm", "auth_type": "api_key"}),
    Family("admin provider detail", "get", "/api/v1/admin/providers/{provider}/", "catalog.manage", 200, PLATFORM),
    Family("admin provider status", "patch", "/api/v1/admin/providers/{provider}/status", "catalog.manage", 200,
           PLATFORM, body={"status": "beta"}),
    Family("admin tenants list", "get", "/api/v1/admin/tenants/", "tenants.manage", 200, PLATFORM),
    Family("admin tenants create", "post", "/api/v1/admin/tenants/", "tenants.manage", 201, PLATFORM,
           body={"name": "Initech", "slug": "initech", "plan": "starter"}),
    Family("admin audit-events list", "get", "/api/v1/admin/audit-events/", "audit.read_all", 200, PLATFORM),
    Family("catalog list", "get", "/api/v1/catalog/", "catalog.read", 200, OWN_TENANT),
    Family("catalog detail", "get", "/api/v1/catalog/{provider}/", "catalog.read", 200, OWN_TENANT),
    Family("tenant get", "get", "/api/v1/tenant/", "tenant.read", 200, OWN_TENANT),
    Family("tenant patch", "patch", "/api/v1/tenant/", "tenant.update", 200, OWN_TENANT, body={"name": "Renamed"}),
    Family("integrations list", "get", "/api/v1/integrations/", "integrations.read", 200, OWN_TENANT),
    Family("integrations create", "post", "/api/v1/integrations/", "integrations.write", 201, OWN_TENANT,
           body={"provider": "{provider}", "name": "Second API"}),
    Family("integration get", "get", "/api/v1/integrations/{integration}/", "integrations.read", 200, OUR_OBJECT,
           not_found_code="INTEGRATION_NOT_FOUND"),
    Family("integration patch", "patch", "/api/v1/integrations/{integration}/", "integrations.write", 200,
           OUR_OBJECT, body={"description": "changed"}, not_found_code="INTEGRATION_NOT_FOUND"),
    Family("integration enable", "post", "/api/v1/integrations/{integration}/enable", "integrations.write", 200,
           OUR_OBJECT, not_found_code="INTEGRATION_NOT_FOUND"),
    Family("integration delete", "delete", "/api/v1/integrations/{integration}/", "integrations.delete", 204,
           OUR_OBJECT, not_found_code="INTEGRATION_NOT_FOUND"),
    Family("api-keys list", "get", "/api/v1/api-keys/", "api_keys.manage", 200, OWN_TENANT),
    Family("api-keys create", "post", "/api/v1/api-keys/", "api_keys.manage", 201, OWN_TENANT,
           body={"name": "ci", "role": "member"}),
    Family("api-key revoke", "delete", "/api/v1/api-keys/{api_key}/", "api_keys.manage", 204, OUR_OBJECT),
    Family("audit-events list", "get", "/api/v1/audit-events/", "audit.read", 200, OWN_TENANT),
]


def expected_outcome(family: Family, role: str) -> tuple[int, str | None]:
    """(status, error code or None) that ``role`` must get on ``family``."""
    if role == ANON:
        return 401, "NOT_AUTHENTICATED"
    if role == OTHER:
        # The other tenant's user is a tenant admin of its own tenant.
        if family.kind == PLATFORM:
            return 403, "PERMISSION_DENIED"
        if family.kind == OUR_OBJECT:
            return 404, family.not_found_code
        role = TA
    if role in EXPECTED_ROLES[family.permission]:
        return family.success, None
    return 403, "PERMISSION_DENIED"


@pytest.fixture
def world(tenant, provider, integration):
    # Disabled, so that an allowed enable is a real state change.
    Integration.objects.filter(pk=integration.pk).update(status="disabled")
    api_key, _ = tenant_services.api_key_create(actor=SYSTEM, tenant=tenant, name="existing", role=MB)
    return {"provider": provider.slug, "integration": str(integration.pk), "api_key": str(api_key.pk)}


def _fill(value, world):
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


def test_permissions_module_matches_the_design_role_table():
    assert MATRIX == EXPECTED_ROLES


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("family", FAMILIES, ids=str)
def test_role_matrix(family, role, world, client_for):
    # A super admin acting on tenant rows uses a token for that tenant; on platform rows, a platform-wide one.
    client = client_for(role, scoped=(role == SA and family.kind != PLATFORM))
    audit_before = AuditEvent.objects.count()
    expected_status, expected_code = expected_outcome(family, role)

    path = _fill(family.path, world)
    kwargs = {"format": "json"} if family.method in ("post", "patch") else {}
    if family.body is not None:
        kwargs["data"] = _fill(family.body, world)
    response = getattr(client, family.method)(path, **kwargs)

    assert response.status_code == expected_status, (family.name, role, response.content)
    if expected_code is not None:
        assert response.json()["error"]["code"] == expected_code
        assert AuditEvent.objects.count() == audit_before, "a refused request changed state"
    elif family.method != "get":
        assert AuditEvent.objects.count() > audit_before, "an allowed write left no audit event"


def _integration_state(integration_id):
    row = Integration.objects.get(pk=integration_id)
    return {f.attname: getattr(row, f.attname) for f in Integration._meta.concrete_fields}


@pytest.mark.parametrize(
    "method, suffix, body",
    [
        ("get", "/", None),
        ("patch", "/", {"name": "Hijacked", "api_base_url": "https://evil.example.com"}),
        ("put", "/", {"name": "Hijacked"}),
        ("delete", "/", None),
        ("post", "/enable", None),
        ("post", "/disable", None),
        ("get", "/connection", None),
        ("put", "/credentials", {"type": "bearer", "token": "stolen-token-123456"}),
        ("delete", "/credentials", None),
        ("get", "/versions/", None),
        ("post", "/versions/1/restore", None),
    ],
)
def test_other_tenant_gets_integration_not_found_and_nothing_changes(
    method, suffix, body, client_for, integration
):
    before = _integration_state(integration.pk)
    audit_before = AuditEvent.objects.count()
    client = client_for(OTHER)
    kwargs = {"data": body, "format": "json"} if body is not None else {}

    response = getattr(client, method)(f"/api/v1/integrations/{integration.pk}{suffix}", **kwargs)

    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "INTEGRATION_NOT_FOUND"
    assert _integration_state(integration.pk) == before
    assert AuditEvent.objects.count() == audit_before
    assert not integration.credentials.exists()


def test_other_tenant_does_not_see_our_integration_in_its_list(client_for, integration):
    response = client_for(OTHER).get("/api/v1/integrations/")
    assert response.status_code == 200
    assert response.json()["total"] == 0


def test_platform_wide_super_admin_lists_every_tenants_integrations(client_for, integration, other_tenant, provider):
    from tests.connections.factories import IntegrationFactory

    theirs = IntegrationFactory(tenant=other_tenant, provider=provider, name="Their API")
    response = client_for(SA).get("/api/v1/integrations/")
    assert response.status_code == 200
    assert {row["id"] for row in response.json()["results"]} == {str(integration.pk), str(theirs.pk)}


def test_platform_wide_super_admin_must_name_a_tenant_to_create_an_integration(client_for, provider):
    response = client_for(SA).post("/api/v1/integrations/", {"provider": provider.slug, "name": "X"}, format="json")
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "VALIDATION_ERROR"
    assert "tenant" in body["details"]
    assert not Integration.objects.exists()


def test_platform_wide_super_admin_has_no_own_tenant(client_for):
    response = client_for(SA).get("/api/v1/tenant/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_staff_in_super_admin_group_is_a_super_admin(db, tenant):
    from django.contrib.auth.models import Group

    from tests.conftest import token_client
    from tests.tenants.factories import UserFactory

    staff = UserFactory(username="operator", is_staff=True)
    staff.groups.add(Group.objects.create(name="super_admin"))
    assert token_client(staff).get("/api/v1/admin/providers/").status_code == 200

    plain_staff = UserFactory(username="plain-staff", is_staff=True)
    # No group and no membership: the token names no tenant, so it is refused.
    response = token_client(plain_staff).get("/api/v1/admin/providers/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"
