"""OAuth2 services against a real local authorization server: start, callback and its attacks,
refresh (rotation, margin, concurrency, invalid_grant, transient failures) and disconnect."""
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Credential, Integration, OAuthState
from connections.services import oauth
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
    s256,
    start_flow,
)
from tests.helpers import celery_broker, raw_text

pytestmark = pytest.mark.django_db


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def tenant_credential(integration) -> Credential | None:
    return Credential.objects.filter(integration=integration, user__isnull=True).first()


@pytest.fixture
def connected(admin_client_api, oauth_integration, oauth_server):
    """A tenant-wide connection made through the whole flow."""
    answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302, answer.content
    return tenant_credential(oauth_integration)


def expire_soon(credential, seconds: int = 60):
    Credential.objects.filter(pk=credential.pk).update(expires_at=timezone.now() + timedelta(seconds=seconds))


# --- start --------------------------------------------------------------------------------------------


def test_start_builds_the_authorization_url_with_the_registered_redirect_uri_state_and_pkce(
    admin_client_api, oauth_integration, oauth_server, settings
):
    started = start_flow(admin_client_api, oauth_integration)
    url = started["authorization_url"]
    assert url.startswith(oauth_server.url("/authorize?"))
    query = query_of(url)
    assert query["response_type"] == "code" and query["client_id"] == "client-1"
    assert query["redirect_uri"] == settings.OAUTH_CALLBACK_URL
    assert query["scope"] == "read write"
    assert query["state"] == started["state"] and len(started["state"]) >= 43  # 32 random bytes
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43

    record = OAuthState.objects.get()
    assert record.state_hash != started["state"]
    assert started["state"] not in raw_text(OAuthState, "state_hash", record.pk)
    assert record.integration == oauth_integration and record.tenant == oauth_integration.tenant
    assert record.user.username == "tenant_admin-acme" and record.for_user is False
    assert s256(record.code_verifier) == query["code_challenge"]
    assert record.code_verifier not in raw_text(OAuthState, "code_verifier", record.pk)
    lifetime = record.expires_at - record.created_at
    assert timedelta(minutes=9, seconds=59) <= lifetime <= timedelta(minutes=10, seconds=1)


def test_two_starts_get_different_states_and_verifiers(admin_client_api, oauth_integration):
    first = start_flow(admin_client_api, oauth_integration)
    second = start_flow(admin_client_api, oauth_integration)
    assert first["state"] != second["state"]
    assert query_of(first["authorization_url"])["code_challenge"] != query_of(second["authorization_url"])[
        "code_challenge"
    ]


def test_extra_authorize_params_are_added_but_cannot_override_reserved_ones(
    admin_client_api, oauth_integration, oauth_provider, oauth_server, settings
):
    oauth_provider.oauth_config = oauth_server.oauth_config(extra_authorize_params={
        "access_type": "offline", "prompt": "consent", "redirect_uri": "https://evil.example/cb",
        "state": "fixed", "client_id": "other", "code_challenge_method": "plain",
    })
    oauth_provider.save()
    started = start_flow(admin_client_api, oauth_integration)
    query = query_of(started["authorization_url"])
    assert query["access_type"] == "offline" and query["prompt"] == "consent"
    assert query["redirect_uri"] == settings.OAUTH_CALLBACK_URL
    assert query["state"] == started["state"] and query["client_id"] == "client-1"
    assert query["code_challenge_method"] == "S256"
    assert parse_qs(urlsplit(started["authorization_url"]).query)["redirect_uri"] == [settings.OAUTH_CALLBACK_URL]


def test_a_provider_that_opts_out_of_pkce_gets_no_challenge_and_no_verifier_is_stored(
    admin_client_api, client, oauth_integration, oauth_provider, oauth_server
):
    oauth_provider.oauth_config = oauth_server.oauth_config(pkce=False)
    oauth_provider.save()
    started = start_flow(admin_client_api, oauth_integration)
    assert "code_challenge" not in query_of(started["authorization_url"])
    assert OAuthState.objects.get().code_verifier == ""
    answer = callback(oauth_server.authorize(started["authorization_url"]))
    assert answer.status_code == 302 and answer["Location"].endswith("status=connected")
    assert "code_verifier" not in oauth_server.token_calls[-1].form


