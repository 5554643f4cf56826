from integrations_site.api.routers import ContractRouter

from . import views

router = ContractRouter()
router.register("integrations", views.IntegrationViewSet, basename="integration")
router.register(
    r"integrations/(?P<integration_pk>[^/.]+)/versions", views.ConfigVersionViewSet, basename="integration-version"
)

urlpatterns = router.urls
