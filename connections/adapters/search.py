"""How a provider's API is searched: the generic REST adapter, and a registry for providers' own.

The generic adapter (``RestSearch``) reads the provider's ``search_config`` (with the integration's
``settings.search`` over it): where to send the query and with which parameter names, where the items
and the total are in the answer, and the dotted path of each result field in an item. A provider whose
API does not fit that description registers its own class for its slug (``@search_adapter_for``) and
replaces the steps that differ, the way NetBox's data backends each speak their own source; nothing
asks ``if provider == …``.
"""
import json
from collections.abc import Callable

from catalog.validators import SEARCH_CONFIG_DEFAULTS
from integrations_site import bounds

DATA_BYTES = 4096


def dig(data, path: str):
    """The value at a dotted path (``a.b.0.c``; list items by index), None where there is none."""
    for part in [p for p in path.split(".") if p]:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def bounded_data(item, limit: int = DATA_BYTES):
    """``item`` as JSON of at most ``limit`` bytes: its last keys dropped until it fits, else
    ``{"truncated": true}``."""
    def size(value):
        return len(json.dumps(value, default=str, ensure_ascii=False).encode())

    if size(item) <= limit:
        return item
    if isinstance(item, dict):
        kept = dict(item)
        while len(kept) > 1:
            kept.popitem()
            if size({**kept, "truncated": True}) <= limit:
                return {**kept, "truncated": True}
    return {"truncated": True}


def text(value, length: int) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return bounds.clean_text(str(value), length)


def score(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def result(found: dict, raw: dict) -> dict | None:
    """A search item's own fields from ``found`` (result field → upstream value); None without an id."""
    identifier = text(found.get("id"), 256)
    if identifier in (None, ""):
        return None
    return {
        "entity": text(found.get("entity"), 128), "id": identifier, "title": text(found.get("title"), 500),
        "snippet": text(found.get("snippet"), 1000), "url": text(found.get("url"), 2048),
        "score": score(found.get("score")), "updated_at": text(found.get("updated_at"), 64), "data": bounded_data(raw),
    }


class RestSearch:
    """The generic REST adapter: everything from ``search_config``."""

    def config(self, integration) -> dict:
        """The defaults, then the provider's ``search_config``, then the integration's ``settings.search``
        (``fields`` merged key by key)."""
        config = {**SEARCH_CONFIG_DEFAULTS, "fields": dict(SEARCH_CONFIG_DEFAULTS["fields"])}
        settings = integration.settings if isinstance(integration.settings, dict) else {}
        for source in (integration.provider.search_config or {}, settings.get("search") or {}):
            for key, value in source.items():
                if key == "fields":
                    config["fields"].update(value)
                else:
                    config[key] = value
        return config

    def query(self, config: dict, request) -> tuple[str, str, dict]:
        """(method, endpoint under the base URL, parameters: the query string of a GET, the JSON body of a POST)."""
        params = dict(request.params)
        params[config["query_param"]] = request.query
        if config.get("limit_param"):
            params[config["limit_param"]] = request.limit
        if config.get("offset_param") and request.offset:
            params[config["offset_param"]] = request.offset
        if config.get("entity_param") and request.entities:
            params[config["entity_param"]] = ",".join(request.entities)
        return config["method"], config["endpoint"], params

    def items(self, config: dict, payload) -> tuple[list | None, int | None]:
        """The answer's items (None: no list where the configuration says) and its total, when it says one."""
        items = dig(payload, config["items_path"]) if config["items_path"] else payload
        total = dig(payload, config["total_path"]) if config.get("total_path") else None
        total = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
        return (items if isinstance(items, list) else None), total

    def item(self, config: dict, raw) -> dict | None:
        if not isinstance(raw, dict):
            return None
        return result({name: dig(raw, path) if path else None for name, path in config["fields"].items()}, raw)


_GENERIC = RestSearch()
_ADAPTERS: dict[str, RestSearch] = {}  # adapters hold no state: one instance each serves every search


def search_adapter_for(slug: str) -> Callable[[type[RestSearch]], type[RestSearch]]:
    """Class decorator: the search adapter of the provider ``slug``."""
    def register(cls: type[RestSearch]) -> type[RestSearch]:
        _ADAPTERS[slug] = cls()
        return cls

    return register


def search_adapter(provider) -> RestSearch:
    return _ADAPTERS.get(provider.slug, _GENERIC)


@search_adapter_for("github")
class GitHubSearch(RestSearch):
    """GitHub's search API: ``/search/{issues|repositories}?q=&per_page=&page=`` (pages, not offsets; one kind
    of entity per request), ``{"total_count", "items"}``; an issue's title or a repository's full name."""

    ENTITIES = ("issues", "repositories")

    def query(self, config: dict, request) -> tuple[str, str, dict]:
        entity = next((e for e in request.entities if e in self.ENTITIES), self.ENTITIES[0])
        page = request.offset // request.limit + 1
        return "GET", f"/search/{entity}", {**request.params, "q": request.query, "per_page": request.limit,
                                            "page": page}

    def items(self, config: dict, payload) -> tuple[list | None, int | None]:
        items = payload.get("items") if isinstance(payload, dict) else None
        total = payload.get("total_count") if isinstance(payload, dict) else None
        return (items if isinstance(items, list) else None), (total if isinstance(total, int) else None)

    def item(self, config: dict, raw) -> dict | None:
        if not isinstance(raw, dict):
            return None
        entity = "repositories" if "full_name" in raw else "issues"
        return result({"id": raw.get("id"), "title": raw.get("title") or raw.get("full_name"),
                       "snippet": (raw.get("body") or raw.get("description") or "")[:1000] or None,
                       "url": raw.get("html_url"), "entity": entity, "updated_at": raw.get("updated_at"),
                       "score": raw.get("score")}, raw)
