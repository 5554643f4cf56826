"""The OAuth 2.0 authorization server of the demo CRM provider.

- ``GET /oauth/authorize``: checks the client and its registered redirect URI
  (a mismatch is an error page, never a redirect), requires PKCE S256, and
  shows a consent page whose "Allow" button posts back to the same path
  (``auto_approve`` skips the page). The answer redirects to
  ``redirect_uri?code=…&state=…`` (or ``error=access_denied``).
- ``POST /oauth/token``: the client authenticates the way it is registered
  (``client_secret_basic`` or ``client_secret_post``, as the provider's
  ``oauth_config`` says); ``authorization_code`` (single use, short-lived,
  exact redirect URI, PKCE verifier checked against the challenge) and
  ``refresh_token`` with rotation: each refresh returns a new refresh token
  and spends the old one; a spent one used again revokes the whole grant.
- ``POST /oauth/revoke`` (RFC 7009): a refresh token ends its grant (and the
  grant's access tokens), an access token ends itself; unknown tokens are 200.

Tokens are signed (``django.core.signing``, keyed by ``SECRET_KEY``) and carry
their client, subject, grant and scope, so they stay valid across a restart
of the upstream; what is revoked or spent is remembered in memory only.
"""
import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core import signing

from .routing import Request, Route, html_response, json_response, redirect

CLIENT_ID = "demo-crm-client"
CLIENT_SECRET = "demo-crm-client-secret-29c4e7b1"
TOKEN_AUTH_METHOD = "client_secret_basic"
SCOPES = ("profile", "contacts.read")
SUBJECT = "crm-user-1001"

CODE_LIFETIME_SECONDS = 60
REFRESH_LIFETIME_SECONDS = 30 * 24 * 3600
ACCESS_PREFIX, REFRESH_PREFIX = "dat.", "drt."
_ACCESS_SALT, _REFRESH_SALT = "demo.upstream.oauth.access", "demo.upstream.oauth.refresh"


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    token_auth_method: str = "client_secret_basic"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class _Signer(signing.TimestampSigner):
    """Signed tokens with a clock the tests can move (``TimestampSigner`` reads ``time.time``)."""

    def __init__(self, *, salt: str, clock: Callable[[], float]):
        super().__init__(salt=salt, sep=".")
        self._clock = clock

    def timestamp(self):
        return signing.b62_encode(int(self._clock()))

    def unsign(self, value, max_age=None):
        result = super(signing.TimestampSigner, self).unsign(value)  # the signature alone
        value, timestamp = result.rsplit(self.sep, 1)
        if max_age is not None and self._clock() - signing.b62_decode(timestamp) > max_age:
            raise signing.SignatureExpired("expired")
        return value


