from django.db import models

# Shared with the tenant policy's defaults, whose app this one may import (one definition of each range).
from tenants.choices import HEALTH_INTERVAL_RANGE, RETRY_RANGE, TIMEOUT_RANGE  # noqa: F401 (re-exported)


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    SANDBOX = "sandbox", "Sandbox"


class DisabledReason(models.TextChoices):
    NONE = "", "Not disabled"
    MANUAL = "manual", "Disabled on request"
    AUTO_DISABLED = "auto_disabled", "Disabled after failing checks"


class IntegrationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CONNECTED = "connected", "Connected"
    ERROR = "error", "Error"
    DISABLED = "disabled", "Disabled"


class HealthState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    UNHEALTHY = "unhealthy", "Unhealthy"


class UpdateMethod(models.TextChoices):
    POLLING = "polling", "Polling"
    SSE = "sse", "Server-sent events"
    WEBHOOK = "webhook", "Webhook"


class StreamState(models.TextChoices):
    CONNECTED = "connected", "Connected"
    CONNECTING = "connecting", "Connecting"
    BACKOFF = "backoff", "Backing off"
    STOPPED = "stopped", "Stopped"


class CredentialType(models.TextChoices):
    API_KEY = "api_key", "API key"
    BEARER = "bearer", "Bearer token"
    BASIC = "basic", "Basic auth"
    OAUTH2 = "oauth2", "OAuth 2.0 tokens"
    CUSTOM = "custom", "Custom fields"


class CredentialStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    ERROR = "error", "Error"


POLLING_INTERVAL_RANGE = (5, 300)


class CheckKind(models.TextChoices):
    TEST = "test", "Connection test"
    HEALTH = "health", "Scheduled health check"
    SYSTEM = "system", "System test"


class CheckState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"


class CheckError(models.TextChoices):
    CONNECTION_FAILED = "CONNECTION_FAILED", "Connection failed"
    TIMEOUT = "TIMEOUT", "Timeout"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS", "Invalid credentials"
    UNEXPECTED_STATUS = "UNEXPECTED_STATUS", "Unexpected status"
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED", "URL not allowed"
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE", "Response too large"
    NOT_CONFIGURED = "NOT_CONFIGURED", "Not configured"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED", "Limit exceeded"

