"""Integration lifecycle (create, update, enable, disable, delete) and config versions.

Every service here is atomic, writes its audit event, and is the only place that
changes an integration's config and lifecycle.
"""
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site.api.errors import ConflictError, NotFoundError, PermissionDeniedError
from notifications.services import notify_many
from tenants.choices import plan_rank
from tenants.selectors import effective_policy

from ..choices import CredentialStatus, DisabledReason, IntegrationStatus
from ..models import CONFIG_FIELDS, ConfigVersion, Credential, Integration
from ..selectors import credential_of
from .queueing import connection_retest_queue

# Changing one of these queues a connection test.
CONNECTION_FIELDS = {"api_base_url", "test_endpoint", "timeout_seconds", "retry_count", "settings"}

PROVIDER_DEFAULTS = {
    "api_base_url": "default_api_base_url",
    "test_endpoint": "default_test_endpoint",
    "status_endpoint": "default_status_endpoint",
}
# What a new integration gets from its tenant's effective policy when its create request leaves it out (the
# check interval is not set: an integration without one follows the policy, see health.check_interval).
POLICY_DEFAULTS = {"timeout_seconds": "default_timeout_seconds", "retry_count": "default_retry_count"}


def _check_plan(*, tenant, provider) -> None:
    needed = provider.minimum_plan
    if plan_rank(tenant.plan) < plan_rank(needed):
        raise PermissionDeniedError(
            f"The provider '{provider.slug}' needs the '{needed}' plan or higher; this tenant is on '{tenant.plan}'.",
            details={"required_plan": needed, "current_plan": tenant.plan},
        )