def test_start_refuses_a_provider_without_oauth_configuration(admin_client_api, tenant, provider):
    tenant.allowed_return_hosts = ["app.example.com"]
    tenant.save()
    plain = IntegrationFactory(tenant=tenant, provider=provider, name="Not OAuth")
    answer = admin_client_api.post(f"/api/v1/integrations/{plain.pk}/connect/oauth", {"return_url": RETURN_URL},
                                   format="json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not OAuthState.objects.exists()


# --- callback: the happy path -----------------------------------------------------------------------------


def test_tenant_connect_stores_encrypted_tokens_connects_the_integration_and_queues_a_test(
    admin_client_api, oauth_integration, oauth_server
):
    answer = connect(admin_client_api, oauth_integration, oauth_server, return_url=RETURN_URL + "?tab=crm")
    assert answer.status_code == 302
    assert answer["Location"] == RETURN_URL + "?tab=crm&status=connected"
    assert answer["Cache-Control"] == "no-store" and answer["Referrer-Policy"] == "no-referrer"

    exchange = oauth_server.token_calls[-1]
    assert exchange.grant_type == "authorization_code" and exchange.status == 200
    assert exchange.client_auth == "basic" and "client_secret" not in exchange.form
    credential = tenant_credential(oauth_integration)
    assert credential.type == "oauth2" and credential.status == "active" and credential.version == 1
    assert oauth_server.access_token_is_live(credential.payload["access_token"])
    assert oauth_server.refresh_token_is_live(credential.payload["refresh_token"])
    assert set(credential.payload) == {"access_token", "refresh_token"}
    assert credential.public_fields["token_type"] == "Bearer"
    assert credential.public_fields["scopes"] == ["read", "write"]
    assert timedelta(minutes=59) < credential.expires_at - timezone.now() <= timedelta(hours=1)
    raw = raw_text(Credential, "payload", credential.pk)
    assert credential.payload["access_token"] not in raw and credential.payload["refresh_token"] not in raw

    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "connected"
    assert ConnectionCheck.objects.filter(integration=oauth_integration, state="queued").count() == 1
    event = AuditEvent.objects.get(action="oauth.connected")
    assert event.tenant == oauth_integration.tenant and event.changes["user_scoped"] is False
    assert OAuthState.objects.get().used_at is not None


def test_client_secret_post_sends_the_client_credentials_in_the_form(
    admin_client_api, oauth_integration, oauth_provider, oauth_server
):
    oauth_provider.oauth_config = oauth_server.oauth_config(token_auth_method="client_secret_post")
    oauth_provider.save()
    answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302 and answer["Location"].endswith("status=connected")
    assert oauth_server.token_calls[-1].client_auth == "post"
    assert oauth_server.token_calls[-1].form["client_id"] == "client-1"


def test_a_wrong_client_secret_fails_the_exchange_and_stores_nothing(
    admin_client_api, oauth_integration, oauth_provider, oauth_server
):
    oauth_provider.oauth_client_secret = "not-the-registered-secret"
    oauth_provider.save()
    answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302
    assert query_of(answer["Location"]) == {"status": "error", "error": "token_exchange_failed"}
    assert oauth_server.token_calls[-1].status == 401
    assert tenant_credential(oauth_integration) is None


def test_an_issuer_matching_the_provider_is_accepted(admin_client_api, oauth_integration, oauth_provider,
                                                     oauth_server):
    oauth_server.issuer = oauth_server.base_url
    oauth_provider.oauth_config = oauth_server.oauth_config(issuer=oauth_server.base_url)
    oauth_provider.save()
    answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302 and answer["Location"].endswith("status=connected")


# --- callback: the attacks ---------------------------------------------------------------------------


def test_a_replayed_state_gets_an_error_page_and_no_second_exchange(admin_client_api, oauth_integration,
                                                                     oauth_server):
    started = start_flow(admin_client_api, oauth_integration)
    params = oauth_server.authorize(started["authorization_url"])
    assert callback(params).status_code == 302
    version = tenant_credential(oauth_integration).version
    calls = len(oauth_server.token_calls)

    replay = callback(params)
    assert replay.status_code == 400 and "Location" not in replay
    assert replay["Content-Type"].startswith("text/html") and b"already used" in replay.content
    # Even with a fresh code for the same state: the state is spent.
    second = oauth_server.authorize(started["authorization_url"])
    assert callback(second).status_code == 400
    assert len(oauth_server.token_calls) == calls
    assert tenant_credential(oauth_integration).version == version


def test_an_unknown_or_missing_state_gets_an_error_page(oauth_integration):
    for params in ({"state": "made-up-state", "code": "x"}, {"code": "x"}):
        answer = callback(params)
        assert answer.status_code == 400 and "Location" not in answer
        assert b"not known" in answer.content
    assert not Credential.objects.exists()


def test_an_expired_state_gets_an_error_page_and_nothing_is_exchanged(admin_client_api, oauth_integration,
                                                                      oauth_server):
    started = start_flow(admin_client_api, oauth_integration)
    params = oauth_server.authorize(started["authorization_url"])
    OAuthState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = callback(params)
    assert answer.status_code == 400 and "Location" not in answer and b"expired" in answer.content
    assert oauth_server.token_calls == []
    assert tenant_credential(oauth_integration) is None
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "pending"


def test_a_state_only_ever_connects_the_integration_and_tenant_it_was_started_for(
    admin_client_api, client_for, oauth_integration, oauth_provider, oauth_server, other_tenant
):
    """A state started for integration X in tenant A connects X in A: never Y, never tenant B."""
    sibling = IntegrationFactory(tenant=oauth_integration.tenant, provider=oauth_provider, name="CRM two")
    other_tenant.allowed_return_hosts = ["globex.example.com"]
    other_tenant.save()
    foreign = IntegrationFactory(tenant=other_tenant, provider=oauth_provider, name="Globex CRM")

    started_x = start_flow(admin_client_api, oauth_integration)
    start_flow(admin_client_api, sibling)  # a live flow for Y exists too
    # Tenant B cannot start a flow on tenant A's integration at all.
    refused = client_for("other_tenant").post(f"/api/v1/integrations/{oauth_integration.pk}/connect/oauth",
                                              {"return_url": "https://globex.example.com/"}, format="json")
    assert refused.status_code == 404

    answer = callback(oauth_server.authorize(started_x["authorization_url"]))
    assert answer["Location"] == RETURN_URL + "?status=connected"
    assert tenant_credential(oauth_integration) is not None
    assert tenant_credential(sibling) is None and tenant_credential(foreign) is None
    assert Credential.objects.get().tenant == oauth_integration.tenant
    sibling.refresh_from_db()
    foreign.refresh_from_db()
    assert sibling.status == "pending" and foreign.status == "pending"


def test_a_code_from_one_flow_with_the_state_of_another_tenants_flow_is_refused_by_pkce(
    admin_client_api, client_for, oauth_integration, oauth_provider, oauth_server, other_tenant
):
    """Code injection: the attacker's state (tenant B) with the victim's code (tenant A) fails the
    PKCE check at the provider, so nothing is connected anywhere."""
    other_tenant.allowed_return_hosts = ["globex.example.com"]
    other_tenant.save()
    foreign = IntegrationFactory(tenant=other_tenant, provider=oauth_provider, name="Globex CRM")
    victim = start_flow(admin_client_api, oauth_integration)
    attacker = start_flow(client_for("other_tenant"), foreign, return_url="https://globex.example.com/back")
    victim_code = oauth_server.authorize(victim["authorization_url"])["code"]

    answer = callback({"state": attacker["state"], "code": victim_code})
    assert answer.status_code == 302
    assert answer["Location"] == "https://globex.example.com/back?status=error&error=token_exchange_failed"
    assert oauth_server.token_calls[-1].status == 400
    assert not Credential.objects.exists()


@pytest.mark.parametrize("tamper", ["missing", "wrong"], ids=["missing-verifier", "wrong-verifier"])
def test_a_missing_or_wrong_pkce_verifier_is_refused_by_the_server_and_nothing_is_stored(
    tamper, admin_client_api, oauth_integration, oauth_server
):
    started = start_flow(admin_client_api, oauth_integration)
    params = oauth_server.authorize(started["authorization_url"])
    record = OAuthState.objects.get()
    record.code_verifier = "" if tamper == "missing" else "a-different-verifier-" + "x" * 43
    record.save()

    answer = callback(params)
    assert answer.status_code == 302
    assert query_of(answer["Location"]) == {"status": "error", "error": "token_exchange_failed"}
    call = oauth_server.token_calls[-1]
    assert call.status == 400 and call.grant_type == "authorization_code"
    assert ("code_verifier" in call.form) is (tamper == "wrong")
    assert not Credential.objects.exists()
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "pending"
    assert AuditEvent.objects.get(action="oauth.connect_failed").outcome == "failure"


def test_a_provider_error_redirects_with_status_error_and_exchanges_nothing(
    admin_client_api, oauth_integration, oauth_server
):
    oauth_server.authorize_error = "access_denied"
    started = start_flow(admin_client_api, oauth_integration)
    params = oauth_server.authorize(started["authorization_url"])
    assert params["error"] == "access_denied" and "code" not in params
    answer = callback(params)
    assert answer.status_code == 302
    assert answer["Location"] == RETURN_URL + "?status=error&error=access_denied"
    assert oauth_server.token_calls == [] and not Credential.objects.exists()
    # The state is spent by the error answer too.
    assert callback(params).status_code == 400


def test_an_issuer_mismatch_is_refused_with_a_page_and_no_redirect(admin_client_api, oauth_integration,
                                                                    oauth_provider, oauth_server):
    oauth_provider.oauth_config = oauth_server.oauth_config(issuer="https://login.good.example")
    oauth_provider.save()
    oauth_server.issuer = "https://login.evil.example"
    answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 400 and "Location" not in answer
    assert b"unexpected issuer" in answer.content
    assert oauth_server.token_calls == [] and not Credential.objects.exists()
    assert AuditEvent.objects.get(action="oauth.refused").outcome == "denied"


def test_a_callback_for_a_deleted_integration_gets_an_error_page(admin_client_api, oauth_integration,
                                                                 oauth_server):
    started = start_flow(admin_client_api, oauth_integration)
    params = oauth_server.authorize(started["authorization_url"])
    Integration.objects.filter(pk=oauth_integration.pk).update(deleted_at=timezone.now())
    answer = callback(params)
    assert answer.status_code == 400 and "Location" not in answer
    assert oauth_server.token_calls == []


# --- user-scoped ---------------------------------------------------------------------------------------


def test_a_user_connection_stores_the_tokens_for_that_user_and_leaves_the_tenant_integration_alone(
    tenant, oauth_integration, oauth_server
):
    Integration.objects.filter(pk=oauth_integration.pk).update(user_scoped=True)
    alice = make_user(Role.MEMBER, tenant, "alice")
    answer = connect(token_client(alice, tenant), oauth_integration, oauth_server, me=True)
    assert answer["Location"] == RETURN_URL + "?status=connected"
    credential = Credential.objects.get()
    assert credential.user == alice and credential.status == "active"
    assert OAuthState.objects.get().for_user is True
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "pending"  # the tenant-wide state is not the user's
    assert not ConnectionCheck.objects.exists()


# --- refresh --------------------------------------------------------------------------------------------


def test_refresh_due_skips_tokens_outside_the_margin_and_refreshes_those_inside(connected, oauth_server, settings):
    settings.OAUTH_REFRESH_MARGIN_SECONDS = 900
    expire_soon(connected, seconds=20 * 60)
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 0}
    assert oauth_server.refresh_calls() == []
    expire_soon(connected, seconds=10 * 60)
    assert oauth.refresh_due() == {"refreshed": 1, "failed": 0}
    assert len(oauth_server.refresh_calls()) == 1


