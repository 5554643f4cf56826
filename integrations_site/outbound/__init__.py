"""The one SSRF-safe HTTP client for tenant-supplied URLs.

``policy`` says what may be reached, ``transport`` moves the bytes (aiohttp,
with the policy in its resolver), ``client`` adds retries, redirects, bodies
and auth-header hygiene. Callers use the names below.
"""
from .client import (
    BACKOFF_BASE_SECONDS,
    DEFAULT_MAX_BYTES,
    IDEMPOTENT_METHODS,
    MAX_BACKOFF_SECONDS,
    MAX_REDIRECTS,
    RETRY_STATUSES,
    USER_AGENT,
    OutboundResponse,
    arequest,
    backoff_delay,
    request,
    request_many,
    retry_after_seconds,
)
from .errors import OutboundError, OutboundTimeout, ResponseTooLarge, UrlNotAllowed
from .policy import Target, blocked_reason, check_url, literal_ip
from .transport import tls_problems

__all__ = [
    "BACKOFF_BASE_SECONDS", "DEFAULT_MAX_BYTES", "IDEMPOTENT_METHODS", "MAX_BACKOFF_SECONDS", "MAX_REDIRECTS",
    "RETRY_STATUSES", "USER_AGENT", "OutboundError", "OutboundResponse", "OutboundTimeout", "ResponseTooLarge",
    "Target", "UrlNotAllowed", "arequest", "backoff_delay", "blocked_reason", "check_url", "literal_ip",
    "request", "request_many", "retry_after_seconds", "tls_problems",
]