def _check_name_free(*, tenant, name: str, exclude_pk=None) -> None:
    clash = Integration.objects.for_tenant(tenant).live().filter(name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ConflictError(f"An integration named '{name}' already exists in this tenant.", details={"name": name})


def _save_or_conflict(integration: Integration, **kwargs) -> None:
    try:
        with transaction.atomic():
            integration.save(**kwargs)
    except IntegrityError as exc:
        if "integration_unique_live_name" in str(exc):
            raise ConflictError(
                f"An integration named '{integration.name}' already exists in this tenant.",
                details={"name": integration.name},
            ) from None
        raise


# Run by integration_delete in its transaction, with (actor=, integration=): what the apps above
# connections do when an integration goes (webhooks turns its endpoints off; webhooks/apps.py).
# A plain list filled once at start-up, not a signal: the delete calls each one, in order.
DELETE_HOOKS: list[Callable[..., object]] = []


def config_version_record(*, integration: Integration, actor: Actor, reason: str) -> ConfigVersion:
    """A new config version: the integration's config now and its tenant-wide credential's version."""
    last = (
        ConfigVersion.objects.filter(integration=integration).order_by("-number")
        .values_list("number", flat=True).first()
    )
    credential = credential_of(integration)
    return ConfigVersion.objects.create(
        tenant=integration.tenant,
        integration=integration,
        number=(last or 0) + 1,
        snapshot=integration.config_snapshot(),
        credential_version=credential.version if credential and credential.is_set else None,
        author=actor.label[:200],
        author_user=actor.user if getattr(actor.user, "pk", None) else None,
        reason=reason[:200],
    )


def integration_lock(integration: Integration) -> Integration:
    """The integration's row, locked until the transaction ends; 404 when it was deleted."""
    locked = Integration.objects.select_for_update().select_related("provider", "tenant").get(pk=integration.pk)
    if locked.is_deleted:
        raise NotFoundError("Integration not found.", code="INTEGRATION_NOT_FOUND")
    return locked


@transaction.atomic
def integration_create(*, actor: Actor, tenant, provider, data: dict) -> Integration:
    """Create an integration in ``pending``; version 1 records its config."""
    _check_plan(tenant=tenant, provider=provider)
    config = {k: v for k, v in data.items() if k in CONFIG_FIELDS}
    for field, default_attr in PROVIDER_DEFAULTS.items():
        if not config.get(field):
            config[field] = getattr(provider, default_attr)
    policy = effective_policy(tenant)
    for field, policy_attr in POLICY_DEFAULTS.items():
        if config.get(field) is None:
            config[field] = getattr(policy, policy_attr)
    _check_name_free(tenant=tenant, name=config["name"])
    integration = Integration(
        tenant=tenant,
        provider=provider,
        status=IntegrationStatus.PENDING,
        created_by=actor.user if getattr(actor.user, "pk", None) else None,
        **config,
    )
    if provider.requires_user_scoping:
        integration.user_scoped = True
    _save_or_conflict(integration)
    config_version_record(integration=integration, actor=actor, reason="created")
    audit_record(
        actor=actor, action="integration.created", target=integration,
        changes={"provider": {"to": provider.slug}, **{k: {"to": v} for k, v in integration.config_snapshot().items()}},
    )
    return integration


@transaction.atomic
def integration_update(*, actor: Actor, integration: Integration, data: dict) -> Integration:
    """Apply config changes; a new version is recorded only when something changed."""
    integration = integration_lock(integration)
    changes = {}
    for field, value in data.items():
        if field in CONFIG_FIELDS and getattr(integration, field) != value:
            changes[field] = {"from": getattr(integration, field), "to": value}
            setattr(integration, field, value)
    if not changes:
        return integration
    if "name" in changes:
        _check_name_free(tenant=integration.tenant, name=integration.name, exclude_pk=integration.pk)
    _save_or_conflict(integration)
    config_version_record(integration=integration, actor=actor, reason="updated: " + ", ".join(sorted(changes)))
    audit_record(actor=actor, action="integration.updated", target=integration, changes=changes)
    if CONNECTION_FIELDS & set(changes):
        connection_retest_queue(integration=integration, actor=actor)
    return integration


@transaction.atomic
def integration_enable(*, actor: Actor, integration: Integration) -> Integration:
    """Enable: a disabled integration goes back to ``pending`` (``connected`` if its
    credential was last validated), its disabled reason cleared. A failing streak keeps
    its count but starts its clock and its warning again: an auto-disabled integration
    enabled while still failing is disabled again only after the policy's hours of
    failing. Enabling an enabled one changes nothing, but the request is still audited
    so the trail shows every lifecycle step."""
    integration = integration_lock(integration)
    old, old_reason = integration.status, integration.disabled_reason
    if integration.status == IntegrationStatus.DISABLED:
        _check_plan(tenant=integration.tenant, provider=integration.provider)
        credential = credential_of(integration)
        validated = (
            credential is not None and credential.is_set and credential.status == CredentialStatus.ACTIVE
            and credential.last_validated_at is not None
        )
        integration.status = IntegrationStatus.CONNECTED if validated else IntegrationStatus.PENDING
        integration.disabled_reason = DisabledReason.NONE
        integration.failing_since = integration.failure_warned_at = None
        integration.next_check_at = timezone.now()
        integration.save(update_fields=[
            "status", "disabled_reason", "failing_since", "failure_warned_at", "next_check_at", "updated_at",
        ])
    changes = {"status": {"from": old, "to": integration.status}} if old != integration.status else {}
    if old_reason != integration.disabled_reason:
        changes["disabled_reason"] = {"from": old_reason, "to": integration.disabled_reason}
    audit_record(actor=actor, action="integration.enabled", target=integration, changes=changes)
    return integration


@transaction.atomic
def integration_disable(
    *, actor: Actor, integration: Integration, reason: str = DisabledReason.MANUAL, streak: dict | None = None
) -> Integration:
    """Disable: no checks or polling run until enabled again; ``reason`` says why: ``manual``, or
    ``auto_disabled`` by the failing-streak policy (audited as ``integration.auto_disabled`` with the
    ``streak``: failures, failing since; and the tenant is notified). Idempotent: disabling a disabled
    integration changes nothing (its reason stays), but a person's request is still audited."""
    integration = integration_lock(integration)
    old, old_reason = integration.status, integration.disabled_reason
    automatic = reason == DisabledReason.AUTO_DISABLED
    if integration.status == IntegrationStatus.DISABLED and automatic:
        return integration  # already off: nothing for the policy to do
    if integration.status != IntegrationStatus.DISABLED:
        integration.status = IntegrationStatus.DISABLED
        integration.disabled_reason = reason
        integration.next_check_at = None
        integration.save(update_fields=["status", "disabled_reason", "next_check_at", "updated_at"])
    changes = {
        **({"status": {"from": old, "to": integration.status},
            "disabled_reason": {"from": old_reason, "to": integration.disabled_reason}}
           if old != integration.status else {}),
        **(streak or {}),
    }
    action = "integration.auto_disabled" if automatic else "integration.disabled"
    audit_record(actor=actor, action=action, target=integration, changes=changes)
    if automatic:
        notify_many([(integration.tenant_id, action, {
            "integration_id": str(integration.pk), "integration_name": integration.name,
            "reason": reason, **(streak or {}),
        })])
    return integration


@transaction.atomic
def integration_delete(*, actor: Actor, integration: Integration) -> None:
    """Soft delete: hidden from lists and lookups, name reusable, secrets erased."""
    integration = integration_lock(integration)
    integration.deleted_at = timezone.now()
    integration.status = IntegrationStatus.DISABLED
    integration.next_check_at = None
    integration.save(update_fields=["deleted_at", "status", "next_check_at", "updated_at"])
    # Every credential of it, the tenant's and each user's own.
    erased = Credential.objects.filter(integration=integration).update(
        payload=None, status=CredentialStatus.REVOKED, hint="", updated_at=timezone.now()
    )
    audit_record(actor=actor, action="integration.deleted", target=integration,
                 changes={"deleted_at": {"to": integration.deleted_at}, "credentials_erased": {"to": erased}})
    for hook in DELETE_HOOKS:
        hook(actor=actor, integration=integration)


@transaction.atomic
def config_version_restore(*, actor: Actor, integration: Integration, number: int) -> Integration:
    """Put back the config of version ``number``; the restore itself is a new version."""
    integration = integration_lock(integration)
    version = ConfigVersion.objects.filter(integration=integration, number=number).first()
    if version is None:
        raise NotFoundError(f"Version {number} does not exist for this integration.")
    changes = {}
    for field in CONFIG_FIELDS:
        if field not in version.snapshot:
            continue
        value = version.snapshot[field]
        if getattr(integration, field) != value and not (
            field == "limit_monthly_budget" and str(getattr(integration, field)) == str(value)
        ):
            changes[field] = {"from": getattr(integration, field), "to": value}
            setattr(integration, field, value)
    if "name" in changes:
        _check_name_free(tenant=integration.tenant, name=integration.name, exclude_pk=integration.pk)
    _save_or_conflict(integration)
    integration.refresh_from_db()
    config_version_record(integration=integration, actor=actor, reason=f"restored version {number}")
    audit_record(actor=actor, action="integration.restored", target=integration,
                 changes={"restored_version": number, **changes})
    return integration
