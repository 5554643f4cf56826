"""Fixtures of the service tests: a tenant admin acting, an integration made through the service, and one
with status mappings of its own and of its provider."""
import pytest

from audit.services import Actor
from connections import services
from tests.conftest import make_user


@pytest.fixture
def actor(tenant):
    return Actor(user=make_user("tenant_admin", tenant, "svc-admin"))


@pytest.fixture
def made(actor, tenant, provider):
    return services.integration_create(actor=actor, tenant=tenant, provider=provider, data={"name": "Svc"})


@pytest.fixture
def mapped(integration):
    integration.provider.default_status_mapping = {"available": ["open", "Free"], "sold": ["gone"]}
    integration.provider.save(update_fields=["default_status_mapping"])
    integration.status_mapping = {"hold": ["open"], "reserved": ["held-for-you"]}
    return integration
