#!/usr/bin/env python
"""Integrations list and detail, ours against a naive Django + DRF baseline served in the same run.

    DATABASE_URL=postgres://ih:ih@127.0.0.1:55432/ih .venv/bin/python bench/api_list.py \
        [--tenants 100 --per-tenant 100 --seconds 10 --rounds 3 --connections 32 --workers 2]

Steps: create (if missing) and migrate two databases on the server of DATABASE_URL (--db for ours,
--naive-db for bench/naive); start a private redis-server (cache and broker of both); seed ours
(tenants x per-tenant integrations with encrypted bearer credentials, one tenant admin and one new
API key per tenant) under the production settings and FERNET_KEYS the server gets, and the naive
tables with the same counts; measure each target in-process (queries and CPU ms per request,
harness/inprocess.py; the naive one in a subprocess under its settings); start gunicorn for both
(sync workers); load the six targets with wrk, interleaved in rounds; stop both servers and print
the medians, the in-process figures and the ratios. ``--ceiling`` serves ours a third time with the
detail's row kept in memory (harness/kept_row.py) and loads its plain view and detail too: what a
cache of the row could give at most; and a fourth time with the API key's check and the rate count
kept as well (harness/kept_key.py): what a detail making no round trip at all could give. Exit
status 1 if any answer was not a 200.
Traffic goes to 127.0.0.1 only.
"""
import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import envs, inprocess, wrk  # noqa: E402
from harness.processes import Gunicorn, Redis, finish, get, install_cleanup, start_servers, workdir  # noqa: E402
from pgdb import bench_database_url, ensure_database  # noqa: E402

SLUG_PREFIX = "bench-"
PROVIDER_SLUG = "bench-rest"
BATCH = 2000
PAGE_SIZES = (5, 20, 50)
RAISED_LIMIT = "100000000/min"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--per-tenant", type=int, default=100)
    parser.add_argument("--keys-per-tenant", type=int, default=5,
                        help="API keys per tenant (our rate limit is per key: 200/min for integrations)")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of each target in each round")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured wrk run of each target first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; order reversed every other round")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (each server)")
    parser.add_argument("--repeat", type=int, default=50, help="sequential in-process requests per target")
    parser.add_argument("--db", default="ih_bench", help="our database on the DATABASE_URL server")
    parser.add_argument("--naive-db", default="ih_bench_naive", help="the naive project's database")
    parser.add_argument("--reseed", action="store_true", help="drop the bench rows and seed again")
    parser.add_argument("--ceiling", action="store_true",
                        help="also serve ours with the detail's row kept in memory (harness/kept_row.py), and "
                             "with its row, key check and rate count kept (harness/kept_key.py): their plain "
                             "views and details, the ceilings a cache of the row, or of everything, could reach")
    parser.add_argument("--variant", action="append", default=[], type=variant, metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                        help="also serve ours as NAME with these settings changed (its plain view and detail, "
                             "in the same rounds): a same-run A/B of a setting, e.g. "
                             "shared:API_KEY_NEAR_CACHE=false,RATE_LIMIT_RESERVE_MAX=1")
    return parser.parse_args()


def variant(text: str) -> tuple[str, dict]:
    name, _, assignments = text.partition(":")
    changed = dict(item.split("=", 1) for item in assignments.split(",") if "=" in item)
    if not name.isidentifier() or name in ("ours", "naive", "kept", "free") or not changed:
        raise argparse.ArgumentTypeError(f"{text!r}: NAME:VAR=VALUE[,VAR=VALUE], NAME not ours, naive, kept or free")
    return name, changed


# --- our data -------------------------------------------------------------------------------------


def seed_matches(tenants: int, per_tenant: int) -> bool:
    """The bench rows are there in these counts, and their credentials decrypt under this run's FERNET_KEYS."""
    from connections.models import Credential, Integration
    from tenants.models import Tenant

    bench_tenants = Tenant.objects.filter(slug__startswith=SLUG_PREFIX)
    have = Integration.objects.filter(tenant__in=bench_tenants, deleted_at__isnull=True).count()
    if bench_tenants.count() != tenants or have != tenants * per_tenant:
        return False
    try:
        Credential.objects.filter(tenant__in=bench_tenants).first().payload  # noqa: B018 (decrypts)
    except Exception:  # encrypted under other keys (a run without FERNET_KEYS set generates new ones)
        print("our bench credentials do not decrypt under this run's FERNET_KEYS: seeding again")
        return False
    return True


