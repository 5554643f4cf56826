"""Embedded default: SQLite, filesystem broker, no external server."""
from .base import *  # noqa: F401,F403
from .base import INSTALLED_APPS, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
INSTALLED_APPS = [*INSTALLED_APPS, "demo"]

# A fixed development key so the demo's encrypted rows survive restarts. Never
# used outside the embedded default: production refuses to start without its own.
FERNET_KEYS = env.list("FERNET_KEYS", default=["ZGV2LW9ubHktZmVybmV0LWtleS1ub3QtZm9yLXByb2Q="])
# The demo's stand-in provider APIs run on this machine.
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
