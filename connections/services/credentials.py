"""An integration's credentials: set, change part of, or remove them.

Every service here is atomic, writes its audit event (naming secret fields, never their
values), and bumps the credential's version; a tenant-wide change records a config
version and queues a connection test. Reading a credential: ``connections.selectors``.
"""
from django.db import transaction

from audit.services import Actor, audit_record
from integrations_site.api.errors import NotFoundError, ValidationFailed

from .. import adapters
from ..choices import CredentialStatus, CredentialType
from ..models import Credential, Integration
from ..selectors import credential_of
from .integrations import config_version_record, integration_lock
from .queueing import connection_retest_queue


@transaction.atomic
def credential_set(
    *, actor: Actor, integration: Integration, credential_type: str, data: dict, user=None
) -> Credential:
    """Store (or replace) the integration's credential; the version goes up by one."""
    integration = integration_lock(integration)
    allowed = adapters.allowed_types(integration.provider)
    if credential_type not in allowed:
        raise ValidationFailed(
            f"The provider '{integration.provider.slug}' takes credentials of type: {', '.join(allowed)}.",
            details={"type": [f"Must be one of: {', '.join(allowed)}."]},
        )
    secret, public, hint = adapters.split_credential(credential_type, integration.provider, data)
    credential = credential_of(integration, user, lock=True)
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
        config_version_record(integration=integration, actor=actor, reason=f"credentials set (v{credential.version})")
    secret_names = adapters.secret_field_names(credential_type, integration.provider) | set(secret)
    audit_record(
        actor=actor, action="credential.set", target=integration,
        changes={"type": credential_type, "version": credential.version, **{k: "set" for k in secret},
                 **adapters.public_for_audit(public)},
        secret_fields=frozenset(secret_names),
    )
    if not user:
        connection_retest_queue(integration=integration, actor=actor)
    return credential


@transaction.atomic
def credential_remove(*, actor: Actor, integration: Integration, user=None) -> bool:
    """Erase the stored secrets; returns False when there was nothing to remove."""
    integration = integration_lock(integration)
    credential = credential_of(integration, user, lock=True)
    if credential is None or not credential.is_set:
        return False
    credential.payload = None
    credential.hint = ""
    credential.public_fields = {}
    credential.status = CredentialStatus.REVOKED
    credential.save()
    if not user:
        config_version_record(integration=integration, actor=actor, reason="credentials removed")
    audit_record(actor=actor, action="credential.removed", target=integration,
                 changes={"type": credential.type, "version": credential.version})
    return True


@transaction.atomic
def credential_update(*, actor: Actor, integration: Integration, data: dict, user=None) -> Credential:
    """Change part of the stored credential (same type); the version goes up by one.

    Fields not given keep their stored values; the merged set is validated as a whole.
    """
    integration = integration_lock(integration)
    credential = credential_of(integration, user, lock=True)
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
        config_version_record(
            integration=integration, actor=actor, reason=f"credentials updated (v{credential.version})"
        )
    secret_names = adapters.secret_field_names(credential_type, integration.provider) | set(secret)
    audit_record(
        actor=actor, action="credential.updated", target=integration,
        changes={"version": credential.version, **{k: "changed" for k in data if k in secret},
                 **adapters.public_for_audit({k: v for k, v in data.items() if k in public})},
        secret_fields=frozenset(secret_names),
    )
    if not user:
        connection_retest_queue(integration=integration, actor=actor)
    return credential
