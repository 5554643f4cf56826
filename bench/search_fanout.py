#!/usr/bin/env python
"""One global search over 50 integrations of one tenant, ours against the naive loop, with wrk.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih .venv/bin/python bench/search_fanout.py \
        [--integrations 50 --latency-ms 100 --seconds 10 --rounds 3 --connections 2 --workers 2]

Steps: start a local upstream (aiohttp, in its own process) whose ``/u<n>/search`` answers after
--latency-ms with one item; create (if missing) and migrate ours and the naive project's database on
the server of DATABASE_URL; seed, in each, one tenant with --integrations search-enabled integrations,
the n-th at the upstream's ``/u<n>`` (ours with a bearer credential and a provider that supports
search), and an API key; start a private redis-server and gunicorn for both (sync workers; ours
under the production settings, with OUTBOUND_ALLOWED_HOSTS=127.0.0.1 so it may reach the loopback
upstream and RATE_LIMIT_SEARCH raised past wrk's rate); check that one search of ours answers every
integration; load ``/healthz`` and ``POST /api/v1/search`` (ours) and ``POST /api/search`` (naive: the
integrations asked in turn with urllib) with wrk, interleaved in rounds. --connections defaults to the
number of workers: with more, a search waits for the ones ahead of it in a sync worker and its latency
measures the queue, not the fan-out. Prints searches/s, p50/p99, p50 over the upstream's latency
(the goal: at most 1.5, the fan-out truly concurrent) and the CPU per search. Exit status 1 if an
answer was not a 200 or the check failed.
"""
import argparse
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import envs, wrk  # noqa: E402
from harness.processes import (  # noqa: E402
    Redis,
    finish,
    free_port,
    get,
    install_cleanup,
    start_servers,
    stop_process,
    workdir,
)
from pgdb import bench_database_url, ensure_database  # noqa: E402

TENANT_SLUG = "search-bench"
RAISED_LIMIT = "100000000/min"
UPSTREAM = '''
import asyncio, json, sys
from aiohttp import web

latency = float(sys.argv[2]) / 1000

async def search(request):
    await asyncio.sleep(latency)
    n = request.match_info["n"]
    q = request.query.get("q", "")
    return web.json_response({"results": [{"id": f"{n}-1", "name": f"{q} in {n}", "description": "a match",
                                           "url": f"https://u{n}.example.com/1", "type": "record",
                                           "updated_at": "2026-01-01T00:00:00Z", "score": 0.5}], "total": 1})

app = web.Application()
app.router.add_get("/u{n}/search", search)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True),
            backlog=1024)
'''


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--integrations", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=100.0, help="every upstream answers after this")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of each target in each round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=None, help="wrk connections (default: --workers)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (each server)")
    parser.add_argument("--db", default="ih_bench_search")
    parser.add_argument("--naive-db", default="ih_bench_naive_search")
    return parser.parse_args()


class Upstream:
    def __init__(self, latency_ms: float, log: Path):
        import atexit
        import subprocess

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(self.port), str(latency_ms)],
                                     stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, start_new_session=True)
        atexit.register(self.stop)
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit(f"the upstream did not start (see {log})")

    def stop(self):
        stop_process(self.proc)


def seed_ours(count: int, upstream: str) -> str:
    """One tenant with ``count`` searchable integrations at the upstream, each with a bearer credential; an API key."""
    from audit.services import SYSTEM
    from catalog.models import IntegrationProvider
    from connections.models import Integration
    from connections.services import credential_set
    from tenants.choices import Role
    from tenants.models import Tenant
    from tenants.services import api_key_create, tenant_create

    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first() or tenant_create(
        actor=SYSTEM, data={"slug": TENANT_SLUG, "name": "Search bench", "plan": "enterprise"})
    provider, _ = IntegrationProvider.objects.update_or_create(
        slug="search-bench", defaults={"name": "Search bench", "auth_type": "bearer", "supports_search": True,
                                       "search_config": {}})
    Integration.objects.filter(tenant=tenant).delete()
    for n in range(count):
        integration = Integration.objects.create(
            tenant=tenant, provider=provider, name=f"Search {n:02d}", api_base_url=f"{upstream}/u{n}",
            search_enabled=True, timeout_seconds=5, retry_count=0)
        credential_set(actor=SYSTEM, integration=integration, credential_type="bearer",
                       data={"token": f"bench-token-{n:02d}-{uuid.uuid4().hex[:8]}"})
    return api_key_create(actor=SYSTEM, tenant=tenant, name="search bench", role=Role.TENANT_ADMIN)[1]


