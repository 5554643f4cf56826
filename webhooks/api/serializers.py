import base64
import re

from rest_framework import serializers

from integrations_site.api.serializers import StrictFieldsMixin

from .. import signatures
from ..choices import MAX_BODY_BYTES_LIMIT, MAX_GRACE_SECONDS
from ..models import WebhookEndpoint, WebhookEvent

PATH_RE = re.compile(r"^[A-Za-z0-9_-]{8,100}$")


def validate_secret_for_scheme(secret: str, scheme: str) -> str:
    problem = signatures.secret_problem(scheme, secret)
    if problem:
        raise serializers.ValidationError(problem)
    return secret


class WebhookEndpointSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    integration = serializers.UUIDField(source="integration_id", help_text="The integration's id; set at creation.")
    path = serializers.CharField(required=False, help_text="URL-safe, 8-100 characters; random (128 bits) if blank.")
    secret = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False,
        help_text="Generated in the scheme's usual form when blank. Shown only in the create answer.",
    )
    url = serializers.CharField(source="url_path", read_only=True)
    max_body_bytes = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BODY_BYTES_LIMIT)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "integration", "name", "description", "path", "url", "secret", "signature_scheme",
            "signature_header", "verify_signature", "tolerance_seconds", "max_body_bytes", "dedupe",
            "rate_limit_per_minute", "active", "previous_secret_expires_at", "secret_rotated_at",
            "signature_failures", "created_at", "updated_at",
        ]
        read_only_fields = [
            "id", "previous_secret_expires_at", "secret_rotated_at", "signature_failures", "created_at", "updated_at",
        ]

    def validate_path(self, value):
        if value and not PATH_RE.match(value):
            raise serializers.ValidationError("Use 8 to 100 letters, digits, '-' or '_'.")
        return value

    def validate_signature_header(self, value):
        if value and not re.match(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,99}$", value):
            raise serializers.ValidationError("Must be an HTTP header name.")
        return value

    def validate(self, attrs):
        if self.instance is not None:
            if "integration_id" in attrs and attrs["integration_id"] != self.instance.integration_id:
                raise serializers.ValidationError({"integration": ["The integration of an endpoint cannot change."]})
            if "secret" in attrs:
                raise serializers.ValidationError({"secret": ["Use POST …/rotate-secret to change the secret."]})
            attrs.pop("integration_id", None)
        elif "integration_id" not in attrs:
            raise serializers.ValidationError({"integration": ["This field is required."]})
        if attrs.get("secret"):
            scheme = attrs.get("signature_scheme") or (self.instance.signature_scheme if self.instance else "")
            try:
                validate_secret_for_scheme(attrs["secret"], scheme)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"secret": exc.detail}) from None
        return attrs


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret. Shown once; store it now.")


class RotateSecretSerializer(StrictFieldsMixin, serializers.Serializer):
    secret = serializers.CharField(required=False, trim_whitespace=False,
                                   help_text="The new secret; generated when omitted.")
    grace_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_GRACE_SECONDS,
        help_text="How long the old secret keeps verifying (default 86400; 0 = refuse it at once).",
    )

    def validate_secret(self, value):
        return validate_secret_for_scheme(value, self.context.get("scheme", ""))


class RotatedSecretSerializer(serializers.Serializer):
    secret = serializers.CharField()
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class WebhookEventSerializer(serializers.ModelSerializer):
    endpoint = serializers.UUIDField(source="endpoint_id", read_only=True)
    integration = serializers.UUIDField(source="endpoint.integration_id", read_only=True)
    size = serializers.IntegerField(source="body_size", read_only=True, help_text="Body size in bytes.")

    class Meta:
        model = WebhookEvent
        fields = [
            "id", "endpoint", "integration", "status", "attempts", "last_error", "received_at", "processed_at",
            "next_attempt_at", "dedupe_key", "content_type", "source_ip", "size",
        ]
        read_only_fields = fields


class WebhookEventDetailSerializer(WebhookEventSerializer):
    body = serializers.SerializerMethodField()
    body_encoding = serializers.SerializerMethodField()

    class Meta(WebhookEventSerializer.Meta):
        fields = WebhookEventSerializer.Meta.fields + ["headers", "body", "body_encoding", "result"]
        read_only_fields = fields

    def _decoded(self, obj):
        raw = bytes(obj.body)
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode(), "base64"

    def get_body(self, obj) -> str:
        return self._decoded(obj)[0]

    def get_body_encoding(self, obj) -> str:
        return self._decoded(obj)[1]