def test_refresh_with_rotation_replaces_the_refresh_token_and_the_old_one_is_spent(connected, oauth_server):
    old = dict(connected.payload)
    expire_soon(connected)
    assert oauth.refresh_due() == {"refreshed": 1, "failed": 0}
    fresh = Credential.objects.get(pk=connected.pk)
    assert fresh.payload["access_token"] != old["access_token"]
    assert fresh.payload["refresh_token"] != old["refresh_token"]
    assert oauth_server.refresh_token_is_live(fresh.payload["refresh_token"])
    assert not oauth_server.refresh_token_is_live(old["refresh_token"])
    assert oauth_server.access_token_is_live(fresh.payload["access_token"])
    assert fresh.version == connected.version + 1 and fresh.status == "active"
    assert fresh.expires_at > timezone.now() + timedelta(minutes=59) and fresh.last_refreshed_at is not None
    assert fresh.refresh_lease_until is None
    assert AuditEvent.objects.get(action="oauth.refreshed").changes["rotated"] is True
    # The next run finds nothing due: the new token is an hour away from expiring.
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 0}


def test_refresh_without_rotation_keeps_the_same_refresh_token(connected, oauth_server):
    oauth_server.rotate_refresh_tokens = False
    old = dict(connected.payload)
    expire_soon(connected)
    assert oauth.refresh_due()["refreshed"] == 1
    fresh = Credential.objects.get(pk=connected.pk)
    assert fresh.payload["refresh_token"] == old["refresh_token"]
    assert fresh.payload["access_token"] != old["access_token"]
    assert oauth_server.refresh_token_is_live(old["refresh_token"])


