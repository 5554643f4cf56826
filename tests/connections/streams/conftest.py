"""Fixtures of the stream tests: the loopback SSE server, integrations reading it, and consumers
run in this process (a thread with its own event loop) against the committed test database."""
import asyncio
import threading
import time

import pytest

from connections.choices import IntegrationStatus, UpdateMethod
from connections.services.streams import Consumer
from tests.connections.factories import IntegrationFactory
from tests.connections.streams.sse_server import SSEServer

MAPPING = {"available": ["open"], "sold": ["sold"], "unavailable": ["closed"]}


@pytest.fixture
def sse_server():
    server = SSEServer().start()
    yield server
    server.stop()


@pytest.fixture
def loopback_allowed(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return settings


def stream_integration(server: SSEServer, path: str, **fields):
    """An ``sse`` integration reading ``path`` of ``server``, connected, statuses mapped by MAPPING."""
    fields.setdefault("status_mapping", MAPPING)
    integration = IntegrationFactory(
        api_base_url=server.url(), stream_endpoint=path, update_method=UpdateMethod.SSE,
        status=IntegrationStatus.CONNECTED, **fields,
    )
    server.feed(path)
    return integration


class ConsumerThread:
    """A ``Consumer`` on a thread of its own; ``stop`` ends it as SIGTERM would (leases released)."""

    def __init__(self, **options):
        self.options = options
        self.consumer = None
        self._loop = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="stream-consumer")
        self.error = None

    def _main(self):
        async def main():
            self._loop = asyncio.get_running_loop()
            self.consumer = Consumer(**self.options)
            self._started.set()
            await self.consumer.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 (reported by stop)
            self.error = exc
            self._started.set()

    def start(self) -> "ConsumerThread":
        self._thread.start()
        assert self._started.wait(10)
        return self

    def stop(self, timeout: float = 15) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.consumer.stopping.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the consumer did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def consumers():
    """Start consumers with ``consumers(**options)``; every one is stopped at the end of the test."""
    started = []

    def start(**options) -> ConsumerThread:
        options.setdefault("lease_seconds", 3)
        thread = ConsumerThread(**options).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


def wait_for(predicate, timeout: float = 10, what: str = "the condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