class AuthorizationServer:
    def __init__(self, *, clients: list[Client] | None = None, redirect_uris: list[str] | None = None,
                 auto_approve: bool = False, token_lifetime: int = 3600, clock: Callable[[], float] = time.time):
        default = Client(CLIENT_ID, CLIENT_SECRET, TOKEN_AUTH_METHOD)
        self.clients = {c.client_id: c for c in (clients or [default])}
        # The hub's callback is the one registered redirect URI unless told otherwise.
        self.redirect_uris = list(redirect_uris or [settings.OAUTH_CALLBACK_URL])
        self.auto_approve = auto_approve
        self.token_lifetime = token_lifetime
        self.clock = clock
        self._access = _Signer(salt=_ACCESS_SALT, clock=clock)
        self._refresh = _Signer(salt=_REFRESH_SALT, clock=clock)
        self._lock = threading.Lock()
        self._codes: dict[str, dict] = {}
        self._spent_refresh: set[str] = set()
        self._revoked_grants: set[str] = set()
        self._revoked_access: set[str] = set()

    def routes(self) -> dict:
        return {
            ("GET", "/oauth/authorize"): Route(self.authorize),
            ("POST", "/oauth/authorize"): Route(self.authorize),
            ("POST", "/oauth/token"): Route(self.token),
            ("POST", "/oauth/revoke"): Route(self.revoke),
        }

    # --- authorize --------------------------------------------------------------------------------------

    def authorize(self, request: Request):
        params = request.form() if request.method == "POST" else request.query
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None:
            return _error_page("Unknown client", "The application asking for access is not registered here.")
        if redirect_uri not in self.redirect_uris:
            return _error_page("Redirect URI not registered",
                               "The application's redirect URI is not one registered for it.")
        state = params.get("state", "")

        def refuse(error: str, description: str):
            return redirect(_with_query(redirect_uri, {"error": error, "error_description": description,
                                                       "state": state}))

        if params.get("response_type") != "code":
            return refuse("unsupported_response_type", "Only response_type=code is supported.")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return refuse("invalid_request", "PKCE with code_challenge_method=S256 is required.")
        scope = " ".join(s for s in params.get("scope", " ".join(SCOPES)).split() if s in SCOPES)
        if request.method == "GET" and not self.auto_approve:
            return html_response(_consent_page(client, scope, params))
        if request.method == "POST" and params.get("decision") != "allow":
            return refuse("access_denied", "The user declined.")
        code = "dac_" + secrets.token_urlsafe(24)
        with self._lock:
            now = self.clock()
            self._codes = {k: v for k, v in self._codes.items() if v["expires_at"] > now}
            self._codes[code] = {"client_id": client.client_id, "redirect_uri": redirect_uri, "scope": scope,
                                 "challenge": params["code_challenge"], "expires_at": now + CODE_LIFETIME_SECONDS}
        return redirect(_with_query(redirect_uri, {"code": code, "state": state}))

    # --- token ----------------------------------------------------------------------------------------------

    def _client(self, request: Request, form: dict) -> Client | None:
        """The client, when it authenticated with its registered method and secret."""
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            client_id, _, secret = raw.partition(":")
            client_id, secret, method = unquote(client_id), unquote(secret), "client_secret_basic"
        elif "client_secret" in form:
            client_id, secret, method = form.get("client_id", ""), form["client_secret"], "client_secret_post"
        else:
            return None
        client = self.clients.get(client_id)
        if client is None or client.token_auth_method != method:
            return None
        return client if hmac.compare_digest(secret.encode(), client.secret.encode()) else None

    def token(self, request: Request):
        form = request.form()
        client = self._client(request, form)
        if client is None:
            return _token_error(401, "invalid_client", "Client authentication failed.",
                                {"WWW-Authenticate": 'Basic realm="demo-crm"'})
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._code_grant(client, form)
        if grant_type == "refresh_token":
            return self._refresh_grant(client, form)
        return _token_error(400, "unsupported_grant_type", "Use authorization_code or refresh_token.")

    def _code_grant(self, client: Client, form: dict):
        with self._lock:
            found = self._codes.pop(form.get("code", ""), None)  # single use, whatever follows
        if found is None or found["expires_at"] <= self.clock() or found["client_id"] != client.client_id:
            return _token_error(400, "invalid_grant", "The code is unknown, used or expired.")
        if form.get("redirect_uri") != found["redirect_uri"]:
            return _token_error(400, "invalid_grant", "redirect_uri does not match the authorization request.")
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(s256(verifier), found["challenge"]):
            return _token_error(400, "invalid_grant", "PKCE verification failed.")
        grant = secrets.token_urlsafe(12)
        return self._issue(client=client, grant=grant, scope=found["scope"])

    def _refresh_grant(self, client: Client, form: dict):
        claims = self._claims(form.get("refresh_token", ""), REFRESH_PREFIX, self._refresh, REFRESH_LIFETIME_SECONDS)
        if claims is None or claims["c"] != client.client_id:
            return _token_error(400, "invalid_grant", "The refresh token is unknown, expired or revoked.")
        with self._lock:
            if claims["g"] in self._revoked_grants:
                return _token_error(400, "invalid_grant", "The refresh token is unknown, expired or revoked.")
            if claims["j"] in self._spent_refresh:
                # A rotated-out refresh token used again: someone kept a copy. End the grant.
                self._revoked_grants.add(claims["g"])
                return _token_error(400, "invalid_grant", "The refresh token was already used.")
            self._spent_refresh.add(claims["j"])
        return self._issue(client=client, grant=claims["g"], scope=claims["sc"])

    def _issue(self, *, client: Client, grant: str, scope: str):
        base = {"c": client.client_id, "s": SUBJECT, "g": grant, "sc": scope}
        access = ACCESS_PREFIX + self._access.sign_object({**base, "t": "a", "j": secrets.token_urlsafe(9)})
        refresh = REFRESH_PREFIX + self._refresh.sign_object({**base, "t": "r", "j": secrets.token_urlsafe(9)})
        return json_response(
            {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime,
             "refresh_token": refresh, "scope": scope},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    # --- tokens -------------------------------------------------------------------------------------------

    @staticmethod
    def _claims(token: str, prefix: str, signer: _Signer, max_age: int) -> dict | None:
        if not token.startswith(prefix):
            return None
        try:
            return signer.unsign_object(token[len(prefix):], max_age=max_age)
        except (signing.BadSignature, ValueError):
            return None

    def check_access(self, request: Request) -> dict | None:
        """The claims of a live access token in ``Authorization: Bearer``, else None."""
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        claims = self._claims(token, ACCESS_PREFIX, self._access, self.token_lifetime)
        if claims is None:
            return None
        with self._lock:
            if claims["g"] in self._revoked_grants or claims["j"] in self._revoked_access:
                return None
        return claims

    def revoke(self, request: Request):
        form = request.form()
        if self._client(request, form) is None:
            return _token_error(401, "invalid_client", "Client authentication failed.",
                                {"WWW-Authenticate": 'Basic realm="demo-crm"'})
        token = form.get("token", "")
        refresh = self._claims(token, REFRESH_PREFIX, self._refresh, REFRESH_LIFETIME_SECONDS)
        access = self._claims(token, ACCESS_PREFIX, self._access, self.token_lifetime)
        with self._lock:
            if refresh is not None:
                self._revoked_grants.add(refresh["g"])  # the grant ends, its access tokens with it
            elif access is not None:
                self._revoked_access.add(access["j"])
        return json_response({}, headers={"Cache-Control": "no-store"})


# --- pages and answers ---------------------------------------------------------------------------------------


def _with_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _token_error(status: int, error: str, description: str, headers: dict | None = None):
    return json_response({"error": error, "error_description": description}, status,
                         {"Cache-Control": "no-store", **(headers or {})})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; background: #f3f4f6; margin: 0; }}
main {{ max-width: 28rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: .75rem;
        box-shadow: 0 1px 3px rgba(0,0,0,.15); }}
h1 {{ font-size: 1.25rem; margin-top: 0; }} code {{ background: #f3f4f6; padding: 0 .25rem; }}
button {{ font: inherit; padding: .5rem 1.25rem; border-radius: .5rem; border: 1px solid #d1d5db;
          background: #fff; cursor: pointer; margin-right: .5rem; }}
button.allow {{ background: #2563eb; border-color: #2563eb; color: #fff; }}
</style></head>
<body><main>{body}</main></body></html>
"""


def _consent_page(client: Client, scope: str, params: dict) -> str:
    keep = ("response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge",
            "code_challenge_method")
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name], quote=True)}">'
        for name in keep if name in params
    )
    scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in scope.split()) or "<li>basic access</li>"
    body = (
        "<h1>Demo CRM</h1>"
        f"<p>The application <strong>{html.escape(client.client_id)}</strong> asks to access the Demo CRM "
        "account of <strong>Dana Demo</strong> with these permissions:</p>"
        f"<ul>{scopes}</ul>"
        f'<form method="post" action="/oauth/authorize">{hidden}'
        '<button class="allow" type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
    )
    return PAGE.format(title="Demo CRM: allow access?", body=body)


def _error_page(title: str, message: str):
    body = f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
    return html_response(PAGE.format(title=html.escape(title), body=body), status=400)
