#!/usr/bin/env python
"""Scheduled health checks: checks/s with results persisted, against a local server.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih REDIS_URL=redis://127.0.0.1:56379/0 \
        .venv/bin/python bench/health_checks.py [--n 2000 --latency-ms 50 --pool threads --concurrency 4 \
        --check-concurrency 16 --chunk 32 --worker-processes 2 --claim-rows 10000 --db ih_bench_health \
        --layouts "prefork:2:50:50,threads:4:16:50"]

Steps: create (if missing) and migrate a separate database (--db, on the
server of DATABASE_URL); start a local asyncio HTTP server (own process)
that answers every request after --latency-ms; seed --n integrations pointed
at it (reused across runs); for each worker layout, start real Celery worker
process(es) on Redis (database --broker-db, flushed), make all --n
integrations due at once, run the real dispatcher (health_checks_dispatch,
every second, as beat would) and wait until each has a ConnectionCheck row.
Then time the dispatcher alone claiming --claim-rows due integrations, with
the queue edge (integrations_site.queueing._send) stubbed. Traffic goes to 127.0.0.1 only.
"""
import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgdb import bench_database_url, ensure_database  # noqa: E402

sys.path.insert(0, str(ROOT))

RUN_TENANT = "bench-health"
CLAIM_TENANT = "bench-health-claim"
PROVIDER_SLUG = "bench-health-rest"
BATCH = 2000
FAR_FUTURE = timedelta(days=3650)
STALL_SECONDS = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="integrations due at once")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the local server's answer time")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    parser.add_argument("--concurrency", type=int, default=4, help="worker pool size (per worker process)")
    parser.add_argument("--check-concurrency", type=int, default=16, help="HEALTH_CHECK_CONCURRENCY (per process)")
    parser.add_argument("--chunk", type=int, default=32, help="HEALTH_TASK_CHUNK")
    parser.add_argument("--worker-processes", type=int, default=2, help="separate `celery worker` processes")
    parser.add_argument(
        "--layouts", default="",
        help="several layouts to compare, comma-separated POOL:CONCURRENCY:CHECK_CONCURRENCY:CHUNK[:PROCESSES]",
    )
    parser.add_argument("--claim-rows", type=int, default=10000, help="due rows for the dispatcher claim timing")
    parser.add_argument("--db", default="ih_bench_health", help="database name on the DATABASE_URL server")
    parser.add_argument("--broker-db", type=int, default=6, help="Redis database index used as the broker")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up a layout after this many seconds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Layout:
    pool: str
    concurrency: int
    check_concurrency: int
    chunk: int
    processes: int = 1

    @classmethod
    def parse(cls, text: str) -> "Layout":
        parts = text.strip().split(":")
        if len(parts) not in (4, 5):
            sys.exit(f"bad layout {text!r}: POOL:CONCURRENCY:CHECK_CONCURRENCY:CHUNK[:PROCESSES]")
        return cls(parts[0], *(int(p) for p in parts[1:]))

    def __str__(self):
        procs = f" x{self.processes} processes" if self.processes > 1 else ""
        return (f"{self.pool} -c {self.concurrency}{procs}, HEALTH_CHECK_CONCURRENCY={self.check_concurrency}, "
                f"HEALTH_TASK_CHUNK={self.chunk}")

    def in_flight(self, n: int) -> int:
        """Probes that can wait on the server at once.

        Each process that runs tasks sends its probes through one event loop
        that lets HEALTH_CHECK_CONCURRENCY of them be in flight, whatever the
        number of tasks running in it, but no more than its running tasks hold
        (tasks x chunk); and no more than there are integrations. A threads (or
        solo) worker is one such process running pool-size tasks; a prefork
        worker has pool-size child processes running one task each.
        """
        return min(n, self.loops() * self.per_loop())

    def loops(self) -> int:
        return self.processes * (self.concurrency if self.pool == "prefork" else 1)

    def per_loop(self) -> int:
        tasks = 1 if self.pool == "prefork" else self.concurrency
        return min(self.check_concurrency, tasks * self.chunk)


# --- the local API: an asyncio server in its own process --------------------------


