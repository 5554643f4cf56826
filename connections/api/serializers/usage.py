"""Usage against limits, and daily usage."""
from rest_framework import serializers

from ...models import UsageDaily
from ...services.usage import default_range


class UsedLimitSerializer(serializers.Serializer):
    used = serializers.JSONField(help_text="A number (budget: a decimal string).")
    limit = serializers.JSONField(allow_null=True)


class LimitsSerializer(serializers.Serializer):
    budget_percent = serializers.FloatField(allow_null=True)
    token_percent = serializers.FloatField(allow_null=True)
    rate_percent = serializers.FloatField(allow_null=True)
    budget = UsedLimitSerializer()
    tokens = UsedLimitSerializer()
    rate = UsedLimitSerializer()


class UsageQuerySerializer(serializers.Serializer):
    # "from" is a Python keyword: the field is renamed in __init__.
    to = serializers.DateField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from"] = serializers.DateField(required=False)

    def validate(self, attrs):
        start, end = default_range()
        start, end = attrs.get("from", start), attrs.get("to", end)
        if start > end:
            raise serializers.ValidationError({"from": ["Must not be after 'to'."]})
        if (end - start).days > 366:
            raise serializers.ValidationError({"from": ["The range may span at most 366 days."]})
        return {"start": start, "end": end}


class UsageDaySerializer(serializers.ModelSerializer):
    class Meta:
        model = UsageDaily
        fields = ["date", "requests", "errors", "webhooks", "tokens", "cost"]
        read_only_fields = fields


class UsageSerializer(serializers.Serializer):
    integration_id = serializers.UUIDField()
    to = serializers.DateField()
    days = UsageDaySerializer(many=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from"] = serializers.DateField()
