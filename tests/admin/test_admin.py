"""The Django admin as staff use it: every page renders, secrets stay hidden,
and staff changes go through the services (validated and audited)."""
import json

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from catalog.models import IntegrationProvider
from connections.models import (
    ConfigVersion,
    ConnectionCheck,
    Credential,
    ExternalStatus,
    Integration,
    StatusChange,
    StreamConsumer,
    StreamLease,
)
from connections.services import credential_set, integration_delete, integration_update
from tenants.authentication import hash_api_key
from tenants.models import ApiKey, Membership, Tenant
from tenants.services import api_key_create
from tests.catalog.factories import ProviderFactory
from tests.conftest import make_user
from tests.connections.factories import IntegrationFactory
from tests.pki import make_pki

CLIENT_SECRET = "oauth-client-secret-7f3a9c"
STORED_KEY = "sk_live_stored_credential_4242"
OUR_APPS = {"tenants", "catalog", "connections", "audit"}


@pytest.fixture
def oauth_provider(db):
    return ProviderFactory(
        slug="crm-oauth", name="CRM OAuth", auth_type="oauth2", oauth_client_secret=CLIENT_SECRET,
        oauth_config={"authorize_url": "https://auth.example.com/authorize",
                      "token_url": "https://auth.example.com/token", "client_id": "abc"},
    )


@pytest.fixture
def credential(integration):
    return credential_set(
        actor=SYSTEM, integration=integration, credential_type="api_key",
        data={"api_key": STORED_KEY, "header_name": "X-Secret"},
    )


