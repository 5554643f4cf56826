import django_filters

from integrations_site.api.filters import UtcIsoDateTimeFilter

from .models import WebhookEndpoint, WebhookEvent


class WebhookEndpointFilter(django_filters.FilterSet):
    integration = django_filters.UUIDFilter(field_name="integration_id")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = WebhookEndpoint
        fields = ["active", "signature_scheme"]


class WebhookEventFilter(django_filters.FilterSet):
    endpoint = django_filters.UUIDFilter(field_name="endpoint_id")
    integration = django_filters.UUIDFilter(field_name="endpoint__integration_id")
    received_after = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="lte")

    class Meta:
        model = WebhookEvent
        fields = ["status"]
