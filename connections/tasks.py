"""Celery tasks: thin wrappers that take ids and call one service each.

All are safe to run twice (state guards in the services) and acknowledged
late, so a worker lost mid-task means the task runs again, not never. Services
send them by name (``services.queueing``), never by importing this module.
"""
import logging

from celery import shared_task

from .models import Integration
from .services import checks, oauth, polling, schedule
from .services.statuses import PollError

logger = logging.getLogger("connections.tasks")

TASK_OPTIONS = {"acks_late": True, "ignore_result": True}


@shared_task(name="connections.run_connection_check", soft_time_limit=700, time_limit=760, **TASK_OPTIONS)
def run_connection_check(check_id: str) -> None:
    if checks.connection_check_execute(check_id=check_id) is None:
        logger.info("connections.check.skipped check=%s reason=not_queued", check_id)


@shared_task(name="connections.run_health_checks", soft_time_limit=700, time_limit=760, **TASK_OPTIONS)
def run_health_checks(integration_ids: list[str]) -> int:
    return schedule.health_checks_run(integration_ids=integration_ids)


@shared_task(name="connections.dispatch_health_checks", **TASK_OPTIONS)
def dispatch_health_checks() -> int:
    return schedule.health_checks_dispatch()


@shared_task(name="connections.dispatch_status_polls", **TASK_OPTIONS)
def dispatch_status_polls() -> int:
    return polling.status_polls_dispatch()


@shared_task(name="connections.run_status_poll", soft_time_limit=700, time_limit=760, **TASK_OPTIONS)
def run_status_poll(integration_id: str) -> None:
    integration = Integration.objects.live().select_related("provider").filter(pk=integration_id).first()
    if integration is None:
        logger.info("connections.poll.skipped integration=%s reason=missing", integration_id)
        return
    try:
        polling.status_poll(integration=integration)
    except PollError as exc:
        logger.warning("connections.poll.failed integration=%s code=%s", integration_id, exc.code)


@shared_task(name="connections.sweep_queued_checks", **TASK_OPTIONS)
def sweep_queued_checks() -> int:
    return checks.queued_checks_sweep()


@shared_task(name="connections.prune_checks", **TASK_OPTIONS)
def prune_checks() -> int:
    return checks.checks_prune()


@shared_task(name="connections.refresh_oauth_tokens", soft_time_limit=300, time_limit=360, **TASK_OPTIONS)
def refresh_oauth_tokens() -> dict:
    return oauth.refresh_due()
