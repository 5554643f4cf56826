"""Webhook endpoints: create, update, delete, secret rotation, and the receiver's per-process endpoint cache.

Writes are atomic and audited.
"""
import logging
import secrets as pysecrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site.api.errors import ConflictError, ValidationFailed

from .. import signatures
from ..choices import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS
from ..models import WebhookEndpoint

logger = logging.getLogger("webhooks")

# Endpoints found by the receiver, kept per process (gunicorn sync workers: one request at a time, plus
# the hand-off thread), so no round trip is spent on what rarely changes.
ENDPOINTS_MAX = 10_000

ENDPOINT_FIELDS = (
    "name", "description", "active", "verify_signature", "signature_scheme", "signature_header",
    "tolerance_seconds", "max_body_bytes", "dedupe", "rate_limit_per_minute",
)
def _new_path() -> str:
    return pysecrets.token_urlsafe(16)  # 128 random bits


def _check_path_free(path: str, exclude_pk=None) -> None:
    taken = WebhookEndpoint.objects.filter(path=path)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ConflictError(f"The path '{path}' is taken.", details={"path": path})


@transaction.atomic
def endpoint_create(*, actor: Actor, tenant, integration, data: dict) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint; returns it and its secret (shown this once)."""
    path = data.get("path") or _new_path()
    _check_path_free(path)
    scheme = data.get("signature_scheme") or integration.provider.default_webhook_signature_scheme or "hmac_sha256"
    secret = data.get("secret") or signatures.new_secret(scheme)
    endpoint = WebhookEndpoint(
        tenant=tenant, integration=integration, path=path, secret=secret,
        **{k: v for k, v in data.items() if k in ENDPOINT_FIELDS and k != "signature_scheme"},
        signature_scheme=scheme,
    )
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError:
        raise ConflictError(f"The path '{path}' is taken.", details={"path": path}) from None
    audit_record(actor=actor, action="webhook_endpoint.created", target=endpoint, tenant=tenant,
                 changes={"path": {"to": path}, "signature_scheme": {"to": scheme}, "secret": "set"},
                 secret_fields=frozenset({"secret"}))
    return endpoint, secret


@transaction.atomic
def endpoint_update(*, actor: Actor, endpoint: WebhookEndpoint, data: dict) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    new_scheme = data.get("signature_scheme")
    if new_scheme and new_scheme != endpoint.signature_scheme and endpoint.secret:
        problem = signatures.secret_problem(new_scheme, endpoint.secret)
        if problem:
            raise ValidationFailed(
                f"The current secret cannot sign {new_scheme} deliveries; rotate to a fitting secret first.",
                details={"signature_scheme": [problem]},
            )
    changes = {}
    for field, value in data.items():
        if field == "path" and value != endpoint.path:
            _check_path_free(value, exclude_pk=endpoint.pk)
        if (field in ENDPOINT_FIELDS or field == "path") and getattr(endpoint, field) != value:
            changes[field] = {"from": getattr(endpoint, field), "to": value}
            setattr(endpoint, field, value)
    if changes:
        endpoint.save()
        audit_record(actor=actor, action="webhook_endpoint.updated", target=endpoint, changes=changes)
    return endpoint


@transaction.atomic
def endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    """Soft delete: the path stops answering; its events stay readable and replayable."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.deleted_at = timezone.now()
    endpoint.active = False
    endpoint.save(update_fields=["deleted_at", "active", "updated_at"])
    audit_record(actor=actor, action="webhook_endpoint.deleted", target=endpoint)


def endpoints_disable_for_integration(*, actor: Actor, integration) -> int:
    """Deleting an integration turns its endpoints off (their events are kept)."""
    endpoints = list(WebhookEndpoint.objects.live().filter(integration=integration, active=True))
    for endpoint in endpoints:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False, updated_at=timezone.now())
        audit_record(actor=actor, action="webhook_endpoint.disabled", target=endpoint,
                     changes={"active": {"from": True, "to": False}, "reason": "integration deleted"})
    if endpoints:
        endpoint_cache_clear()
    return len(endpoints)


_endpoints: dict[str, tuple[float, WebhookEndpoint]] = {}


def endpoint_for_path(path: str, *, fresh: bool = False) -> WebhookEndpoint | None:
    """The live, active endpoint at ``path``, or None.

    Found endpoints are kept in this process for WEBHOOK_ENDPOINT_CACHE_SECONDS
    (0 = always read the database). A change saved in this process clears the
    cache at once; other processes see it within that many seconds. Unknown
    paths are not cached, so a new endpoint answers at once everywhere.
    ``fresh`` reads the database and renews the cached copy (the receiver does
    so before refusing a signature, so a secret rotated elsewhere works at once).
    """
    ttl = settings.WEBHOOK_ENDPOINT_CACHE_SECONDS
    if ttl > 0 and not fresh:
        hit = _endpoints.get(path)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    endpoint = WebhookEndpoint.objects.filter(path=path, active=True, deleted_at__isnull=True).first()
    if endpoint is None:
        _endpoints.pop(path, None)
    elif ttl > 0:
        if len(_endpoints) >= ENDPOINTS_MAX:
            _endpoints.clear()
        _endpoints[path] = (time.monotonic() + ttl, endpoint)
    return endpoint


def endpoint_cache_clear(**_kwargs) -> None:
    _endpoints.clear()


post_save.connect(endpoint_cache_clear, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoint_cache.save")
post_delete.connect(endpoint_cache_clear, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoint_cache.delete")


@transaction.atomic
def webhook_secret_rotate(
    *, actor: Actor, endpoint: WebhookEndpoint, secret: str | None = None, grace_seconds: int | None = None
) -> tuple[WebhookEndpoint, str]:
    """New secret; the old one keeps verifying for ``grace_seconds`` (default 24 h, max 7 days, 0 = none)."""
    grace = DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ValidationFailed(
            f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}.",
            details={"grace_seconds": [f"Must be between 0 and {MAX_GRACE_SECONDS}."]},
        )
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    now = timezone.now()
    new = secret or signatures.new_secret(endpoint.signature_scheme)
    if grace and endpoint.secret:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(seconds=grace)
    else:
        endpoint.previous_secret = ""
        endpoint.previous_secret_expires_at = None
    endpoint.secret = new
    endpoint.secret_rotated_at = now
    endpoint.save()
    audit_record(actor=actor, action="webhook_endpoint.secret_rotated", target=endpoint,
                 changes={"secret": "rotated", "grace_seconds": grace,
                          "previous_secret_expires_at": endpoint.previous_secret_expires_at},
                 secret_fields=frozenset({"secret"}))
    return endpoint, new


def signature_failure_count(*, endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(signature_failures=F("signature_failures") + 1)
