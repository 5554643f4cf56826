"""``/healthz``, the integrations API under ``/api/`` (a DRF router), ``/api/search`` and ``/hooks/<path>``."""
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from hub import views

router = DefaultRouter()
router.register("integrations", views.IntegrationViewSet, basename="integration")

urlpatterns = [
    path("healthz", views.healthz),
    path("api/search", views.search),
    path("api/", include(router.urls)),
    path("hooks/<str:path>", views.webhook),
]
