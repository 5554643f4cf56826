"""Authentication: JWT obtain/refresh with a tenant, and tenant API keys."""
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.models import Integration
from tenants import services
from tenants.authentication import TENANT_CLAIM
from tenants.choices import Role
from tests.conftest import make_user
from tests.helpers import assert_error
from tests.tenants.factories import MembershipFactory, UserFactory

PASSWORD = "pass-Word-123"  # UserFactory's password
TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"


def obtain(**body):
    return APIClient().post(TOKEN_URL, body, format="json")


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


# --- JWT ---------------------------------------------------------------------

def test_token_carries_the_tenant_and_role(tenant):
    make_user(Role.INTEGRATION_MANAGER, tenant, "ivy")
    response = obtain(username="ivy", password=PASSWORD, tenant="acme")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh"}
    claims = AccessToken(body["access"])
    assert claims[TENANT_CLAIM] == str(tenant.pk)
    assert claims["role"] == Role.INTEGRATION_MANAGER

    own = bearer(body["access"]).get("/api/v1/tenant/")
    assert own.status_code == 200
    assert own.json()["slug"] == "acme"


def test_token_for_a_user_in_two_tenants_acts_in_the_named_one(tenant, other_tenant):
    user = make_user(Role.MEMBER, tenant, "dual")
    MembershipFactory(user=user, tenant=other_tenant, role=Role.TENANT_ADMIN)
    access = obtain(username="dual", password=PASSWORD, tenant="globex").json()["access"]
    client = bearer(access)
    assert client.get("/api/v1/tenant/").json()["slug"] == "globex"
    # tenant_admin in globex: may manage API keys there.
    assert client.get("/api/v1/api-keys/").status_code == 200


def test_wrong_password_is_401_not_authenticated(tenant):
    make_user(Role.MEMBER, tenant, "mia")
    error = assert_error(obtain(username="mia", password="wrong", tenant="acme"), 401, "NOT_AUTHENTICATED")
    assert PASSWORD not in str(error) and "wrong" not in error["message"]


def test_unknown_user_is_401_not_authenticated(tenant):
    assert_error(obtain(username="ghost", password=PASSWORD, tenant="acme"), 401, "NOT_AUTHENTICATED")


