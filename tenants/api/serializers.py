import re

from django.contrib.auth import authenticate
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.tokens import RefreshToken

from integrations_site.api.serializers import StrictFieldsMixin

from ..authentication import TENANT_CLAIM, context_for_user, is_super_admin
from ..choices import POLICY_BOUNDS, POLICY_FIELDS, Role
from ..models import ApiKey, Tenant

LABEL = r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*(:\d{{1,5}})?$")


class TokenObtainSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    tenant = serializers.SlugField(required=False, allow_blank=True, help_text="Tenant slug; super admins may omit it.")

    def validate(self, attrs):
        user = authenticate(self.context.get("request"), username=attrs["username"], password=attrs["password"])
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Invalid username or password.")
        slug = attrs.get("tenant") or None
        if slug is None and not is_super_admin(user):
            raise serializers.ValidationError({"tenant": ["This field is required."]})
        ctx = context_for_user(user, tenant_slug=slug) if slug else context_for_user(user)
        refresh = RefreshToken.for_user(user)
        if ctx.tenant is not None:
            refresh[TENANT_CLAIM] = str(ctx.tenant.pk)
        refresh["role"] = ctx.role
        return {"access": str(refresh.access_token), "refresh": str(refresh)}


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class AllowedHostsField(serializers.ListField):
    child = serializers.CharField(max_length=260)

    def to_internal_value(self, data):
        hosts = super().to_internal_value(data)
        cleaned = []
        for host in hosts:
            value = host.strip().lower()
            if not HOSTNAME.match(value):
                raise serializers.ValidationError(
                    f"'{host}' is not a host name (give a bare host like 'app.example.com', no scheme or path)."
                )
            if value not in cleaned:
                cleaned.append(value)
        return cleaned


class TenantSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    allowed_return_hosts = AllowedHostsField(required=False)

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "plan", "is_active", "allowed_return_hosts", "created_at", "updated_at"]
        read_only_fields = ["id", "slug", "plan", "is_active", "created_at", "updated_at"]


class AdminTenantSerializer(TenantSerializer):
    class Meta(TenantSerializer.Meta):
        read_only_fields = ["id", "created_at", "updated_at"]
        # A taken slug is a 409 CONFLICT from the service, as for providers.
        extra_kwargs = {"slug": {"validators": []}}


class ApiKeySerializer(StrictFieldsMixin, serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    display = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(source="is_usable", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "role", "display", "prefix", "last4", "expires_at", "revoked_at",
            "last_used_at", "is_active", "created_at",
        ]
        read_only_fields = ["id", "prefix", "last4", "revoked_at", "last_used_at", "created_at"]

    def validate_expires_at(self, value):
        from django.utils import timezone

        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]


POLICY_HELP = {
    "health_failure_threshold": "Failed checks in a row before an integration is unhealthy.",
    "health_latency_budget_ms": "A successful check slower than this (milliseconds) is degraded.",
    "failure_warning_after": "Failed checks in a row before the tenant is warned, once per failing streak; 0: never.",
    "auto_disable_after": "Failed checks in a row before the integration is disabled (auto_disabled); 0: never.",
    "auto_disable_min_hours": "…and only once it has been failing at least this many hours.",
    "default_check_interval_seconds": "Seconds between scheduled checks of an integration without its own interval.",
    "default_timeout_seconds": "The timeout a new integration gets when its create request leaves it out.",
    "default_retry_count": "The retries a new integration gets when its create request leaves them out.",
}


def _policy_value(name: str, *, writable: bool) -> serializers.IntegerField:
    low, high = POLICY_BOUNDS[name]
    if writable:
        return serializers.IntegerField(min_value=low, max_value=high, required=False, allow_null=True,
                                        help_text=f"{POLICY_HELP[name]} null: inherit the platform setting.")
    return serializers.IntegerField(help_text=POLICY_HELP[name])  # a platform setting need not keep the bounds


class _PolicyFieldsMixin:
    """The eight policy fields, one per POLICY_FIELDS name, read-only or writable (``policy_writable``)."""

    policy_writable = False

    def get_fields(self):
        fields = {name: _policy_value(name, writable=self.policy_writable) for name in POLICY_FIELDS}
        fields.update(super().get_fields())
        return fields


class TenantPolicyUpdateSerializer(StrictFieldsMixin, _PolicyFieldsMixin, serializers.Serializer):
    """A change to the tenant's policy: any of its fields, each within its bounds or null (inherited)."""

    policy_writable = True


class TenantPolicySerializer(_PolicyFieldsMixin, serializers.Serializer):
    """The tenant's effective policy (``tenants.selectors.Policy``): every value, and which are inherited."""

    inherited = serializers.ListField(
        child=serializers.ChoiceField(choices=POLICY_FIELDS),
        help_text="The fields this tenant has not set: their values are the platform settings.",
    )
