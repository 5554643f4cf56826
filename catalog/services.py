"""Provider catalog operations (super admins). Atomic and audited."""
from django.db import transaction

from audit.services import Actor, audit_record
from integrations_site.api.errors import ConflictError

from .models import IntegrationProvider

SECRET_FIELDS = frozenset({"oauth_client_secret"})


def _split_client_secret(data: dict) -> dict:
    """``oauth_config.client_secret`` is written to its own encrypted column."""
    data = dict(data)
    oauth = data.get("oauth_config")
    if isinstance(oauth, dict) and "client_secret" in oauth:
        oauth = dict(oauth)
        data["oauth_client_secret"] = oauth.pop("client_secret") or ""
        data["oauth_config"] = oauth
    return data


@transaction.atomic
def provider_create(*, actor: Actor, data: dict) -> IntegrationProvider:
    data = _split_client_secret(data)
    if IntegrationProvider.objects.filter(slug=data.get("slug")).exists():
        raise ConflictError(
            f"A provider with slug '{data.get('slug')}' already exists.", details={"slug": data.get("slug")}
        )
    provider = IntegrationProvider(**data)
    if not provider.display_name:
        provider.display_name = provider.name
    provider.full_clean()
    provider.save()
    audit_record(actor=actor, action="provider.created", target=provider,
                 changes={k: {"to": v} for k, v in data.items()}, secret_fields=SECRET_FIELDS)
    return provider


@transaction.atomic
def provider_update(*, actor: Actor, provider: IntegrationProvider, data: dict, action: str = "provider.updated"):
    data = _split_client_secret(data)
    provider = IntegrationProvider.objects.select_for_update().get(pk=provider.pk)
    changes = {}
    for field, value in data.items():
        if getattr(provider, field) != value:
            changes[field] = {"from": getattr(provider, field), "to": value}
            setattr(provider, field, value)
    if changes:
        provider.full_clean()
        provider.save()
        audit_record(actor=actor, action=action, target=provider, changes=changes, secret_fields=SECRET_FIELDS)
    return provider


def provider_set_status(*, actor: Actor, provider: IntegrationProvider, status: str) -> IntegrationProvider:
    return provider_update(actor=actor, provider=provider, data={"status": status}, action="provider.status_changed")


def provider_set_audience(*, actor: Actor, provider: IntegrationProvider, audience: str) -> IntegrationProvider:
    return provider_update(
        actor=actor, provider=provider, data={"audience": audience}, action="provider.audience_changed"
    )


@transaction.atomic
def provider_delete(*, actor: Actor, provider: IntegrationProvider) -> None:
    """Hard delete, refused (409) while live integrations use the provider; disable it instead."""
    provider = IntegrationProvider.objects.select_for_update().get(pk=provider.pk)
    live = provider.integrations.filter(deleted_at__isnull=True).count()
    if live:
        raise ConflictError(
            f"The provider '{provider.slug}' has {live} live integration(s); disable it instead of deleting.",
            details={"live_integrations": live},
        )
    audit_record(actor=actor, action="provider.deleted", target=provider)
    # Soft-deleted integrations keep their history; they protect the row, so they go too.
    provider.integrations.all().delete()
    provider.delete()