def test_a_refresh_answer_without_a_refresh_token_keeps_the_stored_one(connected, oauth_server):
    oauth_server.include_refresh_token = False
    old = dict(connected.payload)
    expire_soon(connected)
    assert oauth.refresh_due()["refreshed"] == 1
    fresh = Credential.objects.get(pk=connected.pk)
    assert fresh.payload["refresh_token"] == old["refresh_token"]
    assert fresh.payload["access_token"] != old["access_token"]
    assert AuditEvent.objects.get(action="oauth.refreshed").changes["rotated"] is False
    # And the kept one still works for the refresh after that.
    oauth_server.include_refresh_token = True
    expire_soon(fresh)
    assert oauth.refresh_due()["refreshed"] == 1
    assert oauth_server.refresh_calls()[-1].status == 200


def test_invalid_grant_marks_the_credential_expired_and_the_integration_in_error_and_audits(
    connected, oauth_server, oauth_integration
):
    oauth_server.revoke_refresh_tokens()
    expire_soon(connected)
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 1}
    fresh = Credential.objects.get(pk=connected.pk)
    assert fresh.status == "expired" and fresh.validation_error.startswith("Re-authorization needed")
    assert fresh.payload == connected.payload  # kept: the user may still disconnect and revoke
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "error"
    assert oauth_integration.last_error["code"] == "INVALID_CREDENTIALS"
    assert "Re-authorization needed" in oauth_integration.last_error["message"]
    event = AuditEvent.objects.get(action="oauth.refresh_failed")
    assert event.outcome == "failure" and event.changes["permanent"] is True
    assert "invalid_grant" in event.changes["error"]
    # An expired credential is not retried by the periodic task.
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 0}
    assert len(oauth_server.refresh_calls()) == 1


