"""A real OAuth2 authorization server on loopback, for the connect, refresh and revoke tests.

It runs in a thread of the test process (``ThreadingHTTPServer``) and speaks
plain HTTP on 127.0.0.1, so the app reaches it through its own SSRF-safe
client with ``OUTBOUND_ALLOWED_HOSTS`` naming the loopback host.

Endpoints:

- ``GET /authorize``: checks the client id and redirect URI, remembers the
  code challenge, and answers 302 to ``redirect_uri?code=…&state=…`` (``iss``
  added when ``issuer`` is set; ``error=…`` instead when ``authorize_error`` is set).
- ``POST /token``: client authentication by HTTP Basic or by form fields;
  ``authorization_code`` (single-use code, exact redirect URI, PKCE S256
  verified against the remembered challenge) and ``refresh_token``
  (``rotate_refresh_tokens``: a new refresh token replaces the spent one, else
  the same one comes back; ``include_refresh_token=False``: the answer has
  none; ``invalid_grant`` for unknown or revoked refresh tokens). ``fail_with`` makes it answer that status.
- ``POST /revoke``: records each revoked token (RFC 7009); ``revoke_status``
  makes it fail.
- ``GET /api/ping``: a protected resource; 401 unless the Bearer token is a
  live access token.

Tokens are long random strings, so the suite's secret guard watches them once
the app encrypts them.
"""
import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import pytest
from django.test import Client

from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class Grant:
    """What a refresh token stands for."""

    client_id: str
    scope: str
    subject: str
    revoked: bool = False


@dataclass
class TokenCall:
    """One request to /token, as the tests inspect it (no secrets kept beyond the test)."""

    grant_type: str
    client_auth: str  # "basic", "post" or "none"
    status: int
    form: dict = field(default_factory=dict)


