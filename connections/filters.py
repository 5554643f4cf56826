import django_filters
from django.db.models import Q

from .models import ConfigVersion, Integration


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