def test_inactive_user_gets_no_token(tenant):
    user = make_user(Role.MEMBER, tenant, "gone")
    user.is_active = False
    user.save()
    assert_error(obtain(username="gone", password=PASSWORD, tenant="acme"), 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("body_tenant", [None, ""])
def test_tenant_user_without_tenant_is_400_naming_tenant(tenant, body_tenant):
    make_user(Role.MEMBER, tenant, "mia")
    body = {"username": "mia", "password": PASSWORD}
    if body_tenant is not None:
        body["tenant"] = body_tenant
    error = assert_error(obtain(**body), 400, "VALIDATION_ERROR")
    assert "tenant" in error["details"]


def test_user_not_member_of_the_tenant_is_401(tenant, other_tenant):
    make_user(Role.TENANT_ADMIN, tenant, "alice")
    assert_error(obtain(username="alice", password=PASSWORD, tenant="globex"), 401, "NOT_AUTHENTICATED")


def test_unknown_tenant_slug_is_401(tenant):
    make_user(Role.TENANT_ADMIN, tenant, "alice")
    assert_error(obtain(username="alice", password=PASSWORD, tenant="no-such-tenant"), 401, "NOT_AUTHENTICATED")


def test_inactive_tenant_gets_no_token(tenant):
    make_user(Role.TENANT_ADMIN, tenant, "alice")
    tenant.is_active = False
    tenant.save()
    assert_error(obtain(username="alice", password=PASSWORD, tenant="acme"), 401, "NOT_AUTHENTICATED")


def test_missing_username_or_password_is_400_naming_them(db):
    error = assert_error(obtain(tenant="acme"), 400, "VALIDATION_ERROR")
    assert {"username", "password"} <= set(error["details"])


def test_superuser_without_tenant_gets_a_platform_wide_token(tenant):
    make_user("super_admin", username="root")
    response = obtain(username="root", password=PASSWORD)
    assert response.status_code == 200, response.content
    claims = AccessToken(response.json()["access"])
    assert TENANT_CLAIM not in claims
    assert claims["role"] == "super_admin"
    client = bearer(response.json()["access"])
    assert client.get("/api/v1/admin/tenants/").status_code == 200
    assert client.get("/api/v1/tenant/").status_code == 404  # platform-wide: no own tenant


def test_superuser_with_a_tenant_gets_a_token_for_it(tenant):
    make_user("super_admin", username="root")
    response = obtain(username="root", password=PASSWORD, tenant="acme")
    assert AccessToken(response.json()["access"])[TENANT_CLAIM] == str(tenant.pk)
    assert bearer(response.json()["access"]).get("/api/v1/tenant/").json()["slug"] == "acme"


def test_refresh_gives_a_new_access_token_for_the_same_tenant(tenant):
    make_user(Role.TENANT_ADMIN, tenant, "alice")
    pair = obtain(username="alice", password=PASSWORD, tenant="acme").json()
    response = APIClient().post(REFRESH_URL, {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 200, response.content
    access = response.json()["access"]
    assert AccessToken(access)[TENANT_CLAIM] == str(tenant.pk)
    assert bearer(access).get("/api/v1/tenant/").json()["slug"] == "acme"


def test_invalid_refresh_token_is_401(db):
    error = assert_error(APIClient().post(REFRESH_URL, {"refresh": "garbage"}, format="json"), 401, "NOT_AUTHENTICATED")
    assert "ErrorDetail" not in error["message"]


def test_access_token_is_not_accepted_as_a_refresh_token(tenant):
    make_user(Role.TENANT_ADMIN, tenant, "alice")
    pair = obtain(username="alice", password=PASSWORD, tenant="acme").json()
    response = APIClient().post(REFRESH_URL, {"refresh": pair["access"]}, format="json")
    assert_error(response, 401, "NOT_AUTHENTICATED")


def test_token_stops_working_when_membership_is_removed(tenant):
    user = make_user(Role.TENANT_ADMIN, tenant, "alice")
    access = obtain(username="alice", password=PASSWORD, tenant="acme").json()["access"]
    user.memberships.all().delete()
    assert_error(bearer(access).get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")


def test_role_is_read_from_the_membership_not_the_token(tenant):
    user = make_user(Role.TENANT_ADMIN, tenant, "alice")
    access = obtain(username="alice", password=PASSWORD, tenant="acme").json()["access"]
    user.memberships.update(role=Role.MEMBER)
    assert_error(bearer(access).get("/api/v1/api-keys/"), 403, "PERMISSION_DENIED")


def test_token_without_tenant_for_a_tenant_user_is_refused(tenant):
    user = make_user(Role.TENANT_ADMIN, tenant, "alice")
    access = RefreshToken.for_user(user).access_token  # no tenant claim
    assert_error(bearer(str(access)).get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")


# --- API keys ----------------------------------------------------------------

@pytest.fixture
def make_key(tenant):
    def build(role=Role.TENANT_ADMIN, **kwargs):
        return services.api_key_create(actor=SYSTEM, tenant=tenant, name=f"key-{role}", role=role, **kwargs)

    return build


def test_api_key_in_authorization_header_authenticates(make_key):
    _, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    response = client.get("/api/v1/tenant/")
    assert response.status_code == 200
    assert response.json()["slug"] == "acme"


def test_api_key_in_x_api_key_header_authenticates(make_key):
    _, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").json()["slug"] == "acme"


def test_revoked_api_key_is_401(make_key):
    api_key, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200  # the key is now kept in the cache
    services.api_key_revoke(actor=SYSTEM, api_key=api_key)
    error = assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")
    assert "revoked" in error["message"]


def test_expired_api_key_is_401(make_key):
    api_key, raw = make_key(expires_at=timezone.now() + timedelta(days=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get("/api/v1/tenant/").status_code == 200
    api_key.expires_at = timezone.now() - timedelta(seconds=1)
    api_key.save(update_fields=["expires_at"])
    error = assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")
    assert "expired" in error["message"]


def test_api_key_with_future_expiry_works(make_key):
    _, raw = make_key(expires_at=timezone.now() + timedelta(days=1))
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200


def test_api_key_of_inactive_tenant_is_401(make_key, tenant):
    _, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200
    tenant.is_active = False
    tenant.save()
    assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize(
    "header, value",
    [
        ("HTTP_X_API_KEY", "garbage"),
        ("HTTP_X_API_KEY", "ihk_"),
        ("HTTP_X_API_KEY", "ihk_onlyprefix"),
        ("HTTP_X_API_KEY", "ihk__secret"),
        ("HTTP_X_API_KEY", "ihk_deadbeef0000_wrongsecret"),
        ("HTTP_AUTHORIZATION", "Api-Key garbage"),
        ("HTTP_AUTHORIZATION", "Api-Key "),
    ],
)
def test_malformed_or_unknown_api_key_is_401(db, header, value):
    client = APIClient()
    client.credentials(**{header: value})
    assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")


def test_right_prefix_with_wrong_secret_is_401(make_key):
    api_key, raw = make_key()
    forged = f"ihk_{api_key.prefix}_{'A' * 43}"
    assert forged != raw
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=forged)
    assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")
    api_key.refresh_from_db()
    assert api_key.last_used_at is None


def test_member_api_key_cannot_create_integrations(make_key, provider):
    _, raw = make_key(role=Role.MEMBER)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/integrations/").status_code == 200
    response = client.post("/api/v1/integrations/", {"provider": provider.slug, "name": "Nope"}, format="json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert not Integration.objects.exists()


def test_integration_manager_api_key_creates_and_is_the_audited_actor(make_key, provider):
    api_key, raw = make_key(role=Role.INTEGRATION_MANAGER)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    response = client.post("/api/v1/integrations/", {"provider": provider.slug, "name": "ByKey"}, format="json")
    assert response.status_code == 201, response.content
    event = AuditEvent.objects.get(action="integration.created")
    assert event.actor_api_key_id == api_key.pk
    assert event.actor_user_id is None
    assert api_key.prefix in event.actor
    assert raw not in event.actor
    # ...but it may not delete (integrations.delete is tenant_admin and up).
    deleted = client.delete(f"/api/v1/integrations/{response.json()['id']}/")
    assert_error(deleted, 403, "PERMISSION_DENIED")


def test_integration_manager_api_key_cannot_manage_api_keys(make_key):
    _, raw = make_key(role=Role.INTEGRATION_MANAGER)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert_error(client.post("/api/v1/api-keys/", {"name": "escalate", "role": "tenant_admin"}, format="json"),
                 403, "PERMISSION_DENIED")


def test_api_key_is_scoped_to_its_tenant(make_key, other_tenant, provider):
    from tests.connections.factories import IntegrationFactory

    theirs = IntegrationFactory(tenant=other_tenant, provider=provider, name="Theirs")
    _, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/integrations/").json()["total"] == 0
    assert_error(client.get(f"/api/v1/integrations/{theirs.pk}/"), 404, "INTEGRATION_NOT_FOUND")


def test_api_key_cannot_reach_platform_endpoints(make_key):
    _, raw = make_key(role=Role.TENANT_ADMIN)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert_error(client.get("/api/v1/admin/providers/"), 403, "PERMISSION_DENIED")


def test_last_used_at_is_written_once_per_resolution_window(make_key, settings, django_assert_num_queries):
    api_key, raw = make_key()
    assert api_key.last_used_at is None
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)

    assert client.get("/api/v1/tenant/").status_code == 200
    api_key.refresh_from_db()
    first = api_key.last_used_at
    assert first is not None

    # Within the window: no second write, the value stays exactly the same; the key comes from the cache.
    with django_assert_num_queries(0):
        assert client.get("/api/v1/tenant/").status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at == first

    # Once the window has passed, the next request writes again.
    stale = timezone.now() - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS + 5)
    api_key.last_used_at = stale
    api_key.save(update_fields=["last_used_at"])
    assert client.get("/api/v1/tenant/").status_code == 200
    api_key.refresh_from_db()
    assert api_key.last_used_at > first


def test_deleted_api_key_is_401_at_once(make_key):
    api_key, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200
    api_key.delete()
    assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")


def test_api_key_of_a_deleted_tenant_is_401_at_once(make_key, tenant):
    _, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200
    services.tenant_delete(actor=SYSTEM, tenant=tenant)
    assert_error(client.get("/api/v1/tenant/"), 401, "NOT_AUTHENTICATED")


def test_api_key_cache_keeps_the_hash_not_the_key(make_key):
    api_key, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200
    kept = cache.get(f"auth:api-key:{api_key.key_hash}")
    assert kept is not None and kept.pk == api_key.pk and kept.tenant.slug == "acme"
    assert raw not in repr(vars(kept))


def test_api_key_cache_off_reads_the_key_on_every_request(make_key, settings, django_assert_num_queries):
    settings.API_KEY_CACHE_SECONDS = 0
    _, raw = make_key()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get("/api/v1/tenant/").status_code == 200
    with django_assert_num_queries(1):
        assert client.get("/api/v1/tenant/").status_code == 200


def test_valid_bearer_token_is_checked_before_an_api_key_header(make_key, tenant):
    user = make_user(Role.MEMBER, tenant, "mia")
    refresh = RefreshToken.for_user(user)
    refresh[TENANT_CLAIM] = str(tenant.pk)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refresh.access_token}", HTTP_X_API_KEY="garbage")
    # The valid JWT is checked first and wins; the request acts as the member.
    response = client.get("/api/v1/api-keys/")
    assert_error(response, 403, "PERMISSION_DENIED")


def test_token_answer_does_not_echo_the_password(tenant):
    make_user(Role.MEMBER, tenant, "mia")
    response = obtain(username="mia", password=PASSWORD, tenant="acme")
    assert PASSWORD not in response.content.decode()


def test_user_without_any_membership_cannot_obtain_a_tenant_token(tenant):
    UserFactory(username="loner")
    assert_error(obtain(username="loner", password=PASSWORD, tenant="acme"), 401, "NOT_AUTHENTICATED")
