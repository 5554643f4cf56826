from integrations_site.api.routers import ContractRouter

from . import views

router = ContractRouter()
router.register("notification-endpoints", views.NotificationEndpointViewSet, basename="notification-endpoint")
router.register("notification-deliveries", views.NotificationDeliveryViewSet, basename="notification-delivery")

urlpatterns = router.urls