def test_a_transient_500_backs_off_and_wipes_nothing_then_a_later_run_succeeds(connected, oauth_server,
                                                                                oauth_integration):
    oauth_server.fail_with = 500
    old = dict(connected.payload)
    expire_soon(connected)
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 1}
    failed = Credential.objects.get(pk=connected.pk)
    assert failed.payload == old and failed.status == "active" and failed.version == connected.version
    assert failed.refresh_failures == 1
    assert failed.next_refresh_at > timezone.now() + timedelta(seconds=30)
    assert failed.refresh_lease_until is None
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "connected"
    assert not AuditEvent.objects.filter(action="oauth.refresh_failed").exists()
    assert len(oauth_server.refresh_calls()) == 1  # a token POST is never sent twice
    first_delay = failed.next_refresh_at - failed.updated_at
    assert timedelta(seconds=50) < first_delay <= timedelta(seconds=61)

    # Backing off: an immediate second run does not call the provider.
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 0}
    assert len(oauth_server.refresh_calls()) == 1
    # Once the backoff has passed it tries again; a second failure doubles the delay.
    oauth_server.fail_with = 503
    assert oauth.refresh_due(now=failed.next_refresh_at + timedelta(seconds=1)) == {"refreshed": 0, "failed": 1}
    second = Credential.objects.get(pk=connected.pk)
    assert second.refresh_failures == 2 and second.payload == old and second.status == "active"
    assert second.next_refresh_at - second.updated_at > first_delay * 1.9

    oauth_server.fail_with = None
    assert oauth.refresh_due(now=second.next_refresh_at + timedelta(seconds=1)) == {"refreshed": 1, "failed": 0}
    recovered = Credential.objects.get(pk=connected.pk)
    assert recovered.refresh_failures == 0 and recovered.next_refresh_at is None
    assert recovered.payload["refresh_token"] != old["refresh_token"]


