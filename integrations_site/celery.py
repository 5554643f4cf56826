import gc
import os
from pathlib import Path

from celery import Celery
from celery.signals import (
    beat_init,
    heartbeat_sent,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

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


@worker_process_init.connect
@worker_ready.connect
def freeze_startup_objects(**kwargs) -> None:
    """What a worker process holds once it has started (Django, the apps, the task registry) lives
    as long as the process: moved out of the garbage collector's sight, so a full collection
    scans only what tasks made since. Many requests in flight keep many young objects alive,
    which triggers full collections often; with the startup objects in them, those collections
    cost half the CPU of a scheduled check (bench/README.md, "Outbound client")."""
    gc.collect()
    gc.freeze()


# --- Heartbeat files for container health checks -------------------------------------------------------------
# A worker touches WORKER_HEARTBEAT_FILE when it is ready and on each of its event heartbeats (every 2 s, from
# the consumer's own timer: a stuck consumer stops touching it); beat touches BEAT_HEARTBEAT_FILE after every
# pass of its scheduler loop (at most max_interval apart, 5 s with the database scheduler). A health check then
# only reads the file's age: no broker round trip, no reply needed from the rest of the cluster. Unset: nothing.


def _touch(variable: str) -> None:
    path = os.environ.get(variable)
    if path:
        try:
            Path(path).touch()
        except OSError:  # a health check that reads a stale file says so; the work goes on
            pass


@worker_ready.connect
@heartbeat_sent.connect
def worker_heartbeat(**kwargs) -> None:
    _touch("WORKER_HEARTBEAT_FILE")


@worker_shutdown.connect
def worker_heartbeat_stop(**kwargs) -> None:
    path = os.environ.get("WORKER_HEARTBEAT_FILE")
    if path:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:
            pass


@beat_init.connect
def beat_heartbeat(sender=None, **kwargs) -> None:
    """``sender`` is the beat Service, whose loop calls ``scheduler.tick()`` again and again:
    each pass that returns touches the file."""
    if not os.environ.get("BEAT_HEARTBEAT_FILE") or sender is None:
        return
    scheduler = sender.scheduler
    tick = scheduler.tick

    def tick_and_touch(*args, **kw):
        interval = tick(*args, **kw)
        _touch("BEAT_HEARTBEAT_FILE")
        return interval

    scheduler.tick = tick_and_touch
    _touch("BEAT_HEARTBEAT_FILE")
