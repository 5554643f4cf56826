from django.urls import path, re_path

from integrations_site.api.direct import direct_reads
from integrations_site.api.routers import ContractRouter

from . import views

router = ContractRouter()
router.register("integrations", views.IntegrationViewSet, basename="integration")
router.register(
    r"integrations/(?P<integration_pk>[^/.]+)/versions", views.ConfigVersionViewSet, basename="integration-version"
)
router.register(
    r"integrations/(?P<integration_pk>[^/.]+)/checks", views.ConnectionCheckViewSet, basename="integration-check"
)
router.register(
    r"integrations/(?P<integration_pk>[^/.]+)/statuses/changes", views.StatusChangeViewSet,
    basename="integration-status-change",
)
router.register(
    r"integrations/(?P<integration_pk>[^/.]+)/statuses", views.ExternalStatusViewSet, basename="integration-status"
)
router.register(
    r"integrations/(?P<integration_pk>[^/.]+)/user-connections", views.UserConnectionViewSet,
    basename="integration-user-connection",
)
router.register("me/integrations", views.MeIntegrationViewSet, basename="me-integration")
# POST admin/providers/{slug}/test only: the catalog serves the other provider routes.
router.register("admin/providers", views.ProviderTestViewSet, basename="admin-provider-test")

urlpatterns = [
    path("oauth/callback", views.OAuthCallbackView.as_view(), name="oauth-callback"),
    re_path(r"^search/?$", views.SearchView.as_view(), name="search"),
    # GET of one integration with an API key, the commonest read, answered without DRF's request cycle.
    *direct_reads(router.urls, {"integration-detail": views.tenant_integration}),
]
