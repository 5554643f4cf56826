from integrations_site.api.routers import ContractRouter

from . import views

router = ContractRouter()
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("admin/audit-events", views.AdminAuditEventViewSet, basename="admin-audit-event")

urlpatterns = router.urls