def test_a_token_endpoint_redirecting_elsewhere_gets_nothing_sent_on(connected, oauth_server, oauth_integration,
                                                                     httpserver):
    """A token endpoint answering 307 to another origin: the form (refresh token, client secret) is not
    POSTed there again; the refresh fails as the provider's error, nothing is wiped."""
    httpserver.expect_request("/steal").respond_with_data("ok")
    provider = oauth_integration.provider
    provider.oauth_config = {**provider.oauth_config, "token_url": httpserver.url_for("/token")}
    provider.save()
    httpserver.expect_request("/token", method="POST").respond_with_data(
        "", status=307, headers={"Location": f"http://localhost:{httpserver.port}/steal"})
    old = dict(connected.payload)
    expire_soon(connected)
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 1}
    assert [entry[0].path for entry in httpserver.log] == ["/token"]
    kept = Credential.objects.get(pk=connected.pk)
    assert kept.payload == old and kept.status == "active" and kept.refresh_failures == 1


def test_a_timeout_at_the_token_endpoint_is_transient(connected, oauth_server, oauth_integration):
    Integration.objects.filter(pk=oauth_integration.pk).update(timeout_seconds=1)
    oauth_server.token_delay = 1.5
    expire_soon(connected)
    assert oauth.refresh_due() == {"refreshed": 0, "failed": 1}
    fresh = Credential.objects.get(pk=connected.pk)
    assert fresh.status == "active" and fresh.refresh_failures == 1 and fresh.payload == connected.payload


def test_a_leased_credential_is_not_claimed_again_until_the_lease_ends(connected, oauth_server):
    expire_soon(connected)
    assert oauth.refresh_claim() == [connected.pk]
    assert oauth.refresh_claim() == []
    assert oauth.refresh_claim(now=timezone.now() + timedelta(minutes=6)) == [connected.pk]
    assert oauth_server.refresh_calls() == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_refresh_runs_refresh_a_credential_once(admin_client_api, oauth_integration, oauth_server):
    with celery_broker("memory://"):  # the connection test queued on commit stays in this process
        answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302
    credential = tenant_credential(oauth_integration)
    old_refresh = credential.payload["refresh_token"]
    expire_soon(credential)
    oauth_server.token_delay = 0.3  # the first refresh is still in flight when the second run looks
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=5)
            results.append(oauth.refresh_due())
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(r["refreshed"] for r in results) == [0, 1]
    assert sum(r["failed"] for r in results) == 0
    assert len(oauth_server.refresh_calls()) == 1
    fresh = tenant_credential(oauth_integration)
    assert fresh.version == credential.version + 1
    assert fresh.payload["refresh_token"] != old_refresh and oauth_server.refresh_token_is_live(
        fresh.payload["refresh_token"]
    )


def test_refresh_for_retry_refreshes_an_oauth_credential_once_and_skips_others(connected, oauth_server):
    fresh = oauth.refresh_for_retry(connected)
    assert fresh is not None and fresh.payload["access_token"] != connected.payload["access_token"]
    assert len(oauth_server.refresh_calls()) == 1
    assert oauth.refresh_for_retry(None) is None
    oauth_server.revoke_refresh_tokens()
    assert oauth.refresh_for_retry(fresh) is None  # refused: no exception, the check reports the 401


