from django.db import models

from catalog.choices import SignatureScheme  # noqa: F401  (one list of schemes for the catalog and endpoints)
from integrations_site.crypto import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS  # noqa: F401 (re-exported)

# What an endpoint path is made of (the model's SlugField); anything else at /hooks/ is no endpoint.
PATH_CHARS = r"[A-Za-z0-9_-]{1,100}"


class EventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"


DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_BODY_BYTES_LIMIT = 10 * 1024 * 1024
