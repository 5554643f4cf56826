"""Beat schedules for checks and polling, editable in the admin afterwards."""
from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("Dispatch due health checks", "connections.dispatch_health_checks", 5),
    ("Dispatch due status polls", "connections.dispatch_status_polls", 5),
    ("Re-queue stale queued checks", "connections.sweep_queued_checks", 60),
    ("Prune old connection checks", "connections.prune_checks", 3600),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0002_checks_and_statuses"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
