"""Search across connected systems: the questions (query string or body) and the answers."""
from django.core.validators import RegexValidator
from rest_framework import serializers

from catalog.validators import PARAM_NAME
from integrations_site.api.serializers import StrictFieldsMixin

from .checks import CheckErrorSerializer

MAX_LIMIT = 50
MAX_ENTITIES = 20
ENTITY_NAME = RegexValidator(PARAM_NAME, "Not an entity name (1-64 letters, digits, _ . - [ ]).")


def entity_list(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(max_length=64, validators=[ENTITY_NAME]),
                                 max_length=MAX_ENTITIES, **kwargs)


def _entities(value: list[str]) -> list[str]:
    if len(value) > MAX_ENTITIES:
        raise serializers.ValidationError(f"At most {MAX_ENTITIES} entities.")
    for entity in value:
        if not PARAM_NAME.match(entity):
            raise serializers.ValidationError(f"{entity!r} is not an entity name (letters, digits, _ . - [ ]).")
    return list(dict.fromkeys(value))


class SearchQuerySerializer(serializers.Serializer):
    """``GET /integrations/{id}/search``: ``?query=…&entities=a,b&limit=10&offset=0``."""

    query = serializers.CharField(min_length=1, max_length=256, trim_whitespace=True)
    entities = serializers.CharField(required=False, allow_blank=True, default="", max_length=1300,
                                     validators=[RegexValidator(r"^[A-Za-z0-9_.\-\[\], ]*$")],
                                     help_text="Comma-separated entity names (at most 20).")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=10)
    offset = serializers.IntegerField(min_value=0, max_value=10_000, default=0)

    def validate_entities(self, value):
        return _entities([part.strip() for part in value.split(",") if part.strip()])


class DateRangeSerializer(StrictFieldsMixin, serializers.Serializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"end": ["Must not be before start."]})
        return attrs


class SearchFiltersSerializer(StrictFieldsMixin, serializers.Serializer):
    date_range = DateRangeSerializer(required=False)
    entity_types = entity_list(required=False)
    custom_filters = serializers.DictField(required=False, help_text="Sent to each upstream as query parameters.")

    def validate_entity_types(self, value):
        return _entities(value)

    def validate_custom_filters(self, value):
        if len(value) > 20:
            raise serializers.ValidationError("At most 20 filters.")
        for name, item in value.items():
            if not PARAM_NAME.match(name):
                raise serializers.ValidationError(f"{name!r} is not a parameter name.")
            if not isinstance(item, str | int | float | bool) or len(str(item)) > 256:
                raise serializers.ValidationError(f"{name}: a string, number or boolean of at most 256 characters.")
        return value


class GlobalSearchSerializer(StrictFieldsMixin, serializers.Serializer):
    """``POST /search``."""

    query = serializers.CharField(min_length=1, max_length=256, trim_whitespace=True)
    integrations = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=100,
                                         help_text="Only these integrations (default: every searchable one).")
    entities = entity_list(required=False)
    filters = SearchFiltersSerializer(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=10, help_text="Per integration.")
    offset = serializers.IntegerField(min_value=0, max_value=10_000, default=0)

    def validate_entities(self, value):
        return _entities(value)


class SearchItemSerializer(serializers.Serializer):
    integration_id = serializers.UUIDField()
    integration_name = serializers.CharField()
    provider = serializers.CharField()
    entity = serializers.CharField(allow_null=True)
    id = serializers.CharField()
    title = serializers.CharField(allow_null=True)
    snippet = serializers.CharField(allow_null=True)
    url = serializers.CharField(allow_null=True)
    score = serializers.FloatField(allow_null=True)
    updated_at = serializers.CharField(allow_null=True, help_text="As the upstream wrote it.")
    data = serializers.JSONField(help_text="The upstream item, at most 4 KB.")


class SearchAnswerSerializer(serializers.Serializer):
    results = SearchItemSerializer(many=True)
    total = serializers.IntegerField()
    took = serializers.IntegerField(help_text="Milliseconds.")
    has_more = serializers.BooleanField()
    errors = serializers.DictField(child=CheckErrorSerializer(), help_text="Integration id → what went wrong.")


class GlobalSearchAnswerSerializer(SearchAnswerSerializer):
    by_integration = serializers.DictField(child=SearchItemSerializer(many=True))
    by_entity = serializers.DictField(child=SearchItemSerializer(many=True))


class WidgetDataQuerySerializer(serializers.Serializer):
    """``GET /integrations/{id}/widgets/data``: the entity, its declared fields and filter params only.

    ``context["entities"]`` is the provider's ``entity_config``."""

    entity = serializers.CharField(max_length=64)
    fields = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000,
                                   help_text="Comma-separated declared fields (default: all of them).")
    filters = serializers.JSONField(required=False, default=dict,
                                    help_text='A JSON object of the entity\'s filter params, e.g. {"status": "open"}.')
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)

    def validate(self, attrs):
        config = (self.context.get("entities") or {}).get(attrs["entity"])
        if not isinstance(config, dict):
            known = ", ".join(sorted(self.context.get("entities") or {})) or "none"
            raise serializers.ValidationError({"entity": [f"Unknown entity. This integration has: {known}."]})
        declared = list(config.get("fields") or [])
        asked = [name.strip() for name in attrs["fields"].split(",") if name.strip()] or declared
        unknown = [name for name in asked if name not in declared]
        if unknown:
            raise serializers.ValidationError({"fields": [f"Not declared for {attrs['entity']}: "
                                                          f"{', '.join(unknown)}. Declared: {', '.join(declared)}."]})
        filters = attrs["filters"]
        if not isinstance(filters, dict):
            raise serializers.ValidationError({"filters": ["Must be a JSON object."]})
        allowed = set(config.get("filter_params") or [])
        refused = sorted(set(filters) - allowed)
        if refused:
            raise serializers.ValidationError({"filters": [f"Not a filter of {attrs['entity']}: {', '.join(refused)}."
                                                           f" Allowed: {', '.join(sorted(allowed)) or 'none'}."]})
        for name, value in filters.items():
            if not isinstance(value, str | int | float | bool) or len(str(value)) > 256:
                raise serializers.ValidationError({"filters": [f"{name}: a string, number or boolean."]})
        return {**attrs, "fields": list(dict.fromkeys(asked))}


class WidgetDataSerializer(serializers.Serializer):
    data = serializers.ListField(child=serializers.DictField())
    total = serializers.IntegerField()
    entity = serializers.CharField()
    fetched_at = serializers.DateTimeField()
    cached = serializers.BooleanField()
