import django_filters
from django.db import models
from django.db.models import Q

from integrations_site.api.filters import UtcIsoDateTimeFilter

from .models import ConfigVersion, ConnectionCheck, ExternalStatus, Integration, StatusChange


class IntegrationFilter(django_filters.FilterSet):
    provider = django_filters.CharFilter(field_name="provider__slug", help_text="Provider slug.")
    search = django_filters.CharFilter(method="filter_search", help_text="Name or description.")

    class Meta:
        model = Integration
        fields = ["status", "health_state", "environment", "update_method", "user_scoped"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))


class ConfigVersionFilter(django_filters.FilterSet):
    class Meta:
        model = ConfigVersion
        fields = {"created_at": ["gte", "lte"]}
        filter_overrides = {models.DateTimeField: {"filter_class": UtcIsoDateTimeFilter}}


class ConnectionCheckFilter(django_filters.FilterSet):
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = ConnectionCheck
        fields = ["kind", "success", "state", "error_code"]


class ExternalStatusFilter(django_filters.FilterSet):
    changed_since = UtcIsoDateTimeFilter(field_name="last_changed_at", lookup_expr="gte")
    search = django_filters.CharFilter(field_name="external_id", lookup_expr="icontains")

    class Meta:
        model = ExternalStatus
        fields = ["canonical_status", "is_unknown", "raw_status"]


class StatusChangeFilter(django_filters.FilterSet):
    changed_since = UtcIsoDateTimeFilter(field_name="changed_at", lookup_expr="gte")
    external_id = django_filters.CharFilter()

    class Meta:
        model = StatusChange
        fields = ["new_canonical", "old_canonical"]
