"""The admin index grouped by what staff do (integrations_site.dashboard.site): the product's groups first,
Celery's models under Background jobs last; each app's own page and the beat schedules keep working."""
import pytest
from django.contrib import admin
from django.urls import reverse

from integrations_site.dashboard.site import BACKGROUND_JOBS, GROUPS, OperationsAdminSite, group_app_list

PRODUCT_GROUPS = ["Catalog", "Tenants", "Integrations", "Webhooks", "Audit"]
CELERY_APPS = {"django_celery_beat", "django_celery_results"}


@pytest.fixture(autouse=True)
def uncached(settings):
    settings.ADMIN_DASHBOARD_CACHE_SECONDS = 0


def labels(group) -> list[str]:
    return [model["model"]._meta.label_lower for model in group["models"]]


def test_the_admin_site_is_ours_and_keeps_its_titles():
    assert isinstance(admin.site._wrapped, OperationsAdminSite)
    assert (admin.site.site_header, admin.site.index_title) == ("Integrations hub", "Operations")


def test_the_index_lists_the_product_groups_in_order_then_background_jobs(staff_client):
    response = staff_client.get("/admin/")

    app_list = response.context["app_list"]
    names = [group["name"] for group in app_list]
    assert names[:5] == PRODUCT_GROUPS and names[-1] == "Background jobs"
    groups = {group["name"]: group for group in app_list}
    assert labels(groups["Catalog"]) == ["catalog.integrationprovider"]
    assert labels(groups["Tenants"])[:5] == [
        "tenants.tenant", "tenants.membership", "tenants.apikey", "auth.user", "auth.group"]
    assert labels(groups["Integrations"])[:3] == [
        "connections.integration", "connections.credential", "connections.connectioncheck"]
    assert {"connections.streamlease", "connections.streamconsumer", "connections.configversion",
            "connections.statuschange", "connections.externalstatus"} <= set(labels(groups["Integrations"]))
    assert labels(groups["Webhooks"])[:2] == ["webhooks.webhookendpoint", "webhooks.webhookevent"]
    assert labels(groups["Audit"]) == ["audit.auditevent"]
    jobs = labels(groups["Background jobs"])
    assert {label.split(".")[0] for label in jobs} == CELERY_APPS
    assert {"django_celery_beat.periodictask", "django_celery_results.taskresult"} <= set(jobs)
    body = response.content.decode()
    assert body.index("Catalog") < body.index(">Tenants<") < body.index("Background jobs")
    assert body.index('id="dashboard"') < body.index('class="app-catalog module')


def test_every_registered_model_is_listed_once_and_no_celery_model_outside_background_jobs(staff_client):
    app_list = staff_client.get("/admin/").context["app_list"]

    listed = [label for group in app_list for label in labels(group)]
    assert sorted(listed) == sorted(model._meta.label_lower for model in admin.site._registry)
    outside = [label for group in app_list if group["name"] != "Background jobs" for label in labels(group)]
    assert not [label for label in outside if label.split(".")[0] in CELERY_APPS]


def test_the_sidebar_of_a_model_page_is_grouped_as_the_index(staff_client):
    response = staff_client.get(reverse("admin:connections_integration_changelist"))

    assert [group["name"] for group in response.context["available_apps"]][:5] == PRODUCT_GROUPS


def test_each_apps_own_page_lists_that_app_as_django_does(staff_client):
    for app_label in {model._meta.app_label for model in admin.site._registry}:
        response = staff_client.get(reverse("admin:app_list", args=[app_label]))
        assert response.status_code == 200, app_label
        (app,) = response.context["app_list"]
        assert app["app_label"] == app_label
        assert {m["model"]._meta.app_label for m in app["models"]} == {app_label}


def test_beat_schedules_stay_editable(staff_client):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    schedule = IntervalSchedule.objects.create(every=5, period="minutes")
    task = PeriodicTask.objects.create(name="Sweep", task="connections.tasks.sweep", interval=schedule)
    jobs = next(g for g in staff_client.get("/admin/").context["app_list"] if g["name"] == "Background jobs")
    periodic = next(m for m in jobs["models"] if m["object_name"] == "PeriodicTask")
    assert periodic["add_url"] and not periodic["view_only"]

    for url in (reverse("admin:django_celery_beat_periodictask_add"),
                reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])):
        assert staff_client.get(url).status_code == 200, url


def test_an_app_of_no_group_comes_after_the_product_groups_and_empty_groups_are_left_out():
    def app(label):
        return {"name": label.title(), "app_label": label, "app_url": f"/admin/{label}/", "has_module_perms": True,
                "models": []}

    grouped = group_app_list([app("django_celery_results"), app("thirdparty"), app("webhooks")])

    assert [group["name"] for group in grouped] == ["Webhooks", "Thirdparty", "Background jobs"]
    assert grouped[-1]["app_url"] == "/admin/django_celery_results/"
    assert [g.name for g in GROUPS] == PRODUCT_GROUPS and BACKGROUND_JOBS.name == "Background jobs"
