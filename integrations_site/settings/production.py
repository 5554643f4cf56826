"""Production: refuses to start with a missing or weak secret or an unusable public address.

Each refusal is an ImproperlyConfigured naming the environment variable (never its value when
it is a secret); every problem found is listed at once, before any of base's settings is built.
"""
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import environ
from cryptography.fernet import Fernet
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()
_DOTENV = Path(__file__).resolve().parents[2] / ".env"
if _DOTENV.exists():  # read as base reads it (the environment wins), so that the checks below see its values
    environ.Env.read_env(_DOTENV, overwrite=False)

# Words that mark a key copied from an example or a default rather than generated.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "insecure", "secret-key", "placeholder", "example")


def secret_key_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be a signing key: the rules of ``check --deploy`` (security.W009) and
    no placeholder. The value itself never appears in the answer."""
    if not value:
        return f"The environment variable {name} must be set in production."
    lowered = value.lower()
    if lowered.startswith(SECRET_KEY_INSECURE_PREFIX) or any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return f"{name} is a placeholder value; generate one: python -c \"import secrets; " \
               "print(secrets.token_urlsafe(50))\"."
    if len(value) < SECRET_KEY_MIN_LENGTH or len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"{name} must be at least {SECRET_KEY_MIN_LENGTH} characters with at least " \
               f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones."
    return None


def fernet_keys_problem(keys: list[str]) -> str | None:
    if not keys:
        return "The environment variable FERNET_KEYS must be set in production."
    for key in keys:
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            return "FERNET_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
    return None


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or bool(mapped and mapped.is_loopback)


def callback_url_problem(url: str) -> str | None:
    """OAuth providers send users back to this address: it must be the site's public one."""
    if not url:
        return ("The environment variable OAUTH_CALLBACK_URL must be set in production: the public address of "
                "/api/v1/oauth/callback, as registered with the OAuth providers.")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return f"OAUTH_CALLBACK_URL is not a URL: {url!r}."
    if parts.scheme not in ("http", "https") or not host:
        return f"OAUTH_CALLBACK_URL must be an http(s) URL with a host: {url!r}."
    if _loopback(host):
        return f"OAUTH_CALLBACK_URL must be the site's public address, not a loopback one: {url!r}."
    return None


_secret_key = env("DJANGO_SECRET_KEY", default="")
_fernet_keys = [key.strip() for key in env.list("FERNET_KEYS", default=[]) if key.strip()]
_allowed_hosts = [host.strip() for host in env.list("DJANGO_ALLOWED_HOSTS", default=[]) if host.strip()]
# No default here: base's (a loopback address for the embedded run) is never right in production.
_callback_url = env("OAUTH_CALLBACK_URL", default="").strip()

_problems = [
    secret_key_problem("DJANGO_SECRET_KEY", _secret_key),
    fernet_keys_problem(_fernet_keys),
    None if _allowed_hosts else "The environment variable DJANGO_ALLOWED_HOSTS must be set in production.",
    # Unset, the embedded run's SQLite file would be used.
    None if env("DATABASE_URL", default="") else "The environment variable DATABASE_URL must be set in production.",
    callback_url_problem(_callback_url),
]
if env("JWT_SIGNING_KEY", default=""):  # otherwise the tokens are signed with DJANGO_SECRET_KEY
    _problems.append(secret_key_problem("JWT_SIGNING_KEY", env("JWT_SIGNING_KEY")))
_problems = [problem for problem in _problems if problem]
if _problems:
    raise ImproperlyConfigured(" ".join(_problems))

from .base import *  # noqa: E402,F401,F403

SECRET_KEY = _secret_key
FERNET_KEYS = _fernet_keys
ALLOWED_HOSTS = _allowed_hosts
OAUTH_CALLBACK_URL = _callback_url
DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
