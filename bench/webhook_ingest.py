#!/usr/bin/env python
"""Webhook ingest: signed GitHub-style deliveries to our receiver and to a naive Django view, with wrk.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih .venv/bin/python bench/webhook_ingest.py \
        [--db postgres|sqlite|both --seconds 10 --rounds 3 --connections 32 --workers 2]

Steps, per database (--db both runs postgres, then sqlite, each in a subprocess of this script):
create (PostgreSQL: on the server of DATABASE_URL, --pg-db and --naive-db; SQLite: two files in a
temporary folder) and migrate ours and the naive project's database; start a private redis-server
(our cache and broker, the naive broker; no shared Redis is touched); make one tenant, provider and
update_method=webhook integration; start gunicorn for both (sync workers; ours under the production
settings); probe how our ``github`` scheme dedupes (two deliveries, one body, two X-GitHub-Delivery
ids) and make the measured endpoint so that every delivery is a new event; measure the plain view
and a delivery of each in-process first (queries and CPU ms per request, harness/inprocess.py, to
endpoints of their own; the naive one in a subprocess under its settings); load the four targets
with wrk, interleaved in rounds, each delivery with its own X-GitHub-Delivery; stop both servers
(our workers flush their hand-off buffers on exit); then check that every delivery answered 202 is a
stored row and that every stored row's id is in a task waiting in the private broker (no worker
runs: this measures ingest only). Exit status 1 if a delivery was refused or lost.
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import envs, inprocess, wrk  # noqa: E402
from harness.processes import Redis, finish, get, install_cleanup, start_servers, workdir  # noqa: E402
from pgdb import bench_database_url, ensure_database  # noqa: E402

TENANT_SLUG = "bench-webhooks"
PROVIDER_SLUG = "bench-webhooks"
SCHEME = "github"  # X-Hub-Signature-256 over the body alone; X-GitHub-Delivery names the delivery
OUR_TASKS = {"webhooks.process_webhook_events": True, "webhooks.process_webhook_event": False}
NAIVE_TASKS = {"hub.tasks.process_event": False}
CACHE_DB, OUR_BROKER_DB, NAIVE_BROKER_DB = 0, 1, 2  # of the private redis-server


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="postgres")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of each target in each round")
    parser.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up run of each target first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; order reversed every other round")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (each server)")
    parser.add_argument("--body-bytes", type=int, default=700, help="approximate size of the delivery body")
    parser.add_argument("--repeat", type=int, default=100, help="sequential in-process requests per target")
    parser.add_argument("--pg-db", default="ih_bench_webhooks", help="our database on the DATABASE_URL server")
    parser.add_argument("--naive-db", default="ih_bench_naive_webhooks", help="the naive project's database")
    return parser.parse_args()


def run_both(args) -> int:
    """``--db both``: this script once per database, one after the other; the worse exit status."""
    status = 0
    for db in ("postgres", "sqlite"):
        print(f"=== --db {db}", flush=True)
        options = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "db"]
        status = max(status, subprocess.call([sys.executable, __file__, f"--db={db}", *options]))
        print(flush=True)
    return status


# --- our side ---------------------------------------------------------------------------------------


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


def new_endpoint(tenant, integration, label: str, dedupe: bool):
    """A fresh endpoint per run, so the stored rows of this run are exactly its events."""
    from audit.services import SYSTEM
    from webhooks.services import endpoint_create

    return endpoint_create(actor=SYSTEM, tenant=tenant, integration=integration,
                           data={"name": f"bench {label} {uuid.uuid4().hex[:6]}", "signature_scheme": SCHEME,
                                 "dedupe": dedupe, "rate_limit_per_minute": 10_000_000})


def delivery_headers(secret: str, body: bytes, delivery: str) -> dict:
    return {**envs.PROXY_HEADERS, "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": signature(secret, body)}


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dedupe_probe(port: int, tenant, integration, body: bytes) -> bool:
    """Whether our ``github`` scheme, with dedupe on, stores a second delivery of the same body under
    another X-GitHub-Delivery (on a probe endpoint of its own). When it does not (the key is the
    body's digest), the measured endpoint turns dedupe off, so that each delivery is a new event."""
    endpoint, secret = new_endpoint(tenant, integration, "dedupe probe", dedupe=True)
    statuses = [get(port, endpoint.url_path, delivery_headers(secret, body, f"probe-{n}"), "POST", body)[0]
                for n in (1, 2)]
    if statuses[0] != 202 or statuses[1] not in (200, 202):
        sys.exit(f"ours: the dedupe probe answered {statuses} (expected 202, then 200 or 202)")
    per_delivery = statuses[1] == 202
    print(f"ours: scheme {SCHEME} with dedupe on answers {statuses[0]}, {statuses[1]} to one body under two "
          f"X-GitHub-Delivery ids: " + ("deduped by delivery id; the measured endpoint keeps dedupe on" if per_delivery
                                        else "deduped by the body's digest; the measured endpoint has dedupe off"))
    return per_delivery


def body_of(size: int) -> bytes:
    filler = "x" * max(0, size - 160)
    return json.dumps({"id": "evt_bench", "type": "item.updated", "status": "available",
                       "data": {"item": "item-1", "note": filler}}).encode()


# --- one database -----------------------------------------------------------------------------------


def close_all_connections() -> None:
    from django.db import connections

    connections.close_all()


def run_one(args) -> int:
    install_cleanup()
    print(envs.app_state())
    work = workdir("bench-webhooks-")
    if args.db == "postgres":
        if "DATABASE_URL" not in os.environ:
            sys.exit("set DATABASE_URL (postgres://…); the bench uses other databases on the same server")
        url = bench_database_url(os.environ["DATABASE_URL"], args.pg_db)
        naive_url = bench_database_url(os.environ["DATABASE_URL"], args.naive_db)
        ensure_database(url)
        ensure_database(naive_url)
    else:
        url, naive_url = f"sqlite:///{work / 'db.sqlite3'}", f"sqlite:///{work / 'naive.sqlite3'}"
    redis = Redis()
    env = envs.production_env(database_url=url, redis_url=redis.url(CACHE_DB), broker_url=redis.url(OUR_BROKER_DB))
    print(f"ours: migrating {url.split('@')[-1]}", flush=True)
    envs.setup_ours(env)
    tenant, integration = bench_integration()
    naive_env = envs.naive_env(database_url=naive_url, broker_url=redis.url(NAIVE_BROKER_DB))
    envs.naive_manage(naive_env, "migrate", "-v0")
    naive_path, naive_secret = f"bench-{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(32)
    envs.naive_manage(naive_env, "bench_seed", "--tenants=1", "--per-tenant=1", f"--hook-path={naive_path}",
                      f"--hook-secret={naive_secret}")
    body = body_of(args.body_bytes)
    (work / "body.json").write_bytes(body)
    in_process = measure_in_process(args, tenant, integration, body, naive_env)
    from webhooks.services import handoff

    handoff.buffer.flush()  # the in-process deliveries' tasks, queued now and dropped: the broker holds the load's
    for db in (OUR_BROKER_DB, NAIVE_BROKER_DB):
        redis.drop_queue(db)

    servers = start_servers(envs.ours_server_env(env, work), naive_env, args.workers, work)
    try:
        dedupe = dedupe_probe(servers["ours"].port, tenant, integration, body)
        endpoint, secret = new_endpoint(tenant, integration, "load", dedupe=dedupe)
        close_all_connections()
        hooks = {"ours": (endpoint.url_path, secret), "naive": (f"/hooks/{naive_path}", naive_secret)}
        targets = [wrk.paths_target(f"{side} plain", servers[side].url, [("/healthz", dict(envs.PROXY_HEADERS))],
                                    work, servers[side].cpu_seconds) for side in ("ours", "naive")]
        for side, (path, key) in hooks.items():
            ids_dir = work / f"ids-{side}"
            ids_dir.mkdir()
            targets.append(wrk.Target(f"{side} webhook", servers[side].url + path, "webhook.lua", {
                "BENCH_BODY_FILE": str(work / "body.json"), "BENCH_SIGNATURE": signature(key, body),
                "BENCH_PATH": path, "BENCH_DELIVERY_PREFIX": uuid.uuid4().hex[:8]}, expect=202, ids_dir=ids_dir,
                server_cpu=servers[side].cpu_seconds))
        print(f"gunicorn: {args.workers} sync workers each; wrk -t{args.threads} -c{args.connections} "
              f"-d{args.seconds:g}s, {args.rounds} rounds after a {args.warmup:g}s warm-up per target; "
              f"database {args.db}; bodies {len(body)} B")
        load_before, counters = wrk.load_average(), wrk.cpu_counters()
        runs, warm = wrk.run_rounds(targets, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                                    threads=args.threads, connections=args.connections)
        machine = wrk.machine_line(load_before, counters)
    finally:
        for server in servers.values():
            server.stop()  # SIGTERM: our workers exit and flush their hand-off buffers (atexit)

    from webhooks.models import WebhookEvent

    stored = {
        "ours": set(map(str, WebhookEvent.objects.filter(endpoint=endpoint).values_list("pk", flat=True))),
        "naive": set(json.loads(envs.naive_manage(naive_env, "bench_events", f"--path={naive_path}"))),
    }
    queued = {"ours": redis.queued(OUR_BROKER_DB, OUR_TASKS), "naive": redis.queued(NAIVE_BROKER_DB, NAIVE_TASKS)}
    redis.stop()
    return finish(work, report(args, runs, warm, stored, queued, machine, in_process))


def measure_in_process(args, tenant, integration, body: bytes, naive_env: dict) -> dict:
    """Queries, CPU and wall ms per request of each side's plain view and delivery, in process; the
    deliveries go to endpoints of their own (the load's accounting counts the load's alone), each with
    its own X-GitHub-Delivery."""
    endpoint, secret = new_endpoint(tenant, integration, "in-process", dedupe=False)
    naive_path, naive_secret = f"bench-{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(32)
    envs.naive_manage(naive_env, "bench_seed", "--tenants=1", "--per-tenant=1", f"--hook-path={naive_path}",
                      f"--hook-secret={naive_secret}")
    plain = [("/healthz", dict(envs.PROXY_HEADERS))]
    sets = {
        "ours": {"plain": plain, "webhook": [(endpoint.url_path, delivery_headers(secret, body, "in-process"),
                                              body.decode())]},
        "naive": {"plain": plain, "webhook": [(f"/hooks/{naive_path}",
                                               delivery_headers(naive_secret, body, "in-process"), body.decode())]},
    }
    options = {"expect": {"webhook": 202}, "vary": "X-GitHub-Delivery"}
    print(f"in-process: {args.repeat} sequential requests per target (django.test.Client)", flush=True)
    measured = {("ours", k): v for k, v in inprocess.measure(sets["ours"], args.repeat, **options).items()}
    measured.update({("naive", k): v for k, v in
                     envs.naive_in_process(naive_env, sets["naive"], args.repeat, **options).items()})
    return measured


def accounting(all_runs: list, stored: set, queued: tuple) -> dict:
    """Every delivery answered 202 (its event id, from the answer) must be a stored row, and every
    stored row must be in a task in the broker. Rows stored without a 202 read by wrk are the
    requests in flight when a wrk run ended (at most one per connection and run), not losses."""
    answered = [i for run in all_runs for i in run.ids]
    accepted = set(answered)
    queued_ids, tasks = queued
    return {
        "sent": sum(run.requests + run.socket_errors for run in all_runs),  # answered, or failed at the socket
        "answered": sum(run.requests for run in all_runs),
        "ok_by_wrk": sum(run.requests - run.non_2xx for run in all_runs),
        "accepted": len(answered), "distinct": len(accepted), "stored": len(stored),
        "queued": len(stored & queued_ids), "tasks": tasks,
        "lost": len(accepted - stored) + len(stored - queued_ids) + (len(answered) - len(accepted)),
        "in_flight": len(stored - accepted),
    }


def report(args, runs, warm, stored, queued, machine, in_process: dict) -> int:
    results = {name: wrk.summarize(r) for name, r in runs.items()}
    print()
    print(machine)
    print(f"database: {args.db}; ours: production settings, scheme {SCHEME}; naive: ORM insert + one delay() "
          "per event")
    print()
    print(wrk.HEADER + inprocess.HEADER)
    for name, s in results.items():
        print(wrk.row(name, s) + inprocess.cells(in_process.get(tuple(name.split(" ", 1)))))
        if s.detail:
            print(f"  {name}: answers other than expected: {s.detail}")
    print(wrk.LEGEND)
    print(inprocess.LEGEND)
    print()
    verdicts: list = []
    for a, b, text, goal in (
            ("ours webhook", "naive webhook", "our receiver against the textbook view", wrk.Goal(at_least=2)),
            ("ours webhook", "ours plain", "our receiver against our plain view", wrk.Goal(at_least=0.4)),
            ("naive webhook", "naive plain", "the textbook view against its plain view", None),
            ("ours plain", "naive plain", "our middleware and settings on the plain view", wrk.Goal(at_least=0.85))):
        print(wrk.ratio_line(runs, a, b, text, goal, verdicts))
    print(wrk.figure_line("ours webhook p99", results["ours webhook"].p99, "ms", wrk.Goal(below=50), verdicts))
    print()
    failed = [name for name, s in results.items() if s.failed or s.socket_errors]
    for side in ("ours", "naive"):
        name = f"{side} webhook"
        measured = runs[name] + ([warm[name]] if name in warm else [])
        c = accounting(measured, stored[side], queued[side])
        print(f"{name} (warm-up and rounds): sent {c['sent']}, answered {c['answered']} ({c['ok_by_wrk']} 2xx to "
              f"wrk), accepted 202 {c['accepted']} ({c['distinct']} distinct event ids), stored {c['stored']} "
              f"({c['in_flight']} of them in flight when a wrk run ended, at most "
              f"{args.connections * len(measured)}: one per connection and run), handed to the queue {c['queued']} "
              f"(in {c['tasks']} tasks), lost {c['lost']}")
        if c["lost"] or c["accepted"] != c["ok_by_wrk"] or c["in_flight"] > args.connections * len(measured):
            failed.append(f"{name} accounting")
        if side == "ours":
            verdicts.append(("0 lost", c["lost"] == 0))
    print(wrk.verdicts_line(verdicts))
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


def main():
    args = parse_args()
    return run_both(args) if args.db == "both" else run_one(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers and wrk were stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
