"""Test settings: PostgreSQL and Redis on loopback (started by scripts/test.sh)."""
from .base import *  # noqa: F401,F403
from .base import env

DEBUG = False
SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://ih:ih@127.0.0.1:55432/ih")}
# Tests open a connection per request; the benchmark sets DB_CONN_MAX_AGE to keep them.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
FERNET_KEYS = env.list(
    "FERNET_KEYS",
    default=["dGVzdC1vbmx5LWZlcm5ldC1rZXktMDEyMzQ1Njc4OWE="],
)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CELERY_TASK_ALWAYS_EAGER = False
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# Usage counters are flushed by the tests themselves (connections.usage.flush), not by a thread
# writing from outside each test's transaction.
BATCHING_BACKGROUND = env.bool("BATCHING_BACKGROUND", default=False)
# Generous limits so ordinary tests never meet them; the throttle tests set their own.
API_RATE_LIMITS = {family: "100000/min" for family in ("providers", "integrations", "connections", "search", "widgets")}
# Tests change endpoint rows directly and roll them back: read the endpoint on every delivery
# (the journeys and the benchmark set the production value through the environment).
WEBHOOK_ENDPOINT_CACHE_SECONDS = env.float("WEBHOOK_ENDPOINT_CACHE_SECONDS", default=0)
