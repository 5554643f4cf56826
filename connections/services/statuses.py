"""External statuses: reading (external id, raw status) pairs out of an answer and storing them.

Raw statuses are mapped through the provider's default mapping merged with the
integration's own (the integration wins per raw value); a raw value that matches
nothing maps to ``unavailable`` and is counted and reported. Polling and webhook
events and stream events all store what they read through ``statuses_store_many``.
"""
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from catalog.choices import CanonicalStatus
from integrations_site import bounds, bulk

from ..adapters import dig
from ..models import ExternalStatus, Integration, StatusChange

DEFAULT_LIST_KEYS = ("items", "data", "results", "statuses")


class PollError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PollResult:
    seen: int = 0
    changed: int = 0
    unknown: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"seen": self.seen, "changed": self.changed, "unknown": self.unknown}


def raw_to_canonical(integration: Integration) -> dict[str, str]:
    """raw value → canonical status; the integration's mapping overrides the provider's."""
    mapping: dict[str, str] = {}
    for source in (integration.provider.default_status_mapping or {}, integration.status_mapping or {}):
        for canonical, raws in source.items():
            for raw in raws:
                mapping[raw] = canonical
    return mapping


def map_status(raw: str, mapping: dict[str, str]) -> str | None:
    """Exact match first, then a case-insensitive one; None when unknown."""
    if raw in mapping:
        return mapping[raw]
    folded = {k.casefold(): v for k, v in mapping.items()}
    return folded.get(raw.casefold())


def extract_items(data, integration: Integration) -> list[tuple[str, str]]:
    """(external id, raw status) pairs from a status answer."""
    items = dig(data, integration.status_items_path) if integration.status_items_path else data
    if isinstance(items, dict) and not integration.status_items_path:
        items = next((items[k] for k in DEFAULT_LIST_KEYS if isinstance(items.get(k), list)), None)
    if not isinstance(items, list):
        raise PollError("UNEXPECTED_STATUS", "The status answer holds no list of items at the configured path.")
    return [pair for item in items if (pair := _pair(item, integration)) is not None]


def event_items(data, integration: Integration) -> list[tuple[str, str]]:
    """(external id, raw status) pairs from one stream event's data: one status object, or what
    ``extract_items`` reads from a list or an answer-shaped object."""
    if isinstance(data, dict) and (pair := _pair(data, integration)) is not None:
        return [pair]
    return extract_items(data, integration)


def _pair(item, integration: Integration) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    external_id = dig(item, integration.status_id_field)
    raw = dig(item, integration.status_field)
    if external_id is None or raw is None or isinstance(raw, (dict, list)):
        return None
    return bounds.clean_text(external_id, 255), bounds.clean_text(raw, 255)


def statuses_store(*, integration: Integration, pairs: list[tuple[str, str]]) -> PollResult:
    """Upsert ExternalStatus rows and record a StatusChange per change (``statuses_store_many`` of one)."""
    return statuses_store_many([(integration, pairs)])[0]


@transaction.atomic
def statuses_store_many(entries: list[tuple[Integration, list[tuple[str, str]]]]) -> list[PollResult]:
    """Store several answers or events in order, in bulk: one result per entry.

    An integration may come back in several entries (a stream's events, in the
    order they came); each is applied on top of the one before, so every
    change between them is a StatusChange. Writers of one integration are
    serialised on its row: two at once (the periodic poll and ``POST /poll``)
    would otherwise both insert a new item. A handful of queries, whatever the
    number of entries.
    """
    integrations = {integration.pk: integration for integration, _ in entries}
    list(Integration.objects.select_for_update().filter(pk__in=list(integrations)).values_list("pk", flat=True))
    now = timezone.now()
    wanted = {external_id for _, pairs in entries for external_id, _ in pairs}
    current = {
        (s.integration_id, s.external_id): s
        for s in ExternalStatus.objects.select_for_update().filter(
            integration_id__in=list(integrations), external_id__in=list(wanted)
        )
    }
    mappings = {pk: raw_to_canonical(integration) for pk, integration in integrations.items()}
    new_rows, updated, changes, results = [], {}, [], []
    for integration, pairs in entries:
        result = PollResult()
        latest: dict[str, str] = dict(pairs)  # a repeated id keeps its last value
        for external_id, raw in latest.items():
            canonical = map_status(raw, mappings[integration.pk])
            unknown = canonical is None
            if unknown:
                canonical = CanonicalStatus.UNAVAILABLE
                result.unknown[raw] = result.unknown.get(raw, 0) + 1
            row = current.get((integration.pk, external_id))
            if row is None:
                row = current[(integration.pk, external_id)] = ExternalStatus(
                    tenant_id=integration.tenant_id, integration=integration, external_id=external_id,
                    raw_status=raw, canonical_status=canonical, is_unknown=unknown, last_seen_at=now,
                    last_changed_at=now,
                )
                new_rows.append(row)
                continue
            if row.raw_status != raw or row.canonical_status != canonical:
                changes.append(StatusChange(
                    tenant_id=integration.tenant_id, integration=integration, external_id=external_id,
                    old_canonical=row.canonical_status, new_canonical=canonical, old_raw=row.raw_status,
                    new_raw=raw, changed_at=now,
                ))
                row.raw_status, row.canonical_status, row.last_changed_at = raw, canonical, now
                result.changed += 1
            row.is_unknown = unknown
            row.last_seen_at = now
            if row.pk is not None and not row._state.adding:
                updated[row.pk] = row
        result.seen = len(latest)
        results.append(result)
    ExternalStatus.objects.bulk_create(new_rows)
    bulk.rows_update(
        list(updated.values()), ["raw_status", "canonical_status", "is_unknown", "last_seen_at", "last_changed_at"]
    )
    StatusChange.objects.bulk_create(changes, batch_size=500)
    Integration.objects.filter(pk__in=list(integrations)).update(last_polled_at=now)
    return results
