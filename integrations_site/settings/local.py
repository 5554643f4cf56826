"""Embedded default: SQLite, filesystem broker, no external server."""
from .base import *  # noqa: F401,F403
from .base import BASE_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)

(BASE_DIR / "var" / "broker" / "out").mkdir(parents=True, exist_ok=True)
(BASE_DIR / "var" / "broker" / "processed").mkdir(parents=True, exist_ok=True)
(BASE_DIR / "var" / "broker" / "control").mkdir(parents=True, exist_ok=True)

# Without Redis, a file cache shared by the web server and the worker (rate limits, usage counters).
if not env("REDIS_URL", default=""):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(BASE_DIR / "var" / "cache")}}

# A fixed development key so the demo's encrypted rows survive restarts. Never
# used outside the embedded default: production refuses to start without its own.
FERNET_KEYS = env.list("FERNET_KEYS", default=["ZGV2LW9ubHktZmVybmV0LWtleS1ub3QtZm9yLXByb2Q="])
# The demo's stand-in provider APIs run on this machine.
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
