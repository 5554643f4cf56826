"""What code knows of providers, which are rows staff edit: the shape of each credential type
(``credentials``) and how an API is searched (``search``)."""
from .credentials import (
    DEFAULTS,
    FORBIDDEN_HEADERS,
    HEADER_NAME,
    HINT_FIELD,
    MAX_PEM_LENGTH,
    MAX_SECRET_LENGTH,
    TLS_FIELDS,
    TLS_SPECS,
    FieldSpec,
    allowed_types,
    auth_headers,
    field_specs,
    make_hint,
    public_for_audit,
    request_options,
    secret_field_names,
    settings_problems,
    split_credential,
)
from .search import RestSearch, dig, search_adapter, search_adapter_for

__all__ = [
    "DEFAULTS", "FORBIDDEN_HEADERS", "HEADER_NAME", "HINT_FIELD", "MAX_PEM_LENGTH", "MAX_SECRET_LENGTH", "TLS_FIELDS",
    "TLS_SPECS", "FieldSpec", "RestSearch", "allowed_types", "auth_headers", "dig", "field_specs", "make_hint",
    "public_for_audit", "request_options", "search_adapter", "search_adapter_for", "secret_field_names",
    "settings_problems", "split_credential",
]
