"""OAuth2 tokens: the provider's token endpoint (with client authentication), storing a token set,
and refreshing it (ahead of expiry on a schedule, or once after a 401).

Every request to the provider goes through the SSRF-safe client. Tokens and the client
secret are encrypted at rest and never appear in answers, logs, audit records or exception
messages.
"""
import base64
import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import SYSTEM, Actor, audit_record
from integrations_site import outbound

from ...choices import CredentialStatus, CredentialType, IntegrationStatus
from ...models import Credential, Integration
from ...selectors import credential_of
from .expiry import credential_expired_notify, credentials_expiry_notify

logger = logging.getLogger("connections.oauth")


class RefreshFailed(Exception):
    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


# --- token endpoint ------------------------------------------------------------------------------------


@dataclass
class TokenAnswer:
    access_token: str
    refresh_token: str | None
    expires_at: object
    scopes: list
    token_type: str


def client_authenticated(integration: Integration, headers: dict, form: dict) -> tuple[dict, bytes]:
    """Headers and form body of a request to the provider's token or revocation endpoint, with the
    client's authentication: in the form (``client_secret_post``) or as HTTP Basic (the default)."""
    provider = integration.provider
    config = provider.oauth_config or {}
    headers, form = {"Content-Type": "application/x-www-form-urlencoded", **headers}, dict(form)
    secret = provider.oauth_client_secret or ""
    if config.get("token_auth_method", "client_secret_basic") == "client_secret_post":
        form["client_id"] = config["client_id"]
        if secret:
            form["client_secret"] = secret
    else:
        raw = f"{quote(config['client_id'], safe='')}:{quote(secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    return headers, urlencode(form).encode()


def token_request(integration: Integration, form: dict) -> TokenAnswer:
    """POST to the token URL with client authentication; raises RefreshFailed on an error answer."""
    config = integration.provider.oauth_config or {}
    headers, body = client_authenticated(integration, {"Accept": "application/json"}, form)
    try:
        # Never sent twice (a provider that rotated the refresh token would refuse the old one again
        # and the good credential would be marked expired) and never redirected (the form holds secrets).
        response = outbound.request("POST", config["token_url"], headers=headers, body=body,
                                    timeout=integration.timeout_seconds, follow_redirects=False)
    except outbound.OutboundError as exc:
        raise RefreshFailed(f"The token endpoint could not be reached ({exc.code}).", permanent=False) from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 500 or response.status_code == 429:
        raise RefreshFailed(f"The token endpoint answered {response.status_code}.", permanent=False)
    if response.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        permanent = error in ("invalid_grant", "invalid_client", "unauthorized_client", "invalid_request") or (
            400 <= response.status_code < 500
        )
        raise RefreshFailed(
            f"The token endpoint refused the request ({error or response.status_code}).", permanent=permanent
        )
    expires_in = data.get("expires_in")
    try:
        expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if expires_in is not None else None
    except (TypeError, ValueError):
        expires_at = None
    scope = data.get("scope")
    return TokenAnswer(
        access_token=str(data["access_token"]),
        refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
        expires_at=expires_at,
        scopes=scope.split() if isinstance(scope, str) else (scope if isinstance(scope, list) else []),
        token_type=str(data.get("token_type") or "Bearer"),
    )


def tokens_store(*, integration: Integration, user, answer: TokenAnswer, keep_refresh: bool) -> Credential:
    """Write the token set atomically; a missing refresh token keeps the stored one when asked to."""
    credential = credential_of(integration, user, lock=True)
    previous_refresh = (credential.payload or {}).get("refresh_token") if credential and credential.is_set else None
    refresh = answer.refresh_token or (previous_refresh if keep_refresh else None)
    payload = {"access_token": answer.access_token}
    if refresh:
        payload["refresh_token"] = refresh
    public = {"token_type": answer.token_type, "scopes": answer.scopes,
              "expires_at": answer.expires_at.isoformat() if answer.expires_at else None}
    if credential is None:
        credential = Credential(tenant=integration.tenant, integration=integration, user=user, version=0)
    credential.type = CredentialType.OAUTH2
    credential.version += 1
    credential.payload = payload
    credential.public_fields = public
    credential.hint = ""
    credential.status = CredentialStatus.ACTIVE
    credential.expires_at = answer.expires_at
    credential.validation_error = ""
    credential.refresh_failures = 0
    credential.next_refresh_at = None
    credential.refresh_lease_until = None
    credential.last_refreshed_at = timezone.now()
    credential.save()
    return credential


# --- refresh ---------------------------------------------------------------------------------------------