def serve(latency_ms: float) -> None:
    """Answer every request with 200 and a small JSON body after ``latency_ms``; print the port."""
    body = b'{"ok": true}'
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n")
    delay = latency_ms / 1000

    async def handle(reader, writer):
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(delay)
                writer.write(head + body)
                await writer.drain()
                if b"connection: close" in request.lower():
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class LocalServer:
    def __init__(self, latency_ms: float):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# --- database -------------------------------------------------------------------------


def setup_django(url: str, broker: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ["DB_CONN_MAX_AGE"] = "600"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def seed_tenant(slug: str, count: int, base_url: str) -> list:
    """``count`` integrations of an auth-less provider in tenant ``slug``, none due; reused when the count matches."""
    from django.db import transaction
    from django.utils import timezone

    from catalog.models import IntegrationProvider
    from connections.models import Integration
    from tenants.models import Tenant

    provider, _ = IntegrationProvider.objects.get_or_create(
        slug=PROVIDER_SLUG,
        defaults={"name": "Bench health", "display_name": "Bench health", "auth_type": "none",
                  "default_api_base_url": "https://api.example.com", "default_test_endpoint": "/ping"},
    )
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug, "plan": "pro"})
    rows = Integration.objects.filter(tenant=tenant, deleted_at__isnull=True)
    if rows.count() != count:
        started = time.perf_counter()
        with transaction.atomic():
            Integration.objects.filter(tenant=tenant).delete()
            Integration.objects.bulk_create(
                [Integration(tenant=tenant, provider=provider, name=f"Health {n:05d}", test_endpoint="/ping")
                 for n in range(count)],
                batch_size=BATCH,
            )
        print(f"seeded {count} integrations in tenant {slug} in {time.perf_counter() - started:.1f}s")
    # Checked once per run: a long interval keeps a row from being claimed twice while the run lasts.
    rows.update(
        api_base_url=base_url, status="pending", health_state="unknown", consecutive_failures=0,
        last_error={}, retry_count=0, timeout_seconds=10, health_check_interval_seconds=3600,
        next_check_at=timezone.now() + FAR_FUTURE,
    )
    return list(rows.values_list("pk", flat=True))


def clear_history() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE connections_connectioncheck, audit_auditevent")


# --- workers --------------------------------------------------------------------------


class Workers:
    def __init__(self, layout: Layout, env: dict, log_dir: Path):
        self.procs, self.logs = [], []
        celery = str(Path(sys.executable).with_name("celery"))
        for k in range(layout.processes):
            log_path = log_dir / f"bench-health-worker-{k}.log"
            with open(log_path, "wb") as log:
                self.procs.append(subprocess.Popen(
                    [celery, "-A", "integrations_site", "worker", f"--pool={layout.pool}",
                     f"--concurrency={layout.concurrency}", "-l", "warning", "-n", f"bench-health-{k}@%h",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                ))
            self.logs.append(log_path)

    def wait_ready(self, broker: str, timeout: float = 60) -> None:
        """Ready when every worker answers a ping over the broker."""
        from integrations_site.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    sys.exit(f"worker exited with {proc.returncode}:\n{log.read_text()[-5000:]}")
            replies = app.control.ping(timeout=0.5) or []
            if len(replies) >= len(self.procs):
                return
        sys.exit("workers did not answer a ping in time")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            stop_process(proc)

    def errors(self) -> str:
        text = "\n".join(p.read_text(errors="replace") for p in self.logs)
        lines = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]
        return "\n".join(lines[:20])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes and their children, from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / tick
    return total