class OAuthServer:
    def __init__(self, *, client_id: str = "client-1", client_secret: str = "client-secret-value-123"):
        self.clients = {client_id: client_secret}
        # Switches the tests flip while the server runs.
        self.rotate_refresh_tokens = True
        self.include_refresh_token = True
        self.expires_in = 3600
        self.fail_with: int | None = None
        self.revoke_status = 200
        self.issuer: str | None = None
        self.authorize_error: str | None = None
        self.token_delay = 0.0
        # State.
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.access_tokens: dict[str, dict] = {}
        self.revoked: list[dict] = []
        self.token_calls: list[TokenCall] = []
        self.pings: list[int] = []
        self._lock = threading.RLock()
        self._subjects = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                if parts.path == "/authorize":
                    owner._authorize(self, query)
                elif parts.path == "/api/ping":
                    owner._ping(self)
                else:
                    owner._send_json(self, 404, {"error": "not_found"})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                path = urlsplit(self.path).path
                if path == "/token":
                    owner._token(self, form)
                elif path == "/revoke":
                    owner._revoke(self, form)
                else:
                    owner._send_json(self, 404, {"error": "not_found"})

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "OAuthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def oauth_config(self, **overrides) -> dict:
        """A provider ``oauth_config`` pointing at this server."""
        config = {
            "authorize_url": self.url("/authorize"),
            "token_url": self.url("/token"),
            "revoke_url": self.url("/revoke"),
            "client_id": next(iter(self.clients)),
            "scopes": ["read", "write"],
        }
        config.update(overrides)
        return config

    # --- helpers for the tests -----------------------------------------------------------------------

    def refresh_calls(self) -> list[TokenCall]:
        with self._lock:
            return [c for c in self.token_calls if c.grant_type == "refresh_token"]

    def expire_access_tokens(self) -> None:
        """Every issued access token is expired from now on (the API answers 401)."""
        with self._lock:
            for token in self.access_tokens.values():
                token["expires_at"] = 0

    def revoke_refresh_tokens(self) -> None:
        """The user withdrew consent at the provider: every refresh token is dead."""
        with self._lock:
            for grant in self.refresh_tokens.values():
                grant.revoked = True

    def access_token_is_live(self, token: str) -> bool:
        with self._lock:
            found = self.access_tokens.get(token)
            return bool(found and not found["revoked"] and found["expires_at"] > time.time())

    def refresh_token_is_live(self, token: str) -> bool:
        with self._lock:
            grant = self.refresh_tokens.get(token)
            return bool(grant and not grant.revoked)

    def authorize(self, authorization_url: str) -> dict:
        """Follow an authorization URL as the user's browser would (consent given); the callback's query."""
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(authorization_url, timeout=5)
        except urllib.error.HTTPError as answer:
            location = answer.headers.get("Location")
            if answer.code == 302 and location:
                return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()} | {"_location": location}
            raise AssertionError(f"/authorize answered {answer.code}: {answer.read()[:200]!r}") from None
        raise AssertionError("/authorize did not redirect")

    # --- endpoints ---------------------------------------------------------------------------------------

    def _authorize(self, handler, query: dict) -> None:
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        if client_id not in self.clients or not redirect_uri.startswith(("http://", "https://")):
            self._send_json(handler, 400, {"error": "invalid_request"})
            return
        state = query.get("state", "")
        if query.get("response_type") != "code":
            self._redirect(handler, redirect_uri, {"error": "unsupported_response_type", "state": state})
            return
        if self.authorize_error:
            self._redirect(handler, redirect_uri, {"error": self.authorize_error, "state": state})
            return
        challenge = query.get("code_challenge")
        if challenge and query.get("code_challenge_method") != "S256":
            self._redirect(handler, redirect_uri, {"error": "invalid_request", "state": state})
            return
        code = "code-" + secrets.token_urlsafe(16)
        with self._lock:
            self._subjects += 1
            self.codes[code] = {"client_id": client_id, "redirect_uri": redirect_uri, "challenge": challenge,
                                "scope": query.get("scope", ""), "subject": f"user-{self._subjects}"}
        params = {"code": code, "state": state}
        if self.issuer:
            params["iss"] = self.issuer
        self._redirect(handler, redirect_uri, params)

    def _client(self, handler, form: dict) -> tuple[str | None, str]:
        """(client id, method) when the client authenticated, else (None, method)."""
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None, "basic"
            client_id, secret = unquote(client_id), unquote(secret)
            return (client_id if self.clients.get(client_id) == secret else None), "basic"
        if "client_secret" in form:
            client_id = form.get("client_id", "")
            return (client_id if self.clients.get(client_id) == form["client_secret"] else None), "post"
        return None, "none"

    def _token(self, handler, form: dict) -> None:
        if self.token_delay:
            time.sleep(self.token_delay)
        grant_type = form.get("grant_type", "")
        client_id, method = self._client(handler, form)
        status, body = self._token_answer(grant_type, client_id, form)
        with self._lock:
            self.token_calls.append(TokenCall(grant_type=grant_type, client_auth=method, status=status,
                                              form={k: v for k, v in form.items() if k != "client_secret"}))
        self._send_json(handler, status, body)

    def _token_answer(self, grant_type: str, client_id: str | None, form: dict) -> tuple[int, dict]:
        if self.fail_with:
            return self.fail_with, {"error": "server_error"}
        if client_id is None:
            return 401, {"error": "invalid_client"}
        with self._lock:
            if grant_type == "authorization_code":
                found = self.codes.pop(form.get("code", ""), None)  # single use
                if found is None or found["client_id"] != client_id:
                    return 400, {"error": "invalid_grant", "error_description": "unknown code"}
                if form.get("redirect_uri") != found["redirect_uri"]:
                    return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
                if found["challenge"]:
                    verifier = form.get("code_verifier", "")
                    if not verifier or s256(verifier) != found["challenge"]:
                        return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                return 200, self._issue(client_id, found["scope"], found["subject"], with_refresh=True)
            if grant_type == "refresh_token":
                grant = self.refresh_tokens.get(form.get("refresh_token", ""))
                if grant is None or grant.revoked or grant.client_id != client_id:
                    return 400, {"error": "invalid_grant", "error_description": "refresh token unknown or revoked"}
                if not self.include_refresh_token:
                    return 200, self._issue(client_id, grant.scope, grant.subject, with_refresh=False)
                if not self.rotate_refresh_tokens:  # the same refresh token comes back
                    body = self._issue(client_id, grant.scope, grant.subject, with_refresh=False)
                    return 200, body | {"refresh_token": form["refresh_token"]}
                grant.revoked = True  # rotation: the old one is spent
                return 200, self._issue(client_id, grant.scope, grant.subject, with_refresh=True)
        return 400, {"error": "unsupported_grant_type"}

    def _issue(self, client_id: str, scope: str, subject: str, *, with_refresh: bool) -> dict:
        access = "at-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = {"expires_at": time.time() + self.expires_in, "revoked": False,
                                      "subject": subject}
        body = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in, "scope": scope}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = Grant(client_id=client_id, scope=scope, subject=subject)
            body["refresh_token"] = refresh
        return body

    def _revoke(self, handler, form: dict) -> None:
        client_id, method = self._client(handler, form)
        if self.revoke_status != 200:
            self._send_json(handler, self.revoke_status, {"error": "server_error"})
            return
        if client_id is None:
            self._send_json(handler, 401, {"error": "invalid_client"})
            return
        token = form.get("token", "")
        with self._lock:
            self.revoked.append({"token": token, "hint": form.get("token_type_hint", ""), "client_auth": method})
            if token in self.refresh_tokens:
                self.refresh_tokens[token].revoked = True
                # RFC 7009: revoking a refresh token also ends the access tokens of the grant.
                subject = self.refresh_tokens[token].subject
                for issued in self.access_tokens.values():
                    if issued["subject"] == subject:
                        issued["revoked"] = True
            if token in self.access_tokens:
                self.access_tokens[token]["revoked"] = True
        self._send_json(handler, 200, {})

    def _ping(self, handler) -> None:
        header = handler.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        live = self.access_token_is_live(token)
        with self._lock:
            self.pings.append(200 if live else 401)
            subject = self.access_tokens[token]["subject"] if live else None
        if not live:
            self._send_json(handler, 401, {"error": "invalid_token"})
            return
        self._send_json(handler, 200, {"ok": True, "subject": subject, "items": [{"id": 1}, {"id": 2}]})

    # --- wire ----------------------------------------------------------------------------------------------

    @staticmethod
    def _send_json(handler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _redirect(handler, target: str, params: dict) -> None:
        parts = urlsplit(target)
        query = (parts.query + "&" if parts.query else "") + urlencode(params)
        handler.send_response(302)
        handler.send_header("Location", urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))
        handler.send_header("Content-Length", "0")
        handler.end_headers()


