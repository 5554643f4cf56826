from django.db import models

from integrations_site.crypto import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS  # noqa: F401 (re-exported)


class NotificationType(models.TextChoices):
    """What a tenant can be told (DESIGN.md, "Notifications"); ``ping`` is only sent by ``…/test``."""

    HEALTH_CHANGED = "integration.health_changed", "Integration health changed"
    FAILURE_WARNING = "integration.failure_warning", "Integration failing (warning)"
    AUTO_DISABLED = "integration.auto_disabled", "Integration auto-disabled"
    CREDENTIAL_EXPIRING = "credential.expiring", "Credential expiring"
    CREDENTIAL_EXPIRED = "credential.expired", "Credential expired"
    WEBHOOK_EVENT_FAILED = "webhook_event.failed", "Webhook event failed"
    PING = "ping", "Ping (test)"


# The types an endpoint subscribes to: every type but the test ping.
EVENT_TYPES = [value for value in NotificationType.values if value != NotificationType.PING]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    RETRY = "retry", "Failed, retried later"
    FAILED = "failed", "Failed, not retried"


class DisabledReason(models.TextChoices):
    GONE = "gone", "The receiver answered 410 Gone"


class DeliveryError(models.TextChoices):
    """``last_error.code`` of a delivery: the outbound client's codes and our own."""

    URL_NOT_ALLOWED = "URL_NOT_ALLOWED", "URL not allowed"
    CONNECTION_FAILED = "CONNECTION_FAILED", "Connection failed"
    TIMEOUT = "TIMEOUT", "Timeout"
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE", "Response too large"
    UNEXPECTED_STATUS = "UNEXPECTED_STATUS", "Unexpected status"
    ENDPOINT_GONE = "ENDPOINT_GONE", "Endpoint gone (410)"
    ENDPOINT_DISABLED = "ENDPOINT_DISABLED", "Endpoint disabled or deleted"


SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 random bytes
MAX_PAYLOAD_BYTES = 64 * 1024
URL_MAX_LENGTH = 500
DESCRIPTION_MAX_LENGTH = 500