def seed(tenants: int, per_tenant: int, keys_per_tenant: int, reseed: bool) -> dict:
    """Bench rows, reused when they already match; fresh API keys on every run (keys are shown once)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from audit.services import Actor
    from catalog.models import IntegrationProvider
    from connections.models import Credential, Integration
    from tenants.choices import Role
    from tenants.models import ApiKey, Membership, Tenant
    from tenants.services import api_key_create

    User = get_user_model()
    if reseed or not seed_matches(tenants, per_tenant):
        started = time.perf_counter()
        with transaction.atomic():
            Tenant.objects.filter(slug__startswith=SLUG_PREFIX).delete()
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
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")  # fresh statistics, as the naive seed takes them
        print(f"ours: seeded {tenants} tenants x {per_tenant} integrations in {time.perf_counter() - started:.1f}s")
    else:
        print(f"ours: reusing {tenants} tenants x {per_tenant} integrations")

    ApiKey.objects.filter(tenant__slug__startswith=SLUG_PREFIX).delete()
    keys, ids = {}, {}
    for membership in Membership.objects.filter(tenant__slug__startswith=SLUG_PREFIX).select_related("user", "tenant"):
        tenant = membership.tenant
        keys[tenant.slug] = [
            api_key_create(actor=Actor(user=membership.user), tenant=tenant, name="bench", role=Role.TENANT_ADMIN)[1]
            for _ in range(keys_per_tenant)
        ]
        ids[tenant.slug] = [str(pk) for pk in Integration.objects.filter(tenant=tenant).values_list("pk", flat=True)]
    return {"keys": keys, "ids": ids}


# --- targets --------------------------------------------------------------------------------------


def request_sets(data: dict, list_path: str, detail_path: str, seed_value: int = 7) -> dict:
    """(path, headers) lists, the same shapes for ours and the naive: the plain view; the list once per
    API key (every tenant's), shuffled; the detail over 10 random integrations per API key, shuffled."""
    rng = random.Random(seed_value)
    keyed = [({**envs.PROXY_HEADERS, "X-API-Key": key}, data["ids"][slug])
             for slug in sorted(data["keys"]) for key in data["keys"][slug]]
    listing = [(list_path, headers) for headers, _ in keyed]
    detail = [(detail_path.format(id=rng.choice(ids)), headers) for headers, ids in keyed for _ in range(10)]
    rng.shuffle(listing)
    rng.shuffle(detail)
    return {"plain": [("/healthz", dict(envs.PROXY_HEADERS))], "list": listing, "detail": detail}


def first_answers(port: int, sets: dict) -> None:
    """One request per target before the load: a 301 (no X-Forwarded-Proto honoured) or 4xx stops the run."""
    for name, requests in sets.items():
        path, headers = requests[0]
        status, body = get(port, path, headers)
        if status != 200:
            sys.exit(f"{name}: {path} answered {status}: {body[:300]!r}")


def main():
    args = parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("set DATABASE_URL (postgres://…); the bench uses other databases on the same server")
    install_cleanup()
    print(envs.app_state())
    url = bench_database_url(os.environ["DATABASE_URL"], args.db)
    naive_url = bench_database_url(os.environ["DATABASE_URL"], args.naive_db)
    ensure_database(url)
    ensure_database(naive_url)
    work = workdir("bench-api-")
    redis = Redis()
    env = envs.production_env(database_url=url, redis_url=redis.url(0), broker_url=redis.url(1))
    # wrk sends thousands of requests a second over 100 tenants, past the default 200/min of the integrations
    # family: the limit is raised, the count still taken in Redis on every request as it is under any limit.
    env["RATE_LIMIT_INTEGRATIONS"] = RAISED_LIMIT
    envs.setup_ours(env)
    data = seed(args.tenants, args.per_tenant, args.keys_per_tenant, args.reseed)
    naive_env = envs.naive_env(database_url=naive_url, broker_url=redis.url(2))
    envs.naive_manage(naive_env, "migrate", "-v0")
    naive_data = json.loads(envs.naive_manage(
        naive_env, "bench_seed", f"--tenants={args.tenants}", f"--per-tenant={args.per_tenant}",
        f"--keys-per-tenant={args.keys_per_tenant}", *(["--reseed"] * args.reseed)))

    ours = request_sets(data, "/api/v1/integrations/?limit=50", "/api/v1/integrations/{id}/")
    naive = request_sets(naive_data, "/api/integrations/", "/api/integrations/{id}/")
    pages = {f"limit={n}": [(f"/api/v1/integrations/?limit={n}", h) for _, h in ours["list"]] for n in PAGE_SIZES}
    print(f"in-process: {args.repeat} sequential requests per target (django.test.Client)")
    in_process = {("ours", k): v for k, v in inprocess.measure({**ours, **pages}, args.repeat).items()}
    in_process.update({("naive", k): v for k, v in envs.naive_in_process(naive_env, naive, args.repeat).items()})

    servers = start_servers(envs.ours_server_env(env, work), naive_env, args.workers, work)
    sides = [("ours", ours, ("plain", "list", "detail")), ("naive", naive, ("plain", "list", "detail"))]
    more = [(side, f"harness.{module}:application", {}) for side, module in (("kept", "kept_row"), ("free", "kept_key"))
            if args.ceiling]
    more += [(side, None, changed) for side, changed in args.variant]
    for side, app, changed in more:
        servers[side] = Gunicorn(side, ours=True, env={**envs.ours_server_env(env, work, f"prometheus-{side}"),
                                                       **changed},
                                 workers=args.workers, log=work / f"{side}.log", app=app)
        servers[side].wait_ready()
        sides.append((side, ours, ("plain", "detail")))
    try:
        for side, sets, _ in sides:
            first_answers(servers[side].port, sets)
        targets = [wrk.paths_target(f"{side} {kind}", servers[side].url, sets[kind], work, servers[side].cpu_seconds)
                   for kind in ("plain", "list", "detail") for side, sets, kinds in sides if kind in kinds]
        print(f"gunicorn: {args.workers} sync workers each; wrk -t{args.threads} -c{args.connections} "
              f"-d{args.seconds:g}s, {args.rounds} rounds after a {args.warmup:g}s warm-up per target")
        load_before, counters = wrk.load_average(), wrk.cpu_counters()
        runs, _ = wrk.run_rounds(targets, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                                 threads=args.threads, connections=args.connections)
        machine = wrk.machine_line(load_before, counters)
    finally:
        for server in servers.values():
            server.stop()
    return finish(work, report(args, runs, in_process, machine))


def report(args, runs: dict, in_process: dict, machine: str) -> int:
    results = {name: wrk.summarize(r) for name, r in runs.items()}
    print()
    print(machine)
    print(f"ours: production settings (RATE_LIMIT_INTEGRATIONS={RAISED_LIMIT}); list ?limit=50, "
          "detail /api/v1/integrations/{id}/, X-API-Key over "
          f"{args.tenants} tenants x {args.keys_per_tenant} keys; naive: DRF ModelViewSet, PageNumberPagination "
          "(page of 50), the same X-API-Key spread")
    print()
    print(wrk.HEADER + inprocess.HEADER)
    for name, s in results.items():
        side, kind = name.split(" ", 1)
        print(wrk.row(name, s) + inprocess.cells(in_process.get((side, kind))))  # none for the kept row's server
        if s.detail:
            print(f"  {name}: answers other than 200: {s.detail}")
    print()

    verdicts: list = []
    for a, b, text, goal in (
            ("ours list", "naive list", "our page of 50 against the textbook page of 50", wrk.Goal(at_least=2)),
            ("ours detail", "naive detail", "our detail against the textbook detail", None),
            ("ours detail", "ours plain", "our detail against our plain view", wrk.Goal(at_least=0.5)),
            ("ours plain", "naive plain", "middleware and settings cost 1 - {value:.2f} of the plain view's req/s",
             wrk.Goal(at_least=0.85)),
            *([("kept detail", "kept plain", "the detail with its row kept in memory against its plain view: "
                "a cache's ceiling", None),
               ("kept detail", "ours detail", "the kept row's detail against ours", None),
               ("free detail", "free plain", "the detail with its row, key check and rate count kept in memory "
                "(no round trip) against its plain view: any cache's ceiling", None)] if "kept detail" in runs
              else []),
            *[pair for name, changed in args.variant for pair in (
                (f"{name} detail", f"{name} plain", f"{name}'s detail against its plain view", None),
                ("ours detail", f"{name} detail", "our detail against "
                 + ", ".join(f"{var}={value}" for var, value in changed.items()) + "'s", None))]):
        print(wrk.ratio_line(runs, a, b, text, goal, verdicts))
    print()
    print("ours, per list page (in-process):  " + "   ".join(
        f"{n} rows: {in_process[('ours', f'limit={n}')]['queries']:.1f} queries, "
        f"{in_process[('ours', f'limit={n}')]['cpu_ms']:.2f} CPU ms" for n in PAGE_SIZES))
    queries = {in_process[("ours", f"limit={n}")]["queries"] for n in PAGE_SIZES}
    verdicts.append(("queries per page constant from 5 to 50 rows", len(queries) == 1))
    print(wrk.LEGEND)
    print(inprocess.LEGEND)
    print(wrk.verdicts_line(verdicts))
    failed = [name for name, s in results.items() if s.failed or s.socket_errors]
    if failed:
        print(f"FAILED: {', '.join(failed)} (non-2xx, other answers or socket errors)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers and wrk were stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
