from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenRefreshView as BaseTokenRefreshView

from integrations_site.api.errors import NotFoundError
from integrations_site.api.viewsets import RoleMappedMixin, TenantScopedViewSet

from .. import services
from ..filters import ApiKeyFilter, TenantFilter
from ..models import ApiKey, Tenant
from ..selectors import effective_policy
from .serializers import (
    AdminTenantSerializer,
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    TenantPolicySerializer,
    TenantPolicyUpdateSerializer,
    TenantSerializer,
    TokenObtainSerializer,
    TokenPairSerializer,
)


class TokenObtainView(APIView):
    """JWT for a user in one tenant (super admins may omit the tenant)."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get_authenticate_header(self, request):
        # Without authenticators DRF turns a failed login into 403; a bad password is a 401.
        return 'Bearer realm="api"'

    @extend_schema(request=TokenObtainSerializer, responses={200: TokenPairSerializer}, auth=[])
    def post(self, request):
        serializer = TokenObtainSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


class TokenRefreshView(BaseTokenRefreshView):
    authentication_classes = []

    @extend_schema(auth=[])
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class OwnTenantMixin(RoleMappedMixin):
    """A view of the caller's own tenant: every tenant role reads it, tenant admins change it."""

    permission_map = {"get": "tenant.read", "patch": "tenant.update"}

    def _tenant(self):
        if self.ctx.tenant is None:
            raise NotFoundError("This token is platform-wide; it belongs to no tenant.")
        return self.ctx.tenant


class OwnTenantView(OwnTenantMixin, APIView):
    """The caller's own tenant."""

    @extend_schema(responses={200: TenantSerializer})
    def get(self, request):
        return Response(TenantSerializer(self._tenant()).data)

    @extend_schema(request=TenantSerializer, responses={200: TenantSerializer})
    def patch(self, request):
        tenant = self._tenant()
        serializer = TenantSerializer(tenant, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        tenant = services.tenant_update(actor=self.actor, tenant=tenant, data=serializer.validated_data)
        return Response(TenantSerializer(tenant).data)


class TenantPolicyView(OwnTenantMixin, APIView):
    """The caller's tenant's policy: health thresholds, auto-disable and request defaults. Every value is the
    effective one; ``inherited`` names those that follow the platform settings. PATCH sets fields (null: back
    to inherited); tenant admins only."""

    @extend_schema(responses={200: TenantPolicySerializer})
    def get(self, request):
        return Response(TenantPolicySerializer(effective_policy(self._tenant())).data)

    @extend_schema(request=TenantPolicyUpdateSerializer, responses={200: TenantPolicySerializer})
    def patch(self, request):
        tenant = self._tenant()
        serializer = TenantPolicyUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy = services.tenant_policy_update(actor=self.actor, tenant=tenant, data=serializer.validated_data)
        return Response(TenantPolicySerializer(policy).data)


class AdminTenantViewSet(RoleMappedMixin, viewsets.ModelViewSet):
    """Tenants (super admins only)."""

    queryset = Tenant.objects.all()
    serializer_class = AdminTenantSerializer
    filterset_class = TenantFilter
    ordering_fields = ["name", "slug", "created_at", "plan"]
    ordering = ["name"]
    permission_map = {"*": "tenants.manage"}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = services.tenant_create(actor=self.actor, data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.tenant_update(
            actor=self.actor, tenant=serializer.instance, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.tenant_delete(actor=self.actor, tenant=instance)


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet):
    """Tenant API keys: the full key is in the create answer only; DELETE revokes."""

    queryset = ApiKey.objects.select_related("tenant")
    serializer_class = ApiKeySerializer
    filterset_class = ApiKeyFilter
    ordering_fields = ["created_at", "name", "last_used_at", "expires_at"]
    permission_map = {"*": "api_keys.manage"}

    @extend_schema(request=ApiKeySerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        serializer = ApiKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, raw = services.api_key_create(
            actor=self.actor, tenant=self.tenant_for_write(), **serializer.validated_data
        )
        data = ApiKeyCreatedSerializer(api_key).data
        data["key"] = raw
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.api_key_revoke(actor=self.actor, api_key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
