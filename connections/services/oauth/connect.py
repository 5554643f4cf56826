"""OAuth2 connect flows: the authorization-code flow with PKCE (start and callback), return URLs and
disconnecting (revoking at the provider, erasing the secrets).

Every request to the provider goes through the SSRF-safe client. Tokens, verifiers and the
client secret are encrypted at rest and never appear in answers, logs, audit records or
exception messages.
"""
import base64
import hashlib
import secrets as pysecrets
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record
from integrations_site import outbound
from integrations_site.api.errors import UrlNotAllowed, ValidationFailed

from ...choices import CredentialStatus, CredentialType, IntegrationStatus
from ...models import Credential, Integration, OAuthState
from ...selectors import credential_of
from .. import queueing
from .tokens import RefreshFailed, client_authenticated, token_request, tokens_store

STATE_TTL = timedelta(minutes=10)
RESERVED_AUTHORIZE_PARAMS = {
    "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method",
}


class OAuthCallbackError(Exception):
    """The callback cannot be trusted (unknown, used or expired state, issuer mix-up): show a page, no redirect."""


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
        answer = token_request(integration, form)
    except RefreshFailed as exc:
        audit_record(actor=actor, action="oauth.connect_failed", target=integration, outcome="failure",
                     changes={"error": str(exc)})
        return _with_params(record.return_url, {"status": "error", "error": "token_exchange_failed"})
    user = record.user if record.for_user else None
    with transaction.atomic():
        credential = tokens_store(integration=integration, user=user, answer=answer, keep_refresh=False)
        if user is None and integration.status != IntegrationStatus.DISABLED:
            Integration.objects.filter(pk=integration.pk).update(status=IntegrationStatus.CONNECTED,
                                                                 updated_at=timezone.now())
        audit_record(actor=actor, action="oauth.connected", target=integration,
                     changes={"user_scoped": user is not None, "credential_version": credential.version,
                              "scopes": answer.scopes})
        if user is None:
            queueing.connection_test_queue(integration=integration, actor=actor)
    return _with_params(record.return_url, {"status": "connected"})


# --- disconnect -----------------------------------------------------------------------------------------


def oauth_disconnect(*, actor: Actor, integration: Integration, user=None) -> dict:
    """Revoke at the provider when it has a revocation URL (a failure is recorded, not fatal),
    erase the secrets, and set a tenant-wide integration back to pending. Audited."""
    credential = credential_of(integration, user)
    revoked = None
    revoke_error = ""
    config = integration.provider.oauth_config or {}
    if credential and credential.is_set and credential.type == CredentialType.OAUTH2 and config.get("revoke_url"):
        token = (credential.payload or {}).get("refresh_token") or (credential.payload or {}).get("access_token")
        hint = "refresh_token" if (credential.payload or {}).get("refresh_token") else "access_token"
        headers, body = client_authenticated(integration, {}, {"token": token, "token_type_hint": hint})
        try:
            response = outbound.request("POST", config["revoke_url"], headers=headers, body=body,
                                        timeout=integration.timeout_seconds, follow_redirects=False)
            revoked = 200 <= response.status_code < 300
            if not revoked:
                revoke_error = f"The revocation endpoint answered {response.status_code}."
        except outbound.OutboundError as exc:
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
