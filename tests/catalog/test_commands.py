"""seed_catalog: the real-world provider catalog, alone and idempotent (the production one-shot)."""
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from audit.models import AuditEvent
from catalog.choices import CanonicalStatus
from catalog.management.commands.seed_catalog import PROVIDERS
from catalog.models import IntegrationProvider
from tenants.models import Tenant
from tests.catalog.factories import ProviderFactory

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_catalog", stdout=out)
    return out.getvalue()


def test_the_catalog_is_written_once_through_the_service_and_nothing_else():
    first = seed()
    again = seed()

    slugs = set(IntegrationProvider.objects.values_list("slug", flat=True))
    assert slugs == {p["slug"] for p in PROVIDERS}
    assert f"{len(PROVIDERS)} new provider(s)" in first and "0 new provider(s)" in again
    assert f"catalog has {len(PROVIDERS)}" in again
    assert AuditEvent.objects.filter(action="provider.created", actor="system").count() == len(PROVIDERS)
    assert not Tenant.objects.exists() and not get_user_model().objects.exists()
    for provider in IntegrationProvider.objects.all():
        provider.full_clean()
        assert (provider.status, provider.audience) == ("active", "tenant")
    assert set(IntegrationProvider.objects.get(slug="generic-rest").default_status_mapping) == set(
        CanonicalStatus.values
    )


def test_a_provider_that_exists_is_left_as_it_is():
    ProviderFactory(slug="stripe", name="Our Stripe", status="disabled")

    output = seed()

    stripe = IntegrationProvider.objects.get(slug="stripe")
    assert (stripe.name, stripe.status) == ("Our Stripe", "disabled")
    assert f"{len(PROVIDERS) - 1} new provider(s)" in output
