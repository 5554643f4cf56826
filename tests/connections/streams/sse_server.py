"""A loopback event-stream server for the stream tests: aiohttp's web server on a thread of its own.

Each path is a ``Feed``: a log of framed events. A client gets the events
after the one its ``Last-Event-ID`` names (all of them when it names none or
one the log does not hold), then each event as it is published. A feed can
answer another status, close at once, say nothing, or drop its connections.
Every connection is recorded with its request headers.
"""
import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Feed:
    events: list[tuple[str | None, bytes]] = field(default_factory=list)  # (id, framed bytes)
    status: int = 200
    retry_ms: int | None = None
    close_at_once: bool = False
    preamble: bytes = b""  # sent first on every connection (a BOM, a comment…)
    generation: int = 0  # bumped to drop every open connection
    heartbeat: float | None = None  # seconds between ": ping" comments
    replay_all: bool = False  # ignore Last-Event-ID: every connection gets the whole log again
    redirect_to: str | None = None  # answer 307 to this URL instead
    authorized: object = None  # a callable (request headers → bool): 401 when it says no


class SSEServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.feeds: dict[str, Feed] = {}
        self.connections: list[dict] = []
        self.open: dict[str, int] = {}  # open connections by path
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._changed: asyncio.Condition | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="sse-server")
        self.port = None

    # --- the test's side -------------------------------------------------------------------------

    def start(self) -> "SSEServer":
        self._thread.start()
        assert self._ready.wait(10), "the SSE server did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        """Streams still open are ended first (their handlers would otherwise be left pending)."""
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._runner.cleanup()

    def url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def feed(self, path: str, **options) -> Feed:
        with self._lock:
            feed = self.feeds.setdefault(path, Feed())
            for name, value in options.items():
                setattr(feed, name, value)
        self._notify()
        return feed

    def publish(self, path: str, data, *, id: str | None = None, event: str | None = None) -> None:
        """Add an event (``data`` JSON-encoded unless bytes or str) to the feed and send it to its clients."""
        if not isinstance(data, bytes | str):
            data = json.dumps(data)
        text = data.decode() if isinstance(data, bytes) else data
        lines = [f"id: {id}"] if id is not None else []
        lines += [f"event: {event}"] if event else []
        lines += [f"data: {line}" for line in text.split("\n")]
        self.publish_raw(path, ("\n".join(lines) + "\n\n").encode(), id=id)

    def publish_raw(self, path: str, framed: bytes, *, id: str | None = None) -> None:
        with self._lock:
            self.feeds.setdefault(path, Feed()).events.append((id, framed))
        self._notify()

    def drop(self, path: str) -> None:
        """Close every open connection of ``path`` (the clients reconnect)."""
        with self._lock:
            self.feeds[path].generation += 1
        self._notify()

    def open_to(self, path: str) -> int:
        with self._lock:
            return self.open.get(path, 0)

    def connections_to(self, path: str) -> list[dict]:
        with self._lock:
            return [c for c in self.connections if c["path"] == path]

    def wait_for_connections(self, path: str, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.connections_to(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{len(self.connections_to(path))} connections to {path}, not {count}")

    def _notify(self) -> None:
        if self._changed is not None:
            asyncio.run_coroutine_threadsafe(self._wake(), self._loop)

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the server's side -----------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request):
        with self._lock:
            feed = self.feeds.get(request.path)
            self.connections.append({"path": request.path, "headers": dict(request.headers), "at": time.monotonic()})
        if feed is None:
            return web.Response(status=404, text="no such feed")
        if feed.redirect_to:
            raise web.HTTPTemporaryRedirect(feed.redirect_to)
        if feed.authorized is not None and not feed.authorized(request.headers):
            return web.Response(status=401, text="token refused")
        if feed.status != 200:
            return web.Response(status=feed.status, text="refused")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        head = feed.preamble + (f"retry: {feed.retry_ms}\n\n".encode() if feed.retry_ms is not None else b"")
        if head:
            await response.write(head)
        if feed.close_at_once:
            return response
        with self._lock:
            ids = [event_id for event_id, _ in feed.events]
            last = request.headers.get("Last-Event-ID")
            index = ids.index(last) + 1 if last in ids and not feed.replay_all else 0
            generation = feed.generation
            self.open[request.path] = self.open.get(request.path, 0) + 1
        try:
            while True:
                with self._lock:
                    pending = feed.events[index:]
                    dropped = feed.generation != generation
                if dropped or request.transport is None or request.transport.is_closing():
                    return response  # dropped, or the client went away
                for _, framed in pending:
                    await response.write(framed)
                index += len(pending)
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), feed.heartbeat or 0.1)
                    except TimeoutError:
                        if feed.heartbeat:
                            await response.write(b": ping\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            with self._lock:
                self.open[request.path] -= 1