def oauth_refresh(*, credential: Credential, actor: Actor = SYSTEM) -> Credential:
    """Refresh one OAuth2 credential.

    A rotated refresh token replaces the old one atomically; an answer without
    one keeps it. ``invalid_grant`` and other refusals mark the credential
    expired (integration error, audited); transient failures back off and
    never wipe anything. Raises RefreshFailed on failure.
    """
    integration = Integration.objects.select_related("provider", "tenant").get(pk=credential.integration_id)
    refresh_token = (credential.payload or {}).get("refresh_token")
    if not refresh_token:
        raise RefreshFailed("There is no refresh token; the user must connect again.", permanent=True)
    try:
        answer = token_request(integration, {"grant_type": "refresh_token", "refresh_token": refresh_token})
    except RefreshFailed as exc:
        _refresh_failed(credential=credential, integration=integration, error=exc, actor=actor)
        raise
    with transaction.atomic():
        credential = tokens_store(integration=integration, user=credential.user, answer=answer, keep_refresh=True)
        audit_record(actor=actor, action="oauth.refreshed", target=integration,
                     changes={"credential_version": credential.version, "rotated": answer.refresh_token is not None})
    logger.info("connections.oauth.refreshed integration=%s credential=%s", integration.pk, credential.pk)
    return credential


def _refresh_failed(*, credential: Credential, integration: Integration, error: RefreshFailed, actor: Actor):
    with transaction.atomic():
        locked = Credential.objects.select_for_update().get(pk=credential.pk)
        locked.refresh_lease_until = None
        if error.permanent:
            locked.status = CredentialStatus.EXPIRED
            locked.validation_error = f"Re-authorization needed: {error}"
            locked.save(update_fields=["status", "validation_error", "refresh_lease_until", "updated_at"])
            if locked.user_id is None:
                Integration.objects.filter(pk=integration.pk).exclude(status=IntegrationStatus.DISABLED).update(
                    status=IntegrationStatus.ERROR, updated_at=timezone.now(),
                    last_error={"code": "INVALID_CREDENTIALS", "message": "Re-authorization needed: the provider "
                                "refused the refresh token.", "at": timezone.now().isoformat()},
                )
            audit_record(actor=actor, action="oauth.refresh_failed", target=integration, outcome="failure",
                         changes={"permanent": True, "error": str(error)})
            credential_expired_notify(credential=locked, reason="refresh_refused")
        else:
            locked.refresh_failures += 1
            delay = min(3600, 30 * (2 ** min(locked.refresh_failures, 7)))
            locked.next_refresh_at = timezone.now() + timedelta(seconds=delay)
            locked.save(update_fields=["refresh_failures", "next_refresh_at", "refresh_lease_until", "updated_at"])
    logger.warning("connections.oauth.refresh_failed integration=%s permanent=%s", integration.pk, error.permanent)


def due_for_refresh(now=None):
    now = now or timezone.now()
    margin = timedelta(seconds=settings.OAUTH_REFRESH_MARGIN_SECONDS)
    return (
        Credential.objects.filter(type=CredentialType.OAUTH2, status=CredentialStatus.ACTIVE,
                                  payload__isnull=False, expires_at__isnull=False, expires_at__lte=now + margin)
        .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
        .filter(Q(next_refresh_at__isnull=True) | Q(next_refresh_at__lte=now))
        .filter(integration__deleted_at__isnull=True)
    )


def refresh_claim(*, now=None, limit: int = 200) -> list:
    """Claim credentials expiring within the margin (SKIP LOCKED + a lease), so two workers never
    refresh the same token."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(due_for_refresh(now).select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        Credential.objects.filter(pk__in=ids).update(refresh_lease_until=now + timedelta(minutes=5))
    return ids


def refresh_due(*, now=None) -> dict:
    """Refresh every claimed credential, then report what still expires (``expiry``); returns the refresh
    counts by outcome."""
    counts = {"refreshed": 0, "failed": 0}
    for credential_id in refresh_claim(now=now):
        credential = Credential.objects.filter(pk=credential_id).first()
        if credential is None:
            continue
        try:
            oauth_refresh(credential=credential)
            counts["refreshed"] += 1
        except RefreshFailed:
            counts["failed"] += 1
    credentials_expiry_notify(now=now)
    return counts


def refresh_for_retry(credential: Credential | None) -> Credential | None:
    """After a 401: refresh an OAuth2 credential once; the fresh credential, or None."""
    if credential is None or credential.type != CredentialType.OAUTH2 or not credential.is_set:
        return None
    if not (credential.payload or {}).get("refresh_token"):
        return None
    try:
        return oauth_refresh(credential=credential)
    except RefreshFailed:
        return None
