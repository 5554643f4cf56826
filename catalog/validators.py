"""Validators shared by the catalog's defaults and an integration's config."""
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from .choices import CanonicalStatus, SignatureScheme


def validate_status_mapping(value) -> None:
    """``{canonical_status: [raw strings]}``, each raw value under one status only."""
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ValidationError("Must be an object mapping canonical statuses to lists of raw values.")
    unknown = sorted(set(value) - set(CanonicalStatus.values))
    if unknown:
        raise ValidationError(
            f"Unknown canonical status(es): {', '.join(unknown)}. Allowed: {', '.join(CanonicalStatus.values)}."
        )
    seen: dict[str, str] = {}
    for canonical, raws in value.items():
        if not isinstance(raws, list) or not all(isinstance(r, str) and r for r in raws):
            raise ValidationError(f"'{canonical}' must be a list of non-empty strings.")
        for raw in raws:
            if raw in seen and seen[raw] != canonical:
                raise ValidationError(f"Raw value '{raw}' is mapped to both '{seen[raw]}' and '{canonical}'.")
            seen[raw] = canonical


def validate_http_url(value) -> None:
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise ValidationError("Must not carry credentials in the URL.")


def validate_endpoint(value) -> None:
    """A path relative to the base URL ('/status') or an absolute http(s) URL."""
    if not value:
        return
    if value.startswith("/"):
        if value.startswith("//") or "\\" in value:
            raise ValidationError("Must be a path starting with a single '/', or an absolute http(s) URL.")
        return
    validate_http_url(value)


def validate_string_list(value) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Must be a list of strings.")


def validate_signature_scheme(value) -> None:
    if value and value not in SignatureScheme.values:
        raise ValidationError(f"Unknown signature scheme. Allowed: {', '.join(SignatureScheme.values)}.")


HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,63}$")
CREDENTIAL_FIELD_KEYS = {"name", "label", "secret", "required", "help_text", "header"}


def validate_credential_fields(value) -> None:
    """``[{"name", "label"?, "secret": bool, "required": bool, "help_text"?, "header"?}]``.

    ``header`` names the HTTP header the value is sent in by the generic REST adapter.
    """
    if not isinstance(value, list):
        raise ValidationError("Must be a list of field definitions.")
    names = set()
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValidationError("Each credential field needs a non-empty 'name'.")
        extra = set(item) - CREDENTIAL_FIELD_KEYS
        if extra:
            raise ValidationError(f"Unknown key(s) in credential field: {', '.join(sorted(extra))}.")
        if item["name"] in names:
            raise ValidationError(f"Credential field '{item['name']}' is defined twice.")
        header = item.get("header")
        if header is not None and (not isinstance(header, str) or not HEADER_NAME.match(header)
                                   or header.lower() in ("host", "content-length", "transfer-encoding", "cookie")):
            raise ValidationError(f"Credential field '{item['name']}': 'header' must be an HTTP header name.")
        names.add(item["name"])


OAUTH_CONFIG_KEYS = {
    "authorize_url", "token_url", "revoke_url", "client_id", "scopes", "pkce", "issuer",
    "token_auth_method", "extra_authorize_params",
}


def validate_oauth_config(value) -> None:
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ValidationError("Must be an object.")
    extra = set(value) - OAUTH_CONFIG_KEYS
    if extra:
        raise ValidationError(f"Unknown key(s): {', '.join(sorted(extra))}.")
    for key in ("authorize_url", "token_url", "revoke_url"):
        if key in value and not isinstance(value[key], str):
            raise ValidationError(f"{key} must be a URL (a string).")
        if value.get(key):
            validate_http_url(value[key])
    for key in ("client_id", "issuer"):
        if key in value and not isinstance(value[key], str):
            raise ValidationError(f"{key} must be a string.")
    if "scopes" in value:
        validate_string_list(value["scopes"])
    if value.get("token_auth_method", "client_secret_basic") not in ("client_secret_basic", "client_secret_post"):
        raise ValidationError("token_auth_method must be client_secret_basic or client_secret_post.")
    if "extra_authorize_params" in value and not isinstance(value["extra_authorize_params"], dict):
        raise ValidationError("extra_authorize_params must be an object.")


# --- search and widget data (DESIGN.md, "Search, widget data …") ---------------------------------------------

