from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from webhooks.views import receive

from . import views
from .api import errors
from .metrics import metrics_view

# Integrations first: their list and detail are the API's busiest reads, and Django tries patterns in order.
api_v1 = [
    path("", include("connections.api.urls")),
    path("", include("tenants.api.urls")),
    path("", include("catalog.api.urls")),
    path("", include("audit.api.urls")),
    path("", include("webhooks.api.urls")),
    path("", include("notifications.api.urls")),
]

urlpatterns = [
    # Django tries patterns in order. The ops endpoints first: exact paths, which every other path passes with
    # one string comparison each, polled by load balancers and Prometheus. Then the receiver: senders' bursts
    # are the busiest path.
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("hooks/<str:path>", receive, name="webhook-receive"),
    path("api/v1/", include(api_v1)),
    path("", views.landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI and ReDoc load their assets from drf-spectacular-sidecar's static files (SPECTACULAR_SETTINGS).
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="docs/redoc.html"), name="redoc"),
    re_path(r"^api/", errors.api_not_found),
]

handler400 = "integrations_site.api.errors.handler400"
handler403 = "integrations_site.api.errors.handler403"
handler404 = "integrations_site.api.errors.handler404"
handler500 = "integrations_site.api.errors.handler500"
