"""Polling an integration's status endpoint: fetching its statuses, and the schedule of polls."""
import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site import outbound

from .. import adapters
from ..choices import IntegrationStatus, UpdateMethod
from ..models import Credential, Integration
from ..selectors import credential_of
from . import queueing, usage
from .answers import answer_json
from .probes import endpoint_url
from .statuses import PollError, PollResult, extract_items, statuses_store

logger = logging.getLogger("connections.polling")


def fetch(integration: Integration, credential: Credential | None) -> list[tuple[str, str]]:
    """(external id, raw status) pairs from the integration's status endpoint; raises PollError."""
    url = endpoint_url(integration, integration.status_endpoint or "")
    if not url or not integration.status_endpoint:
        raise PollError("NOT_CONFIGURED", "Set api_base_url and status_endpoint before polling.")
    try:
        outcome = usage.metered_request(integration, "GET", url, **adapters.request_options(integration, credential))
    except outbound.OutboundError as exc:
        outcome = exc
    data, error = answer_json(outcome, what="status answer")
    if error:
        raise PollError(*error)
    return extract_items(data, integration)


def status_poll(*, integration: Integration, actor: Actor | None = None) -> PollResult:
    """Fetch and store the integration's statuses; raises PollError when the fetch fails."""
    credential = credential_of(integration)
    pairs = fetch(integration, credential)
    result = statuses_store(integration=integration, pairs=pairs)
    logger.info(
        "connections.poll.done integration=%s seen=%s changed=%s unknown=%s",
        integration.pk, result.seen, result.changed, sum(result.unknown.values()),
    )
    if actor is not None:
        audit_record(actor=actor, action="integration.polled", target=integration, changes=result.as_dict())
    return result


def status_polls_dispatch(*, now=None) -> int:
    """Claim integrations whose poll is due (SKIP LOCKED), move ``next_poll_at``, queue after commit."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Integration.objects.live().exclude(status=IntegrationStatus.DISABLED)
            .filter(update_method=UpdateMethod.POLLING).exclude(status_endpoint="")
            .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
            .order_by("next_poll_at").select_for_update(skip_locked=True)
            .only("id", "polling_interval_seconds", "next_poll_at")[:500]
        )
        for integration in due:
            integration.next_poll_at = now + timedelta(seconds=integration.polling_interval_seconds)
        Integration.objects.bulk_update(due, ["next_poll_at"])
        queueing.status_polls_queue([str(i.pk) for i in due])
    return len(due)

