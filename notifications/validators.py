"""What a notification endpoint's URL may be, stated once for the API, its document and the admin."""
import re

from django.core.exceptions import ValidationError

from integrations_site import outbound

from .choices import EVENT_TYPES, URL_MAX_LENGTH

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
# Printable ASCII but '#' (a fragment means nothing to a POST) and '\'; anything else is percent-encoded.
_TARGET = r"(?:[/?][\x21\x22\x24-\x5b\x5d-\x7e]*)?"
# An absolute http(s) URL: a host name or IPv4 address, an optional port, a path and query.
_URL = re.compile(rf"[Hh][Tt][Tt][Pp][Ss]?://{_LABEL}(?:\.{_LABEL})*{_PORT}{_TARGET}")
# The same as the API document states it: surrounding whitespace is trimmed before the check, as DRF and
# Django forms trim text.
URL_PATTERN = rf"^\s*{_URL.pattern}\s*$"


def url_problem(value) -> str | None:
    """Why ``value`` cannot be an endpoint URL, or None.

    The shape above, then the outbound client's URL rules (scheme, no credentials, a host that can be
    sent). Whether its addresses may be reached is decided by the address policy when each delivery
    is sent (a name can resolve elsewhere later): a refused one fails with URL_NOT_ALLOWED.
    """
    if not isinstance(value, str) or len(value) > URL_MAX_LENGTH or not _URL.fullmatch(value):
        return f"Must be an absolute http(s) URL of at most {URL_MAX_LENGTH} characters, without a fragment."
    try:
        outbound.policy.parse_url(value)
    except outbound.OutboundError as exc:
        return exc.message
    return None


def validate_url(value) -> None:
    problem = url_problem(value)
    if problem:
        raise ValidationError(problem)


def validate_events(value) -> None:
    if not isinstance(value, list) or not value or any(item not in EVENT_TYPES for item in value):
        raise ValidationError(f"Must be a non-empty list of: {', '.join(EVENT_TYPES)}.")