# --- disconnect -----------------------------------------------------------------------------------------


def test_disconnect_revokes_the_refresh_token_at_the_provider_and_erases_the_secrets(
    admin_client_api, connected, oauth_server, oauth_integration
):
    refresh_token = connected.payload["refresh_token"]
    access_token = connected.payload["access_token"]
    answer = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/disconnect")
    assert answer.status_code == 200
    assert answer.json() == {"disconnected": True, "revoked_at_provider": True, "revoke_error": ""}
    assert oauth_server.revoked == [{"token": refresh_token, "hint": "refresh_token", "client_auth": "basic"}]
    assert not oauth_server.refresh_token_is_live(refresh_token)
    assert not oauth_server.access_token_is_live(access_token)
    credential = Credential.objects.get(pk=connected.pk)
    assert credential.payload is None and credential.status == "revoked" and credential.public_fields == {}
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "pending"
    event = AuditEvent.objects.get(action="oauth.disconnected")
    assert event.outcome == "success" and event.changes["revoked_at_provider"] is True
    # Nothing left for the periodic refresh.
    assert oauth.refresh_claim(now=timezone.now() + timedelta(days=2)) == []


def test_a_revocation_failure_is_recorded_but_the_secrets_are_still_erased(
    admin_client_api, connected, oauth_server, oauth_integration
):
    oauth_server.revoke_status = 400
    answer = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/disconnect")
    assert answer.status_code == 200
    body = answer.json()
    assert body["disconnected"] is True and body["revoked_at_provider"] is False
    assert "400" in body["revoke_error"]
    credential = Credential.objects.get(pk=connected.pk)
    assert credential.payload is None and credential.status == "revoked"
    assert credential.validation_error == body["revoke_error"]
    event = AuditEvent.objects.get(action="oauth.disconnected")
    assert event.outcome == "failure" and event.changes["revoke_error"] == body["revoke_error"]
    oauth_integration.refresh_from_db()
    assert oauth_integration.status == "pending"


def test_an_unreachable_revocation_endpoint_is_recorded_not_fatal(
    admin_client_api, connected, oauth_server, oauth_integration, oauth_provider
):
    oauth_provider.oauth_config = oauth_server.oauth_config(revoke_url="http://127.0.0.1:9/revoke")
    oauth_provider.save()
    answer = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/disconnect")
    assert answer.status_code == 200
    assert answer.json()["revoked_at_provider"] is False and "could not be reached" in answer.json()["revoke_error"]
    assert Credential.objects.get(pk=connected.pk).payload is None


def test_disconnect_without_a_revocation_url_erases_and_reports_nothing_revoked(
    admin_client_api, connected, oauth_server, oauth_integration, oauth_provider
):
    config = oauth_server.oauth_config()
    config.pop("revoke_url")
    oauth_provider.oauth_config = config
    oauth_provider.save()
    answer = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/disconnect")
    assert answer.json() == {"disconnected": True, "revoked_at_provider": None, "revoke_error": ""}
    assert oauth_server.revoked == []
    assert Credential.objects.get(pk=connected.pk).payload is None


def test_a_refused_refresh_after_a_401_during_a_test_keeps_the_reauthorization_message(
    admin_client_api, connected, oauth_server, oauth_integration
):
    oauth_server.expire_access_tokens()
    oauth_server.revoke_refresh_tokens()
    answer = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/test")
    assert answer.status_code == 200, answer.content
    assert answer.json()["error"]["code"] == "INVALID_CREDENTIALS"
    credential = Credential.objects.get(pk=connected.pk)
    assert credential.status == "expired"
    assert credential.validation_error.startswith("Re-authorization needed")
    health = admin_client_api.get(f"/api/v1/integrations/{oauth_integration.pk}/health").json()
    assert health["last_error"]["code"] == "INVALID_CREDENTIALS"
    assert "Re-authorization needed" in health["last_error"]["message"]
    connection = admin_client_api.get(f"/api/v1/integrations/{oauth_integration.pk}/connection").json()
    assert connection["status"] == "expired"
