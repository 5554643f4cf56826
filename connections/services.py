"""Integration lifecycle, credentials and config versions.

Every function here is atomic, writes its audit event, and is the only place
that changes these models.
"""
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site.api.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationFailed
from tenants.choices import plan_rank

from . import adapters
from .choices import CredentialStatus, CredentialType, IntegrationStatus
from .models import CONFIG_FIELDS, ConfigVersion, Credential, Integration

# Changing one of these queues a connection test.
CONNECTION_FIELDS = {"api_base_url", "test_endpoint", "timeout_seconds", "retry_count", "settings"}

PROVIDER_DEFAULTS = {
    "api_base_url": "default_api_base_url",
    "test_endpoint": "default_test_endpoint",
    "status_endpoint": "default_status_endpoint",
}


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


def _current_credential(integration: Integration, user=None) -> Credential | None:
    return Credential.objects.filter(integration=integration, user=user).first()


def _record_version(*, integration: Integration, actor: Actor, reason: str) -> ConfigVersion:
    last = (
        ConfigVersion.objects.filter(integration=integration).order_by("-number")
        .values_list("number", flat=True).first()
    )
    credential = _current_credential(integration)
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


def _queue_test(integration: Integration, actor: Actor) -> None:
    """Test the connection in the background after a change (not for disabled integrations)."""
    from .checks import connection_test_queue

    if integration.status != IntegrationStatus.DISABLED:
        connection_test_queue(integration=integration, actor=actor)


def _lock(integration: Integration) -> Integration:
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
    _record_version(integration=integration, actor=actor, reason="created")
    audit_record(
        actor=actor, action="integration.created", target=integration,
        changes={"provider": {"to": provider.slug}, **{k: {"to": v} for k, v in integration.config_snapshot().items()}},
    )
    return integration


@transaction.atomic
def integration_update(*, actor: Actor, integration: Integration, data: dict) -> Integration:
    """Apply config changes; a new version is recorded only when something changed."""
    integration = _lock(integration)
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
    _record_version(integration=integration, actor=actor, reason="updated: " + ", ".join(sorted(changes)))
    audit_record(actor=actor, action="integration.updated", target=integration, changes=changes)
    if CONNECTION_FIELDS & set(changes):
        _queue_test(integration, actor)
    return integration


@transaction.atomic
def integration_enable(*, actor: Actor, integration: Integration) -> Integration:
    """Enable: a disabled integration goes back to ``pending`` (``connected`` if its
    credential was last validated). Enabling an enabled one changes nothing, but
    the request is still audited so the trail shows every lifecycle step."""
    integration = _lock(integration)
    old = integration.status
    if integration.status == IntegrationStatus.DISABLED:
        _check_plan(tenant=integration.tenant, provider=integration.provider)
        credential = _current_credential(integration)
        validated = (
            credential is not None and credential.is_set and credential.status == CredentialStatus.ACTIVE
            and credential.last_validated_at is not None
        )
        integration.status = IntegrationStatus.CONNECTED if validated else IntegrationStatus.PENDING
        integration.next_check_at = timezone.now()
        integration.save(update_fields=["status", "next_check_at", "updated_at"])
    changes = {"status": {"from": old, "to": integration.status}} if old != integration.status else {}
    audit_record(actor=actor, action="integration.enabled", target=integration, changes=changes)
    return integration


@transaction.atomic
def integration_disable(*, actor: Actor, integration: Integration) -> Integration:
    """Disable: no checks or polling run until enabled again. Idempotent; always audited."""
    integration = _lock(integration)
    old = integration.status
    if integration.status != IntegrationStatus.DISABLED:
        integration.status = IntegrationStatus.DISABLED
        integration.next_check_at = None
        integration.save(update_fields=["status", "next_check_at", "updated_at"])
    changes = {"status": {"from": old, "to": integration.status}} if old != integration.status else {}
    audit_record(actor=actor, action="integration.disabled", target=integration, changes=changes)
    return integration


@transaction.atomic
def integration_delete(*, actor: Actor, integration: Integration) -> None:
    """Soft delete: hidden from lists and lookups, name reusable, secrets erased."""
    integration = _lock(integration)
    integration.deleted_at = timezone.now()
    integration.status = IntegrationStatus.DISABLED
    integration.next_check_at = None
    integration.save(update_fields=["deleted_at", "status", "next_check_at", "updated_at"])
    erased = Credential.objects.filter(integration=integration).update(
        payload=None, status=CredentialStatus.REVOKED, hint="", updated_at=timezone.now()
    )
    audit_record(actor=actor, action="integration.deleted", target=integration,
                 changes={"deleted_at": {"to": integration.deleted_at}, "credentials_erased": {"to": erased}})
    from webhooks.services import endpoints_disable_for_integration

    endpoints_disable_for_integration(actor=actor, integration=integration)


