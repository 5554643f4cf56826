from django.db import models

from catalog.choices import SignatureScheme  # noqa: F401  (one list of schemes for the catalog and endpoints)

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
DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600
