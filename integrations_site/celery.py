import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.local")

app = Celery("integrations_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_connections(sender=None, **kwargs) -> None:
    """Around every task, what Django does around every request: a database connection is
    kept for CONN_MAX_AGE seconds (health-checked before reuse) rather than opened per task.
    A task run eagerly runs inside its caller's work (and transaction): left alone."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections as close

    close()
