"""A tenant's policy on its admin page: each field with its effective value, the API's bounds (the model's
validators), an empty field inherited, and every change saved through ``tenant_policy_update`` (audited)."""
import re

import pytest

from audit.models import AuditEvent
from tenants.admin import tenant_owned_models
from tenants.choices import POLICY_BOUNDS, POLICY_FIELDS
from tenants.models import Tenant, TenantPolicy
from tenants.selectors import effective_policy

from .test_admin import admin_url, form_data


def change_page(staff_client, tenant):
    return staff_client.get(admin_url(Tenant, "change", tenant.pk))


def save(staff_client, tenant, **policy):
    """Post the tenant's page as shown, with ``policy``'s fields changed ("" empties one)."""
    data = form_data(change_page(staff_client, tenant))
    data.update({f"policy-0-{name}": value for name, value in policy.items()})
    return staff_client.post(admin_url(Tenant, "change", tenant.pk), data)


def help_text(html: str, field: str) -> str:
    """The words of ``field``'s help text on the page (tags stripped)."""
    found = re.search(rf'id="id_policy-0-{field}_helptext">(.*?)</div>\s*</div>', html, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", found[1]).split())


def policy_events(tenant) -> list:
    return list(AuditEvent.objects.filter(action="tenant.policy_updated", tenant=tenant).order_by("created_at"))


def test_the_tenant_page_shows_every_policy_field_with_the_platform_value_it_inherits(staff_client, tenant, settings):
    settings.HEALTH_FAILURE_THRESHOLD = 4
    response = change_page(staff_client, tenant)

    assert response.status_code == 200
    html = response.content.decode()
    for name in POLICY_FIELDS:
        assert f'name="policy-0-{name}"' in html
    assert help_text(html, "health_failure_threshold").endswith("(1–100; empty: the platform setting). "
                                                                 "Effective: 4 (the platform setting).")


def test_a_value_set_in_the_admin_is_stored_audited_and_shown_as_set_here(staff_client, staff, tenant):
    response = save(staff_client, tenant, health_failure_threshold="7", auto_disable_after="0")

    assert response.status_code == 302, response.context and response.context["inline_admin_formsets"][0].formset.errors
    policy = TenantPolicy.objects.get(tenant=tenant)
    assert (policy.health_failure_threshold, policy.auto_disable_after, policy.failure_warning_after) == (7, 0, None)
    [event] = policy_events(tenant)
    assert event.actor_user == staff
    assert event.changes == {"health_failure_threshold": {"from": None, "to": 7},
                             "auto_disable_after": {"from": None, "to": 0}}
    assert effective_policy(tenant).health_failure_threshold == 7
    html = change_page(staff_client, tenant).content.decode()
    assert help_text(html, "health_failure_threshold").endswith("Effective: 7 (set here).")
    assert help_text(html, "failure_warning_after").endswith("(the platform setting).")


def test_emptying_a_field_inherits_the_platform_setting_again(staff_client, tenant, settings):
    save(staff_client, tenant, health_failure_threshold="7")

    response = save(staff_client, tenant, health_failure_threshold="")

    assert response.status_code == 302
    assert TenantPolicy.objects.get(tenant=tenant).health_failure_threshold is None
    assert effective_policy(tenant).health_failure_threshold == settings.HEALTH_FAILURE_THRESHOLD
    assert policy_events(tenant)[-1].changes == {"health_failure_threshold": {"from": 7, "to": None}}


@pytest.mark.parametrize("field", ["health_failure_threshold", "default_timeout_seconds", "auto_disable_min_hours"])
def test_a_value_out_of_the_apis_bounds_is_a_form_error_and_saves_nothing(staff_client, tenant, field):
    low, high = POLICY_BOUNDS[field]
    for value in (high + 1, low - 1):
        response = save(staff_client, tenant, **{field: str(value)})

        assert response.status_code == 200
        [formset] = [inline.formset for inline in response.context["inline_admin_formsets"]
                     if inline.formset.model is TenantPolicy]
        assert field in formset.errors[0], formset.errors
    assert not TenantPolicy.objects.filter(tenant=tenant).exists() and not policy_events(tenant)


def test_saving_the_tenant_page_without_touching_the_policy_writes_no_policy(staff_client, tenant):
    assert save(staff_client, tenant).status_code == 302

    assert not TenantPolicy.objects.filter(tenant=tenant).exists() and not policy_events(tenant)


def test_a_tenant_added_with_a_policy_gets_it_audited(staff_client, staff):
    response = staff_client.post(admin_url(Tenant, "add"), {
        "name": "Initech", "slug": "initech", "plan": "starter", "is_active": "on", "allowed_return_hosts": "[]",
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
        "policy-TOTAL_FORMS": 1, "policy-INITIAL_FORMS": 0, "policy-0-default_retry_count": "5",
    })

    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    assert effective_policy(tenant).default_retry_count == 5
    assert [e.changes for e in policy_events(tenant)] == [{"default_retry_count": {"from": None, "to": 5}}]


def test_the_policy_goes_with_its_tenant():
    assert TenantPolicy in tenant_owned_models()
