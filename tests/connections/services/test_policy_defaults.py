"""The tenant policy's request defaults: what a new integration gets when its create request leaves them out,
and the check interval of an integration without its own (the dispatcher's)."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import Integration
from connections.services import check_interval, integration_create, schedule
from tenants.models import TenantPolicy
from tenants.selectors import effective_policy
from tests.connections.factories import IntegrationFactory
from tests.tenants.factories import TenantFactory


@pytest.fixture(autouse=True)
def platform(settings):
    settings.HEALTH_CHECK_INTERVAL_SECONDS, settings.INTEGRATION_TIMEOUT_SECONDS = 60, 10
    settings.INTEGRATION_RETRY_COUNT = 3


def test_a_new_integration_takes_the_tenants_timeout_and_retries_when_left_out(actor, tenant, provider):
    TenantPolicy.objects.create(tenant=tenant, default_timeout_seconds=25, default_retry_count=0)

    made = integration_create(actor=actor, tenant=tenant, provider=provider, data={"name": "Defaults"})

    assert (made.timeout_seconds, made.retry_count, made.health_check_interval_seconds) == (25, 0, None)
    assert made.versions.get().snapshot["timeout_seconds"] == 25


def test_explicit_values_of_the_create_request_are_kept(actor, tenant, provider):
    TenantPolicy.objects.create(tenant=tenant, default_timeout_seconds=25, default_retry_count=0)

    made = integration_create(actor=actor, tenant=tenant, provider=provider,
                              data={"name": "Own", "timeout_seconds": 5, "retry_count": 2})

    assert (made.timeout_seconds, made.retry_count) == (5, 2)


def test_without_a_policy_a_new_integration_gets_the_platform_settings(actor, tenant, provider, settings):
    settings.INTEGRATION_TIMEOUT_SECONDS, settings.INTEGRATION_RETRY_COUNT = 12, 1

    made = integration_create(actor=actor, tenant=tenant, provider=provider, data={"name": "Platform"})

    assert (made.timeout_seconds, made.retry_count) == (12, 1)


def test_changing_the_policy_later_leaves_existing_integrations_values_alone(actor, tenant, provider):
    made = integration_create(actor=actor, tenant=tenant, provider=provider, data={"name": "Before"})
    TenantPolicy.objects.create(tenant=tenant, default_timeout_seconds=40)

    assert Integration.objects.get(pk=made.pk).timeout_seconds == 10


def test_the_check_interval_is_the_integrations_own_else_its_tenants_default(tenant, other_tenant, provider):
    TenantPolicy.objects.create(tenant=tenant, default_check_interval_seconds=300)
    own = IntegrationFactory(tenant=tenant, provider=provider, health_check_interval_seconds=30)
    inherits = IntegrationFactory(tenant=tenant, provider=provider)
    elsewhere = IntegrationFactory(tenant=other_tenant, provider=provider)

    assert [check_interval(i) for i in (own, inherits, elsewhere)] == [30, 300, 60]
    assert check_interval(inherits, effective_policy(other_tenant)) == 60  # a policy handed in is used as is


def dispatched(now) -> dict:
    schedule.health_checks_dispatch(now=now)
    return {i.name: (i.next_check_at - now) for i in Integration.objects.all()}


def test_the_dispatcher_moves_each_row_by_its_own_or_its_tenants_interval(tenant, other_tenant, provider,
                                                                         sent_tasks):
    TenantPolicy.objects.create(tenant=tenant, default_check_interval_seconds=300)
    TenantPolicy.objects.create(tenant=other_tenant, default_check_interval_seconds=1000)
    quiet = TenantFactory()
    IntegrationFactory(tenant=tenant, provider=provider, name="own", health_check_interval_seconds=30)
    IntegrationFactory(tenant=tenant, provider=provider, name="acme")
    IntegrationFactory(tenant=other_tenant, provider=provider, name="globex")
    IntegrationFactory(tenant=quiet, provider=provider, name="platform")
    now = timezone.now()

    later = dispatched(now)

    expected = {"own": 30, "acme": 300, "globex": 1000, "platform": 60}
    for name, seconds in expected.items():
        assert timedelta(seconds=seconds) <= later[name] <= timedelta(seconds=seconds * 1.1), name


def test_the_dispatcher_reads_the_policies_once_per_batch(provider, sent_tasks):
    def claim(n):
        for k in range(n):
            tenant = TenantFactory()
            TenantPolicy.objects.create(tenant=tenant, default_check_interval_seconds=100 + k)
            IntegrationFactory(tenant=tenant, provider=provider, next_check_at=timezone.now() - timedelta(hours=1))
        with CaptureQueriesContext(connection) as queries:
            assert schedule.health_checks_dispatch() == n
        return len(queries)

    assert claim(2) == claim(9)
