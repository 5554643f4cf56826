"""Applying what streams brought: events through the same mapping and upsert as polling, and the
streams' state, in one transaction per batch, fenced by the lease.

A batch holds the events of many streams in the order they came, and each
stream's state changes since the last batch (connected, backing off, …). Only
streams whose lease this consumer still holds are written: a consumer that
lost a lease (it stalled past the lease and another took the stream) applies
nothing of it. An event's id is recorded in the same transaction as its
statuses, so ``last_event_id`` is always the last event applied, and an id
among the stream's recent ones is a replay, counted and not applied again.
"""
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations_site import bounds, bulk

from ...models import RECENT_EVENT_IDS, Integration, StreamLease
from ..statuses import PollError, event_items, statuses_store_many

LEASE_FIELDS = [
    "state", "connected_at", "last_event_at", "last_event_id", "recent_event_ids", "events_total",
    "events_duplicate", "events_oversized", "events_invalid", "reconnects", "last_error", "lag_seconds",
]
TIME_FIELDS = ("timestamp", "time", "occurred_at", "updated_at", "changed_at")  # an event's own time, when it has one


@dataclass
class StreamEvent:
    integration_id: str
    id: str | None  # the event's own id (None: it set none)
    data: str


@dataclass
class Applied:
    """A batch's outcome: per stream still held, its last applied event id; the streams not held."""

    last_event_ids: dict[str, str] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {"applied": 0, "duplicate": 0, "invalid": 0})


def stream_batch_apply(*, consumer: str, integrations: dict[str, Integration], events: list[StreamEvent],
                       states: dict[str, dict]) -> Applied:
    """Apply ``events`` (in order) and ``states`` (field → value per stream, counters as increments
    under ``add_<field>``) for the streams ``consumer`` holds; see the module docstring."""
    outcome = Applied()
    ids = {event.integration_id for event in events} | set(states)
    if not ids:
        return outcome
    now = timezone.now()
    with transaction.atomic():
        leases = {
            str(lease.integration_id): lease for lease in
            StreamLease.objects.select_for_update().filter(consumer=consumer, integration_id__in=ids)
        }
        outcome.lost = ids - set(leases)
        entries = []
        for event in events:
            lease = leases.get(event.integration_id)
            integration = integrations.get(event.integration_id)
            if lease is None or integration is None:
                continue
            pairs, lag = _read(event, integration, now, lease, outcome)
            if pairs is None:
                continue
            entries.append((integration, pairs))
            lease.events_total += 1
            lease.last_event_at, lease.lag_seconds = now, lag if lag is not None else lease.lag_seconds
            if event.id is not None:
                lease.last_event_id = event.id
                lease.recent_event_ids = [*lease.recent_event_ids, event.id][-RECENT_EVENT_IDS:]
        if entries:
            statuses_store_many(entries)
        for pk, changes in states.items():
            lease = leases.get(pk)
            if lease is not None:
                for name, value in changes.items():
                    if name.startswith("add_"):
                        setattr(lease, name[4:], getattr(lease, name[4:]) + value)
                    else:
                        setattr(lease, name, value)
        bulk.rows_update(list(leases.values()), LEASE_FIELDS)
    outcome.last_event_ids = {pk: lease.last_event_id for pk, lease in leases.items()}
    return outcome


def _read(event: StreamEvent, integration: Integration, now, lease: StreamLease, outcome: Applied):
    """(pairs, lag) of an event to apply; (None, None) for a replay or an event holding no status."""
    if event.id is not None and event.id in lease.recent_event_ids:
        lease.events_duplicate += 1
        outcome.counts["duplicate"] += 1
        return None, None
    try:
        data = bounds.loads(event.data)
        pairs = event_items(data, integration)
    except (ValueError, PollError) as exc:
        lease.events_invalid += 1
        outcome.counts["invalid"] += 1
        message = exc.message if isinstance(exc, PollError) else "The event's data is not JSON."
        lease.last_error = {"code": "INVALID_EVENT", "message": message, "at": now.isoformat()}
        if event.id is not None:  # seen, and skipped: a replay of it is not looked at again
            lease.last_event_id = event.id
            lease.recent_event_ids = [*lease.recent_event_ids, event.id][-RECENT_EVENT_IDS:]
        return None, None
    outcome.counts["applied"] += 1
    return pairs, _lag(data, now)


def _lag(data, now) -> float | None:
    """Now minus the time the event carries (ISO 8601, or epoch seconds or milliseconds), if any."""
    item = data[0] if isinstance(data, list) and data else data
    if not isinstance(item, dict):
        return None
    for name in TIME_FIELDS:
        value = item.get(name)
        when = None
        if isinstance(value, str):
            try:
                when = parse_datetime(value)
            except ValueError:
                when = None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            seconds = value / 1000 if value > 1e11 else value
            try:
                when = datetime.fromtimestamp(seconds, tz=UTC)
            except (OverflowError, OSError, ValueError):
                when = None
        if when is not None:
            return max(0.0, (now - when).total_seconds())
    return None