@pytest.fixture
def every_object(tenant, integration, credential, oauth_provider, staff):
    """At least one row of each of our models (config versions and audit events come from the services)."""
    make_user("member", tenant, "member-one")
    api_key_create(actor=SYSTEM, tenant=tenant, name="Ops key", role="member")
    now = timezone.now()
    ConnectionCheck.objects.create(tenant=tenant, integration=integration, success=False, error_code="TIMEOUT")
    ExternalStatus.objects.create(tenant=tenant, integration=integration, external_id="sku-1", raw_status="open",
                                  canonical_status="available", last_seen_at=now, last_changed_at=now)
    StatusChange.objects.create(tenant=tenant, integration=integration, external_id="sku-1", old_canonical="hold",
                                new_canonical="available", old_raw="hold", new_raw="open", changed_at=now)
    StreamLease.objects.create(integration=integration, tenant=tenant, consumer="host-a:1", state="connected")
    StreamConsumer.objects.create(name="host-a:1", hostname="host-a", pid=1, started_at=now, seen_at=now)
    return locals()


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def form_data(response) -> dict:
    """The POST body a browser would send for the change form in ``response``, unchanged."""
    data = {}

    def add_form(form):
        for bound in form:
            if bound.field.disabled:
                continue
            value = bound.value()  # already prepared for the widget
            widget = bound.field.widget
            if widget.__class__.__name__ == "CheckboxInput":
                if value:
                    data[bound.html_name] = "on"
                continue
            if hasattr(widget, "widgets"):  # split date/time
                parts = widget.decompress(value)
                for index, part in enumerate(parts):
                    data[f"{bound.html_name}_{index}"] = "" if part is None else str(part)
                continue
            data[bound.html_name] = "" if value is None else value

    add_form(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add_form(formset.management_form)
        for form in formset.forms:
            add_form(form)
    return data


def assert_saved(response) -> None:
    errors = response.context["adminform"].form.errors if response.status_code == 200 else None
    assert response.status_code == 302, errors


# --- every page renders ---------------------------------------------------------


def test_changelist_and_change_page_of_every_registered_model_render(staff_client, every_object):
    failures = []
    for model in admin.site._registry:
        obj = model._default_manager.first()
        if model._meta.app_label in OUR_APPS or model is get_user_model():
            assert obj is not None, f"no {model._meta.label} row to open"
        urls = [admin_url(model, "changelist")]
        if obj is not None:
            urls.append(admin_url(model, "change", obj.pk))
        for url in urls:
            response = staff_client.get(url)
            if response.status_code != 200:
                failures.append((url, response.status_code))
    assert not failures


def test_changelists_filter_search_and_date_drilldown_render(staff_client, every_object):
    pages = [
        admin_url(Integration, "changelist") + "?status__exact=pending&q=Main",
        admin_url(Integration, "changelist") + "?deleted=yes",
        admin_url(Integration, "changelist") + "?deleted=all&health_state__exact=unknown",
        admin_url(AuditEvent, "changelist") + "?outcome__exact=success&q=system",
        admin_url(IntegrationProvider, "changelist") + "?status__exact=active&q=crm",
        admin_url(ApiKey, "changelist") + "?state=usable",
        admin_url(Credential, "changelist") + "?type__exact=api_key",
        admin_url(Integration, "add"),
        admin_url(IntegrationProvider, "add"),
        admin_url(ApiKey, "add"),
        admin_url(Tenant, "add"),
    ]
    for url in pages:
        assert staff_client.get(url).status_code == 200, url


def test_integration_changelist_hides_soft_deleted_rows_by_default(staff_client, tenant, provider, integration):
    gone = Integration.objects.create(tenant=tenant, provider=provider, name="Gone")
    integration_delete(actor=SYSTEM, integration=gone)

    default = staff_client.get(admin_url(Integration, "changelist"))
    deleted = staff_client.get(admin_url(Integration, "changelist") + "?deleted=yes")

    assert list(default.context["cl"].result_list) == [integration]
    assert list(deleted.context["cl"].result_list) == [gone]


def _add_integrations(tenant, provider, n, tag):
    for i in range(n):
        IntegrationFactory(tenant=tenant, provider=provider, name=f"{tag} {i}")


def _add_credentials(tenant, provider, n, tag):
    for i in range(n):
        target = IntegrationFactory(tenant=tenant, provider=provider, name=f"{tag} {i}")
        credential_set(actor=SYSTEM, integration=target, credential_type="bearer",
                       data={"token": f"tok_{tag}_{i}_0123456789"})


def _add_api_keys(tenant, provider, n, tag):
    for i in range(n):
        api_key_create(actor=SYSTEM, tenant=tenant, name=f"{tag} {i}", role="member")


def _add_memberships(tenant, provider, n, tag):
    for i in range(n):
        make_user("member", tenant, f"{tag}-{i}")


def _add_versions(tenant, provider, n, tag):
    target = IntegrationFactory(tenant=tenant, provider=provider, name=f"{tag} versions")
    for i in range(n):
        integration_update(actor=SYSTEM, integration=target, data={"description": f"{tag} {i}"})


@pytest.mark.parametrize(
    ("model", "add_rows"),
    [(Integration, _add_integrations), (Credential, _add_credentials), (ApiKey, _add_api_keys),
     (Membership, _add_memberships), (ConfigVersion, _add_versions), (AuditEvent, _add_api_keys)],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_changelist_query_count_does_not_grow_with_rows(staff_client, tenant, provider, model, add_rows):
    add_rows(tenant, provider, 3, "few")
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(admin_url(model, "changelist")).status_code == 200
    add_rows(tenant, provider, 25, "many")
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get(admin_url(model, "changelist")).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)


# --- secrets are never rendered ---------------------------------------------------


def test_credential_change_page_shows_type_hint_and_version_but_never_the_secret(staff_client, credential):
    response = staff_client.get(admin_url(Credential, "change", credential.pk))

    body = response.content.decode()
    assert response.status_code == 200
    assert STORED_KEY not in body
    assert "…4242" in body and "API key" in body
    assert 'name="field_api_key"' in body
    assert 'value="X-Secret"' in body  # non-secret fields are shown


def test_provider_change_page_shows_only_whether_a_client_secret_is_set(staff_client, oauth_provider):
    response = staff_client.get(admin_url(IntegrationProvider, "change", oauth_provider.pk))

    body = response.content.decode()
    assert response.status_code == 200
    assert CLIENT_SECRET not in body
    assert 'name="new_oauth_client_secret"' in body
    assert 'name="oauth_client_secret"' not in body
    assert response.context["adminform"].form.initial.get("new_oauth_client_secret") is None


# --- credential form ------------------------------------------------------------------


def test_admin_credential_form_stores_a_new_secret_and_bumps_the_version(staff_client, staff, credential):
    url = admin_url(Credential, "change", credential.pk)
    data = form_data(staff_client.get(url))
    data["field_api_key"] = "sk_live_replaced_by_staff_9876"

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    credential.refresh_from_db()
    assert credential.payload == {"api_key": "sk_live_replaced_by_staff_9876"}
    assert credential.public_fields["header_name"] == "X-Secret"
    assert credential.version == 2 and credential.hint == "9876"
    event = AuditEvent.objects.filter(action="credential.set").latest("created_at")
    assert event.actor_user == staff and event.changes["api_key"] == "[redacted]"


def test_admin_credential_form_keeps_the_stored_secret_when_only_a_public_field_changes(staff_client, credential):
    url = admin_url(Credential, "change", credential.pk)
    data = form_data(staff_client.get(url))
    assert data["field_api_key"] == ""
    data["field_header_name"] = "X-Other"

    assert staff_client.post(url, data).status_code == 302

    credential.refresh_from_db()
    assert credential.payload == {"api_key": STORED_KEY}
    assert credential.public_fields["header_name"] == "X-Other" and credential.version == 2


def test_admin_credential_form_saved_unchanged_does_not_bump_the_version(staff_client, credential):
    url = admin_url(Credential, "change", credential.pk)

    assert staff_client.post(url, form_data(staff_client.get(url))).status_code == 302

    credential.refresh_from_db()
    assert credential.version == 1 and credential.payload == {"api_key": STORED_KEY}


def test_admin_credential_form_rejects_a_bad_header_without_saving(staff_client, credential):
    url = admin_url(Credential, "change", credential.pk)
    data = form_data(staff_client.get(url))
    data["field_header_name"] = "Bad Header!"

    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert "field_header_name" in response.context["adminform"].form.errors
    credential.refresh_from_db()
    assert credential.version == 1


def test_admin_oauth2_credential_form_replaces_one_token_and_keeps_the_others(staff_client, integration):
    credential = credential_set(
        actor=SYSTEM, integration=integration, credential_type="oauth2",
        data={"access_token": "access_token_original_1111", "refresh_token": "refresh_token_original_2222",
              "scopes": ["read", "write"], "expires_at": "2030-01-01T00:00:00+00:00"},
    )
    url = admin_url(Credential, "change", credential.pk)
    page = staff_client.get(url)
    data = form_data(page)
    assert data["field_scopes"] == "read write" and data["field_refresh_token"] == ""
    data["field_access_token"] = "access_token_replaced_3333"

    assert_saved(staff_client.post(url, data))

    credential.refresh_from_db()
    assert credential.payload == {
        "access_token": "access_token_replaced_3333", "refresh_token": "refresh_token_original_2222",
    }
    assert credential.public_fields["scopes"] == ["read", "write"] and credential.version == 2


def test_erasing_credentials_from_the_admin_removes_the_payload(staff_client, staff, credential):
    response = staff_client.post(
        admin_url(Credential, "changelist"), {"action": "erase_selected", "_selected_action": [credential.pk]}
    )

    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.payload is None and credential.status == "revoked"
    assert AuditEvent.objects.get(action="credential.removed").actor_user == staff


# --- provider form ----------------------------------------------------------------------


def test_provider_client_secret_is_write_only_replace_and_keep(staff_client, staff, oauth_provider):
    url = admin_url(IntegrationProvider, "change", oauth_provider.pk)
    data = form_data(staff_client.get(url))
    data["description"] = "Edited by staff"

    assert_saved(staff_client.post(url, data))
    oauth_provider.refresh_from_db()
    assert oauth_provider.description == "Edited by staff"
    assert oauth_provider.oauth_client_secret == CLIENT_SECRET

    data["new_oauth_client_secret"] = "brand-new-client-secret-1"
    response = staff_client.post(url, data)

    assert response.status_code == 302
    oauth_provider.refresh_from_db()
    assert oauth_provider.oauth_client_secret == "brand-new-client-secret-1"
    event = AuditEvent.objects.filter(action="provider.updated").latest("created_at")
    assert event.actor_user == staff and event.changes["oauth_client_secret"] == "[redacted]"


def test_provider_status_action_goes_through_the_service(staff_client, staff, oauth_provider):
    response = staff_client.post(
        admin_url(IntegrationProvider, "changelist"),
        {"action": "mark_disabled", "_selected_action": [oauth_provider.pk]},
    )

    assert response.status_code == 302
    oauth_provider.refresh_from_db()
    assert oauth_provider.status == "disabled"
    assert AuditEvent.objects.get(action="provider.status_changed").actor_user == staff


def test_provider_list_counts_live_integrations_only(staff_client, tenant, provider, integration):
    gone = IntegrationFactory(tenant=tenant, provider=provider, name="Gone")
    integration_delete(actor=SYSTEM, integration=gone)
    IntegrationFactory(tenant=tenant, provider=provider, name="Second")

    response = staff_client.get(admin_url(IntegrationProvider, "changelist"))

    assert response.status_code == 200
    assert "live_integrations" in response.context["cl"].list_display
    row = next(p for p in response.context["cl"].result_list if p.pk == provider.pk)
    assert row._live == 2


def test_provider_delete_page_names_the_live_integrations_that_block_it(staff_client, tenant, provider, integration):
    gone = IntegrationFactory(tenant=tenant, provider=provider, name="Gone")
    integration_delete(actor=SYSTEM, integration=gone)

    protected = staff_client.get(admin_url(IntegrationProvider, "delete", provider.pk)).context["protected"]

    assert protected == [f"Integration: {integration} (tenant {tenant})"]


def test_provider_with_live_integrations_cannot_be_deleted_from_the_admin(staff_client, provider, integration):
    url = admin_url(IntegrationProvider, "delete", provider.pk)

    response = staff_client.post(url, {"post": "yes"})

    assert response.status_code == 200
    assert response.context["protected"]
    assert IntegrationProvider.objects.filter(pk=provider.pk).exists()


def test_provider_with_only_deleted_integrations_is_deleted_through_the_service(staff_client, staff, provider,
                                                                               integration):
    integration_delete(actor=SYSTEM, integration=integration)
    url = admin_url(IntegrationProvider, "delete", provider.pk)
    assert not staff_client.get(url).context["protected"]

    response = staff_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not IntegrationProvider.objects.filter(pk=provider.pk).exists()
    assert AuditEvent.objects.get(action="provider.deleted").actor_user == staff


# --- integrations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "action", "end", "audit_action"),
    [("pending", "disable_selected", "disabled", "integration.disabled"),
     ("disabled", "enable_selected", "pending", "integration.enabled")],
)
def test_integration_enable_disable_actions_change_status_and_audit_the_staff_user(
    staff_client, staff, integration, start, action, end, audit_action
):
    Integration.objects.filter(pk=integration.pk).update(status=start)

    response = staff_client.post(
        admin_url(Integration, "changelist"), {"action": action, "_selected_action": [integration.pk]}
    )

    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.status == end
    event = AuditEvent.objects.get(action=audit_action, target_id=str(integration.pk))
    assert event.actor_user == staff and event.actor == "staff"


