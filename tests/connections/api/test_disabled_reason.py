"""Why an integration is disabled, in its answer: read-only, ``auto_disabled`` after a failing streak,
``manual`` when a person disabled it, cleared when a person enables it again; the tenant policy's request
defaults in the create answer."""
import pytest

from connections.models import Integration
from connections.services import checks_record
from connections.services.probes import ProbeResult
from tenants.models import TenantPolicy
from tests.helpers import assert_error

URL = "/api/v1/integrations/"
FAIL = ProbeResult(success=False, status_code=503, latency_ms=5, error_code="UNEXPECTED_STATUS",
                   error_message="The API answered 503.")


@pytest.fixture
def api(client_for):
    return client_for("tenant_admin")


@pytest.fixture
def auto_disabled(integration, tenant):
    TenantPolicy.objects.create(tenant=tenant, auto_disable_after=2, auto_disable_min_hours=0)
    for _ in range(2):
        checks_record(results={integration.pk: FAIL}, kind="health")
    return integration


def test_the_detail_the_list_and_the_health_show_an_auto_disabled_integration(api, auto_disabled):
    body = api.get(f"{URL}{auto_disabled.pk}/").json()
    assert (body["status"], body["disabled_reason"], body["consecutive_failures"]) == ("disabled", "auto_disabled", 2)
    listed = api.get(URL).json()["results"]
    assert [(r["id"], r["disabled_reason"]) for r in listed] == [(str(auto_disabled.pk), "auto_disabled")]
    health = api.get(f"{URL}{auto_disabled.pk}/health").json()
    assert health["failing_since"] is not None and health["consecutive_failures"] == 2


def test_enabling_through_the_api_clears_the_reason(api, auto_disabled):
    body = api.post(f"{URL}{auto_disabled.pk}/enable").json()

    assert (body["status"], body["disabled_reason"]) == ("pending", "")
    assert api.get(f"{URL}{auto_disabled.pk}/health").json()["failing_since"] is None


def test_disabling_through_the_api_is_manual(api, integration):
    body = api.post(f"{URL}{integration.pk}/disable").json()
    assert (body["status"], body["disabled_reason"]) == ("disabled", "manual")


def test_a_live_integration_has_no_reason(api, integration):
    assert api.get(f"{URL}{integration.pk}/").json()["disabled_reason"] == ""


def test_the_reason_is_read_only(api, integration):
    assert_error(api.patch(f"{URL}{integration.pk}/", {"disabled_reason": "manual"}, format="json"), 400,
                 "VALIDATION_ERROR", field="disabled_reason")
    assert Integration.objects.get(pk=integration.pk).disabled_reason == ""


def test_create_takes_the_tenants_request_defaults_when_left_out(api, tenant, provider):
    TenantPolicy.objects.create(tenant=tenant, default_timeout_seconds=30, default_retry_count=1)

    implicit = api.post(URL, {"provider": provider.slug, "name": "Implicit"}, format="json").json()
    explicit = api.post(URL, {"provider": provider.slug, "name": "Explicit", "timeout_seconds": 3,
                              "retry_count": 0}, format="json").json()

    assert (implicit["timeout_seconds"], implicit["retry_count"]) == (30, 1)
    assert (explicit["timeout_seconds"], explicit["retry_count"]) == (3, 0)
