"""Rate limits per endpoint family, counted per tenant (per API key when one is used).

A fixed one-minute window per family and caller, counted with one atomic
``incr`` in the shared cache (Redis when configured), so every web process
sees the same count. Every answer of a throttled family carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(epoch seconds); a refusal is a 429 ``RATE_LIMIT_EXCEEDED`` with ``Retry-After``.
"""
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

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


def caller_key(request) -> str:
    ctx = getattr(request, "auth", None)
    api_key = getattr(ctx, "api_key", None)
    if api_key is not None:
        return f"key:{api_key.pk}"
    tenant = getattr(ctx, "tenant", None)
    if tenant is not None:
        return f"tenant:{tenant.pk}"
    user = getattr(request, "user", None)
    if getattr(user, "pk", None):
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '-')}"


def hit(family: str, key: str, now: float | None = None) -> tuple[bool, RateState]:
    """Count one request of ``key`` in ``family``; returns (allowed, state)."""
    limit, period = parse_rate(settings.API_RATE_LIMITS[family])
    now = time.time() if now is None else now
    window = int(now // period)
    reset = (window + 1) * period
    cache_key = f"ratelimit:{family}:{key}:{window}"
    try:
        count = _count_one(cache_key, period + 5)
    except Exception:  # the cache being down must not take the API down with it
        logger.warning("api.ratelimit.cache_unavailable family=%s", family)
        return True, RateState(limit, limit, reset)
    return count <= limit, RateState(limit, limit - count, reset)


def _count_one(cache_key: str, timeout: int) -> int:
    """The window's count after this request: one ``incr`` once the window has a count (one round trip,
    every request but the window's first), ``add`` to start it."""
    try:
        return cache.incr(cache_key)
    except ValueError:  # no count yet in this window
        if cache.add(cache_key, 1, timeout=timeout):
            return 1
        return cache.incr(cache_key)  # another process started it first


class FamilyRateThrottle(BaseThrottle):
    """Throttles the view's ``throttle_family`` (per action via ``throttle_families``)."""

    def allow_request(self, request, view):
        family = view.get_throttle_family() if hasattr(view, "get_throttle_family") else None
        if not family or family not in settings.API_RATE_LIMITS:
            return True
        allowed, state = hit(family, caller_key(request))
        request.rate_limit = state
        self._wait = max(1, state.reset - int(time.time()))
        return allowed

    def wait(self):
        return self._wait
