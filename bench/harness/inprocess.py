"""The application's own cost per request, without an HTTP server: SQL queries and CPU ms.

Through ``django.test.Client`` in this process (Host 127.0.0.1, ``X-Forwarded-Proto: https``), per
target, the same ``repeat`` sequential requests three times: once to warm up (so the figures are the
steady state a server under load is in: per-process and shared caches filled, e.g. our API key
cache, the first compilations done), once under ``CaptureQueriesContext`` (queries per request:
their mean), once timed with ``time.process_time`` (CPU of this process only: the database server's
and Redis's work is not in it) and ``perf_counter`` (wall: their round trips included; a sync worker
is blocked for the wall time). Every answer must have the target's status (``expect``, 200 unless
given).

A request is ``(path, headers)``, a GET, or ``(path, headers, body)``, a POST of ``body`` (text) with
the ``Content-Type`` of ``headers``. ``vary`` names a header whose value is made unique per request
(a webhook's delivery id: each request a new delivery).

Run as a script (``python inprocess.py`` with DJANGO_SETTINGS_MODULE set), it reads
``{"request_sets": {name: [[path, headers(, body)], ...]}, "repeat": n, "expect": {name: status},
"vary": header}`` on stdin and prints the result as JSON: how the naive project is measured under its
own settings.
"""
import itertools
import json
import sys
import time

# The columns these figures take beside wrk's in a bench's table (``cells``).
HEADER = f" {'queries':>7} {'CPU ms':>6} {'wall ms':>7}"
LEGEND = ("queries, CPU ms, wall ms: in-process, per request, after a warm-up pass (harness/inprocess.py); "
          "CPU is the Django process's alone, wall adds the database and Redis round trips")


def cells(measured: dict | None) -> str:
    """One target's figures under ``HEADER``; nothing when it was not measured in process."""
    if not measured:
        return ""
    return f" {measured['queries']:>7.1f} {measured['cpu_ms']:>6.2f} {measured['wall_ms']:>7.2f}"


def measure(request_sets: dict, repeat: int = 50, expect: dict | None = None, vary: str | None = None) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    serial = itertools.count()

    def send(name, requests, i):
        path, headers, *body = requests[i % len(requests)]
        if vary and vary in headers:
            headers = {**headers, vary: f"{headers[vary]}-{next(serial)}"}
        if body:
            fields = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            response = client.post(path, body[0], content_type=headers.get("Content-Type", ""), headers=fields)
        else:
            response = client.get(path, headers=headers)
        status = (expect or {}).get(name, 200)
        if response.status_code != status:
            sys.exit(f"in-process: {path} answered {response.status_code}, not {status}: {response.content[:300]!r}")

    measured = {}
    for name, requests in request_sets.items():
        for i in range(repeat):
            send(name, requests, i)
        with CaptureQueriesContext(connection) as captured:
            for i in range(repeat):
                send(name, requests, i)
        queries = len(captured.captured_queries) / repeat
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(repeat):
            send(name, requests, i)
        measured[name] = {"queries": queries, "cpu_ms": (time.process_time() - cpu) * 1000 / repeat,
                          "wall_ms": (time.perf_counter() - wall) * 1000 / repeat}
    return measured


if __name__ == "__main__":
    import django

    spec = json.load(sys.stdin)
    django.setup()
    json.dump(measure(spec["request_sets"], spec["repeat"], spec.get("expect"), spec.get("vary")), sys.stdout)
