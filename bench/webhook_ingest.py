#!/usr/bin/env python
"""Webhook ingest throughput: signed deliveries to POST /hooks/{path}, against a plain JSON view.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih .venv/bin/python bench/webhook_ingest.py \
        [--requests 20000 --connections 32 --workers 2 --scheme hmac_sha256 --handoff batched,immediate]

Steps: create (if missing) and migrate a separate database (--db, on the
server of DATABASE_URL); start a private redis-server on a free loopback port
(the broker and the cache of the app; no shared Redis is touched); make one
tenant, provider and update_method=webhook integration. Then for each
hand-off mode (WEBHOOK_HANDOFF=batched, the default, and =immediate), with a
new endpoint: start gunicorn (sync workers, persistent database connections,
the test settings with the production values listed in SERVER_ENV), warm up,
send --requests GET /healthz and --requests signed deliveries with unique
ids, alternating in --rounds rounds so that both targets meet the same
background load, each round over --connections concurrent clients, one TCP
connection per request; then --paced-requests deliveries at a set rate (half
the receiver's measured rate by default: latency below saturation); stop
gunicorn (its workers flush their hand-off buffers on exit); count the stored
rows and the event ids queued in Redis (no worker consumes them here).

Prints accepted/s, client p50/p99, gunicorn's own time per request, the ratio
to the plain view, and sent / accepted / stored / queued. Exit status 1 if any
delivery was refused or lost. Traffic goes to 127.0.0.1 only.
"""
import argparse
import atexit
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgdb import bench_database_url, ensure_database  # noqa: E402

sys.path.insert(0, str(ROOT))

TENANT_SLUG = "bench-webhooks"
PROVIDER_SLUG = "bench-webhooks"
BROKER_DB = 1  # of the private redis-server; the cache uses database 0
HANDOFF_MODES = ("batched", "immediate")
# The test settings with production values where they matter here (the environment can override them).
SERVER_ENV = {
    "DB_CONN_MAX_AGE": "600",  # each worker keeps its database connection
    "WEBHOOK_ENDPOINT_CACHE_SECONDS": "1",  # the production default (the test settings turn it off)
    "BATCHING_BACKGROUND": "1",  # background flush threads, as in production
    "LOG_LEVEL": "WARNING",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per target")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured requests per target")
    parser.add_argument("--rounds", type=int, default=10, help="the targets alternate in this many rounds")
    parser.add_argument("--paced-requests", type=int, default=3000,
                        help="deliveries sent afterwards at a set rate, for the latency at that load")
    parser.add_argument("--paced-share", type=float, default=0.5,
                        help="the set rate, as a share of the accepted/s measured for the receiver")
    parser.add_argument("--scheme", choices=("hmac_sha256", "standard_webhooks"), default="hmac_sha256")
    parser.add_argument("--handoff", default=",".join(HANDOFF_MODES),
                        help="comma-separated WEBHOOK_HANDOFF modes to run (batched, immediate)")
    parser.add_argument("--body-bytes", type=int, default=700, help="approximate size of each delivery's body")
    parser.add_argument("--db", default="ih_bench_webhooks", help="database name on the DATABASE_URL server")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    args = parser.parse_args()
    args.handoff = [m.strip() for m in args.handoff.split(",") if m.strip()]
    if not args.handoff or any(m not in HANDOFF_MODES for m in args.handoff):
        parser.error(f"--handoff takes {', '.join(HANDOFF_MODES)}")
    return args


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


class Redis:
    """A private redis-server (no persistence) on a free loopback port."""

    def __init__(self, binary: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        atexit.register(self.stop)
        import redis

        self.client = redis.Redis(port=self.port, db=BROKER_DB)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("redis-server did not start")
                time.sleep(0.1)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def queued_ids(self) -> list[str]:
        """Event ids in the webhook tasks waiting in the broker queue (nobody consumes them here)."""
        ids = []
        for raw in self.client.lrange("celery", 0, -1):
            message = json.loads(raw)
            task = message["headers"].get("task")
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            if task == "webhooks.process_webhook_events":
                ids.extend(args[0])
            elif task == "webhooks.process_webhook_event":
                ids.append(args[0])
        return ids

    def flush(self) -> None:
        self.client.flushall()

    def stop(self) -> None:
        stop_process(self.proc)


class Gunicorn:
    def __init__(self, env: dict, workers: int, access_log: Path):
        self.port = free_port()
        command = [
            str(Path(sys.executable).with_name("gunicorn")), "integrations_site.wsgi:application",
            "-w", str(workers), "--worker-class", "sync", "-b", f"127.0.0.1:{self.port}",
            "--log-level", "warning", "--timeout", "60", "--backlog", "2048",
            # %(D)s: microseconds from the request read to the response written (the service time).
            "--access-logfile", str(access_log), "--access-logformat", "%(U)s %(s)s %(D)s",
        ]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"gunicorn exited with {self.proc.returncode}")
            try:
                if one_request(self.port, "GET", "/healthz", b"", {})[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit("gunicorn did not answer /healthz in time")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.proc)


