"""Reads that more than one view needs."""
from django.db.models import Prefetch

from .models import Credential, Integration


def integration_list_queryset():
    """Live integrations with provider and tenant-wide credential loaded (no N+1)."""
    return (
        Integration.objects.live()
        .select_related("provider")
        .prefetch_related(
            Prefetch("credentials", queryset=Credential.objects.filter(user__isnull=True), to_attr="tenant_credentials")
        )
    )


def tenant_credential_of(integration: Integration) -> Credential | None:
    return Credential.objects.filter(integration=integration, user__isnull=True).first()
