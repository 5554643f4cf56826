"""Tenant, membership and API key operations. Each is atomic and audited."""
import secrets
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site.api.errors import ConflictError

from .authentication import API_KEY_PREFIX, hash_api_key
from .choices import POLICY_FIELDS
from .models import ApiKey, Membership, Tenant, TenantPolicy
from .selectors import Policy, effective_policy

TENANT_FIELDS = ("name", "slug", "plan", "is_active", "allowed_return_hosts")


def _diff(instance, data: dict) -> dict:
    changes = {}
    for field, value in data.items():
        old = getattr(instance, field)
        if old != value:
            changes[field] = {"from": old, "to": value}
    return changes


def _check_slug_free(slug, exclude_pk=None) -> None:
    taken = Tenant.objects.filter(slug=slug)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ConflictError(f"A tenant with slug '{slug}' already exists.", details={"slug": slug})


@transaction.atomic
def tenant_create(*, actor: Actor, data: dict) -> Tenant:
    _check_slug_free(data.get("slug"))
    tenant = Tenant.objects.create(**{k: v for k, v in data.items() if k in TENANT_FIELDS})
    audit_record(actor=actor, action="tenant.created", target=tenant, tenant=tenant,
                 changes={k: {"to": getattr(tenant, k)} for k in data if k in TENANT_FIELDS})
    return tenant


@transaction.atomic
def tenant_update(*, actor: Actor, tenant: Tenant, data: dict) -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    changes = _diff(tenant, {k: v for k, v in data.items() if k in TENANT_FIELDS})
    if "slug" in changes:
        _check_slug_free(changes["slug"]["to"], exclude_pk=tenant.pk)
    if changes:
        for field, change in changes.items():
            setattr(tenant, field, change["to"])
        tenant.save()
        audit_record(actor=actor, action="tenant.updated", target=tenant, tenant=tenant, changes=changes)
    return tenant


@transaction.atomic
def tenant_delete(*, actor: Actor, tenant: Tenant) -> None:
    audit_record(actor=actor, action="tenant.deleted", target=tenant, tenant=None)
    tenant.delete()


def _new_raw_key() -> tuple[str, str]:
    prefix = secrets.token_hex(6)
    return prefix, f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


@transaction.atomic
def api_key_create(
    *, actor: Actor, tenant: Tenant, name: str, role: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never retrievable again."""
    prefix, raw = _new_raw_key()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        role=role,
        prefix=prefix,
        key_hash=hash_api_key(raw),
        last4=raw[-4:],
        expires_at=expires_at,
        created_by=actor.user if getattr(actor.user, "pk", None) else None,
    )
    audit_record(actor=actor, action="api_key.created", target=api_key, tenant=tenant,
                 changes={"name": {"to": name}, "role": {"to": role}, "expires_at": {"to": expires_at}})
    return api_key, raw


@transaction.atomic
def api_key_revoke(*, actor: Actor, api_key: ApiKey) -> ApiKey:
    """Revoke a key; revoking twice is a no-op."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="api_key.revoked", target=api_key, tenant=api_key.tenant)
    return api_key


@transaction.atomic
def membership_set(*, actor: Actor, tenant: Tenant, user, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``tenant`` (creating the membership if needed). Audited."""
    membership = Membership.objects.select_for_update().filter(tenant=tenant, user=user).first()
    if membership is None:
        membership = Membership.objects.create(tenant=tenant, user=user, role=role)
        audit_record(actor=actor, action="membership.created", target=membership, tenant=tenant,
                     changes={"user": {"to": user.get_username()}, "role": {"to": role}})
    elif membership.role != role:
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(actor=actor, action="membership.role_changed", target=membership, tenant=tenant,
                     changes={"role": {"from": old, "to": role}})
    return membership


@transaction.atomic
def membership_remove(*, actor: Actor, membership: Membership) -> None:
    audit_record(actor=actor, action="membership.removed", target=membership, tenant=membership.tenant,
                 changes={"user": {"from": membership.user.get_username()}, "role": {"from": membership.role}})
    membership.delete()


@transaction.atomic
def tenant_policy_update(*, actor: Actor, tenant: Tenant, data: dict) -> Policy:
    """Set fields of the tenant's policy (None: back to the platform setting); returns the effective policy.

    Values are expected within ``POLICY_BOUNDS`` (the serializer checks them). Audited with each changed
    field's stored value before and after (None: inherited); a request that changes nothing writes nothing.
    """
    wanted = {k: v for k, v in data.items() if k in POLICY_FIELDS}
    policy = TenantPolicy.objects.select_for_update().filter(tenant=tenant).first()
    if policy is None:
        if all(value is None for value in wanted.values()):
            return effective_policy(tenant)  # nothing stored, nothing to store
        # get_or_create: a concurrent first write of the policy finds the row the other created.
        created, _ = TenantPolicy.objects.get_or_create(tenant=tenant)
        policy = TenantPolicy.objects.select_for_update().get(pk=created.pk)
    changes = _diff(policy, wanted)
    if changes:
        for field, change in changes.items():
            setattr(policy, field, change["to"])
        policy.save()
        audit_record(actor=actor, action="tenant.policy_updated", target=tenant, tenant=tenant, changes=changes)
    return effective_policy(tenant)
