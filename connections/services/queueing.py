"""Work handed to the Celery workers: the only place in connections that queues anything.

Tasks are sent by name through ``integrations_site.queueing`` (no service imports
``connections.tasks``), after commit, so a worker never looks for a row that is not
there yet. A broker that cannot be reached never fails the caller: what was to be done
is still in the database (a queued check, a due ``next_check_at`` or ``next_poll_at``)
and the periodic sweep or dispatcher queues it again.
"""
from django.db import transaction

from audit.services import Actor
from integrations_site import queueing

from ..choices import CheckKind, CheckState, IntegrationStatus
from ..models import ConnectionCheck, Integration

RUN_CONNECTION_CHECK = "connections.run_connection_check"
RUN_HEALTH_CHECKS = "connections.run_health_checks"
RUN_STATUS_POLL = "connections.run_status_poll"
ENQUEUE_FAILED = "connections.check.enqueue_failed"


def connection_check_send(check_id) -> bool:
    """Send a queued check to the worker now; False (logged) when the broker is unreachable."""
    return queueing.enqueue(RUN_CONNECTION_CHECK, str(check_id), log_event=ENQUEUE_FAILED,
                            log_detail=f"check={check_id}")


def connection_test_queue(*, integration: Integration, actor: Actor, kind: str = CheckKind.TEST) -> ConnectionCheck:
    """Create a queued check and hand it to the worker after commit."""
    check = ConnectionCheck.objects.create(
        tenant_id=integration.tenant_id, integration=integration, kind=kind, state=CheckState.QUEUED,
        requested_by=actor.label[:200], requested_by_user=actor.user if getattr(actor.user, "pk", None) else None,
        requested_by_api_key=actor.api_key,
    )
    transaction.on_commit(lambda: connection_check_send(check.pk))
    return check


def connection_retest_queue(*, integration: Integration, actor: Actor) -> ConnectionCheck | None:
    """After a change of config or credentials: a connection test, unless the integration is disabled."""
    if integration.status == IntegrationStatus.DISABLED:
        return None
    return connection_test_queue(integration=integration, actor=actor)


def health_checks_queue(chunks: list[list[str]]) -> None:
    """After commit, one ``run_health_checks`` task per chunk of integration ids."""
    def send():
        for chunk in chunks:
            queueing.enqueue(RUN_HEALTH_CHECKS, chunk, log_event=ENQUEUE_FAILED,
                             log_detail=f"integrations={len(chunk)}")

    transaction.on_commit(send)


def status_polls_queue(integration_ids: list[str]) -> None:
    """After commit, one ``run_status_poll`` task per integration."""
    def send():
        for integration_id in integration_ids:
            queueing.enqueue(RUN_STATUS_POLL, integration_id, log_event=ENQUEUE_FAILED,
                             log_detail=f"integration={integration_id}")

    transaction.on_commit(send)


def status_poll_queue(*, integration: Integration) -> None:
    """Queue a poll of ``integration`` after commit."""
    status_polls_queue([str(integration.pk)])
