"""Widget data (DESIGN.md, "Widget data"): live entities of an integration's system for a dashboard widget.

The provider's ``entity_config`` declares each entity's endpoint, where its items and total are in the
answer, its fields and its filter params; only those pass (the API refuses the rest). Answers are
cached per integration, user, entity and query for ``WIDGET_DATA_CACHE_SECONDS``; a failure is never
cached. The credential is the one a search would use (``search.usable_credential``).
"""
import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from integrations_site import outbound

from .. import adapters
from ..adapters import dig
from ..models import Integration
from . import usage
from .answers import answer_json
from .oauth import refresh_for_retry
from .probes import endpoint_url, with_query
from .search import usable_credential


@dataclass
class WidgetQuery:
    entity: str
    fields: list[str]
    filters: dict
    limit: int = 10


class WidgetDataFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def entity_config(integration: Integration, entity: str) -> dict | None:
    """The provider's ``entity_config`` of ``entity``, or None when it declares no such entity."""
    config = (integration.provider.entity_config or {}).get(entity)
    return config if isinstance(config, dict) else None


def _widget_cache_key(integration: Integration, user, query: WidgetQuery) -> str:
    asked = json.dumps([query.entity, sorted(query.fields), query.filters, query.limit], sort_keys=True)
    return (f"widgets:data:{integration.pk}:{getattr(user, 'pk', None) or '-'}:"
            f"{hashlib.sha256(asked.encode()).hexdigest()[:32]}")


def widget_data(integration: Integration, user, query: WidgetQuery) -> dict:
    """Live entities for a widget: the declared fields of at most ``limit`` items, cached per integration,
    user, entity and query for ``WIDGET_DATA_CACHE_SECONDS``; WidgetDataFailed when the upstream fails."""
    key = _widget_cache_key(integration, user, query)
    seconds = settings.WIDGET_DATA_CACHE_SECONDS
    if seconds > 0:
        try:
            kept = cache.get(key)
        except Exception:  # noqa: BLE001 (the cache being down costs a request upstream, not the answer)
            kept = None
        if kept is not None:
            return {**kept, "cached": True}
    usable, credential = usable_credential(integration, user)
    if not usable:
        raise WidgetDataFailed("INVALID_CREDENTIALS", "The integration has no usable credential for this caller.")
    config = entity_config(integration, query.entity)
    url = endpoint_url(integration, config["endpoint"])
    if not url:
        raise WidgetDataFailed("CONNECTION_FAILED", "The integration has no api_base_url.")
    params = {**{k: (str(v).lower() if isinstance(v, bool) else v) for k, v in query.filters.items()},
              "limit": query.limit}
    outcome = None
    for _ in range(2):
        options = adapters.request_options(integration, credential)
        call = {"method": "GET", "url": with_query(url, params), **options}
        call["headers"] = {**call["headers"], "Accept": "application/json"}
        outcome = usage.metered_many([(integration, call)])[0]
        refused = not isinstance(outcome, outbound.OutboundError) and outcome.status_code in (401, 403)
        fresh = refresh_for_retry(credential) if refused and credential is not None else None
        if fresh is None:
            break
        credential = fresh
    payload, error = answer_json(outcome)
    if error:  # the widget contract has two codes: the credentials, or the far side
        raise WidgetDataFailed(error[0] if error[0] == "INVALID_CREDENTIALS" else "CONNECTION_FAILED", error[1])
    items = dig(payload, config.get("items_path") or "") if config.get("items_path") else payload
    if not isinstance(items, list):
        raise WidgetDataFailed("CONNECTION_FAILED", "The answer has no list of items where the provider says.")
    data = [{name: dig(item, name) for name in query.fields} for item in items[: query.limit] if isinstance(item, dict)]
    total = dig(payload, config["total_path"]) if config.get("total_path") else None
    answer = {"data": data, "total": total if isinstance(total, int) and not isinstance(total, bool) else len(data),
              "entity": query.entity, "fetched_at": timezone.now().isoformat().replace("+00:00", "Z")}
    if seconds > 0:
        try:
            cache.set(key, answer, seconds)
        except Exception:  # noqa: BLE001
            pass
    return {**answer, "cached": False}