@transaction.atomic
def credential_set(
    *, actor: Actor, integration: Integration, credential_type: str, data: dict, user=None
) -> Credential:
    """Store (or replace) the integration's credential; the version goes up by one."""
    integration = _lock(integration)
    allowed = adapters.allowed_types(integration.provider)
    if credential_type not in allowed:
        raise ValidationFailed(
            f"The provider '{integration.provider.slug}' takes credentials of type: {', '.join(allowed)}.",
            details={"type": [f"Must be one of: {', '.join(allowed)}."]},
        )
    secret, public, hint = adapters.split_credential(credential_type, integration.provider, data)
    credential = Credential.objects.select_for_update().filter(integration=integration, user=user).first()
    expires_at = public.get("expires_at")
    if credential is None:
        credential = Credential(tenant=integration.tenant, integration=integration, user=user, version=1)
    else:
        credential.version += 1
    credential.type = credential_type
    credential.payload = secret
    credential.public_fields = public
    credential.hint = hint
    credential.status = CredentialStatus.ACTIVE
    credential.expires_at = expires_at
    credential.last_validated_at = None
    credential.validation_error = ""
    credential.save()
    if not user:
        _record_version(integration=integration, actor=actor, reason=f"credentials set (v{credential.version})")
    secret_names = adapters.secret_field_names(credential_type, integration.provider) | set(secret)
    audit_record(
        actor=actor, action="credential.set", target=integration,
        changes={"type": credential_type, "version": credential.version, **{k: "set" for k in secret}, **public},
        secret_fields=frozenset(secret_names),
    )
    if not user:
        _queue_test(integration, actor)
    return credential


@transaction.atomic
def credential_remove(*, actor: Actor, integration: Integration, user=None) -> bool:
    """Erase the stored secrets; returns False when there was nothing to remove."""
    integration = _lock(integration)
    credential = Credential.objects.select_for_update().filter(integration=integration, user=user).first()
    if credential is None or not credential.is_set:
        return False
    credential.payload = None
    credential.hint = ""
    credential.public_fields = {}
    credential.status = CredentialStatus.REVOKED
    credential.save()
    if not user:
        _record_version(integration=integration, actor=actor, reason="credentials removed")
    audit_record(actor=actor, action="credential.removed", target=integration,
                 changes={"type": credential.type, "version": credential.version})
    return True


@transaction.atomic
def config_version_restore(*, actor: Actor, integration: Integration, number: int) -> Integration:
    """Put back the config of version ``number``; the restore itself is a new version."""
    integration = _lock(integration)
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
    _record_version(integration=integration, actor=actor, reason=f"restored version {number}")
    audit_record(actor=actor, action="integration.restored", target=integration,
                 changes={"restored_version": number, **changes})
    return integration


@transaction.atomic
def credential_update(*, actor: Actor, integration: Integration, data: dict, user=None) -> Credential:
    """Change part of the stored credential (same type); the version goes up by one.

    Fields not given keep their stored values; the merged set is validated as a whole.
    """
    integration = _lock(integration)
    credential = Credential.objects.select_for_update().filter(integration=integration, user=user).first()
    if credential is None or not credential.is_set:
        raise NotFoundError("This integration has no credentials to update; set them with PUT first.")
    credential_type = data.pop("type", credential.type)
    if credential_type != credential.type:
        raise ValidationFailed(
            "PATCH keeps the credential type; use PUT to replace the credentials with another type.",
            details={"type": [f"Must be '{credential.type}'."]},
        )
    if not data:
        raise ValidationFailed("Give at least one field to change.",
                               details={"non_field_errors": ["Nothing to change."]})
    merged = {**(credential.public_fields or {}), **(credential.payload or {}), **data}
    if credential_type == CredentialType.OAUTH2 and merged.get("expires_at") is None:
        merged.pop("expires_at", None)
    secret, public, hint = adapters.split_credential(credential_type, integration.provider, merged)
    credential.payload, credential.public_fields, credential.hint = secret, public, hint
    credential.version += 1
    credential.status = CredentialStatus.ACTIVE
    credential.last_validated_at = None
    credential.validation_error = ""
    if credential_type == CredentialType.OAUTH2:
        credential.expires_at = public.get("expires_at")
    credential.save()
    if not user:
        _record_version(integration=integration, actor=actor, reason=f"credentials updated (v{credential.version})")
    secret_names = adapters.secret_field_names(credential_type, integration.provider) | set(secret)
    audit_record(
        actor=actor, action="credential.updated", target=integration,
        changes={"version": credential.version, **{k: "changed" for k in data if k in secret},
                 **{k: v for k, v in data.items() if k in public}},
        secret_fields=frozenset(secret_names),
    )
    if not user:
        _queue_test(integration, actor)
    return credential
