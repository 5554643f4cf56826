"""drf-spectacular: the error envelope on every operation, our auth schemes, and what validators check.

Settings name ``AutoSchema`` and the hooks by this package's path; importing it registers the extensions.
"""
from .autoschema import (
    ApiKeyScheme,
    AutoSchema,
    StrictFilterParameters,
    TenantJWTScheme,
    TenantSessionScheme,
    contract_paths_hook,
)
from .plain_views import plain_views_hook
from .rules import FIELD_RULES

__all__ = [
    "FIELD_RULES", "ApiKeyScheme", "AutoSchema", "StrictFilterParameters", "TenantJWTScheme", "TenantSessionScheme",
    "contract_paths_hook", "plain_views_hook",
]