def test_integration_config_edit_in_admin_records_a_version_and_audit(staff_client, staff, integration):
    integration_update(actor=SYSTEM, integration=integration, data={"description": "v2"})
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(staff_client.get(url))
    data["timeout_seconds"] = "42"
    versions_before = ConfigVersion.objects.filter(integration=integration).count()

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    integration.refresh_from_db()
    assert integration.timeout_seconds == 42
    assert ConfigVersion.objects.filter(integration=integration).count() == versions_before + 1
    assert AuditEvent.objects.get(action="integration.updated", actor_user=staff).changes["timeout_seconds"]["to"] == 42


def test_service_refusal_during_an_admin_save_is_a_message_not_a_500(staff_client, integration):
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(staff_client.get(url))
    integration_delete(actor=SYSTEM, integration=integration)  # gone while the page was open
    data["description"] = "too late"

    response = staff_client.post(url, data, follow=True)

    assert response.status_code == 200
    assert any("Not saved" in str(m) for m in response.context["messages"])
    integration.refresh_from_db()
    assert integration.description != "too late"


def test_integration_out_of_range_config_in_admin_is_a_form_error(staff_client, integration):
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(staff_client.get(url))
    data["polling_interval_seconds"] = "1"

    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert "polling_interval_seconds" in response.context["adminform"].form.errors


