from integrations_site.api.routers import ContractRouter

from . import views

router = ContractRouter()
router.register("webhooks", views.WebhookEndpointViewSet, basename="webhook")
router.register("webhook-events", views.WebhookEventViewSet, basename="webhook-event")

urlpatterns = router.urls
