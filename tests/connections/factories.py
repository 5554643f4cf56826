import factory

from connections.models import Integration
from tests.catalog.factories import ProviderFactory
from tests.tenants.factories import TenantFactory


class IntegrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Integration

    tenant = factory.SubFactory(TenantFactory)
    provider = factory.SubFactory(ProviderFactory)
    name = factory.Sequence(lambda n: f"Integration {n}")
    api_base_url = "https://api.example.com"
    test_endpoint = "/ping"
