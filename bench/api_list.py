#!/usr/bin/env python
"""Throughput of the integrations list and detail, against a plain JSON view.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih .venv/bin/python bench/api_list.py \
        [--tenants 100 --per-tenant 100 --seconds 10 --connections 16 --workers 2 --db ih_bench]

Steps: create (if missing) and migrate a separate database (--db, on the
server of DATABASE_URL), seed tenants x per-tenant integrations with
bulk_create (each with a bearer credential), one tenant admin and one API key
per tenant; count the SQL queries of each target and time it in-process
(django.test.Client, sequential); start gunicorn (sync workers, persistent
DB connections) on a free loopback port; load each target for --seconds with --connections concurrent
clients, one TCP connection per request; print req/s, p50/p99 latency and
errors, and the ratio of each API target to the plain view. gunicorn is
stopped on every exit path. Traffic goes to 127.0.0.1 only.
"""
import argparse
import atexit
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgdb import bench_database_url, ensure_database  # noqa: E402

sys.path.insert(0, str(ROOT))

SLUG_PREFIX = "bench-"
PROVIDER_SLUG = "bench-rest"
BATCH = 2000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--per-tenant", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration of each target")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured load before each target")
    parser.add_argument("--connections", type=int, default=16, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--db", default="ih_bench", help="database name on the DATABASE_URL server")
    parser.add_argument("--reseed", action="store_true", help="drop the bench rows and seed again")
    return parser.parse_args()


# --- database -------------------------------------------------------------------


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- data -------------------------------------------------------------------------


def seed(tenants: int, per_tenant: int, reseed: bool) -> dict:
    """Bench rows, reused when they already match; fresh API keys on every run (keys are shown once)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from audit.services import Actor
    from catalog.models import IntegrationProvider
    from connections.models import Credential, Integration
    from tenants.choices import Role
    from tenants.models import ApiKey, Membership, Tenant
    from tenants.services import api_key_create

    User = get_user_model()
    bench_tenants = Tenant.objects.filter(slug__startswith=SLUG_PREFIX)
    have = Integration.objects.filter(tenant__in=bench_tenants, deleted_at__isnull=True).count()
    if reseed or bench_tenants.count() != tenants or have != tenants * per_tenant:
        started = time.perf_counter()
        with transaction.atomic():
            bench_tenants.delete()
            User.objects.filter(username__startswith=SLUG_PREFIX).delete()
            provider, _ = IntegrationProvider.objects.get_or_create(
                slug=PROVIDER_SLUG,
                defaults={"name": "Bench REST", "display_name": "Bench REST", "auth_type": "api_key",
                          "default_api_base_url": "https://api.example.com", "default_test_endpoint": "/ping"},
            )
            rows = Tenant.objects.bulk_create(
                [Tenant(name=f"Bench {i:03d}", slug=f"{SLUG_PREFIX}{i:03d}", plan="pro") for i in range(tenants)]
            )
            users = User.objects.bulk_create([User(username=f"{SLUG_PREFIX}admin-{t.slug}") for t in rows])
            Membership.objects.bulk_create(
                [Membership(user=u, tenant=t, role=Role.TENANT_ADMIN) for u, t in zip(users, rows, strict=True)]
            )
            integrations = [
                Integration(tenant=t, provider=provider, name=f"Integration {n:04d}",
                            api_base_url="https://api.example.com", test_endpoint="/ping")
                for t in rows for n in range(per_tenant)
            ]
            Integration.objects.bulk_create(integrations, batch_size=BATCH)
            Credential.objects.bulk_create(
                [Credential(tenant_id=i.tenant_id, integration=i, type="bearer",
                            payload={"token": f"tok_bench_{i.pk.hex}"}, hint=i.pk.hex[-4:])
                 for i in integrations],
                batch_size=BATCH,
            )
        print(f"seeded {tenants} tenants x {per_tenant} integrations in {time.perf_counter() - started:.1f}s")
    else:
        print(f"reusing {tenants} tenants x {per_tenant} integrations")

    ApiKey.objects.filter(tenant__slug__startswith=SLUG_PREFIX).delete()
    keys, ids = {}, {}
    for membership in Membership.objects.filter(tenant__slug__startswith=SLUG_PREFIX).select_related("user", "tenant"):
        tenant = membership.tenant
        _, raw = api_key_create(actor=Actor(user=membership.user), tenant=tenant, name="bench", role=Role.TENANT_ADMIN)
        keys[tenant.pk] = raw
        ids[tenant.pk] = [str(pk) for pk in Integration.objects.filter(tenant=tenant).values_list("pk", flat=True)]
    return {"keys": keys, "ids": ids}


def targets(data: dict, seed_value: int = 7) -> dict[str, list[tuple[str, dict]]]:
    """(path, headers) lists per target; detail requests spread over every tenant."""
    rng = random.Random(seed_value)
    keyed = [(data["keys"][t], data["ids"][t]) for t in data["keys"]]
    plain = [("/healthz", {})]
    listing = [("/api/v1/integrations/?limit=50", {"X-API-Key": key}) for key, _ in keyed]
    detail = [(f"/api/v1/integrations/{rng.choice(ids)}/", {"X-API-Key": key}) for key, ids in keyed for _ in range(10)]
    rng.shuffle(detail)
    return {"plain /healthz": plain, "list ?limit=50": listing, "detail": detail}


def measure_in_process(request_sets: dict, repeat: int = 20) -> dict[str, dict]:
    """Per target: SQL queries of one request and the median time of ``repeat`` sequential requests.

    In-process through ``django.test.Client``, after one warm-up request; no
    HTTP server, so the time is the application's own cost per request.
    """
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    measured = {}
    for name, requests in request_sets.items():
        path, headers = requests[0]
        kwargs = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        first = client.get(path, **kwargs)
        if first.status_code != 200:
            sys.exit(f"{name}: {path} answered {first.status_code}: {first.content[:300]!r}")
        with CaptureQueriesContext(connection) as captured:
            client.get(path, **kwargs)
        queries = len(captured.captured_queries)  # read now: the next request resets the query log
        times = []
        for i in range(repeat):
            path, headers = requests[i % len(requests)]
            kwargs = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
            started = time.perf_counter()
            client.get(path, **kwargs)
            times.append((time.perf_counter() - started) * 1000)
        measured[name] = {"queries": queries, "ms": statistics.median(times)}
    return measured


# --- server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, url: str, workers: int):
        self.port = free_port()
        env = dict(os.environ, DATABASE_URL=url, DB_CONN_MAX_AGE="600", LOG_LEVEL="WARNING")
        env.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test")
        command = [
            str(Path(sys.executable).with_name("gunicorn")), "integrations_site.wsgi:application",
            "-w", str(workers), "--worker-class", "sync", "-b", f"127.0.0.1:{self.port}",
            "--log-level", "warning", "--timeout", "60",
        ]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        atexit.register(self.stop)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"gunicorn exited with {self.proc.returncode}")
            try:
                if one_request(self.port, "/healthz", {})[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("gunicorn did not answer /healthz in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# --- load ---------------------------------------------------------------------------


def one_request(port: int, path: str, headers: dict) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def load(port: int, requests: list, seconds: float, connections: int) -> dict:
    """``connections`` threads, each sending one request at a time until the deadline."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int):
        mine, bad, i = [], 0, offset
        while time.monotonic() < deadline:
            path, headers = requests[i % len(requests)]
            i += connections
            try:
                status, elapsed = one_request(port, path, headers)
            except OSError:
                bad += 1
                continue
            if status == 200:
                mine.append(elapsed)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    wall = time.monotonic() - started
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "ok": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99": pct(0.99),
    }