def child_pids(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [int(p) for p in out.split()]


# --- one layout -----------------------------------------------------------------------


def run_layout(layout: Layout, args, ids: list, env_base: dict, broker: str, log_dir: Path) -> dict:
    import redis
    from django.utils import timezone

    from connections.models import ConnectionCheck, Integration
    from connections.services.schedule import health_checks_dispatch

    redis.Redis.from_url(broker).flushdb()
    clear_history()
    Integration.objects.filter(pk__in=ids).update(
        status="pending", health_state="unknown", consecutive_failures=0, next_check_at=timezone.now() + FAR_FUTURE,
    )
    env = {**env_base, "HEALTH_CHECK_CONCURRENCY": str(layout.check_concurrency),
           "HEALTH_TASK_CHUNK": str(layout.chunk)}
    workers = Workers(layout, env, log_dir)
    try:
        workers.wait_ready(broker)
        pids = [p.pid for p in workers.procs] + [c for p in workers.procs for c in child_pids(p.pid)]
        cpu_before = cpu_seconds(pids)
        # Every row due at once, then the dispatcher every second as beat runs it.
        Integration.objects.filter(pk__in=ids).update(next_check_at=timezone.now() - timedelta(seconds=1))
        stop = threading.Event()
        claimed, first_claim = [], []
        # The dispatcher reads HEALTH_TASK_CHUNK in this process: follow the layout.
        from django.conf import settings
        settings.HEALTH_TASK_CHUNK = layout.chunk
        started = time.perf_counter()

        def beat():
            while not stop.is_set():
                tick = time.perf_counter()
                claimed.append(health_checks_dispatch())
                if len(claimed) == 1:
                    first_claim.append(time.perf_counter() - tick)
                stop.wait(max(0.0, 1.0 - (time.perf_counter() - tick)))

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        done, deadline = 0, started + args.timeout
        checks = ConnectionCheck.objects.filter(kind="health")  # the history was emptied above
        progress_at = started
        while time.perf_counter() < deadline:
            count = checks.count()
            if count > done:
                done, progress_at = count, time.perf_counter()
            if done >= len(ids):
                break
            if time.perf_counter() - progress_at > STALL_SECONDS:
                print(f"  no new check for {STALL_SECONDS} s: giving up this layout")
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
        stop.set()
        ticker.join()
        cpu_used = cpu_seconds(pids) - cpu_before
    finally:
        workers.stop()
    latencies = sorted(checks.values_list("latency_ms", flat=True))
    failed = checks.filter(success=False).count()
    first, last = checks.order_by("created_at").values_list("created_at", flat=True)[:1], \
        checks.order_by("-created_at").values_list("created_at", flat=True)[:1]
    return {
        "layout": layout,
        "done": done,
        "failed": failed,
        "claimed": sum(claimed),
        "wall": wall,
        "rate": done / wall,
        "ceiling": layout.in_flight(len(ids)) / (args.latency_ms / 1000),
        "p50": statistics.median(latencies) if latencies else None,
        "p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
        "persist_span": (last[0] - first[0]).total_seconds() if first and last else None,
        "first_claim": first_claim[0] if first_claim else None,
        "worker_cpu": cpu_used,
        "errors": workers.errors(),
    }


# --- dispatcher claim -----------------------------------------------------------------


def time_claim(ids: list, run_ids: list) -> dict:
    """health_checks_dispatch over ``ids`` all due, the queue edge stubbed (chunks are only counted)."""
    from django.db import reset_queries
    from django.utils import timezone

    from connections.models import Integration
    from connections.services import schedule
    from integrations_site import queueing

    Integration.objects.filter(pk__in=run_ids).update(next_check_at=timezone.now() + FAR_FUTURE)
    Integration.objects.filter(pk__in=ids).update(next_check_at=timezone.now() - timedelta(minutes=1))
    queued = []
    original = queueing._send
    queueing._send = lambda name, args, countdown: queued.append(len(args[0]))
    try:
        reset_queries()
        started = time.perf_counter()
        claimed = schedule.health_checks_dispatch()
        elapsed = time.perf_counter() - started
        again = schedule.health_checks_dispatch()
    finally:
        queueing._send = original
    moved = Integration.objects.filter(pk__in=ids, next_check_at__gt=timezone.now()).count()
    Integration.objects.filter(pk__in=ids).update(next_check_at=timezone.now() + FAR_FUTURE)
    return {"claimed": claimed, "elapsed": elapsed, "chunks": len(queued), "queued": sum(queued),
            "again": again, "moved": moved}


# --- main -------------------------------------------------------------------------------


def main():
    args = parse_args()
    if args.serve:
        serve(args.latency_ms)
        return
    base = os.environ.get("DATABASE_URL")
    if not base:
        sys.exit("set DATABASE_URL (PostgreSQL)")
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit("set REDIS_URL (the broker)")
    broker = urlunsplit(urlsplit(redis_url)._replace(path=f"/{args.broker_db}"))
    url = bench_database_url(base, args.db)
    ensure_database(url)
    setup_django(url, broker)
    from django.conf import settings

    layouts = [Layout.parse(t) for t in args.layouts.split(",") if t.strip()] or [
        Layout(args.pool, args.concurrency, args.check_concurrency, args.chunk, args.worker_processes)
    ]
    server = LocalServer(args.latency_ms)
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        run_ids = seed_tenant(RUN_TENANT, args.n, server.url)
        claim_ids = seed_tenant(CLAIM_TENANT, args.claim_rows, server.url)
        env_base = {
            **os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": broker, "DB_CONN_MAX_AGE": "600",
            "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING",
            # Usage counts are written by the background thread, as in production (the test settings turn it off).
            "BATCHING_BACKGROUND": "1",
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test"),
        }
        load_before = os.getloadavg()[0]
        for layout in layouts:
            result = run_layout(layout, args, run_ids, env_base, broker, log_dir)
            results.append(result)
            print_layout(result, args)
        load_after = os.getloadavg()[0]
        settings.HEALTH_TASK_CHUNK = layouts[-1].chunk
        claim = time_claim(claim_ids, run_ids)
    finally:
        server.stop()
    print_summary(results, claim, args, load_before, load_after, settings.HEALTH_DISPATCH_BATCH)
    sys.exit(0 if all(r["done"] == args.n and r["failed"] == 0 for r in results) else 1)


def print_layout(r: dict, args) -> None:
    layout = r["layout"]
    tasks = 1 if layout.pool == "prefork" else layout.concurrency
    print(f"\nlayout: {layout}")
    print(f"  ceiling = processes running tasks {layout.loops()} x probes in flight per process "
          f"{layout.per_loop()} (min(HEALTH_CHECK_CONCURRENCY {layout.check_concurrency}, tasks {tasks} x chunk "
          f"{layout.chunk})) / {args.latency_ms / 1000:.3f} s = {r['ceiling']:.0f} checks/s")
    print(f"  persisted {r['done']}/{args.n} (failed {r['failed']}) in {r['wall']:.2f} s -> {r['rate']:.0f} checks/s,"
          f" {r['rate'] / r['ceiling']:.0%} of the ceiling")
    print(f"  probe latency p50 {r['p50']} ms, p99 {r['p99']} ms; worker CPU {r['worker_cpu']:.1f} s "
          f"({r['worker_cpu'] / r['wall']:.2f} cores, {r['worker_cpu'] / max(r['done'], 1) * 1000:.2f} ms per check)")
    if r["first_claim"] is not None and r["persist_span"]:
        print(f"  the first dispatcher tick claimed and queued all due rows in {r['first_claim']:.2f} s; "
              f"first to last persisted check {r['persist_span']:.2f} s "
              f"({r['done'] / r['persist_span']:.0f} checks/s once checks flow)")
    if r["errors"]:
        print("  worker errors:\n" + r["errors"])


def print_summary(results, claim, args, load_before, load_after, dispatch_batch) -> None:
    print(f"\n{args.n} integrations due at once, server latency {args.latency_ms:.0f} ms, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / {load_after:.1f} after")
    print(f"{'layout':<72} {'checks/s':>9} {'ceiling':>8} {'ratio':>6} {'wall s':>7}")
    for r in results:
        print(f"{str(r['layout']):<72} {r['rate']:>9.0f} {r['ceiling']:>8.0f} "
              f"{r['rate'] / r['ceiling']:>6.0%} {r['wall']:>7.2f}")
    if len(results) > 1:
        best = max(results, key=lambda r: r["rate"])
        print(f"fastest: {best['layout']} at {best['rate']:.0f} checks/s")
    print(f"\ndispatcher claim: {claim['claimed']} due rows claimed in {claim['elapsed']:.2f} s "
          f"({claim['claimed'] / claim['elapsed']:.0f} rows/s; batches of {dispatch_batch}, "
          f"{claim['chunks']} chunks queued holding {claim['queued']} ids; queue edge stubbed); "
          f"a second pass claimed {claim['again']}; {claim['moved']} rows moved to the future")


if __name__ == "__main__":
    main()
