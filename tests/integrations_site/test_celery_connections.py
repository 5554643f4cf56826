"""Celery workers keep database connections the way web processes do (CONN_MAX_AGE), not one per task,
and freeze what they loaded at start out of the garbage collector's sight."""
import gc
import time
from types import SimpleNamespace

from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready
from django.db import connection

from integrations_site.celery import app


class Task:
    """What the signal handlers read of a task."""

    def __init__(self, eager: bool):
        self.request = SimpleNamespace(is_eager=eager)


def task(eager: bool) -> Task:
    return Task(eager)


def test_celery_is_told_to_leave_connections_to_conn_max_age():
    assert app.conf.get("CELERY_DB_REUSE_MAX") >= 1000


def test_a_task_boundary_keeps_a_connection_until_its_max_age(transactional_db):
    connection.ensure_connection()
    raw = connection.connection
    connection.close_at = time.monotonic() + 60
    task_prerun.send(sender=task(eager=False))
    task_postrun.send(sender=task(eager=False))
    assert connection.connection is raw

    connection.close_at = time.monotonic() - 1
    task_postrun.send(sender=task(eager=False))
    assert connection.connection is None


def test_an_eager_task_leaves_its_callers_connection_alone(transactional_db):
    connection.ensure_connection()
    raw = connection.connection
    connection.close_at = time.monotonic() - 1
    task_postrun.send(sender=task(eager=True))
    assert connection.connection is raw


def test_a_started_worker_and_each_pool_process_freeze_what_they_loaded():
    try:
        for signal in (worker_ready, worker_process_init):
            gc.unfreeze()
            assert gc.get_freeze_count() == 0
            signal.send(sender=None)
            assert gc.get_freeze_count() > 1000  # Django, the apps and the task registry
    finally:
        gc.unfreeze()
