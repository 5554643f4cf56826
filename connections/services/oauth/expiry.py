"""Telling tenants of credentials about to expire, or expired: ``credential.expiring`` and ``credential.expired``.

Each is sent once per credential and expiry window: the ``once_key`` names the credential, its version
and its expiry, so a renewed credential (a new version or expiry) can be reported again, and the
same state never twice. Run after every OAuth refresh pass (``refresh_due``), so a token the pass
just renewed is not reported.
"""
import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from notifications.choices import NotificationType
from notifications.selectors import markers_taken
from notifications.services import notify

from ...choices import CredentialStatus, CredentialType
from ...models import Credential

logger = logging.getLogger("connections.oauth")

SCAN_LIMIT = 500


def _data(credential: Credential, reason: str) -> dict:
    integration = credential.integration
    return {
        "credential_id": str(credential.pk), "integration_id": str(integration.pk),
        "integration_name": integration.name, "provider": integration.provider.slug,
        "credential_type": credential.type, "user_id": credential.user_id, "expires_at": credential.expires_at,
        "reason": reason,
    }


def _expired_key(credential) -> str:
    return f"credential.expired:{credential.pk}:{credential.version}"


def credential_expired_notify(*, credential: Credential, reason: str) -> int:
    """``credential.expired`` for ``credential`` (once for its version); in the caller's transaction."""
    credential = Credential.objects.select_related("integration__provider").get(pk=credential.pk)
    return notify(tenant_id=credential.tenant_id, type=NotificationType.CREDENTIAL_EXPIRED,
                  data=_data(credential, reason), once_key=_expired_key(credential))


def _expiring_reason(credential: Credential) -> str | None:
    """Why an OAuth credential in its refresh margin cannot renew itself, or None when it can."""
    if credential.type != CredentialType.OAUTH2:
        return "expires_soon"
    if not (credential.payload or {}).get("refresh_token"):
        return "refresh_impossible"
    return "refresh_failing" if credential.refresh_failures else None


def _candidates(filters: Q, key) -> list[Credential]:
    """The credentials matching ``filters`` not yet reported under ``key(credential)``, soonest first."""
    rows = list(
        Credential.objects.filter(filters, status=CredentialStatus.ACTIVE, payload__isnull=False,
                                  integration__deleted_at__isnull=True)
        .order_by("expires_at").only("id", "version", "expires_at")[:SCAN_LIMIT]
    )
    taken = markers_taken([key(row) for row in rows])
    fresh = [row.pk for row in rows if key(row) not in taken]
    return list(Credential.objects.filter(pk__in=fresh).select_related("integration__provider").order_by("expires_at"))


def credentials_expiry_notify(*, now=None) -> dict:
    """Report credentials expiring soon and expired ones, each once; returns counts of notifications made.

    Expiring: an OAuth credential inside the refresh margin whose refresh fails or cannot happen (no
    refresh token); any other credential within NOTIFICATION_CREDENTIAL_EXPIRING_DAYS of its expiry.
    Expired: an active credential whose expiry passed (in the last week; older ones were reported).
    A credential the provider refused to refresh is reported by the refresh itself.
    """
    now = now or timezone.now()
    margin = now + timedelta(seconds=settings.OAUTH_REFRESH_MARGIN_SECONDS)
    horizon = now + timedelta(days=settings.NOTIFICATION_CREDENTIAL_EXPIRING_DAYS)
    counts = {"expiring": 0, "expired": 0}

    def expiring_key(row):
        return f"credential.expiring:{row.pk}:{row.version}:{int(row.expires_at.timestamp())}"

    soon = Q(expires_at__gt=now) & (Q(type=CredentialType.OAUTH2, expires_at__lte=margin)
                                    | (~Q(type=CredentialType.OAUTH2) & Q(expires_at__lte=horizon)))
    for credential in _candidates(soon, expiring_key):
        reason = _expiring_reason(credential)
        if reason is not None and notify(tenant_id=credential.tenant_id, type=NotificationType.CREDENTIAL_EXPIRING,
                                         data=_data(credential, reason), once_key=expiring_key(credential)):
            counts["expiring"] += 1
    past = Q(expires_at__lte=now, expires_at__gt=now - timedelta(days=7))
    for credential in _candidates(past, _expired_key):
        if notify(tenant_id=credential.tenant_id, type=NotificationType.CREDENTIAL_EXPIRED,
                  data=_data(credential, "expired"), once_key=_expired_key(credential)):
            counts["expired"] += 1
    if any(counts.values()):
        logger.info("connections.credentials.expiry_notified expiring=%s expired=%s", counts["expiring"],
                    counts["expired"])
    return counts
