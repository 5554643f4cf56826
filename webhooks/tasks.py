"""Celery tasks for webhooks: thin, idempotent, acknowledged late."""
import logging

from celery import shared_task

from . import services

logger = logging.getLogger("webhooks.tasks")

TASK_OPTIONS = {"acks_late": True, "ignore_result": True}


@shared_task(name="webhooks.process_webhook_event", **TASK_OPTIONS)
def process_webhook_event(event_id: str) -> str | None:
    return services.event_process(event_id=event_id)


@shared_task(name="webhooks.process_webhook_events", soft_time_limit=300, time_limit=360, **TASK_OPTIONS)
def process_webhook_events(event_ids: list[str]) -> int:
    done = 0
    for event_id in event_ids:
        if services.event_process(event_id=event_id) is not None:
            done += 1
    return done


@shared_task(name="webhooks.sweep_pending_events", **TASK_OPTIONS)
def sweep_pending_events() -> int:
    return services.events_sweep()


@shared_task(name="webhooks.prune_events", **TASK_OPTIONS)
def prune_events() -> int:
    return services.events_prune()
