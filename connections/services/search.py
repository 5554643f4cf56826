"""Search across a tenant's connected systems (DESIGN.md, "Search").

``search_run`` asks every searchable integration at once (``usage.metered_many``: the outbound
client's ``request_many``, within each integration's limits), each within its own timeout and all
within ``SEARCH_DEADLINE_SECONDS``; what an upstream answers is mapped to items through the
provider's ``search_config`` (an integration may override any key in ``settings.search``). A slow,
failing, refused or unauthorised upstream is an entry in ``errors`` with its code, never an
exception; only the caller's input can be refused (``SearchRequest`` is validated by the API).

Who is searched: the caller's tenant's integrations that are not deleted nor disabled,
``search_enabled``, of a provider that ``supports_search``, with a usable credential; a
user-scoped integration with the caller's own connection only. An id the caller names that is not
one of those, or is another tenant's, is ``NOT_SEARCHABLE`` and gets no request.
"""
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations_site import metrics

from .. import adapters
from ..choices import IntegrationStatus
from ..models import Credential, Integration
from ..selectors import tenant_credentials, user_credentials
from . import usage
from .answers import answer_json
from .oauth import refresh_for_retry
from .probes import endpoint_url, with_query

NOT_SEARCHABLE = "NOT_SEARCHABLE"


@dataclass
class SearchRequest:
    query: str
    entities: list[str] = field(default_factory=list)
    limit: int = 10  # per integration
    offset: int = 0
    params: dict = field(default_factory=dict)  # custom filters, sent as they are beside the configured ones
    since: datetime | None = None  # date_range: items whose updated_at is outside are left out
    until: datetime | None = None

    def in_range(self, item: dict) -> bool:
        if self.since is None and self.until is None:
            return True
        when = parse_datetime(item["updated_at"] or "")
        if when is None:
            return False
        if timezone.is_naive(when):
            when = timezone.make_aware(when, UTC)
        return (self.since is None or when >= self.since) and (self.until is None or when <= self.until)


def search_request(data: dict) -> SearchRequest:
    """The question from the API's validated input: ``?query=…&entities=…`` or the ``POST /search`` body
    (its ``filters.entity_types`` join ``entities``; ``custom_filters`` and ``date_range`` carried over)."""
    filters = data.get("filters") or {}
    entities = list(dict.fromkeys([*data.get("entities", []), *filters.get("entity_types", [])]))
    date_range = filters.get("date_range") or {}
    return SearchRequest(query=data["query"], entities=entities, limit=data["limit"], offset=data["offset"],
                         params=filters.get("custom_filters") or {}, since=date_range.get("start"),
                         until=date_range.get("end"))


@dataclass
class Searched:
    """One integration's part of an answer: its items, or the error that stood for them."""

    items: list[dict] = field(default_factory=list)
    total: int = 0
    has_more: bool = False
    error: dict | None = None


# --- configuration and mapping ---------------------------------------------------------------------------------


def search_config(integration: Integration) -> dict:
    """The integration's search configuration, as its provider's adapter reads it."""
    return adapters.search_adapter(integration.provider).config(integration)


def ordered(items: list[dict]) -> list[dict]:
    """Score first (highest first; none last), then ``updated_at`` (newest first; none last)."""
    by_time = sorted(items, key=lambda item: item["updated_at"] or "", reverse=True)
    return sorted(by_time, key=lambda item: (item["score"] is None, -(item["score"] or 0.0)))


# --- who is searched -------------------------------------------------------------------------------------------


def _credentials(integrations: list[Integration], user) -> dict:
    """integration id → the credential a call of ``user`` uses (one query for each kind): the tenant's on a
    shared integration, the user's own on a user-scoped one (an API key has no connection of its own)."""
    shared = [i.pk for i in integrations if not i.user_scoped]
    personal = [i.pk for i in integrations if i.user_scoped]
    found = {c.integration_id: c for c in tenant_credentials(integration__in=shared)} if shared else {}
    if personal and getattr(user, "pk", None):
        found.update({c.integration_id: c for c in user_credentials(user=user, integration__in=personal)})
    return found


def _usable(integration: Integration, credential: Credential | None) -> bool:
    return integration.provider.auth_type == "none" or (credential is not None and credential.is_set)


def usable_credential(integration: Integration, user) -> tuple[bool, Credential | None]:
    """Whether ``user`` may call ``integration`` now, and with which credential."""
    credential = _credentials([integration], user).get(integration.pk)
    return _usable(integration, credential), credential


def searchable(tenant, user, ids: list[str] | None = None) -> tuple[list[tuple[Integration, Credential | None]], dict]:
    """(integration, credential) pairs to ask, and ``NOT_SEARCHABLE`` errors for the ``ids`` named
    that are not searchable by ``user`` in ``tenant``. Two queries, whatever the number of integrations."""
    rows = (Integration.objects.filter(tenant=tenant, deleted_at__isnull=True, search_enabled=True,
                                       provider__supports_search=True)
            .exclude(status=IntegrationStatus.DISABLED).select_related("provider").order_by("name", "pk"))
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    rows = list(rows)
    credentials = _credentials(rows, user)
    pairs = [(i, credentials.get(i.pk)) for i in rows if _usable(i, credentials.get(i.pk))]
    errors = {}
    if ids is not None:
        asked = {str(integration.pk) for integration, _ in pairs}
        for named in ids:
            if named not in asked:
                errors[named] = {"code": NOT_SEARCHABLE,
                                 "message": "No searchable integration of this tenant has this id."}
    return pairs, errors


