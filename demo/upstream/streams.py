"""The demo shipping's delivery slots, as an event stream: ``GET /shipping/stream`` (HTTP Basic).

What a client reads (``text/event-stream``, HTML Living Standard 9.2):

- ``retry: 3000`` first: a client that loses the stream waits 3 s before it
  reconnects;
- a snapshot, unless ``Last-Event-ID`` can be resumed: one event whose
  ``data`` is the list of every slot's current status;
- then, on every tick of the feed (every few seconds), one event per slot
  whose status changed, ``data`` one status object ``{"id", "name",
  "status", "updated_at"}``; every ``LIST_EVERY``-th tick sends its changes
  as one event holding a list instead;
- a ``: ping`` comment every ``PING_EVERY_SECONDS``, whatever else is sent.

Event ids increase: ``tick * 1000 + n`` for slot number ``n`` (1, 2, …), and
``tick * 1000 + 999`` for a list (a snapshot or a tick's changes), which
closes its tick. The feed is computed from the clock, so the events after a
given id can be sent again, the same ids with the same data: a
``Last-Event-ID`` within the last ``REPLAY_TICKS`` ticks gets those events and
no snapshot; any other (none, not ours, too old, ahead of the clock) gets the
snapshot first.

The stream ends when the client goes away: the server writes each chunk at
once, and a write on a closed connection fails and ends the handler and its
thread. ``stop()`` (the upstream's) ends every stream within ``POLL_SECONDS``.
``GET /shipping/slots`` answers the same statuses as one list, for a look
without a stream.
"""
import json
import threading
import time
from collections.abc import Iterator

from .api import StatusFeed
from .routing import Response, Route, json_response

SLOT_NAMES = ("Mon 08-10", "Mon 10-12", "Mon 14-16", "Tue 08-10", "Tue 10-12")
# Raw statuses the demo status mapping knows (open: available, closed: sold, scheduled: coming_soon, …).
SLOT_STATUSES = ("open", "reserved", "on_hold", "closed", "scheduled")
RETRY_MS = 3000
PING_EVERY_SECONDS = 15.0
LIST_EVERY = 5  # every fifth tick's changes go as one list event
REPLAY_TICKS = 30  # how far back a Last-Event-ID is resumed (two minutes of the default feed)
IDS_PER_TICK = 1000
CLOSES_TICK = IDS_PER_TICK - 1
POLL_SECONDS = 0.25  # how often a stream looks at the clock (a test's clock moves without notice)


def slots_feed(*, period: float, clock=time.time) -> StatusFeed:
    return StatusFeed(prefix="SLOT-", names=SLOT_NAMES, statuses=SLOT_STATUSES, period=period, clock=clock)


def encode(event_id: int, data) -> bytes:
    """One event: its id and its JSON data on one line, and the blank line that ends it."""
    return f"id: {event_id}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventStream:
    """The event streams of one ``StatusFeed``: ``events(last_event_id)`` is one client's stream.

    ``open`` counts the streams being served now (each generator counts itself
    until it is closed).
    """

    def __init__(self, feed: StatusFeed, *, ping_every: float = PING_EVERY_SECONDS, poll: float = POLL_SECONDS):
        self.feed = feed
        self.ping_every = ping_every
        self.poll = poll
        self.open = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def at(self, tick: int) -> list[dict]:
        """The items during ``tick`` (the middle of it, clear of rounding at its edges)."""
        return self.feed.items((tick + 0.5) * self.feed.period)

    def tick_events(self, tick: int, after: int = 0) -> list[bytes]:
        """The events of ``tick`` whose ids are above ``tick * 1000 + after``: its changes."""
        pairs = zip(self.at(tick - 1), self.at(tick), strict=True)
        changed = [(number, item) for number, (old, item) in enumerate(pairs, 1) if old["status"] != item["status"]]
        if tick % LIST_EVERY == 0 and len(changed) > 1:
            if after >= CLOSES_TICK:
                return []
            return [encode(tick * IDS_PER_TICK + CLOSES_TICK, [item for _, item in changed])]
        return [encode(tick * IDS_PER_TICK + number, item) for number, item in changed if number > after]

    @staticmethod
    def resume_point(last_event_id: str | None, tick: int) -> tuple[int, int] | None:
        """(tick, position in it) that ``last_event_id`` names, when its events can be sent again."""
        text = (last_event_id or "").strip()
        if not text.isascii() or not text.isdigit() or len(text) > 30:
            return None
        last_tick, position = divmod(int(text), IDS_PER_TICK)
        return (last_tick, position) if tick - REPLAY_TICKS <= last_tick <= tick else None

    def events(self, last_event_id: str | None = None) -> Iterator[bytes]:
        """One client's stream, chunk by chunk, until the stream is stopped or the generator closed."""
        with self._lock:
            self.open += 1
        try:
            tick = self.feed.tick()
            yield f"retry: {RETRY_MS}\n\n".encode()
            resume = self.resume_point(last_event_id, tick)
            if resume is None:
                yield encode(tick * IDS_PER_TICK + CLOSES_TICK, self.at(tick))
            else:
                for past in range(resume[0], tick + 1):
                    yield from self.tick_events(past, resume[1] if past == resume[0] else 0)
            next_ping = time.monotonic() + self.ping_every
            while not self._stopped.wait(min(self.poll, max(0.0, next_ping - time.monotonic()))):
                now = self.feed.tick()
                # A clock that jumped far ahead is caught up with its last ticks only.
                for later in range(max(tick + 1, now - REPLAY_TICKS + 1), now + 1):
                    yield from self.tick_events(later)
                tick = max(tick, now)
                if time.monotonic() >= next_ping:
                    yield b": ping\n\n"
                    next_ping = time.monotonic() + self.ping_every
        finally:
            with self._lock:
                self.open -= 1


def routes(upstream) -> dict:
    """The stream routes; ``upstream`` holds ``slots`` (the feed) and ``slot_stream`` (its streams)."""
    def stream(request):
        return Response(200, content_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                        stream=upstream.slot_stream.events(request.headers.get("Last-Event-ID")))

    def slots(request):
        items = upstream.slots.items()
        return json_response({"items": items, "total": len(items)})

    return {
        ("GET", "/shipping/stream"): Route(stream, auth="basic"),
        ("GET", "/shipping/slots"): Route(slots, auth="basic"),
    }
