"""The OAuth2 and connection endpoints through the API, against a real local authorization server:
tenant and per-user connect, /me, the admin's list and revoke, return URL rules, checks with the
caller's credential and refresh on 401, re-authorization in the health answer, PATCH /credentials,
disconnect, and the OpenAPI document."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.drainage import reset_generator_stats
from drf_spectacular.generators import SchemaGenerator

from audit.models import AuditEvent
from connections.models import Credential, Integration, OAuthState
from connections.services import checks, oauth
from tenants.choices import Role
from tests.conftest import make_user, token_client
from tests.connections.factories import IntegrationFactory
from tests.connections.oauth_server import (  # noqa: F401 (fixtures, known by their names)
    RETURN_URL,
    callback,
    connect,
    oauth_integration_fixture,
    oauth_provider_fixture,
    oauth_server_fixture,
)

pytestmark = pytest.mark.django_db


def url(integration, action: str = "", me: bool = False) -> str:
    prefix = "/api/v1/me/integrations" if me else "/api/v1/integrations"
    return f"{prefix}/{integration.pk}/{action}"


def tenant_credential(integration):
    return Credential.objects.filter(integration=integration, user__isnull=True).first()


@pytest.fixture
def user_scoped(oauth_integration):
    Integration.objects.filter(pk=oauth_integration.pk).update(user_scoped=True)
    oauth_integration.refresh_from_db()
    return oauth_integration


@pytest.fixture
def alice(tenant):
    user = make_user(Role.INTEGRATION_MANAGER, tenant, "alice")
    return user, token_client(user, tenant)


@pytest.fixture
def bob(tenant):
    user = make_user(Role.MEMBER, tenant, "bob")
    return user, token_client(user, tenant)


# --- tenant-wide connect ------------------------------------------------------------------------------


def test_tenant_connect_flow_end_to_end_through_the_api(admin_client_api, oauth_integration, oauth_server):
    before = admin_client_api.get(url(oauth_integration, "connection"))
    assert before.status_code == 200 and before.json()["status"] is None
    assert before.json()["has_credentials"] is False

    started = admin_client_api.post(url(oauth_integration, "connect/oauth"), {"return_url": RETURN_URL},
                                    format="json")
    assert started.status_code == 200 and set(started.json()) == {"authorization_url", "state"}
    assert started["Cache-Control"] == "no-store"
    answer = callback(oauth_server.authorize(started.json()["authorization_url"]))
    assert answer.status_code == 302 and answer["Location"] == RETURN_URL + "?status=connected"

    connection = admin_client_api.get(url(oauth_integration, "connection")).json()
    assert connection["status"] == "active" and connection["has_credentials"] is True
    assert connection["type"] == "oauth2" and connection["scopes"] == ["read", "write"]
    assert connection["expires_at"] is not None and connection["connected_at"] is not None
    assert connection["validation_error"] == ""
    detail = admin_client_api.get(url(oauth_integration)).json()
    assert detail["status"] == "connected" and detail["has_credentials"] is True

    tested = admin_client_api.post(url(oauth_integration, "test"))
    assert tested.status_code == 200 and tested.json()["success"] is True
    assert oauth_server.pings == [200]


@pytest.mark.parametrize("role,expected", [("member", 403), ("anonymous", 401), ("other_tenant", 404)])
def test_only_integration_writers_of_the_tenant_may_start_or_disconnect(role, expected, client_for,
                                                                         oauth_integration):
    api = client_for(role)
    started = api.post(url(oauth_integration, "connect/oauth"), {"return_url": RETURN_URL}, format="json")
    assert started.status_code == expected and "error" in started.json()
    assert api.post(url(oauth_integration, "disconnect")).status_code == expected
    assert not OAuthState.objects.exists()


def test_connect_body_is_strict(admin_client_api, oauth_integration):
    for body in ({}, {"return_url": RETURN_URL, "scope": "admin"}, {"return_url": ["x"]}):
        answer = admin_client_api.post(url(oauth_integration, "connect/oauth"), body, format="json")
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not OAuthState.objects.exists()


# --- return URLs -----------------------------------------------------------------------------------------

# The tenant allows "app.example.com" and "app.example.com:8443". Decision on ports: entries are exact. A bare
# host allows the scheme's default port only; any other port must be listed as host:port.
BAD_RETURN_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.domain)//https://app.example.com/",
    "data:text/html,<script>alert(1)</script>",
    "//evil.com",
    "//app.example.com/done",
    "/relative/path",
    "https://app.example.com@evil.com",
    "https://user:pass@app.example.com/",
    "https://app.example.com%40evil.com@evil.com/",
    "https://evil.com\\@app.example.com",
    "https:\\\\evil.com",
    "https:/\\evil.com",
    "https://evil.com\\.app.example.com",
    "http://app.example.com/done",  # non-local http, DEBUG off
    "http://localhost/done",  # localhost http, DEBUG off
    "https://evil.com",
    "https://evil.com/?next=https://app.example.com/",
    "https://evil.com#@app.example.com",
    "https://app.example.com.evil.com/",
    "https://evilapp.example.com/",
    "https://example.com/",
    "https://app.example.com./",
    "https://gооd.example/",  # Cyrillic о
    "https://аpp.example.com/",  # Cyrillic а
    "https://xn--pp-7kc.example.com/",  # the punycode of that look-alike: another host
    "https://app.example.com\u200b/",  # zero-width space
    "https://app.example.com /x",
    "https://app.example.com\t.evil.com/",
    "https://app.example.com\n.evil.com/",
    "https://app.example.com:9443/",  # only :8443 is listed
    "https://app.example.com:notaport/",
    "https://[::1]/",
    "ftp://app.example.com/",
    "https:///app.example.com",
]


@pytest.mark.parametrize("return_url", BAD_RETURN_URLS)
def test_a_bad_return_url_is_refused_with_url_not_allowed(return_url, admin_client_api, oauth_integration, tenant):
    tenant.allowed_return_hosts = ["app.example.com", "app.example.com:8443"]
    tenant.save()
    answer = admin_client_api.post(url(oauth_integration, "connect/oauth"), {"return_url": return_url},
                                   format="json")
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "URL_NOT_ALLOWED" and "return_url" in error["details"]
    assert error["request_id"]
    assert not OAuthState.objects.exists()


@pytest.mark.parametrize("return_url", [
    "https://app.example.com",
    "https://app.example.com/done?tab=1#top",
    "https://APP.Example.com/done",
    "https://app.example.com:443/done",
    "https://app.example.com:8443/done",
])
def test_an_allowed_return_url_is_accepted(return_url, admin_client_api, oauth_integration, tenant):
    tenant.allowed_return_hosts = ["app.example.com", "app.example.com:8443"]
    tenant.save()
    answer = admin_client_api.post(url(oauth_integration, "connect/oauth"), {"return_url": return_url},
                                   format="json")
    assert answer.status_code == 200, answer.content
    assert OAuthState.objects.get().return_url == return_url


def test_a_bare_host_entry_does_not_allow_another_port(admin_client_api, oauth_integration, tenant):
    tenant.allowed_return_hosts = ["app.example.com"]
    tenant.save()
    answer = admin_client_api.post(url(oauth_integration, "connect/oauth"),
                                   {"return_url": "https://app.example.com:8443/done"}, format="json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "URL_NOT_ALLOWED"


def test_http_localhost_is_allowed_only_with_debug(admin_client_api, oauth_integration, tenant, settings):
    tenant.allowed_return_hosts = ["localhost:3000", "app.example.com"]
    tenant.save()
    body = {"return_url": "http://localhost:3000/done"}
    settings.DEBUG = False
    assert admin_client_api.post(url(oauth_integration, "connect/oauth"), body, format="json").status_code == 400
    settings.DEBUG = True
    assert admin_client_api.post(url(oauth_integration, "connect/oauth"), body, format="json").status_code == 200
    # DEBUG never opens http for a real host.
    refused = admin_client_api.post(url(oauth_integration, "connect/oauth"),
                                    {"return_url": "http://app.example.com/done"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "URL_NOT_ALLOWED"


def test_a_tenant_admin_changes_the_allowed_hosts_through_the_tenant_endpoint(admin_client_api, oauth_integration):
    body = {"return_url": "https://portal.example.org/back"}
    assert admin_client_api.post(url(oauth_integration, "connect/oauth"), body, format="json").status_code == 400
    patched = admin_client_api.patch("/api/v1/tenant/", {"allowed_return_hosts": ["portal.example.org"]},
                                     format="json")
    assert patched.status_code == 200 and patched.json()["allowed_return_hosts"] == ["portal.example.org"]
    assert admin_client_api.post(url(oauth_integration, "connect/oauth"), body, format="json").status_code == 200


# --- user-scoped connections ------------------------------------------------------------------------------


def test_two_users_each_connect_and_see_only_their_own_connection(user_scoped, oauth_server, alice, bob):
    (alice_user, alice_api), (bob_user, bob_api) = alice, bob
    nothing = bob_api.get(url(user_scoped, "connection", me=True))
    assert nothing.status_code == 200
    assert nothing.json() == {"connected": False, "connection_id": None, "status": None, "last_connected_at": None,
                              "expires_at": None, "scopes": []}

    assert connect(alice_api, user_scoped, oauth_server, me=True)["Location"] == RETURN_URL + "?status=connected"
    assert bob_api.get(url(user_scoped, "connection", me=True)).json()["connected"] is False
    assert connect(bob_api, user_scoped, oauth_server, me=True)["Location"] == RETURN_URL + "?status=connected"

    mine = alice_api.get(url(user_scoped, "connection", me=True)).json()
    theirs = bob_api.get(url(user_scoped, "connection", me=True)).json()
    alice_cred = Credential.objects.get(integration=user_scoped, user=alice_user)
    bob_cred = Credential.objects.get(integration=user_scoped, user=bob_user)
    assert mine["connection_id"] == str(alice_cred.pk) and theirs["connection_id"] == str(bob_cred.pk)
    assert mine["connected"] is theirs["connected"] is True and mine["status"] == "active"
    assert mine["scopes"] == ["read", "write"] and mine["expires_at"] and mine["last_connected_at"]
    assert alice_cred.payload["access_token"] != bob_cred.payload["access_token"]
    assert tenant_credential(user_scoped) is None

    # Bob disconnects himself: Alice keeps her connection, and her token still works at the provider.
    gone = bob_api.post(url(user_scoped, "disconnect", me=True))
    assert gone.status_code == 200 and gone.json()["disconnected"] is True
    assert gone.json()["revoked_at_provider"] is True
    assert bob_api.get(url(user_scoped, "connection", me=True)).json()["connected"] is False
    assert alice_api.get(url(user_scoped, "connection", me=True)).json()["connected"] is True
    assert oauth_server.access_token_is_live(Credential.objects.get(pk=alice_cred.pk).payload["access_token"])
    assert [r["token"] for r in oauth_server.revoked] == [bob_cred.payload["refresh_token"]]


def test_the_tenant_admin_lists_user_connections_without_tokens_and_revokes_one(
    admin_client_api, client_for, user_scoped, oauth_server, alice, bob
):
    (alice_user, alice_api), (bob_user, bob_api) = alice, bob
    connect(alice_api, user_scoped, oauth_server, me=True)
    connect(bob_api, user_scoped, oauth_server, me=True)
    listing = admin_client_api.get(f"/api/v1/integrations/{user_scoped.pk}/user-connections/")
    assert listing.status_code == 200
    rows = {row["username"]: row for row in listing.json()["results"]}
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"]["user_id"] == alice_user.pk and rows["alice"]["connected"] is True
    assert set(rows["alice"]) == {"connection_id", "user_id", "username", "connected", "status", "expires_at",
                                  "scopes", "created_at", "updated_at"}
    text = listing.content.decode()
    assert "token" not in text and "payload" not in text

    bob_cred = Credential.objects.get(integration=user_scoped, user=bob_user)
    revoked = admin_client_api.post(f"/api/v1/integrations/{user_scoped.pk}/user-connections/{bob_user.pk}/revoke")
    assert revoked.status_code == 200
    assert revoked.json() == {"disconnected": True, "revoked_at_provider": True, "revoke_error": ""}
    assert [r["token"] for r in oauth_server.revoked] == [bob_cred.payload["refresh_token"]]
    assert Credential.objects.get(pk=bob_cred.pk).payload is None
    assert bob_api.get(url(user_scoped, "connection", me=True)).json()["status"] == "revoked"
    assert alice_api.get(url(user_scoped, "connection", me=True)).json()["connected"] is True
    after = {r["username"]: r for r in
             admin_client_api.get(f"/api/v1/integrations/{user_scoped.pk}/user-connections/").json()["results"]}
    assert after["bob"]["connected"] is False and after["bob"]["scopes"] == []
    assert after["alice"]["connected"] is True
    event = AuditEvent.objects.filter(action="oauth.disconnected").get()
    assert event.changes["user_scoped"] is True and event.actor == "tenant_admin-acme"

    # Users cannot list or revoke others; another tenant cannot see the integration; unknown user: 404.
    assert alice_api.get(f"/api/v1/integrations/{user_scoped.pk}/user-connections/").status_code == 403
    assert alice_api.post(
        f"/api/v1/integrations/{user_scoped.pk}/user-connections/{bob_user.pk}/revoke"
    ).status_code == 403
    assert client_for("other_tenant").get(
        f"/api/v1/integrations/{user_scoped.pk}/user-connections/"
    ).status_code == 404
    missing = admin_client_api.post(f"/api/v1/integrations/{user_scoped.pk}/user-connections/999999/revoke")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_me_endpoints_refuse_an_integration_that_is_not_user_scoped(oauth_integration, alice):
    _, alice_api = alice
    for answer in (
        alice_api.post(url(oauth_integration, "connect/oauth", me=True), {"return_url": RETURN_URL}, format="json"),
        alice_api.get(url(oauth_integration, "connection", me=True)),
        alice_api.post(url(oauth_integration, "disconnect", me=True)),
    ):
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR"


def test_me_endpoints_of_another_tenants_integration_are_not_found(user_scoped, client_for):
    answer = client_for("other_tenant").get(url(user_scoped, "connection", me=True))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "INTEGRATION_NOT_FOUND"


def test_checks_on_a_user_scoped_integration_use_the_calling_users_credential(
    admin_client_api, user_scoped, oauth_server, alice, tenant
):
    alice_user, alice_api = alice
    connect(alice_api, user_scoped, oauth_server, me=True)
    connect(admin_client_api, user_scoped, oauth_server, me=True)
    subjects = {}
    for name, api in (("alice", alice_api), ("admin", admin_client_api)):
        tested = api.post(url(user_scoped, "test"))
        assert tested.status_code == 200 and tested.json()["success"] is True
        subjects[name] = tested.json()["sample"]["subject"]
    assert subjects["alice"] != subjects["admin"]

    # A manager without a connection of their own gets "not configured", not someone else's token.
    carol = token_client(make_user(Role.INTEGRATION_MANAGER, tenant, "carol"), tenant)
    tested = carol.post(url(user_scoped, "test"))
    assert tested.status_code == 200 and tested.json()["success"] is False
    assert tested.json()["error"]["code"] == "NOT_CONFIGURED"
    assert oauth_server.pings == [200, 200]

    # A queued check runs in the worker with the credential of the user who asked for it.
    queued = alice_api.post(url(user_scoped, "test") + "?async=1")
    assert queued.status_code == 202
    done = checks.connection_check_execute(check_id=queued.json()["check_id"])
    assert done.success is True and done.sample["subject"] == subjects["alice"]


# --- refresh on 401, re-authorization -------------------------------------------------------------------------


def test_an_expired_access_token_during_test_is_refreshed_once_and_the_check_retried(
    admin_client_api, oauth_integration, oauth_server
):
    connect(admin_client_api, oauth_integration, oauth_server)
    old = dict(tenant_credential(oauth_integration).payload)
    oauth_server.expire_access_tokens()

    tested = admin_client_api.post(url(oauth_integration, "test"))
    assert tested.status_code == 200 and tested.json()["success"] is True
    assert oauth_server.pings == [401, 200]
    assert len(oauth_server.refresh_calls()) == 1
    fresh = tenant_credential(oauth_integration)
    assert fresh.payload["access_token"] != old["access_token"] and fresh.status == "active"
    assert fresh.payload["refresh_token"] != old["refresh_token"]
    assert admin_client_api.get(url(oauth_integration, "health")).json()["last_error"] is None


def test_a_401_on_a_user_scoped_check_refreshes_only_that_users_credential(user_scoped, oauth_server, alice, bob):
    (alice_user, alice_api), (bob_user, bob_api) = alice, bob
    connect(alice_api, user_scoped, oauth_server, me=True)
    connect(bob_api, user_scoped, oauth_server, me=True)
    bob_before = Credential.objects.get(user=bob_user).payload
    alice_before = Credential.objects.get(user=alice_user).payload
    oauth_server.expire_access_tokens()
    tested = alice_api.post(url(user_scoped, "test"))
    assert tested.json()["success"] is True and oauth_server.pings == [401, 200]
    assert Credential.objects.get(user=alice_user).payload["access_token"] != alice_before["access_token"]
    assert Credential.objects.get(user=bob_user).payload == bob_before
    assert len(oauth_server.refresh_calls()) == 1


def test_a_401_with_a_non_oauth_credential_is_not_retried(admin_client_api, tenant, oauth_server, provider,
                                                           settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    plain = IntegrationFactory(tenant=tenant, provider=provider, name="Bearer API", api_base_url=oauth_server.base_url,
                               test_endpoint="/api/ping", retry_count=0)
    admin_client_api.put(url(plain, "credentials"), {"type": "bearer", "token": "not-a-live-token-123"},
                         format="json")
    tested = admin_client_api.post(url(plain, "test"))
    assert tested.json()["success"] is False and tested.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert oauth_server.pings == [401] and oauth_server.token_calls == []


def test_invalid_grant_from_the_periodic_refresh_shows_re_authorization_in_connection_and_health(
    admin_client_api, oauth_integration, oauth_server
):
    connect(admin_client_api, oauth_integration, oauth_server)
    oauth_server.revoke_refresh_tokens()
    Credential.objects.update(expires_at=timezone.now() + timedelta(minutes=1))
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 1}

    connection = admin_client_api.get(url(oauth_integration, "connection")).json()
    assert connection["status"] == "expired"
    assert connection["validation_error"].startswith("Re-authorization needed")
    health = admin_client_api.get(url(oauth_integration, "health")).json()
    assert health["last_error"]["code"] == "INVALID_CREDENTIALS"
    assert "Re-authorization needed" in health["last_error"]["message"]
    assert admin_client_api.get(url(oauth_integration)).json()["status"] == "error"
    events = admin_client_api.get("/api/v1/audit-events/", {"action": "oauth.refresh_failed"}).json()["results"]
    assert len(events) == 1 and events[0]["outcome"] == "failure"

    # Connecting again clears it.
    assert connect(admin_client_api, oauth_integration, oauth_server)["Location"].endswith("status=connected")
    again = admin_client_api.get(url(oauth_integration, "connection")).json()
    assert again["status"] == "active" and again["validation_error"] == ""
    assert admin_client_api.get(url(oauth_integration)).json()["status"] == "connected"


# --- PATCH /credentials ---------------------------------------------------------------------------------------


def test_patch_credentials_changes_part_of_an_api_key_credential(admin_client_api, integration):
    put = admin_client_api.put(url(integration, "credentials"),
                               {"type": "api_key", "api_key": "key-value-0123456789", "header_name": "X-Key"},
                               format="json")
    assert put.status_code == 200 and put.json()["version"] == 1
    patched = admin_client_api.patch(url(integration, "credentials"), {"header_name": "X-Other-Key"}, format="json")
    assert patched.status_code == 200
    body = patched.json()
    assert set(body) == {"success", "credential_version", "updated_at"}
    assert body["success"] is True and body["credential_version"] == 2 and body["updated_at"]
    credential = tenant_credential(integration)
    assert credential.payload == {"api_key": "key-value-0123456789"}
    assert credential.public_fields["header_name"] == "X-Other-Key"

    rotated = admin_client_api.patch(url(integration, "credentials"),
                                     {"type": "api_key", "api_key": "key-value-abcdefghij"}, format="json")
    assert rotated.json()["credential_version"] == 3
    credential.refresh_from_db()
    assert credential.payload == {"api_key": "key-value-abcdefghij"} and credential.hint == "ghij"
    assert credential.public_fields["header_name"] == "X-Other-Key"
    event = AuditEvent.objects.filter(action="credential.updated").order_by("-created_at").first()
    assert event.changes["api_key"] != "key-value-abcdefghij" and event.changes["version"] == 3


def test_patch_credentials_of_an_oauth_connection_keeps_the_refresh_token(admin_client_api, oauth_integration,
                                                                          oauth_server):
    connect(admin_client_api, oauth_integration, oauth_server)
    before = tenant_credential(oauth_integration)
    patched = admin_client_api.patch(url(oauth_integration, "credentials"), {"scopes": ["read"]}, format="json")
    assert patched.status_code == 200 and patched.json()["credential_version"] == before.version + 1
    after = tenant_credential(oauth_integration)
    assert after.payload == before.payload and after.public_fields["scopes"] == ["read"]
    assert admin_client_api.get(url(oauth_integration, "connection")).json()["scopes"] == ["read"]


@pytest.mark.parametrize("body,status,code", [
    ({"type": "basic", "username": "u"}, 400, "VALIDATION_ERROR"),
    ({"unknown_field": "x"}, 400, "VALIDATION_ERROR"),
    ({}, 400, "VALIDATION_ERROR"),
    ({"header_name": "bad header"}, 400, "VALIDATION_ERROR"),
    ({"api_key": ""}, 400, "VALIDATION_ERROR"),
    (["api_key"], 400, "VALIDATION_ERROR"),
])
def test_patch_credentials_refuses_bad_changes(body, status, code, admin_client_api, integration):
    admin_client_api.put(url(integration, "credentials"), {"type": "api_key", "api_key": "key-value-0123456789"},
                         format="json")
    answer = admin_client_api.patch(url(integration, "credentials"), body, format="json")
    assert answer.status_code == status and answer.json()["error"]["code"] == code
    assert tenant_credential(integration).version == 1


def test_patch_credentials_without_credentials_is_not_found(admin_client_api, integration, client_for):
    answer = admin_client_api.patch(url(integration, "credentials"), {"api_key": "x" * 20}, format="json")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"
    assert client_for("member").patch(url(integration, "credentials"), {"api_key": "x" * 20},
                                      format="json").status_code == 403


# --- disconnect ------------------------------------------------------------------------------------------------


def test_disconnect_through_the_api_revokes_erases_and_sets_pending(admin_client_api, oauth_integration,
                                                                   oauth_server):
    connect(admin_client_api, oauth_integration, oauth_server)
    refresh_token = tenant_credential(oauth_integration).payload["refresh_token"]
    answer = admin_client_api.post(url(oauth_integration, "disconnect"))
    assert answer.status_code == 200
    assert answer.json() == {"disconnected": True, "revoked_at_provider": True, "revoke_error": ""}
    assert [r["token"] for r in oauth_server.revoked] == [refresh_token]
    connection = admin_client_api.get(url(oauth_integration, "connection")).json()
    assert connection["status"] == "revoked" and connection["has_credentials"] is False
    assert admin_client_api.get(url(oauth_integration)).json()["status"] == "pending"
    # Disconnecting again has nothing to revoke.
    again = admin_client_api.post(url(oauth_integration, "disconnect")).json()
    assert again["revoked_at_provider"] is None and len(oauth_server.revoked) == 1


def test_disconnect_with_a_failing_revocation_endpoint_still_disconnects(admin_client_api, oauth_integration,
                                                                        oauth_server):
    connect(admin_client_api, oauth_integration, oauth_server)
    oauth_server.revoke_status = 503
    answer = admin_client_api.post(url(oauth_integration, "disconnect"))
    assert answer.status_code == 200
    assert answer.json()["disconnected"] is True and answer.json()["revoked_at_provider"] is False
    assert answer.json()["revoke_error"]
    assert tenant_credential(oauth_integration).payload is None
    assert admin_client_api.get(url(oauth_integration, "connection")).json()["validation_error"] == answer.json()[
        "revoke_error"
    ]


def test_disconnect_with_nothing_connected_says_so(admin_client_api, oauth_integration, oauth_server):
    answer = admin_client_api.post(url(oauth_integration, "disconnect"))
    assert answer.json() == {"disconnected": False, "revoked_at_provider": None, "revoke_error": ""}
    assert oauth_server.revoked == []


# --- OpenAPI ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi():
    reset_generator_stats()
    return SchemaGenerator().get_schema(request=None, public=True)


def body_ref(operation) -> str:
    return operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def response_ref(operation, code: str = "200") -> str:
    schema = operation["responses"][code]["content"]["application/json"]["schema"]
    return (schema.get("$ref") or schema["items"]["$ref"]).rsplit("/", 1)[-1]


def props(openapi, name: str) -> set[str]:
    return set(openapi["components"]["schemas"][name]["properties"])


OAUTH_OPERATIONS = [
    # (path, method, request schema or None, response schema, its fields)
    ("/api/v1/integrations/{id}/connect/oauth", "post", "ConnectOAuthRequest", "Authorization",
     {"authorization_url", "state"}),
    ("/api/v1/me/integrations/{id}/connect/oauth", "post", "ConnectOAuthRequest", "Authorization",
     {"authorization_url", "state"}),
    ("/api/v1/integrations/{id}/disconnect", "post", None, "Disconnect",
     {"disconnected", "revoked_at_provider", "revoke_error"}),
    ("/api/v1/me/integrations/{id}/disconnect", "post", None, "Disconnect",
     {"disconnected", "revoked_at_provider", "revoke_error"}),
    ("/api/v1/integrations/{id}/credentials", "patch", "CredentialPatchRequest", "CredentialPatchResult",
     {"success", "credential_version", "updated_at"}),
    ("/api/v1/integrations/{id}/connection", "get", None, "Connection",
     {"status", "last_validated_at", "validation_error", "expires_at", "scopes", "connected_at"}),
    ("/api/v1/me/integrations/{id}/connection", "get", None, "MeConnection",
     {"connected", "connection_id", "status", "last_connected_at", "expires_at", "scopes"}),
    ("/api/v1/integrations/{integration_pk}/user-connections/", "get", None, "PaginatedUserConnectionList",
     {"results", "total"}),
    ("/api/v1/integrations/{integration_pk}/user-connections/{user_id}/revoke", "post", None, "Disconnect",
     {"disconnected", "revoked_at_provider", "revoke_error"}),
]


@pytest.mark.parametrize("path,method,request_schema,response_schema,fields", OAUTH_OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m, *_ in OAUTH_OPERATIONS])
def test_the_openapi_document_shows_each_oauth_endpoint_with_its_bodies(openapi, path, method, request_schema,
                                                                        response_schema, fields):
    operation = openapi["paths"][path][method]
    if request_schema:
        assert body_ref(operation) == request_schema
    else:
        assert "requestBody" not in operation
    assert response_ref(operation) == response_schema
    assert fields <= props(openapi, response_schema)
    in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    assert in_path == set(re.findall(r"\{([^}]+)\}", path))


def test_the_openapi_document_describes_the_callback_and_the_request_bodies(openapi):
    callback_op = openapi["paths"]["/api/v1/oauth/callback"]["get"]
    assert callback_op.get("security", []) in ([], [{}]) and "security" not in openapi  # no authentication
    params = {p["name"]: p for p in callback_op["parameters"]}
    assert set(params) == {"state", "code", "error", "iss"} and params["state"]["required"] is True
    assert "302" in callback_op["responses"]
    assert "text/html" in callback_op["responses"]["400"]["content"]
    connect_body = openapi["components"]["schemas"]["ConnectOAuthRequest"]
    assert connect_body["required"] == ["return_url"] and "return_url" in connect_body["properties"]
    user_row = openapi["components"]["schemas"]["UserConnection"]["properties"]
    assert {"user_id", "username", "connected", "scopes"} <= set(user_row)
    assert not {"payload", "access_token", "refresh_token"} & set(user_row)
    assert "type" in props(openapi, "CredentialPatchRequest")


def test_a_search_answered_401_refreshes_the_token_once_and_asks_again(admin_client_api, oauth_integration,
                                                                         oauth_server):
    connect(admin_client_api, oauth_integration, oauth_server)
    oauth_integration.provider.supports_search = True
    oauth_integration.provider.save()
    Integration.objects.filter(pk=oauth_integration.pk).update(
        search_enabled=True, settings={"search": {"endpoint": "/api/ping", "items_path": "items"}})
    old = dict(tenant_credential(oauth_integration).payload)
    oauth_server.expire_access_tokens()
    answer = admin_client_api.get(url(oauth_integration, "search") + "?query=anything")
    assert answer.status_code == 200 and answer.json()["errors"] == {}, answer.content
    assert [item["id"] for item in answer.json()["results"]] == ["1", "2"]
    assert oauth_server.pings == [401, 200] and len(oauth_server.refresh_calls()) == 1
    assert tenant_credential(oauth_integration).payload["access_token"] != old["access_token"]
