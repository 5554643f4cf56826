"""The integrations API: CRUD, lifecycle, credentials, versions and bad input."""
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConfigVersion, Credential, Integration
from tenants.choices import Role
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_error, raw_value

URL = "/api/v1/integrations/"
TA, IM, MB = Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value
LIST_KEYS = {"results", "total", "limit", "offset", "has_more", "next_offset"}


def detail(integration_id) -> str:
    return f"{URL}{integration_id}/"


@pytest.fixture
def api(client_for):
    return client_for(TA)


@pytest.fixture
def created(api, provider):
    """An integration made through the API (so it has version 1 and an audit event)."""
    response = api.post(URL, {"provider": provider.slug, "name": "Orders API"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def credential_row(integration_id) -> Credential | None:
    return Credential.objects.filter(integration_id=integration_id, user__isnull=True).first()


# --- create -------------------------------------------------------------------------------------------------------


def test_create_fills_provider_defaults_and_starts_pending(api, provider):
    response = api.post(
        URL, {"provider": provider.slug, "name": "Orders API", "description": "orders"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["provider"] == "generic-rest"
    assert body["api_base_url"] == "https://api.example.com"
    assert body["test_endpoint"] == "/ping"
    assert body["status"] == "pending"
    assert body["health_state"] == "unknown"
    assert body["credential"] is None
    assert body["has_credentials"] is False
    row = Integration.objects.get(pk=body["id"])
    assert row.tenant.slug == "acme"


def test_create_keeps_given_urls_over_provider_defaults(api, provider):
    response = api.post(
        URL,
        {"provider": provider.slug, "name": "Own URL", "api_base_url": "https://own.example.org",
         "test_endpoint": "/h"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["api_base_url"] == "https://own.example.org"
    assert response.json()["test_endpoint"] == "/h"


def test_create_accepts_every_config_field_in_range(api, provider):
    payload = {
        "provider": provider.slug, "name": "Full", "environment": "sandbox", "update_method": "webhook",
        "polling_interval_seconds": 5, "timeout_seconds": 60, "retry_count": 10,
        "status_mapping": {"available": ["open", "free"], "sold": ["closed"]}, "settings": {"region": "eu"},
        "status_endpoint": "/status",
    }
    response = api.post(URL, payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    for key, value in payload.items():
        if key != "provider":
            assert body[key] == value, key


# --- list -----------------------------------------------------------------------------------------------------------


def test_list_envelope_with_limit_and_offset(api, tenant, provider):
    for i in range(3):
        IntegrationFactory(tenant=tenant, provider=provider, name=f"I{i}")
    first = api.get(URL, {"limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert set(body) == LIST_KEYS
    assert (body["total"], body["limit"], body["offset"], body["has_more"], body["next_offset"]) == (3, 2, 0, True, 2)
    assert len(body["results"]) == 2
    last = api.get(URL, {"limit": 2, "offset": 2}).json()
    assert (last["offset"], last["has_more"], last["next_offset"], len(last["results"])) == (2, False, None, 1)


def test_list_limit_defaults_to_50_and_is_capped_at_100(api, integration):
    assert api.get(URL).json()["limit"] == 50
    assert api.get(URL, {"limit": 500}).json()["limit"] == 100


def test_list_shows_only_own_tenant(api, integration, other_tenant, provider):
    IntegrationFactory(tenant=other_tenant, provider=provider, name="Theirs")
    names = [row["name"] for row in api.get(URL).json()["results"]]
    assert names == ["Main API"]


@pytest.fixture
def mixed(tenant, provider):
    other_provider = ProviderFactory(slug="crm-one", name="CRM One")
    return {
        "a": IntegrationFactory(tenant=tenant, provider=provider, name="Alpha", description="billing feed"),
        "b": IntegrationFactory(
            tenant=tenant, provider=other_provider, name="Bravo", status="disabled", environment="sandbox"
        ),
        "c": IntegrationFactory(tenant=tenant, provider=provider, name="Charlie", health_state="healthy"),
    }


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"status": "disabled"}, ["Bravo"]),
        ({"status": "pending"}, ["Alpha", "Charlie"]),
        ({"health_state": "healthy"}, ["Charlie"]),
        ({"provider": "crm-one"}, ["Bravo"]),
        ({"environment": "sandbox"}, ["Bravo"]),
        ({"search": "billing"}, ["Alpha"]),
        ({"search": "charl"}, ["Charlie"]),
    ],
)
def test_list_filters(api, mixed, params, expected):
    response = api.get(URL, params)
    assert response.status_code == 200
    assert sorted(row["name"] for row in response.json()["results"]) == expected


def test_list_orders_by_name_both_ways(api, mixed):
    up = [row["name"] for row in api.get(URL, {"ordering": "name"}).json()["results"]]
    down = [row["name"] for row in api.get(URL, {"ordering": "-name"}).json()["results"]]
    assert up == ["Alpha", "Bravo", "Charlie"]
    assert down == ["Charlie", "Bravo", "Alpha"]


def test_list_runs_the_same_queries_for_5_and_50_integrations(api, tenant, provider):
    def add(count, start):
        for i in range(start, start + count):
            item = IntegrationFactory(tenant=tenant, provider=provider, name=f"Q{i:03d}")
            Credential.objects.create(
                tenant=tenant, integration=item, type="bearer", payload={"token": f"tok-{i:03d}-abcdefghijkl"},
                hint="ijkl",
            )

    def count_queries():
        with CaptureQueriesContext(connection) as ctx:
            response = api.get(URL)
        assert response.status_code == 200
        return len(ctx.captured_queries), response.json()

    add(5, 0)
    small, small_body = count_queries()
    add(45, 5)
    large, large_body = count_queries()
    assert small_body["total"] == 5 and large_body["total"] == 50
    assert len(large_body["results"]) == 50
    assert all(row["has_credentials"] and row["credential"]["hint"] == "ijkl" for row in large_body["results"])
    assert small == large


# --- retrieve / update ------------------------------------------------------------------------------------------


def test_patch_changes_config_and_keeps_the_rest(api, created):
    response = api.patch(detail(created["id"]), {"description": "new", "timeout_seconds": 30}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["description"], body["timeout_seconds"], body["name"]) == ("new", 30, "Orders API")
    row = Integration.objects.get(pk=created["id"])
    assert (row.description, row.timeout_seconds) == ("new", 30)


def test_put_is_served_as_partial_update(api, created):
    response = api.put(detail(created["id"]), {"retry_count": 0}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["retry_count"] == 0
    assert response.json()["name"] == "Orders API"


def test_patch_rename_onto_an_existing_name_is_conflict(api, created, tenant, provider):
    IntegrationFactory(tenant=tenant, provider=provider, name="Taken")
    error = assert_error(api.patch(detail(created["id"]), {"name": "Taken"}, format="json"), 409, "CONFLICT")
    assert error["details"]["name"] == "Taken"
    assert Integration.objects.get(pk=created["id"]).name == "Orders API"


# --- delete ------------------------------------------------------------------------------------------------------


def test_delete_is_soft_erases_credentials_and_is_audited(api, created):
    put = api.put(
        f"{detail(created['id'])}credentials", {"type": "bearer", "token": "tok_delete_me_0123456789"}, format="json"
    )
    assert put.status_code == 200
    response = api.delete(detail(created["id"]))
    assert response.status_code == 204
    assert api.get(URL).json()["total"] == 0
    assert_error(api.get(detail(created["id"])), 404, "INTEGRATION_NOT_FOUND")
    row = Integration.objects.get(pk=created["id"])
    assert row.deleted_at is not None and row.status == "disabled"
    credential = credential_row(created["id"])
    assert credential.payload is None and credential.hint == "" and credential.status == "revoked"
    assert raw_value(Credential, "payload", credential.pk) is None
    event = AuditEvent.objects.get(action="integration.deleted", target_id=created["id"])
    assert event.actor == f"{TA}-acme"
    assert event.changes["credentials_erased"] == {"to": 1}


def test_deleted_name_can_be_reused(api, created, provider):
    assert api.delete(detail(created["id"])).status_code == 204
    again = api.post(URL, {"provider": provider.slug, "name": "Orders API"}, format="json")
    assert again.status_code == 201, again.content
    assert again.json()["id"] != created["id"]


def test_deleted_integration_actions_are_not_found(api, created):
    api.delete(detail(created["id"]))
    base = detail(created["id"])
    assert_error(api.patch(base, {"description": "x"}, format="json"), 404, "INTEGRATION_NOT_FOUND")
    assert_error(api.delete(base), 404, "INTEGRATION_NOT_FOUND")
    assert_error(api.post(f"{base}enable"), 404, "INTEGRATION_NOT_FOUND")
    assert_error(api.get(f"{base}connection"), 404, "INTEGRATION_NOT_FOUND")
    assert_error(api.get(f"{base}versions/"), 404, "INTEGRATION_NOT_FOUND")


# --- enable / disable -----------------------------------------------------------------------------------------


def test_disable_then_enable_round_trip_is_idempotent_and_audited(api, created):
    base = detail(created["id"])
    first = api.post(f"{base}disable")
    assert first.status_code == 200 and first.json()["status"] == "disabled"
    second = api.post(f"{base}disable")
    assert second.status_code == 200 and second.json()["status"] == "disabled"
    disabled_events = AuditEvent.objects.filter(action="integration.disabled", target_id=created["id"])
    assert [e.changes for e in disabled_events.order_by("created_at")] == [
        {"status": {"from": "pending", "to": "disabled"}, "disabled_reason": {"from": "", "to": "manual"}}, {}
    ]
    assert second.json()["disabled_reason"] == "manual"
    assert Integration.objects.get(pk=created["id"]).next_check_at is None

    enabled = api.post(f"{base}enable")
    assert enabled.status_code == 200 and enabled.json()["status"] == "pending"
    assert enabled.json()["disabled_reason"] == ""
    assert api.post(f"{base}enable").json()["status"] == "pending"
    events = AuditEvent.objects.filter(action="integration.enabled", target_id=created["id"]).order_by("created_at")
    assert [e.changes for e in events] == [
        {"status": {"from": "disabled", "to": "pending"}, "disabled_reason": {"from": "manual", "to": ""}}, {}
    ]
    assert Integration.objects.get(pk=created["id"]).next_check_at is not None


def test_enable_of_a_pending_integration_changes_no_state_but_is_audited(api, created):
    response = api.post(f"{detail(created['id'])}enable")
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert AuditEvent.objects.get(action="integration.enabled").changes == {}


def test_enable_with_a_validated_credential_goes_back_to_connected(api, created):
    base = detail(created["id"])
    api.put(f"{base}credentials", {"type": "bearer", "token": "tok_validated_0123456789"}, format="json")
    Credential.objects.filter(integration_id=created["id"]).update(last_validated_at=timezone.now())
    api.post(f"{base}disable")
    assert api.post(f"{base}enable").json()["status"] == "connected"


def test_detail_actions_answer_with_a_trailing_slash_too(api, created):
    assert api.post(f"{detail(created['id'])}disable/").json()["status"] == "disabled"


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("polling_interval_seconds", 4),
        ("polling_interval_seconds", 301),
        ("timeout_seconds", 0),
        ("timeout_seconds", 61),
        ("retry_count", 11),
    ],
)
def test_create_with_out_of_range_config_is_rejected_naming_the_field(api, provider, field, value):
    response = api.post(URL, {"provider": provider.slug, "name": "X", field: value}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert not Integration.objects.exists()


def test_patch_with_out_of_range_polling_interval_is_rejected(api, created):
    assert_error(
        api.patch(detail(created["id"]), {"polling_interval_seconds": 301}, format="json"),
        400, "VALIDATION_ERROR", "polling_interval_seconds",
    )
    assert Integration.objects.get(pk=created["id"]).polling_interval_seconds == 60


def test_unknown_update_method_is_rejected(api, provider):
    response = api.post(URL, {"provider": provider.slug, "name": "X", "update_method": "ftp"}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "update_method")


@pytest.mark.parametrize("url", ["ftp://x", "javascript:alert(1)", "https://user:pw@example.com"])
def test_non_http_base_url_is_rejected(api, provider, url):
    response = api.post(URL, {"provider": provider.slug, "name": "X", "api_base_url": url}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "api_base_url")


@pytest.mark.parametrize(
    "mapping",
    [
        {"bogus": ["x"]},
        {"available": "open"},
        {"available": [1]},
        {"available": ["open"], "sold": ["open"]},
        ["available"],
    ],
    ids=["unknown-canonical-key", "value-not-a-list", "value-not-strings", "raw-under-two-statuses", "not-an-object"],
)
def test_bad_status_mapping_is_rejected(api, provider, mapping):
    response = api.post(URL, {"provider": provider.slug, "name": "X", "status_mapping": mapping}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "status_mapping")


def test_duplicate_name_in_a_tenant_is_conflict(api, created, provider):
    response = api.post(URL, {"provider": provider.slug, "name": "Orders API"}, format="json")
    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == {"name": "Orders API"}
    assert Integration.objects.filter(name="Orders API").count() == 1


def test_same_name_in_another_tenant_is_fine(api, client_for, created, provider):
    response = client_for("other_tenant").post(URL, {"provider": provider.slug, "name": "Orders API"}, format="json")
    assert response.status_code == 201, response.content
    assert Integration.objects.filter(name="Orders API").count() == 2


def test_malformed_json_is_rejected(api):
    response = api.generic("POST", URL, '{"provider": "generic-rest", "name": ', content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_non_object_json_body_is_rejected(api):
    response = api.generic("POST", URL, "[1, 2]", content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_unknown_provider_is_not_found(api):
    response = api.post(URL, {"provider": "no-such-thing", "name": "X"}, format="json")
    error = assert_error(response, 404, "PROVIDER_NOT_FOUND")
    assert error["details"] == {"provider": "no-such-thing"}


@pytest.mark.parametrize(
    "attrs", [{"audience": "system"}, {"status": "disabled"}, {"status": "deprecated"}],
    ids=["system-audience", "disabled", "deprecated"],
)
def test_provider_outside_the_tenant_catalog_is_not_found(api, attrs):
    hidden = ProviderFactory(slug="hidden-one", **attrs)
    response = api.post(URL, {"provider": hidden.slug, "name": "X"}, format="json")
    assert_error(response, 404, "PROVIDER_NOT_FOUND")
    assert not Integration.objects.exists()


def test_beta_provider_can_be_used(api):
    beta = ProviderFactory(slug="beta-one", status="beta")
    assert api.post(URL, {"provider": beta.slug, "name": "X"}, format="json").status_code == 201


def test_premium_provider_on_a_lower_plan_is_denied_naming_the_plan(api, tenant):
    tenant.plan = "free"
    tenant.save()
    premium = ProviderFactory(slug="premium-one", is_premium=True)
    response = api.post(URL, {"provider": premium.slug, "name": "X"}, format="json")
    error = assert_error(response, 403, "PERMISSION_DENIED")
    assert error["details"] == {"required_plan": "pro", "current_plan": "free"}


def test_missing_provider_or_name_is_rejected(api, provider):
    assert_error(api.post(URL, {"name": "X"}, format="json"), 400, "VALIDATION_ERROR", "provider")
    assert_error(api.post(URL, {"provider": provider.slug}, format="json"), 400, "VALIDATION_ERROR", "name")


def test_unknown_field_is_rejected(api, provider):
    response = api.post(URL, {"provider": provider.slug, "name": "X", "colour": "red"}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "colour")


def test_read_only_field_is_rejected(api, created):
    response = api.patch(detail(created["id"]), {"status": "connected"}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "status")
    assert Integration.objects.get(pk=created["id"]).status == "pending"


def test_changing_provider_on_patch_is_rejected(api, created):
    ProviderFactory(slug="crm-two")
    response = api.patch(detail(created["id"]), {"provider": "crm-two"}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "provider")
    assert Integration.objects.get(pk=created["id"]).provider.slug == "generic-rest"


@pytest.mark.parametrize(
    "method, suffix",
    [("get", ""), ("patch", ""), ("delete", ""), ("post", "enable"), ("put", "credentials"), ("get", "connection"),
     ("get", "versions/")],
)
def test_non_uuid_id_in_path_is_not_found(api, method, suffix):
    response = getattr(api, method)(f"{URL}not-a-uuid/{suffix}", {}, format="json")
    assert_error(response, 404, "INTEGRATION_NOT_FOUND")


def test_unknown_uuid_is_not_found(api):
    assert_error(api.get(detail(uuid.uuid4())), 404, "INTEGRATION_NOT_FOUND")


# --- other tenant ----------------------------------------------------------------------------------------------


@pytest.fixture
def theirs(client_for, integration):
    """``integration`` belongs to acme; the client is an admin of globex."""
    return client_for("other_tenant")


def test_other_tenant_cannot_read(theirs, integration):
    assert_error(theirs.get(detail(integration.pk)), 404, "INTEGRATION_NOT_FOUND")
    assert_error(theirs.get(f"{detail(integration.pk)}connection"), 404, "INTEGRATION_NOT_FOUND")
    assert_error(theirs.get(f"{detail(integration.pk)}versions/"), 404, "INTEGRATION_NOT_FOUND")


def test_other_tenant_cannot_patch(theirs, integration):
    response = theirs.patch(detail(integration.pk), {"name": "Hijacked"}, format="json")
    assert_error(response, 404, "INTEGRATION_NOT_FOUND")
    integration.refresh_from_db()
    assert integration.name == "Main API"


def test_other_tenant_cannot_delete(theirs, integration):
    assert_error(theirs.delete(detail(integration.pk)), 404, "INTEGRATION_NOT_FOUND")
    integration.refresh_from_db()
    assert integration.deleted_at is None


def test_other_tenant_cannot_disable(theirs, integration):
    assert_error(theirs.post(f"{detail(integration.pk)}disable"), 404, "INTEGRATION_NOT_FOUND")
    integration.refresh_from_db()
    assert integration.status == "pending"


def test_other_tenant_cannot_set_credentials(theirs, integration):
    response = theirs.put(
        f"{detail(integration.pk)}credentials", {"type": "bearer", "token": "tok_intruder_0123456789"}, format="json"
    )
    assert_error(response, 404, "INTEGRATION_NOT_FOUND")
    assert not Credential.objects.exists()
    assert not AuditEvent.objects.exists()


def test_other_tenant_cannot_restore_versions(api, client_for, created):
    api.patch(detail(created["id"]), {"description": "v2"}, format="json")
    response = client_for("other_tenant").post(f"{detail(created['id'])}versions/1/restore")
    assert_error(response, 404, "INTEGRATION_NOT_FOUND")
    assert ConfigVersion.objects.filter(integration_id=created["id"]).count() == 2


# --- roles -----------------------------------------------------------------------------------------------------


def test_member_cannot_write(client_for, integration, provider):
    member = client_for(MB)
    base = detail(integration.pk)
    for response in (
        member.post(URL, {"provider": provider.slug, "name": "Mine"}, format="json"),
        member.patch(base, {"description": "x"}, format="json"),
        member.delete(base),
        member.post(f"{base}enable"),
        member.post(f"{base}disable"),
        member.put(f"{base}credentials", {"type": "bearer", "token": "tok_member_0123456789"}, format="json"),
        member.delete(f"{base}credentials"),
    ):
        assert_error(response, 403, "PERMISSION_DENIED")
    integration.refresh_from_db()
    assert (integration.description, integration.deleted_at, integration.status) == ("", None, "pending")
    assert Integration.objects.count() == 1 and not Credential.objects.exists()


def test_member_can_read(client_for, integration):
    member = client_for(MB)
    assert member.get(URL).json()["total"] == 1
    assert member.get(detail(integration.pk)).status_code == 200
    assert member.get(f"{detail(integration.pk)}connection").status_code == 200


def test_integration_manager_writes_but_cannot_delete(client_for, integration):
    manager = client_for(IM)
    assert manager.patch(detail(integration.pk), {"description": "ok"}, format="json").status_code == 200
    assert_error(manager.delete(detail(integration.pk)), 403, "PERMISSION_DENIED")
    integration.refresh_from_db()
    assert integration.deleted_at is None


def test_anonymous_is_not_authenticated(client_for, integration):
    response = client_for("anonymous").get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"


# --- credentials ------------------------------------------------------------------------------------------------


def put_credentials(client, integration_id, payload):
    return client.put(f"{detail(integration_id)}credentials", payload, format="json")


def test_api_key_credential_defaults_the_header_name(api, created):
    response = put_credentials(api, created["id"], {"type": "api_key", "api_key": "sk_live_abcdefgh12345678"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == "api_key" and body["hint"] == "5678" and body["status"] == "active"
    assert body["version"] == 1 and body["has_credentials"] is True
    credential = credential_row(created["id"])
    assert credential.public_fields == {"header_name": "X-API-Key"}
    assert credential.payload == {"api_key": "sk_live_abcdefgh12345678"}


def test_api_key_credential_keeps_a_given_header_name(api, created):
    payload = {"type": "api_key", "api_key": "sk_live_abcdefgh12345678", "header_name": "X-Token"}
    assert put_credentials(api, created["id"], payload).status_code == 200
    assert credential_row(created["id"]).public_fields == {"header_name": "X-Token"}


@pytest.mark.parametrize("header", ["Bad Header", "Host", "X:Y"])
def test_api_key_credential_rejects_a_bad_header_name(api, created, header):
    response = put_credentials(api, created["id"], {"type": "api_key", "api_key": "sk_live_abcdefgh12345678",
                                                     "header_name": header})
    assert_error(response, 400, "VALIDATION_ERROR", "header_name")
    assert credential_row(created["id"]) is None


def test_bearer_credential(api, created):
    body = put_credentials(api, created["id"], {"type": "bearer", "token": "tok_bearer_0123456789WXYZ"}).json()
    assert (body["type"], body["hint"]) == ("bearer", "WXYZ")
    assert credential_row(created["id"]).payload == {"token": "tok_bearer_0123456789WXYZ"}


def test_basic_credential_keeps_the_username_public(api, created):
    body = put_credentials(
        api, created["id"], {"type": "basic", "username": "svc-user", "password": "pw-basic-0123456789"}
    ).json()
    assert (body["type"], body["hint"]) == ("basic", "6789")
    credential = credential_row(created["id"])
    assert credential.public_fields == {"username": "svc-user"}
    assert credential.payload == {"password": "pw-basic-0123456789"}


def test_oauth2_credential_with_refresh_expiry_and_scopes(api, created):
    response = put_credentials(api, created["id"], {
        "type": "oauth2", "access_token": "at_oauth_0123456789abcd", "refresh_token": "rt_oauth_0123456789efgh",
        "expires_at": "2031-01-02T03:04:05Z", "scopes": ["read", "write"],
    })
    assert response.status_code == 200, response.content
    assert response.json()["hint"] == "abcd"
    credential = credential_row(created["id"])
    assert credential.payload == {"access_token": "at_oauth_0123456789abcd", "refresh_token": "rt_oauth_0123456789efgh"}
    assert credential.public_fields["scopes"] == ["read", "write"]
    assert credential.expires_at.year == 2031

    conn = api.get(f"{detail(created['id'])}connection")
    assert conn.status_code == 200
    body = conn.json()
    assert body["status"] == "active" and body["has_credentials"] is True and body["type"] == "oauth2"
    assert body["last_validated_at"] is None
    assert body["expires_at"].startswith("2031-01-02T03:04:05")
    assert body["scopes"] == ["read", "write"]


def test_oauth2_credential_rejects_a_bad_expiry(api, created):
    response = put_credentials(api, created["id"], {"type": "oauth2", "access_token": "at_0123456789abcd",
                                                     "expires_at": "next tuesday"})
    assert_error(response, 400, "VALIDATION_ERROR", "expires_at")


@pytest.fixture
def custom_integration(api, tenant):
    ProviderFactory(
        slug="sms-custom", auth_type="custom",
        credential_fields=[
            {"name": "account_sid", "label": "Account SID", "secret": False, "required": True},
            {"name": "auth_token", "label": "Auth token", "secret": True, "required": True},
            {"name": "region", "secret": False, "required": False},
        ],
    )
    response = api.post(URL, {"provider": "sms-custom", "name": "SMS"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_custom_credential_is_split_by_the_provider_fields(api, custom_integration):
    response = put_credentials(api, custom_integration["id"], {
        "type": "custom", "fields": {"account_sid": "AC-public-1", "auth_token": "custom-secret-0123456789"},
    })
    assert response.status_code == 200, response.content
    assert response.json()["hint"] == "6789"
    credential = credential_row(custom_integration["id"])
    assert credential.payload == {"auth_token": "custom-secret-0123456789"}
    assert credential.public_fields == {"account_sid": "AC-public-1"}


def test_custom_credential_missing_a_required_field_names_it(api, custom_integration):
    response = put_credentials(api, custom_integration["id"], {"type": "custom", "fields": {"account_sid": "AC-1"}})
    assert_error(response, 400, "VALIDATION_ERROR", "auth_token")
    assert credential_row(custom_integration["id"]) is None


def test_custom_credential_with_an_unknown_field_names_it(api, custom_integration):
    response = put_credentials(api, custom_integration["id"], {
        "type": "custom", "fields": {"account_sid": "AC-1", "auth_token": "custom-secret-0123456789", "pin": "1234"},
    })
    assert_error(response, 400, "VALIDATION_ERROR", "pin")
    assert credential_row(custom_integration["id"]) is None


def test_credential_type_not_taken_by_the_provider_is_rejected(api):
    ProviderFactory(slug="keyed", auth_type="api_key")
    created = api.post(URL, {"provider": "keyed", "name": "Keyed"}, format="json").json()
    response = put_credentials(api, created["id"], {"type": "bearer", "token": "tok_wrong_type_0123456789"})
    error = assert_error(response, 400, "VALIDATION_ERROR", "type")
    assert "api_key" in error["message"]
    assert credential_row(created["id"]) is None


@pytest.mark.parametrize(
    "payload, missing",
    [
        ({"type": "api_key"}, "api_key"),
        ({"type": "bearer"}, "token"),
        ({"type": "bearer", "token": ""}, "token"),
        ({"type": "basic", "username": "u"}, "password"),
        ({"type": "basic", "password": "pw-0123456789"}, "username"),
        ({"type": "oauth2", "refresh_token": "rt_0123456789abcd"}, "access_token"),
        ({"type": "custom"}, "fields"),
        ({}, "type"),
        ({"type": "kerberos"}, "type"),
    ],
)
def test_credential_missing_a_required_field_names_it(api, created, payload, missing):
    assert_error(put_credentials(api, created["id"], payload), 400, "VALIDATION_ERROR", missing)
    assert credential_row(created["id"]) is None


def test_credential_with_an_unknown_field_is_rejected(api, created):
    response = put_credentials(api, created["id"], {"type": "bearer", "token": "tok_0123456789abcd", "extra": "x"})
    assert_error(response, 400, "VALIDATION_ERROR", "extra")


def test_credential_body_that_is_not_an_object_is_rejected(api, created):
    response = api.generic("PUT", f"{detail(created['id'])}credentials", '"token"', content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("secret, hint", [("abcdefghijkl", "ijkl"), ("abcdefghijk", ""), ("short1", "")])
def test_hint_is_the_last_four_characters_of_long_secrets_only(api, created, secret, hint):
    body = put_credentials(api, created["id"], {"type": "bearer", "token": secret}).json()
    assert body["hint"] == hint
    assert api.get(detail(created["id"])).json()["credential"]["hint"] == hint


def test_credential_responses_show_only_type_hint_status_and_version(api, created):
    body = put_credentials(api, created["id"], {"type": "bearer", "token": "tok_summary_0123456789"}).json()
    assert set(body) == {
        "has_credentials", "type", "hint", "status", "version", "has_client_certificate", "updated_at",
    }
    shown = api.get(detail(created["id"])).json()["credential"]
    assert shown == {"type": "bearer", "hint": "6789", "status": "active", "version": 1}
    listed = api.get(URL).json()["results"][0]
    assert listed["credential"] == shown and listed["has_credentials"] is True


def test_credential_version_goes_up_on_each_put(api, created):
    versions = [
        put_credentials(api, created["id"], {"type": "bearer", "token": f"tok_round_{i}_0123456789"}).json()["version"]
        for i in range(3)
    ]
    assert versions == [1, 2, 3]
    assert credential_row(created["id"]).payload == {"token": "tok_round_2_0123456789"}
    assert Credential.objects.count() == 1


def test_delete_credentials_removes_them_and_second_delete_is_not_found(api, created):
    base = detail(created["id"])
    put_credentials(api, created["id"], {"type": "bearer", "token": "tok_removable_0123456789"})
    assert api.delete(f"{base}credentials").status_code == 204
    body = api.get(base).json()
    assert body["has_credentials"] is False and body["credential"] is None
    conn = api.get(f"{base}connection").json()
    assert conn["status"] == "revoked" and conn["has_credentials"] is False and conn["hint"] == ""
    credential = credential_row(created["id"])
    assert credential.payload is None and credential.public_fields == {}
    assert AuditEvent.objects.filter(action="credential.removed", target_id=created["id"]).count() == 1
    assert_error(api.delete(f"{base}credentials"), 404, "NOT_FOUND")


def test_delete_credentials_when_none_were_set_is_not_found(api, created):
    assert_error(api.delete(f"{detail(created['id'])}credentials"), 404, "NOT_FOUND")


def test_connection_without_credentials(api, created):
    body = api.get(f"{detail(created['id'])}connection").json()
    assert body["status"] is None and body["has_credentials"] is False
    assert body["last_validated_at"] is None and body["expires_at"] is None and body["scopes"] == []


def test_connection_shows_last_validated_at(api, created):
    put_credentials(api, created["id"], {"type": "bearer", "token": "tok_checked_0123456789"})
    when = timezone.now()
    Credential.objects.filter(integration_id=created["id"]).update(last_validated_at=when)
    body = api.get(f"{detail(created['id'])}connection").json()
    assert body["last_validated_at"] is not None
    assert body["status"] == "active" and body["version"] == 1


def test_credential_set_audit_event_holds_no_secret(api, created):
    put_credentials(api, created["id"], {"type": "basic", "username": "svc", "password": "pw-audit-0123456789"})
    event = AuditEvent.objects.get(action="credential.set")
    assert "pw-audit-0123456789" not in str(event.changes)
    assert event.changes["password"] == "[redacted]"
    assert event.changes["username"] == "svc"


# --- versions ----------------------------------------------------------------------------------------------------


def versions_of(api, integration_id):
    response = api.get(f"{detail(integration_id)}versions/")
    assert response.status_code == 200, response.content
    return response.json()


def test_create_is_version_one(api, created):
    body = versions_of(api, created["id"])
    assert set(body) == LIST_KEYS and body["total"] == 1
    first = body["results"][0]
    assert first["number"] == 1 and first["reason"] == "created" and first["credential_version"] is None
    assert first["snapshot"]["name"] == "Orders API"
    assert first["author"] == f"{TA}-acme"


def test_patch_makes_a_new_version_with_a_reason(api, created):
    api.patch(detail(created["id"]), {"timeout_seconds": 25, "description": "d"}, format="json")
    latest = versions_of(api, created["id"])["results"][0]
    assert latest["number"] == 2
    assert latest["reason"] == "updated: description, timeout_seconds"
    assert latest["snapshot"]["timeout_seconds"] == 25


def test_patch_without_changes_makes_no_version(api, created):
    api.patch(detail(created["id"]), {"name": "Orders API"}, format="json")
    assert versions_of(api, created["id"])["total"] == 1


def test_credential_put_makes_a_version_without_the_secret(api, created):
    put_credentials(api, created["id"], {"type": "bearer", "token": "tok_versioned_0123456789"})
    put_credentials(api, created["id"], {"type": "bearer", "token": "tok_versioned_9876543210"})
    body = versions_of(api, created["id"])
    assert [v["number"] for v in body["results"]] == [3, 2, 1]
    assert [v["credential_version"] for v in body["results"]] == [2, 1, None]
    assert body["results"][0]["reason"] == "credentials set (v2)"
    for row in ConfigVersion.objects.all():
        assert "tok_versioned" not in str(row.snapshot)
        assert "token" not in row.snapshot


def test_versions_list_is_newest_first_and_paginated(api, created):
    for i in range(3):
        api.patch(detail(created["id"]), {"retry_count": i}, format="json")
    body = api.get(f"{detail(created['id'])}versions/", {"limit": 2}).json()
    assert [v["number"] for v in body["results"]] == [4, 3]
    assert (body["total"], body["has_more"], body["next_offset"]) == (4, True, 2)


def test_restore_puts_back_the_config_as_a_new_version(api, created):
    base = detail(created["id"])
    api.patch(base, {"description": "changed", "polling_interval_seconds": 120, "name": "Renamed"}, format="json")
    before = ConfigVersion.objects.filter(integration_id=created["id"]).count()
    response = api.post(f"{base}versions/1/restore")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["description"], body["polling_interval_seconds"], body["name"]) == ("", 60, "Orders API")
    assert ConfigVersion.objects.filter(integration_id=created["id"]).count() == before + 1
    latest = versions_of(api, created["id"])["results"][0]
    assert latest["number"] == before + 1 and latest["reason"] == "restored version 1"
    event = AuditEvent.objects.get(action="integration.restored", target_id=created["id"])
    assert event.changes["restored_version"] == 1
    assert event.changes["description"] == {"from": "changed", "to": ""}


def test_restore_keeps_the_credential(api, created):
    put_credentials(api, created["id"], {"type": "bearer", "token": "tok_kept_0123456789"})
    api.post(f"{detail(created['id'])}versions/1/restore")
    assert api.get(detail(created["id"])).json()["has_credentials"] is True
    assert versions_of(api, created["id"])["results"][0]["credential_version"] == 1


def test_restore_onto_a_name_now_taken_is_conflict(api, created, tenant, provider):
    base = detail(created["id"])
    api.patch(base, {"name": "Renamed"}, format="json")
    IntegrationFactory(tenant=tenant, provider=provider, name="Orders API")
    assert_error(api.post(f"{base}versions/1/restore"), 409, "CONFLICT")
    assert Integration.objects.get(pk=created["id"]).name == "Renamed"


def test_restore_of_a_missing_version_is_not_found(api, created):
    before = ConfigVersion.objects.count()
    assert_error(api.post(f"{detail(created['id'])}versions/99/restore"), 404, "NOT_FOUND")
    assert ConfigVersion.objects.count() == before
    assert not AuditEvent.objects.filter(action="integration.restored").exists()


def test_member_cannot_restore(api, client_for, created):
    api.patch(detail(created["id"]), {"description": "v2"}, format="json")
    assert_error(client_for(MB).post(f"{detail(created['id'])}versions/1/restore"), 403, "PERMISSION_DENIED")
    assert Integration.objects.get(pk=created["id"]).description == "v2"


def test_versions_filter_by_created_at(api, created):
    base = f"{detail(created['id'])}versions/"
    assert api.get(base, {"created_at__gte": "2000-01-01T00:00:00Z"}).json()["total"] == 1
    assert api.get(base, {"created_at__lte": "2000-01-01T00:00:00Z"}).json()["total"] == 0


@pytest.mark.parametrize("value", ["0556-03-21T18:20:23+22:48", "2030-01-01T00:00:00-23:59"])
def test_versions_filter_takes_offsets_postgres_cannot_store(api, created, value):
    response = api.get(f"{detail(created['id'])}versions/", {"created_at__gte": value})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-23:00", "yesterday"])
def test_versions_filter_with_an_unusable_date_is_rejected(api, created, value):
    response = api.get(f"{detail(created['id'])}versions/", {"created_at__gte": value})
    assert_error(response, 400, "VALIDATION_ERROR", "created_at__gte")
