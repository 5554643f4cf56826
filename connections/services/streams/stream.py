"""One held event stream: connect, read, queue events, back off, reconnect from the last applied event."""
import asyncio
import logging
import random

from django.utils import timezone

from integrations_site.outbound import OutboundError, retry_after_seconds
from integrations_site.outbound.client import BAD_HEADER_VALUE
from integrations_site.outbound.sse import EventStreamParser
from integrations_site.outbound.streaming import StreamRefused, stream_open

from ...choices import StreamState
from .apply import StreamEvent
from .setup import setup_refreshed

logger = logging.getLogger("connections.streams")

MAX_BACKOFF_SECONDS = 60.0
BACKOFF_BASE_SECONDS = 1.0
MAX_EVENT_ID_CHARS = 1024  # a longer id is neither kept (to skip its replay) nor sent back (to resume)


def backoff_seconds(failures: int, retry_ms: int | None, retry_after: float | None = None) -> float:
    """The wait before reconnecting: exponential from the server's ``retry:`` (or 1 s), with jitter
    upwards only, at least a ``Retry-After``, at most ``MAX_BACKOFF_SECONDS``."""
    base = retry_ms / 1000 if retry_ms is not None else BACKOFF_BASE_SECONDS
    delay = base * (2 ** max(0, min(failures - 1, 16))) * random.uniform(1.0, 1.25)
    return min(MAX_BACKOFF_SECONDS, max(delay, retry_after or 0.0))


class Stream:
    """Reads one integration's stream for ``consumer`` (a ``consumer.Consumer``) until cancelled."""

    def __init__(self, consumer, setup, last_event_id: str):
        self.consumer, self.setup, self.last_event_id = consumer, setup, last_event_id
        self.pk = str(setup.integration.pk)
        self.config: tuple = ()  # the config columns it was last seen with (leases.CONFIG_COLUMNS)
        self.retry_ms: int | None = None
        self._restart = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"stream-{self.pk}")

    def restart(self) -> None:
        """Drop the connection and connect again at once (nothing of what it read is kept)."""
        self._restart.set()

    async def _run(self) -> None:
        failures, refreshed = 0, False
        while True:
            self._restart.clear()
            parser = EventStreamParser(self.consumer.max_event_bytes)
            self.events_read, self.last_sequence, retry_after = 0, 0, None
            try:
                error = await self._connect(parser)
            except StreamRefused as exc:
                if exc.status_code == 401 and self.setup.refreshable and not refreshed:
                    refreshed = True
                    fresh = await self.consumer.on_db(setup_refreshed, setup=self.setup)
                    if fresh is not None:
                        self.setup = fresh
                        continue
                error = {"code": exc.code, "message": exc.message}
                retry_after = retry_after_seconds(exc.retry_after)
            except OutboundError as exc:
                error = {"code": exc.code, "message": exc.message}
            self.retry_ms = parser.retry if parser.retry is not None else self.retry_ms
            if self.events_read:
                failures, refreshed = 0, False
            if error is None:  # a restart asked for: at once
                self.consumer.state(self.pk, add_reconnects=1)
                await self.consumer.applied(self.last_sequence)
                continue
            failures += 1
            delay = backoff_seconds(failures, self.retry_ms, retry_after)
            if error["code"] == "NOT_CONFIGURED":
                delay = MAX_BACKOFF_SECONDS
            error["at"] = timezone.now().isoformat()
            self.consumer.state(self.pk, state=StreamState.BACKOFF, last_error=error, add_reconnects=1)
            logger.info("streams.backoff integration=%s code=%s delay=%.1f", self.pk, error["code"], delay)
            await self.consumer.applied(self.last_sequence)
            try:
                await asyncio.wait_for(self._restart.wait(), delay)
            except TimeoutError:
                pass

    async def _connect(self, parser: EventStreamParser) -> dict | None:
        """Read the stream until it ends: the error to back off with, or None when a restart was asked for."""
        if not self.setup.url:
            return {"code": "NOT_CONFIGURED", "message": "Set api_base_url (or an absolute stream_endpoint)."}
        self.consumer.state(self.pk, state=StreamState.CONNECTING)
        options = dict(self.setup.options)
        headers = dict(options.pop("headers", {}))
        if self.last_event_id and not BAD_HEADER_VALUE.search(self.last_event_id):
            headers["Last-Event-ID"] = self.last_event_id  # an id no header can carry: resumed from the start
        reading = asyncio.create_task(stream_open(
            self.setup.url, headers=headers, connect_timeout=self.setup.integration.timeout_seconds,
            on_open=lambda content: self._read(content, parser), **options,
        ))
        restart = asyncio.create_task(self._restart.wait())
        try:
            await asyncio.wait({reading, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled (the stream is stopped) or one of them done
            restart.cancel()
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
        if reading.cancelled():  # a restart was asked for
            return None
        reading.result()  # raises what the stream raised
        return {"code": "STREAM_CLOSED", "message": "The server closed the stream."}

    async def _read(self, content, parser: EventStreamParser) -> None:
        consumer, idle = self.consumer, self.consumer.idle_seconds
        consumer.state(self.pk, state=StreamState.CONNECTED, connected_at=timezone.now())
        while True:
            try:
                async with asyncio.timeout(idle):
                    chunk = await content.readany()
            except TimeoutError:
                raise OutboundError(f"Nothing arrived for {idle:g} s; reconnecting.", code="TIMEOUT") from None
            if not chunk:
                return
            oversized = parser.oversized
            for event in parser.feed(chunk):
                own_id = event.id if event.own_id and 0 < len(event.id) <= MAX_EVENT_ID_CHARS else None
                self.last_sequence = await consumer.submit(StreamEvent(self.pk, own_id, event.data))
                self.events_read += 1
            if parser.oversized != oversized:  # skipped, counted, and the stream read on
                consumer.state(self.pk, add_events_oversized=parser.oversized - oversized)
