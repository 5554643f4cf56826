"""Celery tasks for notifications: thin, idempotent, acknowledged late."""
import logging

from celery import shared_task

from . import services

logger = logging.getLogger("notifications.tasks")

TASK_OPTIONS = {"acks_late": True, "ignore_result": True}


@shared_task(name="notifications.deliver_notifications", soft_time_limit=300, time_limit=360, **TASK_OPTIONS)
def deliver_notifications(delivery_ids: list[str]) -> int:
    """Send each due delivery once; one already sent, not yet due or taken by another worker is skipped."""
    sent = 0
    for delivery_id in delivery_ids:
        if services.delivery_attempt(delivery_id=delivery_id) is not None:
            sent += 1
    return sent


@shared_task(name="notifications.sweep_pending_deliveries", **TASK_OPTIONS)
def sweep_pending_deliveries() -> int:
    return services.deliveries_sweep()


@shared_task(name="notifications.prune_deliveries", **TASK_OPTIONS)
def prune_deliveries() -> int:
    return services.deliveries_prune()
