from django.contrib.admin.apps import AdminConfig


class OperationsAdminConfig(AdminConfig):
    """Django's admin, with the project's site as ``admin.site`` (the documented way to replace it)."""

    default_site = "integrations_site.dashboard.site.OperationsAdminSite"
