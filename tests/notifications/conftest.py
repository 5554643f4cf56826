"""Fixtures for the notification tests: a real loopback receiver, endpoints made through the service, and
the queue edge recorded instead of sent."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit.services import SYSTEM
from notifications import services
from notifications.services.dispatch import DELIVER


class Receiver:
    """A threaded loopback HTTP server taking POSTs: it records each (headers, body) and answers the next
    status of ``statuses`` (the last one again once they run out)."""

    def __init__(self):
        self.statuses = [200]
        self.received: list[tuple[dict, bytes]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                answer = b'{"ok": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/notify"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, *statuses: int) -> None:
        with self._lock:
            self.statuses = list(statuses)

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    server = Receiver()
    server._thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def queued(sent_tasks):
    """The delivery tasks sent (lists of delivery ids), recorded instead of sent to a broker."""
    return sent_tasks[DELIVER]


@pytest.fixture
def make_endpoint(tenant, sent_tasks):
    """``make_endpoint(url, **fields)`` → (endpoint, secret), through the service."""

    def make(url: str = "https://hooks.example.com/notify", tenant=tenant, **data):
        return services.notification_endpoint_create(actor=SYSTEM, tenant=tenant, data={"url": url, **data})

    return make
