#!/usr/bin/env python
"""Outbound client: CPU per request of integrations_site/outbound against aiohttp as it comes, in one run.

    .venv/bin/python bench/outbound_client.py [--requests 2000 --in-flight 50 --rounds 3 --warmup 300 \
        --hosts 127.0.0.1,localhost --body-bytes 200 --latency-ms 0]

Steps: start a local asyncio HTTP/1.1 server in its own process (keep-alive,
a JSON body of --body-bytes after --latency-ms), so that its CPU is not
counted; then, in this process, for each round and each client in turn (the
order alternates, so both meet the same background load), send --requests
GET requests three ways: one after the other through the synchronous
``request`` ("sequential"), through ``request_many`` with --in-flight at once
on the calling thread's loop ("in flight"), and the same with
``process_wide=True`` (one loop for the process, as scheduled health checks
use). CPU is this process's user + system time (every thread: loops,
resolver threads) over the requests sent; the figures are medians over the
rounds. Each client gets --warmup requests first. The whole is done once per
name in --hosts: 127.0.0.1 (a literal: no lookup) and localhost (a name, as
tenant URLs are: looked up and checked on every hop; our client keeps the
answer for a second and checks it again on every use).

The baseline ("bare") is aiohttp with its defaults: one ClientSession per
loop, ``session.request`` and ``read()``, without the address policy, strict
framing, the one deadline, the body cap or the header hygiene, driven the
same three ways. The ratio ours/bare is what those rules cost on top of the
library. With ``--gc frozen`` (the default) the objects loaded at start are
frozen out of the collector's sight as a Celery worker of ours does
(``integrations_site/celery.py``); ``--gc plain`` leaves them. No database
is used; traffic goes to 127.0.0.1 only.

Prints, per host and way, µs of CPU per request for each client, the ratio
ours/bare (1.0 costs the same), and requests per second of wall time.
"""
import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per client, way and round")
    parser.add_argument("--in-flight", type=int, default=50, help="concurrency of the request_many ways")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300, help="requests per client before the first round")
    parser.add_argument("--hosts", default="127.0.0.1,localhost", help="how the server is named in the URL")
    parser.add_argument("--body-bytes", type=int, default=200, help="size of the server's JSON answer")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the server's answer time")
    parser.add_argument("--gc", choices=["frozen", "plain"], default="frozen",
                        help="frozen: the objects loaded at start are frozen (gc.freeze), as a worker does")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the local server: an asyncio server in its own process -----------------------------------


def serve(latency_ms: float, body_bytes: int) -> None:
    """Answer every request with 200 and a JSON body after ``latency_ms``; print the port."""
    body = b'{"data": "' + b"x" * max(0, body_bytes - 12) + b'"}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    delay = latency_ms / 1000

    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if delay:
                    await asyncio.sleep(delay)
                writer.write(answer)
                await writer.drain()
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
    def __init__(self, latency_ms: float, body_bytes: int):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--latency-ms", str(latency_ms), "--body-bytes", str(body_bytes)],
            stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self.proc.stdout.readline())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- the baseline: aiohttp with its defaults, driven like ours ----------------------------------


@dataclass
class BareAnswer:
    status_code: int
    body: bytes


class Bare:
    """``request`` / ``request_many`` over a plain aiohttp session per loop (no checks of ours)."""

    OutboundResponse = BareAnswer

    def __init__(self):
        self.runner = asyncio.Runner()
        self.sessions = {}
        self.loop = None

    def close(self) -> None:
        """Close every loop's session on its own loop (else aiohttp reports them unclosed at exit)."""
        for loop, session in self.sessions.items():
            if loop is self.loop:
                asyncio.run_coroutine_threadsafe(session.close(), loop).result()
            else:
                self.runner.run(session.close())
        self.sessions.clear()

    def session(self):
        import aiohttp

        loop = asyncio.get_running_loop()
        if loop not in self.sessions:
            self.sessions[loop] = aiohttp.ClientSession()
        return self.sessions[loop]

    async def arequest(self, method: str, url: str):
        async with self.session().request(method, url) as response:
            return BareAnswer(response.status, await response.read())

    def request(self, method: str, url: str):
        return self.runner.run(self.arequest(method, url))

    def request_many(self, calls: list[dict], *, concurrency: int, process_wide: bool = False) -> list:
        async def send_all():
            gate = asyncio.Semaphore(concurrency)

            async def send(call):
                async with gate:
                    return await self.arequest(**call)

            return await asyncio.gather(*(send(call) for call in calls))

        if not process_wide:
            return self.runner.run(send_all())
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(send_all(), self.loop).result()