# --- database and data --------------------------------------------------------------------


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def bench_integration():
    from catalog.models import IntegrationProvider
    from connections.models import Integration
    from tenants.models import Tenant

    tenant, _ = Tenant.objects.get_or_create(slug=TENANT_SLUG, defaults={"name": "Bench webhooks", "plan": "pro"})
    provider, _ = IntegrationProvider.objects.get_or_create(
        slug=PROVIDER_SLUG,
        defaults={"name": "Bench webhooks", "display_name": "Bench webhooks", "auth_type": "none",
                  "default_api_base_url": "https://api.example.com", "default_test_endpoint": "/ping"},
    )
    integration, _ = Integration.objects.get_or_create(
        tenant=tenant, provider=provider, name="Bench webhook feed",
        defaults={"api_base_url": "https://api.example.com", "test_endpoint": "/ping", "update_method": "webhook"},
    )
    return tenant, integration


def new_endpoint(tenant, integration, scheme: str, label: str):
    """A fresh endpoint per run, so the stored rows of this run are exactly its events."""
    from audit.services import SYSTEM
    from webhooks.services import endpoint_create

    return endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                           data={"name": f"bench {label} {uuid.uuid4().hex[:6]}", "signature_scheme": scheme,
                                 "rate_limit_per_minute": 10_000_000})