def main():
    args = parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL (postgres://…); the bench uses another database on the same server")
    url = bench_database_url(os.environ["DATABASE_URL"], args.db)
    ensure_database(url)
    setup_django(url)
    data = seed(args.tenants, args.per_tenant, args.reseed)
    request_sets = targets(data)
    in_process = measure_in_process(request_sets)

    from django.db import connections

    connections.close_all()
    server = Gunicorn(url, args.workers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        server.wait_ready()
        print(f"gunicorn: {args.workers} sync workers on 127.0.0.1:{server.port}; "
              f"{args.connections} clients, {args.seconds:g}s per target, one connection per request")
        load_before = os.getloadavg()[0]
        results = {}
        for name, requests in request_sets.items():
            load(server.port, requests, args.warmup, args.connections)
            results[name] = load(server.port, requests, args.seconds, args.connections)
    finally:
        server.stop()

    print(f"1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"({os.cpu_count()} CPUs; client and server share them)")
    print()
    print(f"{'target':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ok':>7} {'errors':>7} "
          f"{'queries':>8} {'in-process ms':>14}")
    for name, r in results.items():
        m = in_process[name]
        print(f"{name:<16} {r['rps']:>8.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['ok']:>7} {r['errors']:>7} "
              f"{m['queries']:>8} {m['ms']:>14.1f}")
    plain = results["plain /healthz"]["rps"]
    print()
    for name in ("list ?limit=50", "detail"):
        print(f"{name} / plain: {results[name]['rps'] / plain:.2f} of the plain view's req/s")
    failed = sum(r["errors"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
