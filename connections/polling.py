"""Polling an integration's status endpoint into ExternalStatus rows.

Raw statuses are mapped through the provider's default mapping merged with
the integration's own (the integration wins per raw value); a raw value that
matches nothing maps to ``unavailable`` and is counted and reported.
"""
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from catalog.choices import CanonicalStatus
from integrations_site import bounds

from . import adapters, http, usage
from .checks import endpoint_url
from .models import Credential, ExternalStatus, Integration, StatusChange

logger = logging.getLogger("connections.polling")

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


def _dig(data, path: str):
    for part in [p for p in path.split(".") if p]:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def extract_items(data, integration: Integration) -> list[tuple[str, str]]:
    """(external id, raw status) pairs from a status answer."""
    items = _dig(data, integration.status_items_path) if integration.status_items_path else data
    if isinstance(items, dict) and not integration.status_items_path:
        items = next((items[k] for k in DEFAULT_LIST_KEYS if isinstance(items.get(k), list)), None)
    if not isinstance(items, list):
        raise PollError("UNEXPECTED_STATUS", "The status answer holds no list of items at the configured path.")
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        external_id = _dig(item, integration.status_id_field)
        raw = _dig(item, integration.status_field)
        if external_id is None or raw is None or isinstance(raw, (dict, list)):
            continue
        pairs.append((bounds.clean_text(external_id, 255), bounds.clean_text(raw, 255)))
    return pairs


def fetch(integration: Integration, credential: Credential | None) -> list[tuple[str, str]]:
    url = endpoint_url(integration, integration.status_endpoint or "")
    if not url or not integration.status_endpoint:
        raise PollError("NOT_CONFIGURED", "Set api_base_url and status_endpoint before polling.")
    try:
        response = usage.metered_request(
            integration, "GET", url, headers=adapters.auth_headers(credential, integration.provider)
        )
    except http.OutboundError as exc:
        raise PollError(exc.code, exc.message) from None
    if response.status_code in (401, 403):
        raise PollError("INVALID_CREDENTIALS", f"The API answered {response.status_code}.")
    if not 200 <= response.status_code < 300:
        raise PollError("UNEXPECTED_STATUS", f"The API answered {response.status_code}.")
    try:
        data = response.json()
    except ValueError:
        raise PollError("UNEXPECTED_STATUS", "The status answer is not JSON.") from None
    return extract_items(data, integration)


@transaction.atomic
def statuses_store(*, integration: Integration, pairs: list[tuple[str, str]]) -> PollResult:
    """Upsert ExternalStatus rows and record a StatusChange per change, in bulk.

    Polls of one integration are serialised on its row: two at once (the
    periodic task and ``POST /poll``) would otherwise both insert a new item.
    """
    Integration.objects.select_for_update().filter(pk=integration.pk).values_list("pk", flat=True).first()
    now = timezone.now()
    mapping = raw_to_canonical(integration)
    result = PollResult()
    latest: dict[str, str] = dict(pairs)  # a repeated id keeps its last value
    existing = {
        s.external_id: s
        for s in ExternalStatus.objects.select_for_update().filter(
            integration=integration, external_id__in=list(latest)
        )
    }
    new_rows, updated, changes = [], [], []
    for external_id, raw in latest.items():
        canonical = map_status(raw, mapping)
        unknown = canonical is None
        if unknown:
            canonical = CanonicalStatus.UNAVAILABLE
            result.unknown[raw] = result.unknown.get(raw, 0) + 1
        row = existing.get(external_id)
        if row is None:
            new_rows.append(ExternalStatus(
                tenant_id=integration.tenant_id, integration=integration, external_id=external_id,
                raw_status=raw, canonical_status=canonical, is_unknown=unknown, last_seen_at=now,
                last_changed_at=now,
            ))
            continue
        if row.raw_status != raw or row.canonical_status != canonical:
            changes.append(StatusChange(
                tenant_id=integration.tenant_id, integration=integration, external_id=external_id,
                old_canonical=row.canonical_status, new_canonical=canonical, old_raw=row.raw_status,
                new_raw=raw, changed_at=now,
            ))
            row.raw_status, row.canonical_status, row.last_changed_at = raw, canonical, now
        row.is_unknown = unknown
        row.last_seen_at = now
        updated.append(row)
    ExternalStatus.objects.bulk_create(new_rows)
    ExternalStatus.objects.bulk_update(
        updated, ["raw_status", "canonical_status", "is_unknown", "last_seen_at", "last_changed_at"]
    )
    StatusChange.objects.bulk_create(changes)
    Integration.objects.filter(pk=integration.pk).update(last_polled_at=now)
    result.seen = len(latest)
    result.changed = len(changes)
    return result


def status_poll(*, integration: Integration, actor: Actor | None = None) -> PollResult:
    """Fetch and store the integration's statuses; raises PollError when the fetch fails."""
    credential = Credential.objects.filter(integration=integration, user__isnull=True).first()
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
    from datetime import timedelta

    from django.db.models import Q

    from .checks import _enqueue
    from .choices import IntegrationStatus, UpdateMethod
    from .tasks import run_status_poll

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
        ids = [str(i.pk) for i in due]
        transaction.on_commit(lambda: [_enqueue(run_status_poll, pk) for pk in ids])
    return len(due)


def status_poll_queue(*, integration: Integration) -> None:
    """Queue a poll of ``integration`` after commit."""
    from .checks import _enqueue
    from .tasks import run_status_poll

    transaction.on_commit(lambda: _enqueue(run_status_poll, str(integration.pk)))