def signed_requests(scheme: str, secret: str, count: int, body_bytes: int, tag: str) -> list[tuple[bytes, dict]]:
    """``count`` deliveries with unique ids, signed ahead of the load (the client does no crypto while timed)."""
    filler = "x" * max(0, body_bytes - 160)
    now = int(time.time())
    key = base64.b64decode(secret.removeprefix("whsec_")) if scheme == "standard_webhooks" else secret.encode()
    out = []
    for n in range(count):
        event_id = f"evt_{tag}_{n:07d}"
        body = json.dumps({"id": event_id, "type": "item.updated", "status": "available",
                           "data": {"item": f"item-{n % 5000}", "note": filler}}).encode()
        headers = {"Content-Type": "application/json"}
        if scheme == "standard_webhooks":
            signed = f"{event_id}.{now}.".encode() + body
            headers.update({"webhook-id": event_id, "webhook-timestamp": str(now),
                            "webhook-signature": "v1," + base64.b64encode(
                                hmac.new(key, signed, hashlib.sha256).digest()).decode()})
        else:
            headers["X-Signature"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        out.append((body, headers))
    return out


# --- load ----------------------------------------------------------------------------------


def one_request(port: int, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def load(port: int, method: str, path: str, requests: list, connections: int, ok_status: int) -> dict:
    """Send every request once over ``connections`` client threads, one at a time per thread."""
    latencies: list[float] = []
    statuses: dict = {}
    answers: list[bytes] = []
    lock = threading.Lock()
    cursor = iter(range(len(requests)))

    def client():
        mine, seen, bodies = [], {}, []
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            body, headers = requests[i]
            started = time.perf_counter()
            try:
                status, answer = one_request(port, method, path, body, headers)
            except OSError as exc:
                status, answer = type(exc).__name__, b""
            elapsed = time.perf_counter() - started
            seen[status] = seen.get(status, 0) + 1
            if status == ok_status:
                mine.append(elapsed)
                bodies.append(answer)
        with lock:
            latencies.extend(mine)
            answers.extend(bodies)
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": statuses, "wall": time.monotonic() - started, "answers": answers}


def paced_load(port: int, path: str, requests: list, rate: float, connections: int) -> dict:
    """Open loop: request i is due at start + i / rate; its latency counts from when it was due.

    Counting from the due time (not from the send) keeps the time a request
    waited for a free client in the figure, so a server that falls behind
    shows it.
    """
    latencies: list[float] = []
    statuses: dict = {}
    answers: list[bytes] = []
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    start = time.perf_counter() + 0.05

    def client():
        mine, seen, bodies = [], {}, []
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            body, headers = requests[i]
            try:
                status, answer = one_request(port, "POST", path, body, headers)
            except OSError as exc:
                status, answer = type(exc).__name__, b""
            seen[status] = seen.get(status, 0) + 1
            if status == 202:
                mine.append(time.perf_counter() - due)
                bodies.append(answer)
        with lock:
            latencies.extend(mine)
            answers.extend(bodies)
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=client, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"ok": len(latencies), "statuses": statuses, "rps": len(latencies) / wall, "rate": rate,
            "p50": percentile(latencies, 0.50) * 1000, "p99": percentile(latencies, 0.99) * 1000,
            "answers": answers}


def merged(parts: list[dict]) -> dict:
    """One target's rounds together: req/s over the time spent on that target, latency percentiles of all."""
    latencies = sorted(x for part in parts for x in part["latencies"])
    statuses: dict = {}
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    wall = sum(part["wall"] for part in parts)
    return {"ok": len(latencies), "statuses": statuses, "rps": len(latencies) / wall, "wall": wall,
            "p50": percentile(latencies, 0.50) * 1000, "p99": percentile(latencies, 0.99) * 1000,
            "answers": [a for part in parts for a in part["answers"]]}


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def service_times(access_log: Path, prefix: str, skip: int, count: int) -> tuple[float, float]:
    """p50/p99 ms of gunicorn's own time per request (no waiting in the accept queue): ``count`` lines after
    the first ``skip`` of the requests whose path starts with ``prefix``."""
    times = []
    with open(access_log) as log:
        for line in log:
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith(prefix):
                times.append(int(parts[2]) / 1000)
    times = sorted(times[skip:skip + count])
    return percentile(times, 0.5), percentile(times, 0.99)


# --- one run -----------------------------------------------------------------------------


def run_mode(args, mode: str, url: str, redis_server: Redis, tenant, integration, log_dir: Path) -> dict:
    from django.db import connections

    from webhooks.models import WebhookEvent

    endpoint, secret = new_endpoint(tenant, integration, args.scheme, mode)
    warm_endpoint, warm_secret = new_endpoint(tenant, integration, args.scheme, f"{mode} warm-up")
    tag = uuid.uuid4().hex[:8]
    deliveries = signed_requests(args.scheme, secret, args.requests, args.body_bytes, tag)
    warm = signed_requests(args.scheme, warm_secret, args.warmup, args.body_bytes, tag + "w")
    paced_requests = signed_requests(args.scheme, secret, args.paced_requests, args.body_bytes, tag + "p")
    connections.close_all()
    redis_server.flush()

    access_log = log_dir / f"access-{mode}.log"
    env = {**SERVER_ENV, **os.environ, "DATABASE_URL": url, "REDIS_URL": redis_server.url(0),
           "CELERY_BROKER_URL": redis_server.url(BROKER_DB), "WEBHOOK_HANDOFF": mode}
    env.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test")
    server = Gunicorn(env, args.workers, access_log)
    try:
        load(server.port, "GET", "/healthz", [(b"", {})] * args.warmup, args.connections, 200)
        load(server.port, "POST", warm_endpoint.url_path, warm, args.connections, 202)
        # Alternate the two targets in rounds, so that both meet the same background load of the machine.
        plain_parts, hook_parts = [], []
        size = -(-args.requests // args.rounds)
        for start in range(0, args.requests, size):
            count = min(size, args.requests - start)
            plain_parts.append(load(server.port, "GET", "/healthz", [(b"", {})] * count, args.connections, 200))
            hook_parts.append(load(server.port, "POST", endpoint.url_path, deliveries[start:start + count],
                                   args.connections, 202))
        plain, hooks = merged(plain_parts), merged(hook_parts)
        # Latency below saturation: deliveries sent at a set share of the rate the receiver just reached.
        paced = paced_load(server.port, endpoint.url_path, paced_requests, args.paced_share * hooks["rps"],
                           args.connections)
    finally:
        server.stop()  # SIGTERM: the workers exit and flush their hand-off buffers (atexit)

    plain["service"] = service_times(access_log, "/healthz", args.warmup, args.requests)
    hooks["service"] = service_times(access_log, endpoint.url_path, 0, args.requests)
    answered = {json.loads(a)["event_id"] for a in hooks.pop("answers") + paced.pop("answers")}
    stored = set(map(str, WebhookEvent.objects.filter(endpoint=endpoint).values_list("pk", flat=True)))
    queued = set(redis_server.queued_ids())
    check = {
        "sent": args.requests + args.paced_requests, "accepted": hooks["ok"] + paced["ok"],
        "distinct": len(answered), "stored": len(stored), "queued": len(stored & queued),
        "tasks": redis_server.client.llen("celery"),
        "lost": len(answered - stored) + len(stored - queued),  # answered 202 but not stored, or stored not queued
        "unanswered_rows": len(stored - answered),
    }
    return {"plain": plain, "hooks": hooks, "paced": paced, "check": check}


def main():
    args = parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL (postgres://…); the bench uses another database on the same server")
    url = bench_database_url(os.environ["DATABASE_URL"], args.db)
    ensure_database(url)
    setup_django(url)
    redis_server = Redis(args.redis_server)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tenant, integration = bench_integration()
    log_dir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))

    server_env = {k: os.environ.get(k, v) for k, v in SERVER_ENV.items() if k != "LOG_LEVEL"}
    print(f"server settings: {os.environ.get('DJANGO_SETTINGS_MODULE')} with "
          + ", ".join(f"{k}={v}" for k, v in server_env.items()))
    print(f"gunicorn: {args.workers} sync workers, persistent DB connections; {args.connections} clients, "
          f"one connection per request; {args.requests} requests per target; scheme {args.scheme}, "
          f"bodies ~{args.body_bytes} B")
    load_before = os.getloadavg()[0]
    results = {mode: run_mode(args, mode, url, redis_server, tenant, integration, log_dir) for mode in args.handoff}
    load_after = os.getloadavg()[0]
    redis_server.stop()

    print(f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after "
          f"({os.cpu_count()} CPUs; client, server, PostgreSQL and Redis share them)")
    print()
    print(f"{'handoff':<10} {'target':<22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'svc p50':>8} {'svc p99':>8} "
          f"{'ok':>7}  other answers")
    failed = False
    for mode, result in results.items():
        paced = result["paced"]
        rows = (("plain /healthz", result["plain"]), ("webhooks", result["hooks"]),
                (f"webhooks at {paced['rate']:.0f}/s", paced))
        for name, r in rows:
            other = {k: v for k, v in r["statuses"].items() if k not in (200, 202)}
            failed |= bool(other)
            svc = r.get("service", (float("nan"), float("nan")))
            print(f"{mode:<10} {name:<22} {r['rps']:>8.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
                  f"{svc[0]:>8.2f} {svc[1]:>8.2f} {r['ok']:>7}  {other or '-'}")
    print()
    for mode, result in results.items():
        h, p, paced, c = result["hooks"], result["plain"], result["paced"], result["check"]
        ratio = h["rps"] / p["rps"]
        met = (ratio >= 0.40 and h["service"][1] < 50 and paced["p99"] < 50 and c["lost"] == 0
               and c["accepted"] == c["sent"])
        failed |= c["lost"] > 0 or c["accepted"] != c["sent"] or c["unanswered_rows"] > 0
        print(f"{mode}: {h['rps']:.1f} accepted/s = {ratio:.2f} of the plain view's {p['rps']:.1f}/s; "
              f"p99 {h['service'][1]:.1f} ms in gunicorn, {paced['p99']:.1f} ms at the client at "
              f"{paced['rate']:.0f} deliveries/s ({args.paced_share:.0%} of that rate); "
              f"sent {c['sent']}, accepted {c['accepted']} ({c['distinct']} distinct ids), stored {c['stored']}, "
              f"handed to the queue {c['queued']} (in {c['tasks']} tasks), lost {c['lost']}; "
              f"target (>= 0.40 of plain, p99 < 50 ms below saturation, 0 lost) {'met' if met else 'NOT met'}")
    print()
    print(f"p50/p99: client-side, from the connect (paced: from the moment the request was due) to the last byte. "
          f"With {args.connections} clients sending back to back, a request waits behind the others in the listen "
          f"queue: latency = {args.connections} / req/s (the plain view's too); the paced row sends at a set rate "
          "instead. svc: gunicorn's own time per request (%(D)s of its access log).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
