"""Rate limits per endpoint family, counted per tenant (per API key when one is used).

A fixed one-minute window per family and caller, counted with atomic
increments in the shared cache (Redis when configured), so every web process
sees the same count; a process reserves a caller's next places in the count
ahead while the caller is far from its limit (below: places reserved ahead).
Every answer of a throttled family carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch seconds); a refusal
is a 429 ``RATE_LIMIT_EXCEEDED`` with ``Retry-After``.
"""
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from rest_framework.throttling import BaseThrottle

from integrations_site.cache import redis_client

logger = logging.getLogger("integrations_site.throttles")

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """'100/min' → (100, 60)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


@dataclass
class RateState:
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset),
        }


def api_key_caller(key_hash: str) -> str:
    """An API key is counted by its hash: what a request gives before the key's row is found."""
    return f"key:{key_hash}"


def caller_key(request) -> str:
    ctx = getattr(request, "auth", None)
    api_key = getattr(ctx, "api_key", None)
    if api_key is not None:
        return api_key_caller(api_key.key_hash)
    tenant = getattr(ctx, "tenant", None)
    if tenant is not None:
        return f"tenant:{tenant.pk}"
    user = getattr(request, "user", None)
    if getattr(user, "pk", None):
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '-')}"


def _window(family: str, key: str, now: float | None) -> tuple[int, int, int, str]:
    """(limit, period, reset, cache key) of ``key``'s current window in ``family``."""
    limit, period = parse_rate(settings.API_RATE_LIMITS[family])
    now = time.time() if now is None else now
    window = int(now // period)
    return limit, period, (window + 1) * period, f"ratelimit:{family}:{key}:{window}"


def hit(family: str, key: str, now: float | None = None) -> tuple[bool, RateState]:
    """Count one request of ``key`` in ``family``; returns (allowed, state)."""
    limit, period, reset, cache_key = _window(family, key, now)
    try:
        place = _reservations.place(cache_key, limit, reset, lambda size: _count(cache_key, period + 5, size))
    except Exception:  # the cache being down must not take the API down with it
        logger.warning("api.ratelimit.cache_unavailable family=%s", family)
        return True, RateState(limit, limit, reset)
    return _placed(limit, place, reset)


def _placed(limit: int, place: int, reset: int) -> tuple[bool, RateState]:
    return place <= limit, RateState(limit, limit - place, reset)


# --- places in the count reserved ahead --------------------------------------------------------------------
# Each request takes the next place of its caller's window: the window's count after it. A process
# reserves several places with one increment (INCRBY n) and gives them out from memory, so a caller far from
# its limit costs a round trip per n requests, not per request. The count in the shared store is never less
# than the places given, so no more than the limit is ever allowed, across every process. Reservations are
# ``remaining // RATE_LIMIT_RESERVE_DIVISOR`` places, at most ``RATE_LIMIT_RESERVE_MAX``, at least one:
# within twice that divisor of the limit, and so at every limit below it (the defaults), each request is
# counted in the shared store as it comes, exact as before. A place is unique across processes
# (``X-RateLimit-Remaining`` is the limit less the place), so with several processes the Remaining of
# successive answers is not always falling: one process gives places out of its reservation while another
# has reserved further. A window found spent (a place past the limit) is refused from memory until it ends.


class _Reservations:
    def __init__(self):
        self._held: dict[tuple[str, int], list[int]] = {}  # (window's key, limit) → [last place, places held, reset]
        self._lock = threading.Lock()

    def place(self, cache_key: str, limit: int, reset: int, count) -> int:
        """This request's place: the next one reserved here, a place past the limit when the window is known to
        be spent, else the first of the places ``count(size)`` reserves (it returns the window's count after)."""
        place = self._take(cache_key, limit)
        if place is None:
            size = self._size(cache_key, limit)
            place = self._reserved(cache_key, limit, reset, size, count(size))
        return place

    def _take(self, cache_key: str, limit: int) -> int | None:
        with self._lock:
            held = self._held.get((cache_key, limit))
            if held is None:
                return None
            last, left = held[0], held[1]
            if left:
                held[1] = left - 1
                return last - left + 1
            return last if last > limit else None

    def _size(self, cache_key: str, limit: int) -> int:
        """How many places the next count reserves: a share of what the window is known to have left."""
        held = self._held.get((cache_key, limit))
        left = limit - (held[0] if held else 0)
        return max(1, min(settings.RATE_LIMIT_RESERVE_MAX, left // settings.RATE_LIMIT_RESERVE_DIVISOR))

    def _reserved(self, cache_key: str, limit: int, reset: int, size: int, count: int) -> int:
        """Keep the places ``count - size + 1`` … ``count`` just reserved; the first is this request's."""
        with self._lock:
            if len(self._held) >= 4096:
                now = time.time()
                self._held = {name: held for name, held in self._held.items() if held[2] > now}
            self._held[(cache_key, limit)] = [count, size - 1, reset]
        return count - size + 1


_reservations = _Reservations()


# ``ARGV[2]`` places reserved in the window (INCRBY; the window's first request sets its end: EXPIRE … NX)
# and, when a second key is given, that key's value read: one command to Redis, run there as one step. A
# script costs half the client CPU of the three commands pipelined (redis-py packs, sends and parses each).
COUNT_AND_GET = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
if KEYS[2] then return {count, redis.call('GET', KEYS[2])} end
return {count}
"""
_scripts: dict = {}


def _count_and_get(client, name: str, timeout: int, size: int, fetch_name: str | None = None) -> list:
    """``[count]``, or ``[count, value]`` with ``fetch_name``: ``COUNT_AND_GET`` run by its SHA (loaded once
    per client and server: redis-py's ``Script`` loads it again when the server answers NOSCRIPT)."""
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(COUNT_AND_GET)
    return script(keys=[name] if fetch_name is None else [name, fetch_name], args=[timeout, size])


def _count(cache_key: str, timeout: int, size: int) -> int:
    """The window's count after ``size`` places are reserved: on Redis one round trip (``COUNT_AND_GET``);
    elsewhere ``incr``, or ``add`` to start the count."""
    client = redis_client()
    if client is not None:
        return _count_and_get(client, cache.make_key(cache_key), timeout, size)[0]
    try:
        return cache.incr(cache_key, size)
    except ValueError:  # no count yet in this window
        if cache.add(cache_key, size, timeout=timeout):
            return size
        return cache.incr(cache_key, size)  # another process started it first


def get_and_hit(fetch_key: str, family: str | None, key: str) -> tuple[object, tuple[bool, RateState] | None]:
    """The shared cache's value at ``fetch_key`` and, on Redis in the same round trip, one request of ``key``
    counted in ``family`` (None when nothing was counted: not Redis, or no such family). An API key's lookup
    and its rate count are one round trip this way; the throttle then uses the count (``precounted``). A
    place already reserved here is given with the value read alone."""
    backend = caches["default"]  # looked up once (each use of ``cache`` looks it up again)
    client = redis_client(backend) if family in settings.API_RATE_LIMITS else None
    if client is None:
        return backend.get(fetch_key), None
    limit, period, reset, cache_key = _window(family, key, None)
    name, fetch_name = backend.make_key(cache_key), backend.make_key(fetch_key)
    fetched = []

    def count_and_get(size: int) -> int:
        count, value = _count_and_get(client, name, period + 5, size, fetch_name)
        fetched.append(None if value is None else backend.client.decode(value))
        return count

    place = _reservations.place(cache_key, limit, reset, count_and_get)
    return (fetched[0] if fetched else backend.get(fetch_key)), _placed(limit, place, reset)


def view_family(view) -> str | None:
    """The rate-limit family ``view`` counts its requests in, None when it counts none."""
    if view is None or FamilyRateThrottle not in getattr(view, "throttle_classes", ()):
        return None
    family = view.get_throttle_family() if hasattr(view, "get_throttle_family") else None
    return family if family in settings.API_RATE_LIMITS else None


def precount(request, family: str, key: str, counted: tuple[bool, RateState]) -> None:
    """Hand a count made ahead (``get_and_hit``) to the throttle of this request, so it is not made twice."""
    request.rate_precounted = (family, key, counted)


def count_request(request, family: str, key: str) -> tuple[bool, RateState]:
    """This request counted once in ``family`` for ``key``: the count made ahead (``precount``), else one made
    now and kept the same way, for whoever asks next (the view a direct read hands the request to)."""
    precounted = getattr(request, "rate_precounted", None)
    if precounted is not None and precounted[:2] == (family, key):
        return precounted[2]
    counted = hit(family, key)
    precount(request, family, key, counted)
    return counted


class FamilyRateThrottle(BaseThrottle):
    """Throttles the view's ``throttle_family`` (per action via ``throttle_families``)."""

    def allow_request(self, request, view):
        family = view.get_throttle_family() if hasattr(view, "get_throttle_family") else None
        if not family or family not in settings.API_RATE_LIMITS:
            return True
        allowed, state = count_request(request, family, caller_key(request))
        request.rate_limit = state
        self._wait = max(1, state.reset - int(time.time()))
        return allowed

    def wait(self):
        return self._wait
