"""The demo upstream's HTTP side: a route table served by ``ThreadingHTTPServer``.

A route maps ``(method, path)`` to ``Route(handler, auth)`` (``routing.py``).
The handler takes a ``Request`` and returns a ``Response``; ``auth`` names one
of the server's credential checks (``api_key``, ``bearer``, ``basic``,
``oauth``), and a request that fails it is answered 401 before the handler runs.

Extension points: ``DemoUpstream.routes`` is a plain dict, so a search
endpoint or an event stream is one more entry. ``Response.stream`` (an
iterable of byte chunks) is sent without a length, each chunk written and
flushed at once, and the connection is closed afterwards, which is what
``text/event-stream`` needs (``streams.py`` serves the demo's own stream). A
write that fails (the client went away, or stopped reading for
``IDLE_TIMEOUT_SECONDS``) ends the response: the stream is closed and the
handler's thread ends::

    upstream.routes[("GET", "/inventory/search")] = Route(search, auth="api_key")
    upstream.routes[("GET", "/inventory/stream")] = Route(
        lambda request: Response(200, content_type="text/event-stream", stream=events()), auth="api_key")

The standard library is enough for a loopback stand-in: no framework, no
dependency beside the hub's own.
"""
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import api, streams
from .notifications import NotificationReceiver
from .oauth import AuthorizationServer
from .routing import Request, Response, Route, json_response

logger = logging.getLogger("demo.upstream")

MAX_BODY_BYTES = 1024 * 1024
# Idle kept-alive connections are closed after this long, so their threads end.
IDLE_TIMEOUT_SECONDS = 30


class DemoUpstream:
    """The REST API of the demo integrations, the OAuth demo provider and the demo tenant's notification
    receiver, on one loopback port.

    ``port=0`` picks a free port (tests); ``clock`` drives the status feeds and
    the authorization server's code and token lifetimes; ``notification_secrets``
    gives the receiver the secrets it verifies with (none: every notification is refused).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8001, rotate_every: float = api.ROTATE_EVERY_SECONDS,
                 auto_approve: bool = False, redirect_uris: list[str] | None = None,
                 token_lifetime: int = 3600, clock: Callable[[], float] = time.time,
                 notification_secrets: Callable[[], list[str]] = list):
        self.inventory = api.inventory_feed(period=rotate_every, clock=clock)
        self.payments = api.payments_feed(period=rotate_every, clock=clock)
        self.slots = streams.slots_feed(period=rotate_every, clock=clock)
        self.slot_stream = streams.EventStream(self.slots)
        self.oauth = AuthorizationServer(redirect_uris=redirect_uris, auto_approve=auto_approve,
                                         token_lifetime=token_lifetime, clock=clock)
        self.notifications = NotificationReceiver(secrets=notification_secrets)
        self.auth_checks: dict[str, Callable[[Request], object]] = {**api.AUTH_CHECKS,
                                                                     "oauth": self.oauth.check_access}
        self.routes: dict[tuple[str, str], Route] = {**api.routes(self), **streams.routes(self),
                                                     **self.oauth.routes(), **self.notifications.routes()}
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> "DemoUpstream":
        """Serve in a daemon thread; returns self."""
        # A short poll interval: stop() returns within it.
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="demo-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.slot_stream.stop()  # open event streams end too, not only the listening socket
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- one request -----------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        route = self.routes.get((request.method, request.path))
        if route is None:
            allowed = sorted(m for (m, p) in self.routes if p == request.path)
            if allowed:
                return json_response({"error": "method_not_allowed"}, 405, {"Allow": ", ".join(allowed)})
            return json_response({"error": "not_found", "message": f"No route for {request.path}."}, 404)
        if route.auth:
            found = self.auth_checks[route.auth](request)
            if not found:
                return api.unauthorized(route.auth)
            request.auth = found
        return route.handler(request)


def _handler_class(upstream: DemoUpstream):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "DemoUpstream/1.0"
        timeout = IDLE_TIMEOUT_SECONDS

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._serve()

        def do_POST(self):  # noqa: N802
            self._serve()

        def do_PUT(self):  # noqa: N802
            self._serve()

        def do_DELETE(self):  # noqa: N802
            self._serve()

        def _serve(self):
            parts = urlsplit(self.path)
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self._send(json_response({"error": "invalid_request", "message": "Bad Content-Length."}, 413))
                self.close_connection = True
                return
            body = self.rfile.read(int(length)) if int(length) else b""
            request = Request(
                method=self.command, path=parts.path or "/", headers=self.headers, body=body,
                query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            )
            try:
                response = upstream.dispatch(request)
            except Exception:
                logger.exception("demo.upstream.error method=%s path=%s", request.method, request.path)
                response = json_response({"error": "server_error"}, 500)
            self._send(response)
            # The path only: queries carry OAuth state and PKCE challenges, which stay out of logs.
            logger.info("demo.upstream.request method=%s path=%s status=%s", request.method, request.path,
                        response.status)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.stream is None:
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
                return
            # A stream: no length, the end of the connection ends the body.
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in response.stream:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except OSError:  # the client went away (broken pipe, reset) or stopped reading (timeout)
                pass
            finally:
                close = getattr(response.stream, "close", None)
                if close is not None:  # a generator's own clean-up runs now, not when it is collected
                    close()

        def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
            pass  # requests are logged by _serve, without their query strings

    return Handler