def test_an_unusable_ca_bundle_in_admin_is_a_form_error_and_a_good_one_saves(staff_client, integration):
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(staff_client.get(url))
    data["settings"] = json.dumps({"tls": {"ca_bundle": "not a certificate"}})

    response = staff_client.post(url, data)

    assert response.status_code == 200
    assert "PEM" in str(response.context["adminform"].form.errors["settings"])
    data["settings"] = json.dumps({"tls": {"ca_bundle": make_pki("api.test").ca_pem}})
    assert_saved(staff_client.post(url, data))
    integration.refresh_from_db()
    assert integration.settings["tls"]["ca_bundle"].startswith("-----BEGIN CERTIFICATE-----")


def integration_add_data(client, **values) -> dict:
    data = form_data(client.get(admin_url(Integration, "add")))
    data.update(values)
    return data


def test_integration_added_in_admin_for_a_plan_too_low_is_a_form_error(staff_client, tenant):
    premium = ProviderFactory(slug="premium-one", is_premium=True, required_plan="enterprise")
    data = integration_add_data(staff_client, tenant=tenant.pk, provider=premium.pk, name="Premium")

    response = staff_client.post(admin_url(Integration, "add"), data)

    assert response.status_code == 200
    assert "provider" in response.context["adminform"].form.errors
    assert not Integration.objects.filter(name="Premium").exists()


