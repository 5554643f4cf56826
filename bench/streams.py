#!/usr/bin/env python
"""One run_streams consumer holding --streams event streams, and a second taking over when it is SIGKILLed.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih .venv/bin/python bench/streams.py \
        [--streams 1000 --rate 1 --steady 20 --burst 5 --lease-seconds 30]

Steps: start a local feed (aiohttp, in its own process) serving ``/s<n>`` as an event stream per
integration: one event per stream every 1/--rate s (staggered), each a status change of the
stream's one item with an id and its own time, after ``Last-Event-ID`` when one is sent (a resumed
stream loses nothing); create and migrate the bench database on the server of DATABASE_URL; start
consumer A (``manage.py run_streams`` under the production settings); seed --streams ``sse``
integrations; then measure:
- connect: the time until every stream is held and connected, and the consumer's memory per stream
  (its RSS with every stream open, less its RSS before the integrations existed);
- steady: events applied per second (the leases' ``events_total``: applied with their statuses
  committed) over --steady s, against the events the feed sent, and the consumer's CPU per event;
- burst: --burst events per stream sent at once, and the time until all are applied;
- baseline, in the same run and database: the same events applied one at a time, each in its own
  transaction (the polling path's ``statuses_store`` and the lease's last id), in this process;
- takeover: consumer B started, A SIGKILLed at once, the time until B holds and has connected every
  stream, and that every event sent meanwhile is applied once (applied == sent for every stream).
Goal on 2 cores: every stream held, ≥ 1,000 events/s applied, takeover within a lease + 5 s.
Exit status 1 when a goal or a check fails.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import envs, wrk  # noqa: E402
from harness.processes import ROOT, finish, free_port, install_cleanup, stop_process, workdir  # noqa: E402
from pgdb import bench_database_url, ensure_database  # noqa: E402

TENANT_SLUG = "streams-bench"
FEED = '''
import asyncio, json, sys, time
from aiohttp import web

streams, rate = int(sys.argv[2]), float(sys.argv[3])
sent = [0] * streams          # events framed per stream (ids 1..sent[n])
changed = asyncio.Event()
waiters = [asyncio.Event() for _ in range(streams)]

def framed(n, k):
    data = json.dumps({"id": "item", "status": "open" if k % 2 else "sold", "timestamp": time.time()})
    return f"id: {k}\\ndata: {data}\\n\\n".encode()

async def emit():
    start = time.monotonic()
    tick = 0
    while True:
        tick += 1
        for n in range(streams):
            sent[n] += 1
            waiters[n].set()
        await asyncio.sleep(max(0, start + tick / rate - time.monotonic()))

async def stream(request):
    n = int(request.match_info["n"])
    last = request.headers.get("Last-Event-ID")
    position = int(last) if last and last.isdigit() else 0
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    while True:
        if position < sent[n]:
            await response.write(b"".join(framed(n, k) for k in range(position + 1, sent[n] + 1)))
            position = sent[n]
        waiters[n].clear()
        await waiters[n].wait()

async def burst(request):
    count = int(request.query["count"])
    for n in range(streams):
        sent[n] += count
        waiters[n].set()
    return web.json_response({"sent": sum(sent)})

async def totals(request):
    return web.json_response({"sent": sent})

async def start(app):
    app["emitter"] = asyncio.create_task(emit())

app = web.Application()
app.router.add_get("/s{n}", stream)
app.router.add_post("/burst", burst)
app.router.add_get("/sent", totals)
app.on_startup.append(start)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True),
            backlog=4096, access_log=None)
'''


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0, help="events per stream per second")
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady load measured")
    parser.add_argument("--burst", type=int, default=5, help="events per stream sent at once")
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--baseline-events", type=int, default=2000)
    parser.add_argument("--db", default="ih_bench_streams")
    return parser.parse_args()


class Process:
    def __init__(self, command: list[str], env: dict, log: Path, ready: str | None = None):
        import atexit

        self.log = log
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE if ready else log.open("wb"),
                                     stderr=log.open("ab") if ready else subprocess.STDOUT, text=True,
                                     start_new_session=True)
        atexit.register(self.stop)
        if ready and self.proc.stdout.readline().strip() != ready:
            sys.exit(f"{command[1]} did not start (see {log})")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        stop_process(self.proc)


def feed_get(port: int, path: str, method: str = "GET"):
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path)
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def seed(count: int, feed_url: str) -> list:
    from audit.services import SYSTEM
    from catalog.models import IntegrationProvider
    from connections.models import Integration
    from tenants.models import Tenant
    from tenants.services import tenant_create

    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first() or tenant_create(
        actor=SYSTEM, data={"slug": TENANT_SLUG, "name": "Streams bench", "plan": "enterprise"})
    provider, _ = IntegrationProvider.objects.update_or_create(
        slug="streams-bench", defaults={"name": "Streams bench", "auth_type": "none",
                                        "default_status_mapping": {"available": ["open"], "sold": ["sold"]}})
    rows = [Integration(tenant=tenant, provider=provider, name=f"Stream {n:04d}", api_base_url=feed_url,
                        stream_endpoint=f"/s{n}", update_method="sse", status="connected") for n in range(count)]
    return Integration.objects.bulk_create(rows, batch_size=500)


def clear() -> None:
    from connections.models import Integration, StreamConsumer
    from tenants.models import Tenant

    Integration.objects.filter(tenant__slug=TENANT_SLUG).delete()
    Tenant.objects.filter(slug=TENANT_SLUG).delete()
    StreamConsumer.objects.all().delete()


def lease_counts() -> dict:
    from django.db.models import Count, Q, Sum
    from django.utils import timezone

    from connections.models import StreamLease

    return StreamLease.objects.aggregate(
        applied=Sum("events_total", default=0),
        connected=Count("pk", filter=Q(state="connected", lease_until__gt=timezone.now())),
        held_by_b=Count("pk", filter=Q(consumer="bench-b", state="connected")),
        claimed_by_b=Count("pk", filter=Q(consumer="bench-b")),
    )


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"timed out after {timeout:g} s waiting for {what}")


def baseline(integrations: list, events: int) -> float:
    """Events/s applied one at a time, each in its own transaction: statuses_store and the lease's last id."""
    from django.db import transaction

    from connections.models import StreamLease
    from connections.services.statuses import statuses_store

    started = time.perf_counter()
    for k in range(events):
        integration = integrations[k % len(integrations)]
        with transaction.atomic():
            lease = StreamLease.objects.select_for_update().get(integration=integration)
            statuses_store(integration=integration, pairs=[("baseline-item", "open" if k % 2 else "sold")])
            lease.last_event_id = str(k)
            lease.save(update_fields=["last_event_id"])
    return events / (time.perf_counter() - started)


