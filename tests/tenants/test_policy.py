"""The effective policy of a tenant: its own values, else the platform settings, resolved in one place."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from audit.services import SYSTEM
from tenants import services
from tenants.choices import POLICY_BOUNDS, POLICY_FIELDS
from tenants.models import TenantPolicy
from tenants.selectors import PLATFORM_SETTINGS, effective_policies, effective_policy, platform_policy
from tests.tenants.factories import TenantFactory

PLATFORM = {
    "HEALTH_FAILURE_THRESHOLD": 3, "HEALTH_LATENCY_BUDGET_MS": 2000, "FAILURE_WARNING_AFTER": 20,
    "AUTO_DISABLE_AFTER": 30, "AUTO_DISABLE_MIN_HOURS": 24, "HEALTH_CHECK_INTERVAL_SECONDS": 60,
    "INTEGRATION_TIMEOUT_SECONDS": 10, "INTEGRATION_RETRY_COUNT": 3,
}


@pytest.fixture(autouse=True)
def platform(settings):
    for name, value in PLATFORM.items():
        setattr(settings, name, value)


def test_every_policy_field_has_a_platform_setting_and_bounds():
    assert tuple(PLATFORM_SETTINGS) == POLICY_FIELDS == tuple(POLICY_BOUNDS)
    assert set(PLATFORM_SETTINGS.values()) == set(PLATFORM)


def test_the_platform_defaults_are_the_documented_ones(settings):
    from integrations_site.settings import base

    assert {name: getattr(base, name) for name in PLATFORM} == PLATFORM


def test_a_tenant_without_a_policy_inherits_every_setting(tenant, settings):
    settings.HEALTH_FAILURE_THRESHOLD = 7

    policy = effective_policy(tenant)

    assert policy == platform_policy()
    assert policy.health_failure_threshold == 7
    assert policy.inherited == POLICY_FIELDS


def test_a_set_field_wins_and_only_the_others_are_inherited(tenant, settings):
    TenantPolicy.objects.create(tenant=tenant, health_failure_threshold=5, auto_disable_after=0)
    settings.HEALTH_FAILURE_THRESHOLD = 9

    policy = effective_policy(tenant.pk)

    assert (policy.health_failure_threshold, policy.auto_disable_after) == (5, 0)  # 0 is a value, not "unset"
    assert policy.failure_warning_after == 20 and policy.default_timeout_seconds == 10
    assert set(policy.inherited) == set(POLICY_FIELDS) - {"health_failure_threshold", "auto_disable_after"}


def test_many_tenants_are_resolved_in_one_query_each_independently(tenant, other_tenant):
    TenantPolicy.objects.create(tenant=tenant, health_latency_budget_ms=100)
    quiet = TenantFactory()

    with CaptureQueriesContext(connection) as queries:
        policies = effective_policies([tenant.pk, other_tenant.pk, quiet.pk, tenant.pk])

    assert len(queries) == 1
    assert policies[tenant.pk].health_latency_budget_ms == 100
    assert policies[other_tenant.pk] == policies[quiet.pk] == platform_policy()


def test_no_tenant_costs_no_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert effective_policies([]) == {}


def test_an_update_stores_audits_before_and_after_and_null_goes_back_to_inherited(tenant):
    policy = services.tenant_policy_update(
        actor=SYSTEM, tenant=tenant, data={"health_failure_threshold": 4, "default_retry_count": 0}
    )
    assert (policy.health_failure_threshold, policy.default_retry_count) == (4, 0)

    policy = services.tenant_policy_update(
        actor=SYSTEM, tenant=tenant, data={"health_failure_threshold": None, "default_retry_count": 0}
    )

    assert policy.health_failure_threshold == 3 and "health_failure_threshold" in policy.inherited
    assert "default_retry_count" not in policy.inherited
    events = list(AuditEvent.objects.filter(action="tenant.policy_updated").order_by("created_at"))
    assert [e.changes for e in events] == [
        {"health_failure_threshold": {"from": None, "to": 4}, "default_retry_count": {"from": None, "to": 0}},
        {"health_failure_threshold": {"from": 4, "to": None}},
    ]
    assert all(e.tenant_id == tenant.pk and e.target_id == str(tenant.pk) for e in events)


def test_an_update_that_changes_nothing_writes_nothing(tenant):
    services.tenant_policy_update(actor=SYSTEM, tenant=tenant, data={"auto_disable_after": None})
    assert not TenantPolicy.objects.exists()

    services.tenant_policy_update(actor=SYSTEM, tenant=tenant, data={"auto_disable_after": 5})
    services.tenant_policy_update(actor=SYSTEM, tenant=tenant, data={"auto_disable_after": 5})

    assert AuditEvent.objects.filter(action="tenant.policy_updated").count() == 1


def test_one_tenants_policy_leaves_the_others_alone(tenant, other_tenant):
    services.tenant_policy_update(actor=SYSTEM, tenant=tenant, data={"failure_warning_after": 2})

    assert effective_policy(tenant).failure_warning_after == 2
    assert effective_policy(other_tenant) == platform_policy()
