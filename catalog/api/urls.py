from integrations_site.api.routers import ContractRouter

from . import views

router = ContractRouter()
router.register("admin/providers", views.ProviderAdminViewSet, basename="admin-provider")
router.register("catalog", views.CatalogViewSet, basename="catalog")

urlpatterns = router.urls
