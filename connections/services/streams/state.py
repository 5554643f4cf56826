"""A stream's state as the API and the admin show it, and a restart asked for by a person."""
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record

from ...choices import StreamState
from ...models import Integration, StreamLease
from .leases import eligible_integrations


def stream_state(integration: Integration, lease: StreamLease | None = None) -> dict:
    """``GET /integrations/{id}/stream``: the holder's view while a consumer holds the stream;
    ``connecting`` while it waits for one; ``stopped`` when it is not to be read."""
    if lease is None:
        lease = StreamLease.objects.filter(integration=integration).first()
    eligible = eligible_integrations().filter(pk=integration.pk).exists()
    held = lease is not None and lease.consumer and lease.lease_until and lease.lease_until > timezone.now()
    if not eligible:
        state = StreamState.STOPPED
    elif held:
        state = lease.state
    else:
        state = StreamState.CONNECTING
    answer = {
        "state": state, "consumer": lease.consumer if held else None,
        "connected_at": lease.connected_at if held and state == StreamState.CONNECTED else None,
        "last_event_at": None, "last_event_id": None, "events_total": 0, "reconnects": 0, "last_error": None,
    }
    if lease is not None:
        answer.update(
            last_event_at=lease.last_event_at, last_event_id=lease.last_event_id or None,
            events_total=lease.events_total, reconnects=lease.reconnects, last_error=lease.last_error or None,
        )
    if not eligible and answer["last_error"] is None and integration.update_method == "sse":
        answer["last_error"] = {"code": "NOT_CONFIGURED", "at": None,
                                "message": "Set stream_endpoint (and enable the integration) to read its stream."}
    return answer


@transaction.atomic
def stream_restart(*, integrations: list[Integration], actor: Actor) -> int:
    """Ask the holders of these streams to reconnect (within a lease round): the number of streams asked.

    Atomic; each integration that has a stream is audited, one without a lease is left alone (nothing to restart).
    """
    leases = StreamLease.objects.filter(integration_id__in=[i.pk for i in integrations])
    streaming = set(leases.values_list("integration_id", flat=True))
    asked = leases.filter(integration_id__in=streaming).update(restart_requested=True)
    for integration in integrations:
        if integration.pk in streaming:
            audit_record(actor=actor, action="integration.stream_restarted", target=integration)
    return asked
