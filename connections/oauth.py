"""OAuth2 authorization-code flows (with PKCE), token refresh and revocation.

Every request to the provider goes through the SSRF-safe client. Tokens,
verifiers and the client secret are encrypted at rest and never appear in
answers, logs, audit records or exception messages.
"""
import base64
import hashlib
import logging
import secrets as pysecrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import SYSTEM, Actor, audit_record
from integrations_site.api.errors import UrlNotAllowed, ValidationFailed

from . import http
from .choices import CredentialStatus, CredentialType, IntegrationStatus
from .models import Credential, Integration, OAuthState

logger = logging.getLogger("connections.oauth")

STATE_TTL = timedelta(minutes=10)
RESERVED_AUTHORIZE_PARAMS = {
    "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method",
}


class OAuthCallbackError(Exception):
    """The callback cannot be trusted (unknown, used or expired state, issuer mix-up): show a page, no redirect."""


class RefreshFailed(Exception):
    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def callback_url() -> str:
    return settings.OAUTH_CALLBACK_URL


# --- return URLs -------------------------------------------------------------------------------


def validate_return_url(url: str, *, tenant) -> str:
    """The URL the callback may redirect to: https (http only for localhost with DEBUG),
    an exact host (or host:port for a non-default port) from the tenant's allowed_return_hosts,
    no userinfo or backslashes."""
    def refuse(reason: str):
        raise UrlNotAllowed(f"return_url is not allowed: {reason}.", details={"return_url": [reason]})

    if not isinstance(url, str) or not url:
        refuse("it is empty")
    if any(ch in url for ch in "\\\t\r\n ") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        refuse("it holds backslashes, spaces or control characters")
    if not url.isascii():
        refuse("it holds non-ASCII characters (use the punycode host)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        refuse("it is malformed")
    if parts.scheme not in ("https", "http") or not parts.netloc or url.startswith("//"):
        refuse("it must be an absolute https URL")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        refuse("it must not carry user information")
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and not (settings.DEBUG and host in ("localhost", "127.0.0.1", "[::1]", "::1")):
        refuse("it must use https")
    # Exact entries: a bare host allows the scheme's default port only; another port must be
    # listed as host:port.
    allowed = {str(h).lower() for h in (tenant.allowed_return_hosts or [])}
    default_port = 443 if parts.scheme == "https" else 80
    if port is None or port == default_port:
        permitted = host in allowed or f"{host}:{default_port}" in allowed
    else:
        permitted = f"{host}:{port}" in allowed
    if not permitted:
        shown = host if port is None else f"{host}:{port}"
        refuse(f"the host '{shown}' is not in the tenant's allowed_return_hosts")
    return url


def _with_params(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


# --- start ---------------------------------------------------------------------------------------


def _oauth_config(integration: Integration) -> dict:
    config = integration.provider.oauth_config or {}
    missing = [k for k in ("authorize_url", "token_url", "client_id") if not config.get(k)]
    if integration.provider.auth_type != "oauth2" or missing:
        raise ValidationFailed(
            f"The provider '{integration.provider.slug}' is not set up for OAuth2"
            + (f" (missing {', '.join(missing)})." if missing else "."),
            details={"provider": ["OAuth2 is not configured for this provider."]},
        )
    return config


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@transaction.atomic
def oauth_start(*, actor: Actor, integration: Integration, return_url: str, user=None) -> dict:
    """Begin a connect flow; returns ``{authorization_url, state}``. ``user`` makes it user-scoped."""
    config = _oauth_config(integration)
    validate_return_url(return_url, tenant=integration.tenant)
    state = pysecrets.token_urlsafe(32)
    use_pkce = config.get("pkce", True)
    verifier = pysecrets.token_urlsafe(64) if use_pkce else ""
    OAuthState.objects.create(
        tenant=integration.tenant, integration=integration,
        user=actor.user if getattr(actor.user, "pk", None) else None,
        for_user=user is not None, state_hash=_hash_state(state), code_verifier=verifier, return_url=return_url,
        redirect_uri=callback_url(), expires_at=timezone.now() + STATE_TTL,
    )
    params = {
        "response_type": "code",
        "client_id": config["client_id"],
        "redirect_uri": callback_url(),
        "state": state,
    }
    if config.get("scopes"):
        params["scope"] = " ".join(config["scopes"])
    if use_pkce:
        params["code_challenge"] = pkce_challenge(verifier)
        params["code_challenge_method"] = "S256"
    for key, value in (config.get("extra_authorize_params") or {}).items():
        if key not in RESERVED_AUTHORIZE_PARAMS:
            params[key] = value
    audit_record(actor=actor, action="oauth.started", target=integration,
                 changes={"user_scoped": user is not None, "return_host": urlsplit(return_url).hostname})
    return {"authorization_url": _with_params(config["authorize_url"], params), "state": state}


# --- token endpoint ------------------------------------------------------------------------------------


@dataclass
class TokenAnswer:
    access_token: str
    refresh_token: str | None
    expires_at: object
    scopes: list
    token_type: str


def _token_request(integration: Integration, form: dict) -> TokenAnswer:
    """POST to the token URL with client authentication; raises RefreshFailed on an error answer."""
    provider = integration.provider
    config = provider.oauth_config or {}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    form = dict(form)
    secret = provider.oauth_client_secret or ""
    if config.get("token_auth_method", "client_secret_basic") == "client_secret_post":
        form["client_id"] = config["client_id"]
        if secret:
            form["client_secret"] = secret
    else:
        raw = f"{_quote(config['client_id'])}:{_quote(secret)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    try:
        response = http.request("POST", config["token_url"], headers=headers, body=urlencode(form).encode(),
                                timeout=integration.timeout_seconds, retries=1)
    except http.OutboundError as exc:
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


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _store_tokens(*, integration: Integration, user, answer: TokenAnswer, keep_refresh: bool) -> Credential:
    """Write the token set atomically; a missing refresh token keeps the stored one when asked to."""
    credential = Credential.objects.select_for_update().filter(integration=integration, user=user).first()
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


# --- callback -------------------------------------------------------------------------------------------


def _claim_state(state: str) -> OAuthState:
    """Mark the state used exactly once; unknown, used and expired states are refused."""
    now = timezone.now()
    found = OAuthState.objects.select_related("integration__provider", "integration__tenant", "tenant").filter(
        state_hash=_hash_state(state or "")
    ).first()
    if found is None:
        raise OAuthCallbackError("This sign-in link is not known.")
    claimed = OAuthState.objects.filter(pk=found.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not claimed:
        raise OAuthCallbackError("This sign-in link was already used or has expired. Start the connection again.")
    return found


def oauth_callback(*, params: dict) -> str:
    """Finish a flow; returns the URL to redirect to. Raises OAuthCallbackError for an untrusted callback."""
    record = _claim_state(params.get("state", ""))
    integration = record.integration
    if integration.deleted_at is not None:
        raise OAuthCallbackError("This integration no longer exists.")
    actor = Actor(user=record.user)
    issuer = (integration.provider.oauth_config or {}).get("issuer")
    if params.get("iss") and issuer and params["iss"] != issuer:
        audit_record(actor=actor, action="oauth.refused", target=integration, outcome="denied",
                     changes={"reason": "issuer mismatch"})
        raise OAuthCallbackError("The authorization answer came from an unexpected issuer.")
    if params.get("error"):
        audit_record(actor=actor, action="oauth.connect_failed", target=integration, outcome="failure",
                     changes={"error": str(params["error"])[:100]})
        return _with_params(record.return_url, {"status": "error", "error": str(params["error"])[:100]})
    if not params.get("code"):
        return _with_params(record.return_url, {"status": "error", "error": "missing_code"})
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": record.redirect_uri}
    if record.code_verifier:
        form["code_verifier"] = record.code_verifier
    try:
        answer = _token_request(integration, form)
    except RefreshFailed as exc:
        audit_record(actor=actor, action="oauth.connect_failed", target=integration, outcome="failure",
                     changes={"error": str(exc)})
        return _with_params(record.return_url, {"status": "error", "error": "token_exchange_failed"})
    user = record.user if record.for_user else None
    with transaction.atomic():
        credential = _store_tokens(integration=integration, user=user, answer=answer, keep_refresh=False)
        if user is None and integration.status != IntegrationStatus.DISABLED:
            Integration.objects.filter(pk=integration.pk).update(status=IntegrationStatus.CONNECTED,
                                                                 updated_at=timezone.now())
        audit_record(actor=actor, action="oauth.connected", target=integration,
                     changes={"user_scoped": user is not None, "credential_version": credential.version,
                              "scopes": answer.scopes})
        if user is None:
            from .checks import connection_test_queue

            connection_test_queue(integration=integration, actor=actor)
    return _with_params(record.return_url, {"status": "connected"})


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
        answer = _token_request(integration, {"grant_type": "refresh_token", "refresh_token": refresh_token})
    except RefreshFailed as exc:
        _refresh_failed(credential=credential, integration=integration, error=exc, actor=actor)
        raise
    with transaction.atomic():
        credential = _store_tokens(integration=integration, user=credential.user, answer=answer, keep_refresh=True)
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
    """Refresh every claimed credential; returns counts by outcome."""
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


# --- disconnect -----------------------------------------------------------------------------------------


def oauth_disconnect(*, actor: Actor, integration: Integration, user=None) -> dict:
    """Revoke at the provider when it has a revocation URL (a failure is recorded, not fatal),
    erase the secrets, and set a tenant-wide integration back to pending. Audited."""
    credential = Credential.objects.filter(integration=integration, user=user).first()
    revoked = None
    revoke_error = ""
    config = integration.provider.oauth_config or {}
    if credential and credential.is_set and credential.type == CredentialType.OAUTH2 and config.get("revoke_url"):
        token = (credential.payload or {}).get("refresh_token") or (credential.payload or {}).get("access_token")
        hint = "refresh_token" if (credential.payload or {}).get("refresh_token") else "access_token"
        try:
            response = http.request(
                "POST", config["revoke_url"], headers=_revoke_headers(integration),
                body=urlencode(_revoke_form(integration, token, hint)).encode(), timeout=integration.timeout_seconds,
            )
            revoked = 200 <= response.status_code < 300
            if not revoked:
                revoke_error = f"The revocation endpoint answered {response.status_code}."
        except http.OutboundError as exc:
            revoked, revoke_error = False, f"The revocation endpoint could not be reached ({exc.code})."
    with transaction.atomic():
        if credential is not None:
            Credential.objects.filter(pk=credential.pk).update(
                payload=None, hint="", public_fields={}, status=CredentialStatus.REVOKED,
                validation_error=revoke_error, refresh_lease_until=None, updated_at=timezone.now(),
            )
        if user is None:
            Integration.objects.filter(pk=integration.pk).exclude(status=IntegrationStatus.DISABLED).update(
                status=IntegrationStatus.PENDING, updated_at=timezone.now()
            )
        audit_record(actor=actor, action="oauth.disconnected", target=integration,
                     outcome="success" if revoked is not False else "failure",
                     changes={"user_scoped": user is not None, "revoked_at_provider": revoked,
                              "revoke_error": revoke_error or None})
    return {"disconnected": credential is not None, "revoked_at_provider": revoked, "revoke_error": revoke_error}


def _revoke_headers(integration: Integration) -> dict:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    config = integration.provider.oauth_config or {}
    if config.get("token_auth_method", "client_secret_basic") != "client_secret_post":
        raw = f"{_quote(config['client_id'])}:{_quote(integration.provider.oauth_client_secret or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    return headers


def _revoke_form(integration: Integration, token: str, hint: str) -> dict:
    form = {"token": token, "token_type_hint": hint}
    config = integration.provider.oauth_config or {}
    if config.get("token_auth_method") == "client_secret_post":
        form["client_id"] = config["client_id"]
        if integration.provider.oauth_client_secret:
            form["client_secret"] = integration.provider.oauth_client_secret
    return form
