"""GET/PATCH /api/v1/tenant/policy: effective values and what is inherited; tenant admins write; bounds."""
import pytest

from audit.models import AuditEvent
from tenants.choices import POLICY_BOUNDS, POLICY_FIELDS
from tenants.models import TenantPolicy
from tests.helpers import assert_error

URL = "/api/v1/tenant/policy"
PLATFORM = {
    "health_failure_threshold": 3, "health_latency_budget_ms": 2000, "failure_warning_after": 20,
    "auto_disable_after": 30, "auto_disable_min_hours": 24, "default_check_interval_seconds": 60,
    "default_timeout_seconds": 10, "default_retry_count": 3,
}


@pytest.fixture(autouse=True)
def platform(settings):
    settings.HEALTH_FAILURE_THRESHOLD, settings.HEALTH_LATENCY_BUDGET_MS = 3, 2000
    settings.FAILURE_WARNING_AFTER, settings.AUTO_DISABLE_AFTER, settings.AUTO_DISABLE_MIN_HOURS = 20, 30, 24
    settings.HEALTH_CHECK_INTERVAL_SECONDS = 60
    settings.INTEGRATION_TIMEOUT_SECONDS, settings.INTEGRATION_RETRY_COUNT = 10, 3


@pytest.fixture
def admin(client_for):
    return client_for("tenant_admin")


def test_a_tenant_without_a_policy_reads_the_platform_values_all_inherited(admin):
    response = admin.get(URL)

    assert response.status_code == 200
    assert response.json() == {**PLATFORM, "inherited": list(POLICY_FIELDS)}


def test_patch_sets_fields_and_the_answer_says_which_are_still_inherited(admin, tenant):
    response = admin.patch(URL, {"health_failure_threshold": 5, "auto_disable_after": 0}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {**PLATFORM, "health_failure_threshold": 5, "auto_disable_after": 0,
                    "inherited": [f for f in POLICY_FIELDS if f not in ("health_failure_threshold",
                                                                         "auto_disable_after")]}
    assert admin.get(URL).json() == body
    assert TenantPolicy.objects.get(tenant=tenant).health_failure_threshold == 5


def test_null_sets_a_field_back_to_inherited(admin, settings):
    admin.patch(URL, {"default_timeout_seconds": 30, "default_retry_count": 0}, format="json")
    settings.INTEGRATION_TIMEOUT_SECONDS = 15

    body = admin.patch(URL, {"default_timeout_seconds": None}, format="json").json()

    assert body["default_timeout_seconds"] == 15 and "default_timeout_seconds" in body["inherited"]
    assert body["default_retry_count"] == 0 and "default_retry_count" not in body["inherited"]


def test_patch_is_audited_with_before_and_after(admin, tenant):
    admin.patch(URL, {"failure_warning_after": 5}, format="json")
    admin.patch(URL, {"failure_warning_after": 6}, format="json")
    admin.patch(URL, {"failure_warning_after": 6}, format="json")  # no change: no event

    events = AuditEvent.objects.filter(action="tenant.policy_updated").order_by("created_at")
    assert [e.changes for e in events] == [
        {"failure_warning_after": {"from": None, "to": 5}},
        {"failure_warning_after": {"from": 5, "to": 6}},
    ]
    assert {(e.tenant_id, e.actor) for e in events} == {(tenant.pk, "tenant_admin-acme")}


BOUNDS_CASES = [
    (field, value) for field, (low, high) in POLICY_BOUNDS.items() for value in (low - 1, high + 1) if value >= -1
]


@pytest.mark.parametrize(("field", "value"), BOUNDS_CASES, ids=[f"{f}={v}" for f, v in BOUNDS_CASES])
def test_a_value_out_of_bounds_is_400_naming_the_field_and_changes_nothing(admin, field, value):
    assert_error(admin.patch(URL, {field: value}, format="json"), 400, "VALIDATION_ERROR", field=field)
    assert not TenantPolicy.objects.exists()


@pytest.mark.parametrize(("field", "bounds"), POLICY_BOUNDS.items())
def test_the_bounds_themselves_are_accepted(admin, field, bounds):
    for value in bounds:
        assert admin.patch(URL, {field: value}, format="json").json()[field] == value


@pytest.mark.parametrize(
    ("body", "field"),
    [({"health_failure_threshold": "many"}, "health_failure_threshold"), ({"auto_disable_after": 2.5},
     "auto_disable_after"), ({"inherited": []}, "inherited"), ({"threshold": 3}, "threshold"),
     ({"tenant": "globex"}, "tenant")],
)
def test_bad_or_unknown_fields_are_400(admin, body, field):
    assert_error(admin.patch(URL, body, format="json"), 400, "VALIDATION_ERROR", field=field)
    assert not TenantPolicy.objects.exists()


@pytest.mark.parametrize("role", ["integration_manager", "member"])
def test_other_roles_read_but_cannot_write(client_for, role):
    client = client_for(role)
    assert client.get(URL).status_code == 200
    assert_error(client.patch(URL, {"health_failure_threshold": 5}, format="json"), 403, "PERMISSION_DENIED")
    assert not TenantPolicy.objects.exists()


def test_a_super_admin_acting_in_the_tenant_may_write(client_for, tenant):
    response = client_for("super_admin", scoped=True).patch(URL, {"default_retry_count": 1}, format="json")
    assert response.status_code == 200
    assert TenantPolicy.objects.get(tenant=tenant).default_retry_count == 1


def test_a_platform_wide_token_has_no_tenant_policy(client_for):
    assert_error(client_for("super_admin").get(URL), 404, "NOT_FOUND")


def test_anonymous_is_401(client):
    assert_error(client.get(URL), 401, "NOT_AUTHENTICATED")
    assert_error(client.patch(URL, {}, content_type="application/json"), 401, "NOT_AUTHENTICATED")


def test_another_tenants_admin_neither_sees_nor_changes_this_tenants_policy(admin, client_for, tenant,
                                                                           other_tenant):
    admin.patch(URL, {"health_failure_threshold": 9}, format="json")
    theirs = client_for("other_tenant")

    assert theirs.get(URL).json()["health_failure_threshold"] == 3  # their own: inherited
    assert theirs.patch(URL, {"health_failure_threshold": 2}, format="json").status_code == 200

    assert admin.get(URL).json()["health_failure_threshold"] == 9
    assert TenantPolicy.objects.get(tenant=tenant).health_failure_threshold == 9
    assert TenantPolicy.objects.get(tenant=other_tenant).health_failure_threshold == 2


def test_other_methods_are_405(admin):
    for method in ("post", "put", "delete"):
        assert_error(getattr(admin, method)(URL, {}, format="json"), 405, "METHOD_NOT_ALLOWED")


def test_the_trailing_slash_form_answers_too(admin):
    assert admin.get(URL + "/").json()["inherited"] == list(POLICY_FIELDS)
