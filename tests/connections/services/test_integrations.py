"""Integration lifecycle and config versions, called directly."""
import pytest

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections import services
from connections.models import ConfigVersion, Credential, Integration
from integrations_site.api.errors import ConflictError, NotFoundError, PermissionDeniedError
from tests.catalog.factories import ProviderFactory
from tests.conftest import make_user
from tests.connections.factories import IntegrationFactory


def test_create_fills_defaults_records_version_one_and_audits(made, actor, provider):
    assert made.status == "pending" and made.health_state == "unknown"
    assert made.api_base_url == provider.default_api_base_url
    assert made.test_endpoint == provider.default_test_endpoint
    assert made.created_by == actor.user
    version = ConfigVersion.objects.get(integration=made)
    assert (version.number, version.reason, version.author) == (1, "created", "svc-admin")
    assert version.author_user == actor.user
    event = AuditEvent.objects.get(action="integration.created")
    assert event.target_id == str(made.pk) and event.tenant == made.tenant and event.actor_user == actor.user
    assert event.changes["provider"] == {"to": "generic-rest"}


def test_create_ignores_keys_that_are_not_config(actor, tenant, provider):
    made = services.integration_create(
        actor=actor, tenant=tenant, provider=provider, data={"name": "X", "status": "connected", "tenant": None}
    )
    assert made.status == "pending" and made.tenant == tenant


def test_create_turns_on_user_scoping_when_the_provider_needs_it(actor, tenant):
    scoped = ProviderFactory(slug="per-user", requires_user_scoping=True)
    made = services.integration_create(actor=actor, tenant=tenant, provider=scoped, data={"name": "Per user"})
    assert made.user_scoped is True


def test_create_with_a_taken_name_is_conflict(made, actor, tenant, provider):
    with pytest.raises(ConflictError):
        services.integration_create(actor=actor, tenant=tenant, provider=provider, data={"name": "Svc"})
    assert Integration.objects.filter(name="Svc").count() == 1


def test_create_of_a_premium_provider_on_a_lower_plan_is_denied(actor, tenant):
    tenant.plan = "starter"
    tenant.save()
    gated = ProviderFactory(slug="gated", required_plan="enterprise")
    with pytest.raises(PermissionDeniedError) as raised:
        services.integration_create(actor=actor, tenant=tenant, provider=gated, data={"name": "G"})
    assert raised.value.details == {"required_plan": "enterprise", "current_plan": "starter"}
    assert not Integration.objects.exists()


def test_update_without_change_records_nothing(made, actor):
    services.integration_update(actor=actor, integration=made, data={"name": "Svc", "timeout_seconds": 10})
    assert ConfigVersion.objects.filter(integration=made).count() == 1
    assert not AuditEvent.objects.filter(action="integration.updated").exists()


def test_update_records_a_version_and_changed_fields(made, actor):
    services.integration_update(actor=actor, integration=made, data={"retry_count": 7})
    version = ConfigVersion.objects.filter(integration=made).first()
    assert (version.number, version.reason, version.snapshot["retry_count"]) == (2, "updated: retry_count", 7)
    event = AuditEvent.objects.get(action="integration.updated")
    assert event.changes == {"retry_count": {"from": 3, "to": 7}}


def test_update_of_a_deleted_integration_is_not_found(made, actor):
    services.integration_delete(actor=actor, integration=made)
    with pytest.raises(NotFoundError) as raised:
        services.integration_update(actor=actor, integration=made, data={"retry_count": 1})
    assert raised.value.code == "INTEGRATION_NOT_FOUND"


def test_disable_and_enable_are_idempotent(made, actor):
    services.integration_disable(actor=actor, integration=made)
    services.integration_disable(actor=actor, integration=made)
    assert Integration.objects.get(pk=made.pk).status == "disabled"
    services.integration_enable(actor=actor, integration=made)
    services.integration_enable(actor=actor, integration=made)
    assert Integration.objects.get(pk=made.pk).status == "pending"
    rows = list(AuditEvent.objects.order_by("created_at").values_list("action", "changes"))
    assert rows == [
        ("integration.created", rows[0][1]),
        ("integration.disabled", {"status": {"from": "pending", "to": "disabled"},
                                  "disabled_reason": {"from": "", "to": "manual"}}),
        ("integration.disabled", {}),
        ("integration.enabled", {"status": {"from": "disabled", "to": "pending"},
                                 "disabled_reason": {"from": "manual", "to": ""}}),
        ("integration.enabled", {}),
    ]


def test_enable_of_a_disabled_integration_rechecks_the_plan(made, actor, tenant, provider):
    services.integration_disable(actor=actor, integration=made)
    provider.is_premium = True
    provider.save()
    tenant.plan = "free"
    tenant.save()
    with pytest.raises(PermissionDeniedError):
        services.integration_enable(actor=actor, integration=made)
    assert Integration.objects.get(pk=made.pk).status == "disabled"


def test_delete_erases_every_credential_of_the_integration(made, actor, tenant):
    services.credential_set(
        actor=actor, integration=made, credential_type="bearer", data={"token": "tok_svc_0123456789"}
    )
    user = make_user("member", tenant, "someone")
    services.credential_set(
        actor=actor, integration=made, credential_type="bearer", data={"token": "tok_user_0123456789"}, user=user
    )
    services.integration_delete(actor=actor, integration=made)
    assert list(Credential.objects.values_list("payload", "hint", "status")) == [(None, "", "revoked")] * 2
    assert AuditEvent.objects.get(action="integration.deleted").changes["credentials_erased"] == {"to": 2}


def test_restore_of_a_missing_version_raises_not_found(made, actor):
    with pytest.raises(NotFoundError):
        services.config_version_restore(actor=actor, integration=made, number=5)


def test_restore_round_trips_a_budget_limit(made, actor):
    services.integration_update(actor=actor, integration=made, data={"limit_monthly_budget": "12.50"})
    services.integration_update(actor=actor, integration=made, data={"limit_monthly_budget": None})
    restored = services.config_version_restore(actor=actor, integration=made, number=2)
    assert str(restored.limit_monthly_budget) == "12.50"
    assert ConfigVersion.objects.filter(integration=made).count() == 4


def test_system_actor_is_recorded_as_system(tenant, provider):
    made = services.integration_create(actor=SYSTEM, tenant=tenant, provider=provider, data={"name": "Sys"})
    assert made.created_by is None
    assert AuditEvent.objects.get(action="integration.created").actor == "system"
    assert ConfigVersion.objects.get(integration=made).author == "system"


def test_a_name_used_in_another_tenant_is_free_here(actor, tenant, other_tenant, provider):
    theirs = IntegrationFactory(tenant=other_tenant, provider=provider, name="Shared name")
    mine = services.integration_create(actor=actor, tenant=tenant, provider=provider, data={"name": "Shared name"})
    assert mine.pk != theirs.pk and mine.tenant == tenant