# --- asking the upstreams --------------------------------------------------------------------------------------


def _call(integration: Integration, credential: Credential | None, config: dict, request: SearchRequest,
          timeout: float) -> dict | None:
    method, endpoint, params = adapters.search_adapter(integration.provider).query(config, request)
    url = endpoint_url(integration, endpoint)
    if not url:
        return None
    options = adapters.request_options(integration, credential)
    call = {"timeout": timeout, "retries": 0, **options}
    if method == "POST":
        call.update(method="POST", url=url, body=json.dumps(params).encode(),
                    headers={**options["headers"], "Content-Type": "application/json"})
    else:
        call.update(method="GET", url=with_query(url, params))
    call["headers"] = {**call["headers"], "Accept": "application/json"}
    return call


def _error(code: str, message: str) -> Searched:
    return Searched(error={"code": code, "message": message})


def _read(integration: Integration, config: dict, request: SearchRequest, outcome) -> Searched:
    payload, error = answer_json(outcome)
    if error:
        return _error(*error)
    adapter = adapters.search_adapter(integration.provider)
    items, total = adapter.items(config, payload)
    if items is None:
        return _error("UNEXPECTED_STATUS", f"The answer has no list at {config['items_path'] or 'its root'!r}.")
    identity = {"integration_id": str(integration.pk), "integration_name": integration.name,
                "provider": integration.provider.slug}
    mapped = [{**identity, **found} for found in map(lambda raw: adapter.item(config, raw), items[: request.limit])
              if found is not None and request.in_range(found)]
    if total is not None:
        return Searched(items=mapped, total=total, has_more=request.offset + len(items) < total)
    return Searched(items=mapped, total=request.offset + len(mapped), has_more=len(items) >= request.limit)


def search_run(pairs: list[tuple[Integration, Credential | None]], request: SearchRequest) -> dict[str, Searched]:
    """Ask every (integration, credential) at once; each integration's id → what it gave."""
    deadline = time.monotonic() + settings.SEARCH_DEADLINE_SECONDS
    found: dict[str, Searched] = {}
    pending = [(integration, credential, search_config(integration)) for integration, credential in pairs]
    for attempt in range(2):
        remaining = deadline - time.monotonic()
        calls, asked = [], []
        for integration, credential, config in pending:
            if remaining <= 0.05:
                found[str(integration.pk)] = _error("TIMEOUT", "The search deadline passed.")
                continue
            call = _call(integration, credential, config, request, min(integration.timeout_seconds, remaining))
            if call is None:
                found[str(integration.pk)] = _error("NOT_CONFIGURED", "The integration has no api_base_url.")
                continue
            calls.append((integration, call))
            asked.append((integration, credential, config))
        outcomes = usage.metered_many(calls, concurrency=max(1, len(calls))) if calls else []
        retry = []
        for (integration, credential, config), outcome in zip(asked, outcomes, strict=True):
            if getattr(outcome, "elapsed_ms", None) is not None:
                metrics.SEARCH_UPSTREAM_SECONDS.observe(outcome.elapsed_ms / 1000)
            result = _read(integration, config, request, outcome)
            fresh = None
            if attempt == 0 and result.error and result.error["code"] == "INVALID_CREDENTIALS":
                fresh = refresh_for_retry(credential)  # an OAuth2 token refreshed once, then asked again
            if fresh is not None:
                retry.append((integration, fresh, config))
            else:
                found[str(integration.pk)] = result
        if not retry:
            break
        pending = retry
    return found


def search_answer(found: dict[str, Searched], errors: dict, took_ms: int, *, grouped: bool) -> dict:
    """The answer's shape: ``results`` ordered, ``by_integration`` and ``by_entity`` when ``grouped``."""
    errors = dict(errors)
    items = []
    for integration_id, part in found.items():
        if part.error:
            errors[integration_id] = part.error
        else:
            items.extend(part.items)
    results = ordered(items)
    answer = {
        "results": results,
        "total": sum(part.total for part in found.values() if not part.error),
        "took": took_ms,
        "has_more": any(part.has_more for part in found.values() if not part.error),
    }
    if grouped:
        by_integration = {integration_id: [] for integration_id, part in found.items() if not part.error}
        by_entity: dict[str, list] = {}
        for item in results:  # in the answer's order, so each group is ordered too
            by_integration[item["integration_id"]].append(item)
            by_entity.setdefault(item["entity"] or "", []).append(item)
        answer["by_integration"], answer["by_entity"] = by_integration, by_entity
    answer["errors"] = errors
    return answer


def _count(found: dict[str, Searched]) -> None:
    """/metrics: the search's outcome and its upstreams' error codes."""
    failed = [part.error["code"] for part in found.values() if part.error]
    for code in failed:
        metrics.SEARCH_UPSTREAM_ERRORS.labels(code).inc()
    outcome = ("empty" if not found else "ok" if not failed else "failed" if len(failed) == len(found)
               else "partial")
    metrics.SEARCH_REQUESTS.labels(outcome).inc()


def search(*, tenant, user, request: SearchRequest, ids: list[str] | None = None, grouped: bool = True) -> dict:
    """The whole search of DESIGN.md: who is searched, asked at once, the answer (``tenant``: a Tenant or its id)."""
    started = time.monotonic()
    pairs, errors = searchable(tenant, user, ids)
    found = search_run(pairs, request)
    _count(found)
    return search_answer(found, errors, int((time.monotonic() - started) * 1000), grouped=grouped)

