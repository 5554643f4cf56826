"""The project's admin site: the index opens on the operations dashboard, and the app list is grouped by
what staff do — the product's own groups first, Celery's results and beat schedules together last.

Installed as ``admin.site`` by ``OperationsAdminConfig`` (``default_site``), so every ``admin.register``
and ``admin.site`` in the apps is this site. An app's own page (``/admin/<app_label>/``) lists that app's
models as Django does; only the index and the navigation sidebar are grouped.
"""
from dataclasses import dataclass

from django.contrib import admin

from .views import dashboard_context


@dataclass(frozen=True)
class Group:
    name: str
    slug: str
    apps: tuple[str, ...]  # app labels whose models the group holds (those not named in ``order`` go last)
    order: tuple[str, ...]  # model labels (``app_label.model_name``) in the order shown


GROUPS = (
    Group("Catalog", "catalog", ("catalog",), ("catalog.integrationprovider",)),
    Group("Tenants", "tenants", ("tenants", "auth"),
          ("tenants.tenant", "tenants.membership", "tenants.apikey", "auth.user", "auth.group")),
    Group("Integrations", "integrations", ("connections",),
          ("connections.integration", "connections.credential", "connections.connectioncheck",
           "connections.externalstatus", "connections.statuschange", "connections.configversion",
           "connections.streamlease", "connections.streamconsumer", "connections.usagedaily")),
    Group("Webhooks", "webhooks", ("webhooks",), ("webhooks.webhookendpoint", "webhooks.webhookevent")),
    Group("Audit", "audit", ("audit",), ("audit.auditevent",)),
)
BACKGROUND_JOBS = Group(
    "Background jobs", "background_jobs", ("django_celery_beat", "django_celery_results"),
    ("django_celery_beat.periodictask", "django_celery_beat.intervalschedule", "django_celery_beat.crontabschedule",
     "django_celery_beat.clockedschedule", "django_celery_beat.solarschedule", "django_celery_results.taskresult",
     "django_celery_results.groupresult"),
)


def group_app_list(app_list: list[dict]) -> list[dict]:
    """Django's app list (one entry per app) regrouped: ``GROUPS``, then any other app as Django lists it,
    then Background jobs. A group the user may see nothing of is left out."""
    by_app = {app["app_label"]: app for app in app_list}
    claimed = {label for group in (*GROUPS, BACKGROUND_JOBS) for label in group.apps}
    others = [app for app in app_list if app["app_label"] not in claimed]
    grouped = [_group(group, by_app) for group in GROUPS]
    return [entry for entry in (*grouped, *others, _group(BACKGROUND_JOBS, by_app)) if entry is not None]


def _group(group: Group, by_app: dict) -> dict | None:
    apps = [by_app[label] for label in group.apps if label in by_app]
    if not apps:
        return None
    rank = {label: i for i, label in enumerate(group.order)}
    models = [model for app in apps for model in app["models"]]
    models.sort(key=lambda model: (rank.get(model["model"]._meta.label_lower, len(rank)), model["name"]))
    return {
        "name": group.name,
        "app_label": group.slug,
        # The heading links to the page of the group's first app (an admin page exists per app only).
        "app_url": apps[0]["app_url"],
        "has_module_perms": any(app["has_module_perms"] for app in apps),
        "models": models,
    }


class OperationsAdminSite(admin.AdminSite):
    """The admin site: the dashboard on the index, the index grouped by ``GROUPS``."""

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        return group_app_list(app_list)

    def index(self, request, extra_context=None):
        return super().index(request, {**dashboard_context(request), **(extra_context or {})})
