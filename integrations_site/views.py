"""The landing page and the operational endpoints."""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .api.errors import envelope


@require_safe
def landing(request):
    """``/``: where the admin's "View site" leads; links to the admin, the API docs and the ops endpoints."""
    return render(request, "landing.html", {"api_root": "/api/v1/"})


def healthz(request):
    """Liveness: the process answers."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(envelope("METHOD_NOT_ALLOWED", f'Method "{request.method}" not allowed.'), status=405)
        response["Allow"] = "GET, HEAD"
        return response
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this check's own thread: its connection would otherwise stay open


def _check_cache() -> None:
    from django.core.cache import cache

    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("the cache did not return what was written")
    cache.delete(key)


def _check_broker() -> None:
    from integrations_site.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.READYZ_TIMEOUT)


def _component_name(name: str) -> str:
    """Name the backing service, so an operator knows what to look at."""
    if name == "cache":
        return "redis" if "redis" in settings.CACHES["default"]["BACKEND"].lower() else "cache"
    if name == "broker":
        return "redis" if settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "broker"
    return name


def _timed(check) -> float:
    started = time.perf_counter()
    check()
    return time.perf_counter() - started


CHECKS = (("database", _check_database), ("cache", _check_cache), ("broker", _check_broker))


def readyz(request):
    """Readiness: database, cache and broker each answer within a short timeout; 503 when one does not.

    The checks run side by side; a check still running at the deadline is
    reported down and left to finish in its thread (the answer never waits
    for a hung socket's own timeout).
    """
    timeout = settings.READYZ_TIMEOUT
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    started = time.perf_counter()
    futures = {name: pool.submit(_timed, check) for name, check in CHECKS}
    pool.shutdown(wait=False)
    components = {}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        try:
            took = future.result(timeout=remaining)
            components[name] = {"status": "ok", "service": _component_name(name)}
        except Exception as exc:  # any failure, including a timeout, means not ready
            error = "TimeoutError" if isinstance(exc, FutureTimeout) else type(exc).__name__
            components[name] = {"status": "down", "service": _component_name(name), "error": error}
            took = time.perf_counter() - started
        components[name]["latency_ms"] = int(took * 1000)
    ready = all(c["status"] == "ok" for c in components.values())
    down = sorted({c["service"] for c in components.values() if c["status"] != "ok"})
    body = {"status": "ok" if ready else "unavailable", "components": components}
    if down:
        body["down"] = down
    return JsonResponse(body, status=200 if ready else 503)