def main():
    args = parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL (postgres://…); the bench uses another database on the same server")
    install_cleanup()
    print(envs.app_state())
    work = workdir("bench-streams-")
    url = bench_database_url(os.environ["DATABASE_URL"], args.db)
    ensure_database(url)
    env = envs.production_env(database_url=url, redis_url="", broker_url="memory://")
    env.update(OUTBOUND_ALLOWED_HOSTS="127.0.0.1", STREAM_LEASE_SECONDS=str(args.lease_seconds))
    envs.setup_ours(env)
    clear()
    feed_port = free_port()
    feed = Process([sys.executable, "-c", FEED, str(feed_port), str(args.streams), str(args.rate)], os.environ.copy(),
                   work / "feed.log", ready="ready")
    consumer_env = {**os.environ, **env}
    command = [sys.executable, "manage.py", "run_streams", "--max-streams", str(args.streams)]
    load_before, counters = wrk.load_average(), wrk.cpu_counters()
    a = Process([*command, "--name", "bench-a"], consumer_env, work / "consumer-a.log")
    time.sleep(3)
    rss_empty = a.rss_bytes()
    from django.db import connections

    integrations = seed(args.streams, f"http://127.0.0.1:{feed_port}")
    started = time.monotonic()
    wait(lambda: lease_counts()["connected"] == args.streams, 120, "every stream connected")
    connect_seconds = time.monotonic() - started
    time.sleep(2)
    rss_per_stream = (a.rss_bytes() - rss_empty) / args.streams

    applied_before, cpu_before, at = lease_counts()["applied"], a.cpu_seconds(), time.monotonic()
    sent_before = sum(feed_get(feed_port, "/sent")["sent"])
    time.sleep(args.steady)
    applied_after, cpu_after, elapsed = lease_counts()["applied"], a.cpu_seconds(), time.monotonic() - at
    sent_after = sum(feed_get(feed_port, "/sent")["sent"])
    steady_rate = (applied_after - applied_before) / elapsed
    sent_rate = (sent_after - sent_before) / elapsed
    cpu_per_event = (cpu_after - cpu_before) / max(1, applied_after - applied_before)

    burst_at = time.monotonic()
    target = feed_get(feed_port, f"/burst?count={args.burst}", "POST")["sent"]
    wait(lambda: lease_counts()["applied"] >= target, 120, "the burst applied")
    burst_seconds = time.monotonic() - burst_at
    burst_rate = (target - applied_after) / burst_seconds

    b = Process([*command, "--name", "bench-b"], consumer_env, work / "consumer-b.log")
    time.sleep(1)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed_at = time.monotonic()
    wait(lambda: lease_counts()["claimed_by_b"] == args.streams, args.lease_seconds + 60, "B claiming every stream")
    claimed = time.monotonic() - killed_at
    wait(lambda: lease_counts()["held_by_b"] == args.streams, 60, "B connected to every stream")
    takeover = time.monotonic() - killed_at
    time.sleep(3)
    sent = feed_get(feed_port, "/sent")["sent"]
    from connections.models import StreamLease

    def caught_up():
        applied = dict(StreamLease.objects.values_list("integration__stream_endpoint", "events_total"))
        return all(applied.get(f"/s{n}", 0) >= sent[n] for n in range(args.streams)) and applied
    applied = wait(caught_up, 60, "B applying every event sent")
    exact = all(applied[f"/s{n}"] == sent[n] for n in range(args.streams))  # read once more: none applied twice
    b.stop()
    feed.stop()
    machine = wrk.machine_line(load_before, counters)
    connections.close_all()
    base_rate = baseline(integrations[:50], args.baseline_events)
    clear()

    print(f"\nstreams: {args.streams}, one event per stream every {1 / args.rate:g} s; lease {args.lease_seconds:g} s")
    print(f"connect: every stream held and connected in {connect_seconds:.1f} s; "
          f"memory {rss_per_stream / 1024:.1f} KiB per stream")
    print(f"steady:  {steady_rate:,.0f} events/s applied ({sent_rate:,.0f}/s sent), "
          f"CPU {cpu_per_event * 1e6:.0f} µs per event")
    print(f"burst:   {args.burst * args.streams:,} events applied in {burst_seconds:.2f} s = {burst_rate:,.0f}/s")
    print(f"baseline (one transaction per event, same database): {base_rate:,.0f} events/s; "
          f"burst / baseline = {burst_rate / base_rate:.1f}×")
    print(f"takeover: B held every stream {claimed:.1f} s and had connected them all {takeover:.1f} s after A was "
          f"SIGKILLed "
          f"(goal ≤ {args.lease_seconds + 5:g} s); every event applied once: {'yes' if exact else 'NO'}")
    print(machine)
    failed = []
    if steady_rate < min(1000, 0.95 * sent_rate) or burst_rate < 1000:
        failed.append("events/s below 1,000")
    if takeover > args.lease_seconds + 5:
        failed.append("takeover slower than a lease + 5 s")
    if not exact:
        failed.append("an event applied twice")
    for line in failed:
        print(f"FAILED: {line}")
    return finish(work, 1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
