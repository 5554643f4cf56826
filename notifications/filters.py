import django_filters

from integrations_site.api.filters import UtcIsoDateTimeFilter

from .choices import DeliveryStatus, NotificationType
from .models import NotificationDelivery, NotificationEndpoint


class NotificationEndpointFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(field_name="url", lookup_expr="icontains")

    class Meta:
        model = NotificationEndpoint
        fields = ["active"]


class NotificationDeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    type = django_filters.ChoiceFilter(choices=NotificationType.choices)
    endpoint = django_filters.UUIDFilter(field_name="endpoint_id")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = NotificationDelivery
        fields = ["status", "type", "endpoint"]