# --- fixtures and helpers shared by the OAuth tests ---------------------------------------------------
# A test module imports the ``*_fixture`` functions; pytest knows them by their ``name``.

RETURN_URL = "https://app.example.com/integrations/done"
CLIENT_SECRET = "client-secret-value-123"


@pytest.fixture(name="oauth_server")
def oauth_server_fixture():
    server = OAuthServer(client_secret=CLIENT_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(name="oauth_provider")
def oauth_provider_fixture(db, oauth_server, settings):
    """An OAuth2 provider whose URLs point at the local server (client_secret_basic, PKCE, revocation)."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return ProviderFactory(
        slug="crm-oauth", name="CRM OAuth", auth_type="oauth2", oauth_client_secret=CLIENT_SECRET,
        oauth_config=oauth_server.oauth_config(),
    )


@pytest.fixture(name="oauth_integration")
def oauth_integration_fixture(tenant, oauth_provider, oauth_server):
    tenant.allowed_return_hosts = ["app.example.com"]
    tenant.save()
    return IntegrationFactory(tenant=tenant, provider=oauth_provider, name="CRM", api_base_url=oauth_server.base_url,
                              test_endpoint="/api/ping", retry_count=0)


def start_flow(api_client, integration, *, me: bool = False, return_url: str = RETURN_URL) -> dict:
    """POST …/connect/oauth; the answer's JSON."""
    prefix = "/api/v1/me/integrations" if me else "/api/v1/integrations"
    started = api_client.post(f"{prefix}/{integration.pk}/connect/oauth", {"return_url": return_url}, format="json")
    assert started.status_code == 200, started.content
    return started.json()


def callback(params: dict):
    """The browser coming back from the provider to our callback (no session, no token)."""
    wanted = {k: v for k, v in params.items() if k in ("code", "state", "error", "iss")}
    return Client().get("/api/v1/oauth/callback", wanted)


def connect(api_client, integration, server: OAuthServer, *, me: bool = False, return_url: str = RETURN_URL):
    """The whole flow: start, consent at the provider, callback. The callback's response."""
    started = start_flow(api_client, integration, me=me, return_url=return_url)
    return callback(server.authorize(started["authorization_url"]))
