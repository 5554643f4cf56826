"""Settings shared by every environment.

One django-environ ``env`` reads the environment; ``local``, ``test`` and
``production`` override only what they must.
"""
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

# Where the embedded run keeps its state: the SQLite file, the filesystem broker's folders, the file
# cache. Two runs (or a test run beside a demo) with different folders never share a queued task.
VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-only-secret-key-change-me-0123456789")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "integrations_site.dashboard.apps.OperationsAdminConfig",  # django.contrib.admin with our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our static files, never a CDN
    "django_celery_beat",
    "django_celery_results",
    "integrations_site",
    "tenants",
    "catalog",
    "connections",
    "audit",
    "webhooks",
    "notifications",
]

MIDDLEWARE = [
    "integrations_site.api.middleware.RequestIdMiddleware",
    "integrations_site.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "integrations_site.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "integrations_site.middleware.AuthenticationMiddleware",
    "integrations_site.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "integrations_site.api.errors.JsonErrorMiddleware",
]

ROOT_URLCONF = "integrations_site.urls"
WSGI_APPLICATION = "integrations_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

def database_settings(default_url: str, conn_max_age: int = 60) -> dict:
    """The default database from DATABASE_URL, with what every environment wants of it."""
    database = env.db("DATABASE_URL", default=default_url)
    # Persistent connections are worth most of the throughput on this hardware.
    database["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=conn_max_age)
    database["CONN_HEALTH_CHECKS"] = True
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # Web, worker threads and beat write to one file: transactions take the write lock when they begin
        # (a read lock upgraded mid-transaction fails at once, whatever the timeout), readers do not block
        # writers (WAL), and a writer waits for the lock instead of failing.
        database.setdefault("OPTIONS", {}).update(
            {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
        )
    elif not env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Behind a pooler that cannot keep prepared statements: none, also for the hot statements
        # that integrations_site.prepared.bound_cursor would have prepared.
        database.setdefault("OPTIONS", {})["prepare_threshold"] = None
    return database


DATABASES = {"default": database_settings(f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    # Without Redis, a file cache that every process of the run shares (rate limits, usage minute counts).
    CACHES = {"default": {"BACKEND": "integrations_site.cache.SharedFileCache",
                          "LOCATION": str(VAR_DIR / "cache"), "OPTIONS": {"MAX_ENTRIES": 20_000}}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Secrets at rest -------------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, all decrypt. Independent of
# SECRET_KEY so that rotating one never touches the other.
FERNET_KEYS = env.list("FERNET_KEYS", default=[])
FERNET_USE_HKDF = False

# --- Outbound HTTP ---------------------------------------------------------
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=[])

# --- REST framework ---------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.TenantJWTAuthentication",
        "tenants.authentication.ApiKeyAuthentication",
        "tenants.authentication.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["integrations_site.api.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "integrations_site.api.pagination.LimitOffsetEnvelopePagination",
    "PAGE_SIZE": 50,
    # django-filter and DRF's ordering, answering 400 for a query value they would skip (api/filters.py).
    "DEFAULT_FILTER_BACKENDS": [
        "integrations_site.api.filters.StrictFilterBackend",
        "integrations_site.api.filters.StrictOrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "integrations_site.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "integrations_site.api.negotiation.ContentNegotiation",
    "EXCEPTION_HANDLER": "integrations_site.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["integrations_site.api.throttles.FamilyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "integrations_site.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "SIGNING_KEY": env("JWT_SIGNING_KEY", default=SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Integrations hub API",
    "DESCRIPTION": (
        "Provider catalog, tenant integrations with encrypted credentials, "
        "connection checks, webhooks and audit trail. Every error is answered "
        "as {\"error\": {\"code\", \"message\", \"details\", \"request_id\"}}. "
        "A body field the endpoint does not accept, or a query parameter value it cannot read, is a 400 "
        "VALIDATION_ERROR naming it; so is text holding a NUL character (U+0000)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The docs pages load their scripts, styles and icon from this project's static files (nothing leaves the
    # machine); no online validator either.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "ProviderStatusEnum": "catalog.choices.ProviderStatus",
        "IntegrationStatusEnum": "connections.choices.IntegrationStatus",
        "StreamStateEnum": "connections.choices.StreamState",
        "CredentialStatusEnum": "connections.choices.CredentialStatus",
        "PlanEnum": "tenants.choices.Plan",
        "AuditOutcomeEnum": "audit.choices.Outcome",
        "CanonicalStatusEnum": "catalog.choices.CanonicalStatus",
        "SignatureSchemeEnum": "catalog.choices.SignatureScheme",
        "WebhookEventStatusEnum": "webhooks.choices.EventStatus",
        "ActivityTypeEnum": "connections.api.serializers.ACTIVITY_TYPES",
        "CredentialTypeEnum": "connections.choices.CredentialType",
        "ActivityStatusEnum": "connections.api.serializers.ACTIVITY_STATUSES",
        "NotificationTypeEnum": "notifications.choices.NotificationType",
        "NotificationEventTypeEnum": "notifications.choices.EVENT_TYPES",
        "NotificationDeliveryStatusEnum": "notifications.choices.DeliveryStatus",
        "NotificationAttemptOutcomeEnum": "notifications.choices.AttemptOutcome",
        "NotificationDisabledReasonEnum": "notifications.choices.DisabledReason",
        "IntegrationDisabledReasonEnum": "connections.choices.DisabledReason",
        "TenantPolicyFieldEnum": "tenants.choices.POLICY_FIELDS",
    },
    "PREPROCESSING_HOOKS": ["integrations_site.api.schema.contract_paths_hook"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "integrations_site.api.schema.plain_views_hook",
    ],
}

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
_broker = urlsplit(CELERY_BROKER_URL)
if _broker.scheme == "filesystem" and not _broker.hostname:
    # kombu warns on every connection to a URL without a host ("No hostname was supplied") and falls back to
    # "localhost", which the filesystem broker never reads: named here, so the embedded run's logs stay quiet.
    CELERY_BROKER_URL = urlunsplit(_broker._replace(netloc="localhost"))
    if "CELERY_BROKER_URL" in os.environ:  # Celery reads the variable itself before this setting
        os.environ["CELERY_BROKER_URL"] = CELERY_BROKER_URL
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_BROKER_DIR / "out"),
        "data_folder_out": str(_BROKER_DIR / "out"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # Seconds before a task taken but never acknowledged (its worker died) is delivered again.
    else {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("out", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes database connections around every task unless they may be reused; how long one is
# kept is CONN_MAX_AGE's call instead (integrations_site/celery.py: close_old_connections).
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=180)
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Logging ------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="plain")  # or "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "integrations_site.api.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"},
        "json": {"()": "integrations_site.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # "Connection pool is full, discarding connection" is expected under bursts of checks.
        "urllib3.connectionpool": {"level": "ERROR"},
    },
}

# --- Product settings -----------------------------------------------------------
# Plans, lowest first; a provider's required_plan gates tenants below it.
TENANT_PLANS = ["free", "starter", "pro", "enterprise"]
API_KEY_LAST_USED_RESOLUTION_SECONDS = 60
# How long an API key found once is kept in the shared cache (0: looked up on every request).
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=10)
# On Redis each web process also keeps its own copy as long, forgotten by every process the moment the key or
# its tenant changes (integrations_site/nearcache.py); false reads the shared cache on every request.
API_KEY_NEAR_CACHE = env.bool("API_KEY_NEAR_CACHE", default=True)
# On PostgreSQL each web process keeps the rows an integration's detail answers from, forgotten the moment a
# write to them commits (triggers and LISTEN: connections/selectors.py); false reads them on every request.
INTEGRATION_NEAR_CACHE = env.bool("INTEGRATION_NEAR_CACHE", default=True)

# --- Checks and polling ----------------------------------------------------------
HEALTH_FAILURE_THRESHOLD = env.int("HEALTH_FAILURE_THRESHOLD", default=3)
HEALTH_LATENCY_BUDGET_MS = env.int("HEALTH_LATENCY_BUDGET_MS", default=2000)
# The platform's policy: what a tenant inherits for each field its TenantPolicy leaves empty
# (tenants.selectors.effective_policy). The counts and hours: 0 turns the rule off.
FAILURE_WARNING_AFTER = env.int("FAILURE_WARNING_AFTER", default=20)  # failed checks in a row before the warning
AUTO_DISABLE_AFTER = env.int("AUTO_DISABLE_AFTER", default=30)  # … before the integration is disabled,
AUTO_DISABLE_MIN_HOURS = env.int("AUTO_DISABLE_MIN_HOURS", default=24)  # … once it has failed at least this long
# An integration without its own check interval is checked this often; new integrations get this timeout and
# these retries when their create request leaves them out (the model's defaults: 60, 10, 3).
HEALTH_CHECK_INTERVAL_SECONDS = env.int("HEALTH_CHECK_INTERVAL_SECONDS", default=60)
INTEGRATION_TIMEOUT_SECONDS = env.int("INTEGRATION_TIMEOUT_SECONDS", default=10)
INTEGRATION_RETRY_COUNT = env.int("INTEGRATION_RETRY_COUNT", default=3)
HEALTH_CHECK_CONCURRENCY = env.int("HEALTH_CHECK_CONCURRENCY", default=50)
HEALTH_DISPATCH_BATCH = env.int("HEALTH_DISPATCH_BATCH", default=500)
HEALTH_TASK_CHUNK = env.int("HEALTH_TASK_CHUNK", default=50)
CHECK_RETENTION_DAYS = env.int("CHECK_RETENTION_DAYS", default=30)
QUEUED_CHECK_SWEEP_SECONDS = env.int("QUEUED_CHECK_SWEEP_SECONDS", default=120)
# The tenant that holds the platform's own integrations of system-audience providers.
PLATFORM_TENANT_SLUG = env("PLATFORM_TENANT_SLUG", default="platform")

# --- Webhooks ---------------------------------------------------------------------
WEBHOOK_RETRY_SCHEDULE = env.list("WEBHOOK_RETRY_SCHEDULE", cast=int, default=[5, 300, 1800, 7200, 18000, 36000])
WEBHOOK_SWEEP_AFTER_SECONDS = env.int("WEBHOOK_SWEEP_AFTER_SECONDS", default=30)
WEBHOOK_EVENT_RETENTION_DAYS = env.int("WEBHOOK_EVENT_RETENTION_DAYS", default=30)
WEBHOOK_HANDOFF = env("WEBHOOK_HANDOFF", default="batched")  # or "immediate"
WEBHOOK_HANDOFF_INTERVAL = env.float("WEBHOOK_HANDOFF_INTERVAL", default=0.2)
WEBHOOK_HANDOFF_BATCH = env.int("WEBHOOK_HANDOFF_BATCH", default=100)
# The receiver keeps a found endpoint this long per process (0 = read it on every delivery); changes made in
# another process apply within this time.
WEBHOOK_ENDPOINT_CACHE_SECONDS = env.float("WEBHOOK_ENDPOINT_CACHE_SECONDS", default=1.0)
# Each process adds its deliveries to the shared per-minute rate counter this often (or every N deliveries).
WEBHOOK_RATE_SYNC_SECONDS = env.float("WEBHOOK_RATE_SYNC_SECONDS", default=0.5)
WEBHOOK_RATE_SYNC_EVERY = env.int("WEBHOOK_RATE_SYNC_EVERY", default=50)

# --- Notifications to tenants ----------------------------------------------------------
# Seconds to wait after each failed attempt; after the last one the delivery has failed.
NOTIFICATION_RETRY_SCHEDULE = env.list("NOTIFICATION_RETRY_SCHEDULE", cast=int,
                                       default=[5, 60, 300, 1800, 7200, 21600, 43200])
NOTIFICATION_TIMEOUT_SECONDS = env.float("NOTIFICATION_TIMEOUT_SECONDS", default=10.0)  # one POST, all included
NOTIFICATION_SWEEP_AFTER_SECONDS = env.int("NOTIFICATION_SWEEP_AFTER_SECONDS", default=30)
NOTIFICATION_TASK_BATCH = env.int("NOTIFICATION_TASK_BATCH", default=10)  # deliveries per worker task
NOTIFICATION_RETENTION_DAYS = env.int("NOTIFICATION_RETENTION_DAYS", default=30)
NOTIFICATION_ENDPOINTS_PER_TENANT = env.int("NOTIFICATION_ENDPOINTS_PER_TENANT", default=20)
# credential.expiring is sent this many days before a credential that cannot renew itself expires.
NOTIFICATION_CREDENTIAL_EXPIRING_DAYS = env.int("NOTIFICATION_CREDENTIAL_EXPIRING_DAYS", default=7)

# --- OAuth ------------------------------------------------------------------------
# The redirect URI registered with providers: the public address of /api/v1/oauth/callback.
OAUTH_CALLBACK_URL = env("OAUTH_CALLBACK_URL", default="http://127.0.0.1:8000/api/v1/oauth/callback")
OAUTH_REFRESH_MARGIN_SECONDS = env.int("OAUTH_REFRESH_MARGIN_SECONDS", default=900)

# --- Rate limits (per tenant, or per API key), overridable per family ------------------
# A process reserves up to RATE_LIMIT_RESERVE_MAX places of a caller's count at once, remaining // DIVISOR of
# them (integrations_site/api/throttles.py): at any limit under 2 * DIVISOR (the defaults below among them), and
# within that of any limit, every request is counted in the shared cache as it comes, as with RESERVE_MAX 1.
RATE_LIMIT_RESERVE_MAX = env.int("RATE_LIMIT_RESERVE_MAX", default=64)
RATE_LIMIT_RESERVE_DIVISOR = env.int("RATE_LIMIT_RESERVE_DIVISOR", default=256)
API_RATE_LIMITS = {
    "providers": env("RATE_LIMIT_PROVIDERS", default="100/min"),
    "integrations": env("RATE_LIMIT_INTEGRATIONS", default="200/min"),
    "connections": env("RATE_LIMIT_CONNECTIONS", default="50/min"),
    "search": env("RATE_LIMIT_SEARCH", default="30/min"),
    "widgets": env("RATE_LIMIT_WIDGETS", default="100/min"),
}
# --- Search across connected systems ------------------------------------------------------
SEARCH_DEADLINE_SECONDS = env.float("SEARCH_DEADLINE_SECONDS", default=5.0)  # the whole fan-out
WIDGET_DATA_CACHE_SECONDS = env.int("WIDGET_DATA_CACHE_SECONDS", default=30)
ADMIN_DASHBOARD_CACHE_SECONDS = env.int("ADMIN_DASHBOARD_CACHE_SECONDS", default=30)  # the admin index figures

# --- Event streams (run_streams) ------------------------------------------------------------
STREAM_LEASE_SECONDS = env.float("STREAM_LEASE_SECONDS", default=30.0)  # a dead consumer's streams move after this
STREAM_IDLE_SECONDS = env.float("STREAM_IDLE_SECONDS", default=90.0)  # no byte (not even a comment): reconnect
STREAM_MAX_EVENT_BYTES = env.int("STREAM_MAX_EVENT_BYTES", default=1024 * 1024)
STREAM_MAX_PER_PROCESS = env.int("STREAM_MAX_PER_PROCESS", default=500)
STREAMS_HEARTBEAT_FILE = env("STREAMS_HEARTBEAT_FILE", default="")  # touched after each lease round

USAGE_FLUSH_SECONDS = env.float("USAGE_FLUSH_SECONDS", default=5.0)
USAGE_FLUSH_MAX_ITEMS = env.int("USAGE_FLUSH_MAX_ITEMS", default=1000)
# SQLite: a thread of each process checkpoints the file after this many of its gated commits (the webhook
# receiver's), beside the writers (integrations_site/writegate.py); 0 leaves checkpoints to SQLite alone.
SQLITE_CHECKPOINT_COMMITS = env.int("SQLITE_CHECKPOINT_COMMITS", default=100)

# --- Operations --------------------------------------------------------------------
READYZ_TIMEOUT = env.float("READYZ_TIMEOUT", default=2.0)
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_TENANT_LABELS = env.bool("METRICS_TENANT_LABELS", default=False)
METRICS_TENANT_LABEL_LIMIT = env.int("METRICS_TENANT_LABEL_LIMIT", default=50)
# Batched counters are flushed by a background thread in each process (integrations_site.batching).
BATCHING_BACKGROUND = env.bool("BATCHING_BACKGROUND", default=True)