def test_integration_added_in_admin_is_created_pending_with_version_one(staff_client, staff, tenant, provider):
    data = integration_add_data(
        staff_client, tenant=tenant.pk, provider=provider.pk, name="From admin", environment="sandbox",
        polling_interval_seconds="30", status_mapping='{"available": ["ok"]}',
    )

    assert_saved(staff_client.post(admin_url(Integration, "add"), data))

    created = Integration.objects.get(name="From admin")
    assert created.status == "pending" and created.created_by == staff
    assert created.polling_interval_seconds == 30 and created.status_mapping == {"available": ["ok"]}
    assert created.versions.get().number == 1
    assert AuditEvent.objects.get(action="integration.created").actor_user == staff


def test_deleting_an_integration_in_admin_is_a_soft_delete(staff_client, staff, integration, credential):
    url = admin_url(Integration, "delete", integration.pk)
    assert staff_client.get(url).status_code == 200

    response = staff_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.deleted_at is not None
    assert Credential.objects.get(pk=credential.pk).payload is None
    assert AuditEvent.objects.get(action="integration.deleted").actor_user == staff


# --- API keys --------------------------------------------------------------------------------


def test_api_key_added_in_admin_is_shown_once_and_stored_hashed(staff_client, staff, tenant):
    response = staff_client.post(
        admin_url(ApiKey, "add"),
        {"tenant": tenant.pk, "name": "From admin", "role": "integration_manager",
         "expires_at_0": "", "expires_at_1": ""},
    )

    # The answer to the add is the page showing the key once: uncacheable, not a message in a cookie.
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="From admin")
    assert not list(response.context["messages"])
    raw = response.content.decode().split('<code style="user-select: all">')[1].split("</code>")[0]
    assert hash_api_key(raw) == key.key_hash and raw.startswith(f"ihk_{key.prefix}_")
    assert "will not be shown again" in response.content.decode()
    assert raw not in staff_client.get(admin_url(ApiKey, "changelist")).content.decode()
    assert key.created_by == staff and key.role == "integration_manager"
    assert AuditEvent.objects.get(action="api_key.created").actor_user == staff

    page = staff_client.get(admin_url(ApiKey, "change", key.pk)).content.decode()
    assert raw not in page and key.key_hash not in page and key.display in page


def test_revoke_selected_keys_action_revokes_through_the_service(staff_client, staff, tenant):
    key, _ = api_key_create(actor=SYSTEM, tenant=tenant, name="Old key", role="member")

    response = staff_client.post(
        admin_url(ApiKey, "changelist"), {"action": "revoke_selected", "_selected_action": [key.pk]}
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.get(action="api_key.revoked").actor_user == staff


# --- tenants -----------------------------------------------------------------------------------


def test_tenant_added_in_admin_is_audited_with_the_staff_user(staff_client, staff):
    response = staff_client.post(admin_url(Tenant, "add"), {
        "name": "Initech", "slug": "initech", "plan": "starter", "is_active": "on", "allowed_return_hosts": "[]",
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
        "policy-TOTAL_FORMS": 0, "policy-INITIAL_FORMS": 0,
    })

    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.plan == "starter"
    assert AuditEvent.objects.get(action="tenant.created", tenant=tenant).actor_user == staff


def test_tenant_with_history_can_be_deleted_from_the_admin(staff_client, every_object, tenant):
    url = admin_url(Tenant, "delete", tenant.pk)
    confirm = staff_client.get(url)
    assert confirm.status_code == 200 and not confirm.context["perms_lacking"]

    response = staff_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not Membership.objects.filter(tenant_id=tenant.pk).exists()
    assert not ConnectionCheck.objects.filter(tenant_id=tenant.pk).exists()


# --- audit events --------------------------------------------------------------------------------


def test_audit_events_are_read_only_in_the_admin(staff_client, staff, every_object):
    model_admin = admin.site._registry[AuditEvent]
    request = RequestFactory().get("/")
    request.user = staff
    event = AuditEvent.objects.first()

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert staff_client.get(admin_url(AuditEvent, "add")).status_code == 403
    assert staff_client.post(admin_url(AuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    assert "delete_selected" not in model_admin.get_actions(request)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize("model", [ConfigVersion, ConnectionCheck, ExternalStatus, StatusChange],
                         ids=lambda m: m.__name__)
def test_service_written_records_are_read_only_in_the_admin(staff, every_object, model):
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = staff
    row = model.objects.first()

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
