from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("admin/tenants", views.AdminTenantViewSet, basename="admin-tenant")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("tenant/", views.OwnTenantView.as_view(), name="own-tenant"),
    # With a trailing slash too, without a redirect (as detail actions are); the schema shows the contract's form.
    re_path(r"^tenant/policy/?$", views.TenantPolicyView.as_view(), name="tenant-policy"),
    *router.urls,
]