# --- the measured ways ---------------------------------------------------------------------------


def sequential(client, url: str, n: int) -> None:
    for _ in range(n):
        response = client.request("GET", url)
        assert response.status_code == 200


def in_flight(client, url: str, n: int, concurrency: int, process_wide: bool) -> None:
    answers = client.request_many([{"method": "GET", "url": url}] * n, concurrency=concurrency,
                                  process_wide=process_wide)
    failed = [a for a in answers if not isinstance(a, client.OutboundResponse) or a.status_code != 200]
    assert not failed, f"{len(failed)} failed, first: {failed[0]!r}"


def measure(work, n: int) -> tuple[float, float]:
    """(µs of CPU per request, requests per second of wall time) of ``work()`` sending ``n`` requests."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / n * 1e6, n / wall


def main():
    args = parse_args()
    if args.serve:
        serve(args.latency_ms, args.body_bytes)
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings.test")
    os.environ["OUTBOUND_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    import django

    django.setup()
    from integrations_site import outbound

    if args.gc == "frozen":  # what integrations_site/celery.py does once a worker has started
        gc.collect()
        gc.freeze()

    clients = {"bare": Bare(), "ours": outbound}
    server = LocalServer(args.latency_ms, args.body_bytes)
    load_before = os.getloadavg()[0]
    try:
        tables = {host: run_host(clients, f"http://{host}:{server.port}/health", args)
                  for host in args.hosts.split(",") if host.strip()}
    finally:
        clients["bare"].close()
        server.stop()
    load_after = os.getloadavg()[0]

    print(f"{args.requests} requests per client, way and round, {args.rounds} rounds (medians), "
          f"{args.body_bytes}-byte answers after {args.latency_ms:g} ms; load average {load_before:.1f} before, "
          f"{load_after:.1f} after; startup objects {'frozen' if args.gc == 'frozen' else 'not frozen'}")
    print(f"{'host':10} {'way':30} {'bare µs CPU/req':>16} {'ours µs CPU/req':>16} {'ours/bare':>10} "
          f"{'bare req/s':>11} {'ours req/s':>11}")
    for host, figures in tables.items():
        for way in figures:
            (bare_cpu, bare_rate), (our_cpu, our_rate) = figures[way]["bare"], figures[way]["ours"]
            print(f"{host:10} {way:30} {bare_cpu:16.0f} {our_cpu:16.0f} {our_cpu / bare_cpu:10.2f} "
                  f"{bare_rate:11.0f} {our_rate:11.0f}")


def run_host(clients: dict, url: str, args) -> dict:
    """{way: {client: (median µs CPU per request, median requests/s)}} for one URL."""
    n, k = args.requests, args.in_flight
    ways = {
        "sequential": lambda c: (lambda: sequential(c, url, n)),
        f"{k} in flight": lambda c: (lambda: in_flight(c, url, n, k, False)),
        f"{k} in flight, process-wide": lambda c: (lambda: in_flight(c, url, n, k, True)),
    }
    samples = {(way, name): [] for way in ways for name in clients}
    for client in clients.values():
        sequential(client, url, args.warmup)
        in_flight(client, url, args.warmup, k, False)
        in_flight(client, url, args.warmup, k, True)
    for round_ in range(args.rounds):
        order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
        for way, make in ways.items():
            for name in order:
                samples[(way, name)].append(measure(make(clients[name]), n))
    return {way: {name: tuple(statistics.median(v) for v in zip(*samples[(way, name)], strict=True))
                  for name in clients} for way in ways}


if __name__ == "__main__":
    main()