DOTTED_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")
SEARCH_FIELDS = ("id", "title", "snippet", "url", "entity", "updated_at", "score")
SEARCH_CONFIG_DEFAULTS = {
    "endpoint": "/search", "method": "GET", "query_param": "q", "limit_param": "limit", "offset_param": "offset",
    "entity_param": "type", "items_path": "results", "total_path": "",
    "fields": {"id": "id", "title": "name", "snippet": "description", "url": "url", "entity": "type",
               "updated_at": "updated_at", "score": "score"},
}
ENTITY_CONFIG_KEYS = {"endpoint", "items_path", "total_path", "fields", "filter_params"}


def validate_relative_endpoint(value, name: str = "endpoint") -> None:
    """A path under the base URL: '/search', never an absolute URL, '//host' or a '..' step out of it."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or ".." in value.split("?")[0].split("/") or any(c in value for c in "\r\n\t #"):
        raise ValidationError(f"{name} must be a path relative to the base URL, starting with a single '/'.")


def _dotted(value, name: str, *, empty: bool = False) -> None:
    if empty and value == "":
        return
    if not isinstance(value, str) or not DOTTED_PATH.match(value):
        raise ValidationError(f"{name} must be a dotted path (e.g. 'data.items').")


def validate_search_config(value) -> None:
    """``search_config`` of a provider, or the keys of it an integration's ``settings.search`` overrides
    (every key is optional): known keys only, paths relative to the base URL, dotted paths into each item."""
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ValidationError("Must be an object.")
    unknown = sorted(set(value) - set(SEARCH_CONFIG_DEFAULTS))
    if unknown:
        raise ValidationError(f"Unknown key(s): {', '.join(unknown)}. Allowed: {', '.join(SEARCH_CONFIG_DEFAULTS)}.")
    if "endpoint" in value:
        validate_relative_endpoint(value["endpoint"])
    if "method" in value and value["method"] not in ("GET", "POST"):
        raise ValidationError("method must be GET or POST.")
    for key in ("query_param", "limit_param", "offset_param", "entity_param"):
        if key in value and not (isinstance(value[key], str) and (PARAM_NAME.match(value[key])
                                                                   or (value[key] == "" and key != "query_param"))):
            raise ValidationError(f"{key} must be a parameter name (letters, digits, _ . - [ ]).")
    for key in ("items_path", "total_path"):
        if key in value:
            _dotted(value[key], key, empty=True)
    if "fields" in value:
        fields = value["fields"]
        if not isinstance(fields, dict):
            raise ValidationError("fields must be an object of result field → dotted path.")
        unknown = sorted(set(fields) - set(SEARCH_FIELDS))
        if unknown:
            raise ValidationError(f"Unknown field(s) in fields: {', '.join(unknown)}. "
                                  f"Allowed: {', '.join(SEARCH_FIELDS)}.")
        for field, path in fields.items():
            _dotted(path, f"fields.{field}", empty=field != "id")


def validate_entity_config(value) -> None:
    """``{"<Entity>": {"endpoint", "items_path"?, "total_path"?, "fields": [...], "filter_params"?: [...]}}``."""
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ValidationError("Must be an object of entity name → its configuration.")
    for entity, config in value.items():
        if not isinstance(entity, str) or not PARAM_NAME.match(entity):
            raise ValidationError(f"Entity name {entity!r} must be 1-64 letters, digits or _ . - [ ].")
        if not isinstance(config, dict):
            raise ValidationError(f"{entity} must be an object.")
        unknown = sorted(set(config) - ENTITY_CONFIG_KEYS)
        if unknown:
            raise ValidationError(f"{entity}: unknown key(s): {', '.join(unknown)}. "
                                  f"Allowed: {', '.join(sorted(ENTITY_CONFIG_KEYS))}.")
        if "endpoint" not in config:
            raise ValidationError(f"{entity}: endpoint is required.")
        validate_relative_endpoint(config["endpoint"], f"{entity}.endpoint")
        for key in ("items_path", "total_path"):
            if key in config:
                _dotted(config[key], f"{entity}.{key}", empty=True)
        fields = config.get("fields", [])
        if not isinstance(fields, list) or not fields or len(set(map(str, fields))) != len(fields):
            raise ValidationError(f"{entity}.fields must be a non-empty list of distinct dotted paths.")
        for field in fields:
            _dotted(field, f"{entity}.fields")
        params = config.get("filter_params", [])
        if not isinstance(params, list) or not all(isinstance(p, str) and PARAM_NAME.match(p) for p in params):
            raise ValidationError(f"{entity}.filter_params must be a list of parameter names.")
