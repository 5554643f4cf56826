import django_filters
from django.db.models import Q

from integrations_site.api.filters import UtcIsoDateTimeFilter

from .models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(help_text="Exact action, or a prefix ending in '.' (e.g. 'integration.').",
                                       method="filter_action")
    actor = django_filters.CharFilter(lookup_expr="icontains")
    target = django_filters.CharFilter(
        method="filter_target", help_text="Target id, or a type like 'connections.integration'."
    )
    target_type = django_filters.CharFilter()
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = ["outcome", "request_id"]

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)

    def filter_target(self, queryset, name, value):
        return queryset.filter(Q(target_id=value) | Q(target_type=value))


class AdminAuditEventFilter(AuditEventFilter):
    tenant = django_filters.UUIDFilter(field_name="tenant_id")

    class Meta(AuditEventFilter.Meta):
        fields = AuditEventFilter.Meta.fields
