import factory

from catalog.models import IntegrationProvider


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IntegrationProvider

    slug = factory.Sequence(lambda n: f"provider-{n}")
    name = factory.Sequence(lambda n: f"Provider {n}")
    display_name = factory.LazyAttribute(lambda o: o.name)
    category = "crm"
    status = "active"
    audience = "tenant"
    auth_type = "api_key"
    default_api_base_url = "https://api.example.com"
    default_test_endpoint = "/ping"
