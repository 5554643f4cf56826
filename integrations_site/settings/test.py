"""Test settings: PostgreSQL and Redis on loopback (started by scripts/test.sh), or the embedded
default (DATABASE_URL=sqlite:///…, no REDIS_URL, the filesystem broker under VAR_DIR)."""
from .base import *  # noqa: F401,F403
from .base import INSTALLED_APPS, VAR_DIR, database_settings, env

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "demo"]
SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
# Tests open a connection per request; the benchmark and the production journeys keep them.
DATABASES = {"default": database_settings("postgres://ih:ih@127.0.0.1:55432/ih", conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that the servers and workers a test starts share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
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
# Usage counters are flushed by the tests themselves (connections.services.usage.flush), not by a thread
# writing from outside each test's transaction.
BATCHING_BACKGROUND = env.bool("BATCHING_BACKGROUND", default=False)
# Generous limits so ordinary tests never meet them; the throttle tests set their own.
API_RATE_LIMITS = {family: "100000/min" for family in ("providers", "integrations", "connections", "search", "widgets")}
# Tests change endpoint rows directly and roll them back: read the endpoint on every delivery
# (the journeys and the benchmark set the production value through the environment).
WEBHOOK_ENDPOINT_CACHE_SECONDS = env.float("WEBHOOK_ENDPOINT_CACHE_SECONDS", default=0)
