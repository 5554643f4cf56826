"""The application's own cost per request, without an HTTP server: SQL queries and CPU ms.

Through ``django.test.Client`` in this process (Host 127.0.0.1, ``X-Forwarded-Proto: https``), per
target, the same ``repeat`` sequential requests three times: once to warm up (so the figures are the
steady state a server under load is in: per-process and shared caches filled, e.g. our API key
cache, the first compilations done), once under ``CaptureQueriesContext`` (queries per request:
their mean), once timed with ``time.process_time`` (CPU of this process only: the database server's
and Redis's work is not in it) and ``perf_counter`` (wall: their round trips included; a sync worker
is blocked for the wall time). Every answer must be 200.

Run as a script (``python inprocess.py`` with DJANGO_SETTINGS_MODULE set), it reads
``{"request_sets": {name: [[path, headers], ...]}, "repeat": n}`` on stdin and prints the result as
JSON: how the naive project is measured under its own settings.
"""
import json
import sys
import time


def measure(request_sets: dict, repeat: int = 50) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")

    def send(requests, i):
        path, headers = requests[i % len(requests)]
        response = client.get(path, headers=headers)
        if response.status_code != 200:
            sys.exit(f"in-process: {path} answered {response.status_code}: {response.content[:300]!r}")

    measured = {}
    for name, requests in request_sets.items():
        for i in range(repeat):
            send(requests, i)
        with CaptureQueriesContext(connection) as captured:
            for i in range(repeat):
                send(requests, i)
        queries = len(captured.captured_queries) / repeat
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(repeat):
            send(requests, i)
        measured[name] = {"queries": queries, "cpu_ms": (time.process_time() - cpu) * 1000 / repeat,
                          "wall_ms": (time.perf_counter() - wall) * 1000 / repeat}
    return measured


if __name__ == "__main__":
    import django

    spec = json.load(sys.stdin)
    django.setup()
    json.dump(measure(spec["request_sets"], spec["repeat"]), sys.stdout)
