"""Processes a benchmark starts: gunicorn (ours or the naive baseline) and a private redis-server.

Each is started in its own session (Ctrl-C in the terminal does not reach it directly) and stopped
on every exit path (normal exit, an error, Ctrl-C, SIGTERM): ``install_cleanup`` turns SIGTERM into
SystemExit, and every process is registered with atexit when it starts. Stopping sends SIGTERM to
the process group (gunicorn's workers exit gracefully: ours flush their hand-off buffers then) and
SIGKILL after a timeout. Only the processes started here are ever signalled.
"""
import atexit
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAIVE_DIR = ROOT / "bench" / "naive"
BIN = Path(sys.executable).parent


def install_cleanup() -> None:
    """SIGTERM exits through the cleanup; Ctrl-C does too (also when started with SIGINT ignored)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
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


def get(port: int, path: str, headers: dict | None = None, method: str = "GET", body: bytes | None = None):
    """One request over a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Gunicorn:
    """gunicorn with sync workers on a free loopback port; ready once ``/healthz`` answers 200.

    ``ours=True`` serves ``integrations_site.wsgi`` with the repository's gunicorn.conf.py (as the
    Dockerfile does; ``app``, a ``module:name`` under bench/, in its place), else the naive baseline's
    ``naive_site.wsgi`` from bench/naive. Its output goes to ``log``, shown when it fails to start.
    """

    def __init__(self, name: str, *, ours: bool, env: dict, workers: int, log: Path, app: str | None = None):
        self.name, self.log, self.port = name, log, free_port()
        default = "integrations_site.wsgi:application" if ours else "naive_site.wsgi:application"
        command = [str(BIN / "gunicorn"), app or default]
        if ours:
            command += ["-c", str(ROOT / "gunicorn.conf.py")]
        if app:  # one of the harness's (kept_row.py): bench/ on the path; ours is found from ROOT, the cwd
            command += ["--pythonpath", str(ROOT / "bench")]
        # No control socket: its default path is one per user, and two masters (ours, the naive) would share it.
        command += ["-w", str(workers), "-k", "sync", "-b", f"127.0.0.1:{self.port}", "--no-control-socket"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT if ours else NAIVE_DIR, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name}: gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if get(self.port, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"{self.name}: gunicorn did not answer /healthz in time:\n{self.log_tail()}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master and its workers (its process group)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == self.proc.pid:  # fields[2] is the process group (5th field of stat)
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        stop_process(self.proc)


def start_servers(ours_env: dict, naive_env: dict, workers: int, work: Path) -> dict:
    """gunicorn for ours (``ours_env``: envs.ours_server_env) and for the naive project, both ready;
    their output in ``work``/ours.log and naive.log. This process's database connections are closed
    first (the servers are forked from nothing of it, but a kept connection would hold locks)."""
    from django.db import connections

    connections.close_all()
    servers = {
        "ours": Gunicorn("ours", ours=True, env=ours_env, workers=workers, log=work / "ours.log"),
        "naive": Gunicorn("naive", ours=False, env=naive_env, workers=workers, log=work / "naive.log"),
    }
    for server in servers.values():
        server.wait_ready()
    return servers


class Redis:
    """A private redis-server (no persistence) on a free loopback port: no shared Redis is touched."""

    def __init__(self, binary: str | None = None):
        binary = binary or shutil.which("redis-server") or "redis-server"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        atexit.register(self.stop)
        import redis

        self.redis = redis
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client(0).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("redis-server did not start")
                time.sleep(0.1)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int):
        return self.redis.Redis(port=self.port, db=db)

    def queued(self, db: int, tasks: dict) -> tuple[set[str], int]:
        """Ids in the Celery tasks waiting in database ``db``'s default queue (nobody consumes them here).

        ``tasks`` maps a task name to whether its first argument is a list of ids (else one id).
        Returns (ids, number of task messages).
        """
        ids, raw_messages = set(), self.client(db).lrange("celery", 0, -1)
        for raw in raw_messages:
            message = json.loads(raw)
            name = message["headers"].get("task")
            if name in tasks:
                args = json.loads(base64.b64decode(message["body"]))[0]
                ids.update(map(str, args[0] if tasks[name] else [args[0]]))
        return ids, len(raw_messages)

    def drop_queue(self, db: int) -> None:
        """Empty database ``db``'s default queue (the tasks of deliveries made before the load)."""
        self.client(db).delete("celery")

    def stop(self) -> None:
        stop_process(self.proc)


def workdir(prefix: str) -> Path:
    """A temporary folder for the run (request lists, event ids, SQLite files, server logs); see ``finish``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(lambda: work.exists() and print(f"kept for inspection: {work} (ours.log, naive.log: the "
                                                    "servers' output)", file=sys.stderr))
    return work


def finish(work: Path, status: int) -> int:
    """The run's folder is removed after a successful run, kept (its path printed at exit) otherwise."""
    if not status:
        shutil.rmtree(work, ignore_errors=True)
    return status
