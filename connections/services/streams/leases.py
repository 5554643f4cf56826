"""Sharing the streams between consumers: claiming, renewing, balancing and releasing ``StreamLease`` rows.

One round (``leases_sync``) per consumer every few seconds, in one transaction:
the consumer says it is alive (``StreamConsumer``), renews what it holds,
lets go of streams that are no longer to be read (update method changed,
disabled, deleted, no endpoint), gives back what it holds above its fair
share (the eligible streams over the live consumers), and claims free or
expired leases up to that share. Claims take rows with ``SELECT … FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so consumers claiming at once never wait on each
other nor take the same row; on SQLite every transaction begins with the
write lock (``transaction_mode=IMMEDIATE``), so the rounds run one after
another and the same read-then-update is exact.
"""
import math
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ...choices import IntegrationStatus, StreamState, UpdateMethod
from ...models import Credential, Integration, StreamConsumer, StreamLease
from ...selectors import tenant_credentials

FORGET_CONSUMER_AFTER = timedelta(hours=1)  # a consumer not seen for this long is no longer listed

# What a held stream is read with: a change reloads the integration (and its credential).
CONFIG_COLUMNS = (
    "api_base_url", "stream_endpoint", "timeout_seconds", "settings", "status_mapping", "status_items_path",
    "status_id_field", "status_field", "provider__updated_at",
)


@dataclass
class Round:
    """What a round decided: the streams now held (``config``: each one's config columns and
    credential version, to compare with the consumer's), the rows of those new or changed (provider
    and credential loaded), the leases claimed in this round, those lost or let go, restarts asked for."""

    config: dict[str, tuple] = field(default_factory=dict)
    loaded: dict[str, Integration] = field(default_factory=dict)
    credentials: dict[str, Credential | None] = field(default_factory=dict)
    leases: dict[str, StreamLease] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    restart: set[str] = field(default_factory=set)


def eligible_integrations():
    """Integrations whose statuses come from an event stream: ``sse``, live, not disabled, with an endpoint."""
    return (Integration.objects.live().filter(update_method=UpdateMethod.SSE)
            .exclude(status=IntegrationStatus.DISABLED).exclude(stream_endpoint=""))


def leases_sync(*, consumer: StreamConsumer, held: set[str], known: dict[str, tuple], capacity: int,
                lease_seconds: float) -> Round:
    """One round (see the module docstring); ``known`` is the config the consumer holds per stream."""
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds)
    outcome = Round()
    with transaction.atomic():
        consumer.seen_at, consumer.streams = now, len(held)
        consumer.save()
        mine = StreamLease.objects.filter(consumer=consumer.name)
        mine.filter(integration_id__in=held).update(lease_until=until)
        ours = {str(pk) for pk in mine.values_list("integration_id", flat=True)}
        eligible = eligible_integrations()
        keep = {str(pk) for pk in eligible.filter(pk__in=ours).values_list("pk", flat=True)}
        _release(ours - keep, consumer.name, StreamState.STOPPED)
        _create_missing(eligible)
        StreamConsumer.objects.filter(seen_at__lt=now - FORGET_CONSUMER_AFTER).delete()  # killed, long ago
        live = StreamConsumer.objects.filter(seen_at__gt=now - timedelta(seconds=lease_seconds)).count()
        share = min(capacity, math.ceil(eligible.count() / max(1, live)))
        if len(keep) > share and live > 1:
            extra = set(sorted(keep)[share:])
            _release(extra, consumer.name, StreamState.CONNECTING)
            keep -= extra
        if len(keep) < share:
            claimed = _claim(eligible, consumer.name, share - len(keep), now, until)
            outcome.leases = {str(lease.integration_id): lease for lease in claimed}
            keep |= set(outcome.leases)
        restarts = mine.filter(integration_id__in=keep, restart_requested=True)
        outcome.restart = {str(pk) for pk in restarts.values_list("integration_id", flat=True)}
        restarts.update(restart_requested=False)
    outcome.dropped = held - keep
    _load_changed(outcome, keep, known)
    return outcome


def _load_changed(outcome: Round, keep: set[str], known: dict[str, tuple]) -> None:
    """The config of every held stream as plain values (no model per row), and the whole rows of the
    streams whose config is new to the consumer: a round with nothing changed loads no model."""
    credential_columns = ("integration_id", "pk", "version", "updated_at")
    versions = {str(pk): tuple(rest) for pk, *rest in
                tenant_credentials(integration_id__in=keep).values_list(*credential_columns)}
    for pk, *columns in Integration.objects.filter(pk__in=keep).values_list("pk", *CONFIG_COLUMNS):
        outcome.config[str(pk)] = (*columns, versions.get(str(pk)))
    changed = [pk for pk, config in outcome.config.items() if known.get(pk) != config]
    if changed:
        outcome.loaded = {str(i.pk): i for i in Integration.objects.filter(pk__in=changed).select_related("provider")}
        credentials = {str(c.integration_id): c for c in tenant_credentials(integration_id__in=changed)}
        outcome.credentials = {pk: credentials.get(pk) for pk in outcome.loaded}


def _release(ids: set[str], name: str, state: str) -> None:
    if ids:
        StreamLease.objects.filter(consumer=name, integration_id__in=ids).update(
            consumer="", lease_until=None, state=state
        )


def _create_missing(eligible) -> None:
    """A lease row for each eligible integration that has none yet (its first claim makes it a stream)."""
    missing = list(eligible.filter(stream_lease__isnull=True).values_list("pk", "tenant_id")[:1000])
    StreamLease.objects.bulk_create(
        [StreamLease(integration_id=pk, tenant_id=tenant_id) for pk, tenant_id in missing], ignore_conflicts=True
    )


def _claim(eligible, name: str, want: int, now, until) -> list[StreamLease]:
    free = Q(consumer="") | Q(lease_until__isnull=True) | Q(lease_until__lte=now)
    rows = list(
        StreamLease.objects.filter(free, integration_id__in=eligible.values("pk"))
        .order_by("lease_until").select_for_update(skip_locked=True).only("integration_id", "last_event_id")[:want]
    )
    StreamLease.objects.filter(pk__in=[lease.pk for lease in rows]).update(
        consumer=name, lease_until=until, state=StreamState.CONNECTING
    )
    return rows


def leases_release(*, consumer: StreamConsumer) -> int:
    """On shutdown: every lease of ``consumer`` is free at once (another consumer takes it on its next
    round, not a lease period later), and the consumer is no longer counted."""
    with transaction.atomic():
        released = StreamLease.objects.filter(consumer=consumer.name).update(
            consumer="", lease_until=None, state=StreamState.CONNECTING
        )
        StreamConsumer.objects.filter(pk=consumer.name).delete()
    return released