def main():
    args = parse_args()
    connections = args.connections or args.workers
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL (postgres://…); the bench uses other databases on the same server")
    install_cleanup()
    print(envs.app_state())
    work = workdir("bench-search-")
    upstream = Upstream(args.latency_ms, work / "upstream.log")
    url = bench_database_url(os.environ["DATABASE_URL"], args.db)
    naive_url = bench_database_url(os.environ["DATABASE_URL"], args.naive_db)
    ensure_database(url)
    ensure_database(naive_url)
    redis = Redis()
    env = envs.production_env(database_url=url, redis_url=redis.url(0), broker_url=redis.url(1))
    env.update(RATE_LIMIT_SEARCH=RAISED_LIMIT, OUTBOUND_ALLOWED_HOSTS="127.0.0.1")
    envs.setup_ours(env)
    key = seed_ours(args.integrations, upstream.url)
    naive_env = envs.naive_env(database_url=naive_url, broker_url=redis.url(2))
    envs.naive_manage(naive_env, "migrate", "-v0")
    naive_key = json.loads(envs.naive_manage(naive_env, "bench_search_seed", f"--upstream={upstream.url}",
                                             f"--count={args.integrations}"))["key"]
    body = json.dumps({"query": "acme"}).encode()
    (work / "body.json").write_bytes(body)

    servers = start_servers(envs.ours_server_env(env, work), naive_env, args.workers, work)
    try:
        headers = {**envs.PROXY_HEADERS, "Content-Type": "application/json"}
        status, answer = get(servers["ours"].port, "/api/v1/search", {**headers, "X-API-Key": key}, "POST", body)
        answer = json.loads(answer)
        if status != 200 or answer["errors"] or len(answer["by_integration"]) != args.integrations:
            sys.exit(f"ours: the first search answered {status}: {json.dumps(answer)[:500]}")
        status, naive_answer = get(servers["naive"].port, "/api/search", {**headers, "X-API-Key": naive_key},
                                   "POST", body)
        if status != 200 or json.loads(naive_answer)["total"] != args.integrations:
            sys.exit(f"naive: the first search answered {status}: {naive_answer[:500]!r}")
        targets = [wrk.paths_target(f"{side} plain", servers[side].url, [("/healthz", dict(envs.PROXY_HEADERS))],
                                    work, servers[side].cpu_seconds) for side in ("ours", "naive")]
        for side, path, api_key in (("ours", "/api/v1/search", key), ("naive", "/api/search", naive_key)):
            headers_file = work / f"{side}.headers"
            headers_file.write_text("".join(f"{k}: {v}\n" for k, v in {**headers, "X-API-Key": api_key}.items()))
            targets.append(wrk.Target(f"{side} search", servers[side].url + path, "post.lua", {
                "BENCH_BODY_FILE": str(work / "body.json"), "BENCH_HEADERS_FILE": str(headers_file),
                "BENCH_PATH": path}, server_cpu=servers[side].cpu_seconds))
        print(f"upstream: {args.integrations} integrations, each answering after {args.latency_ms:g} ms")
        print(f"gunicorn: {args.workers} sync workers each; wrk -t{min(args.threads, connections)} -c{connections} "
              f"-d{args.seconds:g}s, {args.rounds} rounds after a {args.warmup:g}s warm-up per target")
        load_before, counters = wrk.load_average(), wrk.cpu_counters()
        runs, _ = wrk.run_rounds(targets, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                                 threads=min(args.threads, connections), connections=connections)
        machine = wrk.machine_line(load_before, counters)
    finally:
        for server in servers.values():
            server.stop()
        upstream.stop()
    return finish(work, report(args, runs, machine))


def report(args, runs: dict, machine: str) -> int:
    results = {name: wrk.summarize(r) for name, r in runs.items()}
    print()
    print(machine)
    print(f"ours: production settings (RATE_LIMIT_SEARCH={RAISED_LIMIT}); naive: the integrations asked in turn")
    print()
    print(wrk.HEADER)
    for name, summary in results.items():
        print(wrk.row(name, summary))
    print(wrk.LEGEND)
    print()
    ours, naive = results["ours search"], results["naive search"]
    print(f"ours search / naive search (searches/s)   {ours.rps / max(naive.rps, 1e-9):8.2f}")
    print(f"naive search p50 / ours search p50        {naive.p50 / max(ours.p50, 1e-9):8.2f}")
    print(f"ours search p50 / upstream latency        {ours.p50 / args.latency_ms:8.2f}  (goal: at most 1.5)")
    print(f"ours search p99 / upstream latency        {ours.p99 / args.latency_ms:8.2f}")
    print(f"ours: {ours.server_cpu_ms:.1f} ms of server CPU per search of {args.integrations} integrations "
          f"({ours.server_cpu_ms / args.integrations:.2f} per upstream request)")
    return int(any(summary.failed or summary.socket_errors for summary in results.values()))


if __name__ == "__main__":
    sys.exit(main())
