import django_filters
from django.db.models import Q

from .models import IntegrationProvider


class ProviderFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", help_text="Name, display name, slug or description.")

    class Meta:
        model = IntegrationProvider
        fields = ["category", "status", "audience", "auth_type", "is_premium"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(display_name__icontains=value) | Q(slug__icontains=value)
            | Q(description__icontains=value)
        )


class CatalogFilter(ProviderFilter):
    class Meta(ProviderFilter.Meta):
        fields = ["category", "auth_type", "is_premium", "status"]
