"""``bash scripts/run.sh`` end to end: the demo is alive within two minutes, and Ctrl-C stops it all.

The script runs as a subprocess in a fresh ``VAR_DIR`` (its own SQLite file,
filesystem broker and logs) on free ports, with none of the test run's
database, Redis or settings in its environment. Through the API, as
demo-admin with a JWT, the test waits for: the seeded integrations that have
credentials healthy, the polled inventory's statuses changed, webhook events
from the upstream's sender processed, the demo tenant's notifications (their
health changes) received and verified by the upstream's receiver, the
streamed shipping slots' statuses stored by the stream consumer (its stream
connected), and the API docs served.
Then it sends SIGINT to the script and checks that the script and each of its
children (the upstream, web, worker, beat and streams) have stopped.
"""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

# scripts/run.sh always runs the embedded default (its own SQLite file and broker under VAR_DIR),
# whatever the suite's pass: it runs once, in the embedded pass.
pytestmark = [pytest.mark.slow, pytest.mark.embedded_default]

ROOT = Path(__file__).resolve().parent.parent.parent
ALIVE_WITHIN = 120  # seconds from the start of the script
STOP_WITHIN = 60
CHILDREN = {"upstream", "web", "worker", "beat", "streams"}
WITH_CREDENTIALS = {"Demo inventory API", "Demo payments", "Demo shipping"}
# What the script may see of this machine's environment: nothing that points it at the test run's servers.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is a zombie: stopped all the same.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def api(base: str, path: str, token: str | None = None, body: dict | None = None,
        accept: str = "application/json") -> tuple[int, dict | bytes]:
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = requests.request("POST" if body is not None else "GET", base + path, json=body, headers=headers,
                                timeout=10, allow_redirects=False)
    kind = response.headers.get("Content-Type", "")
    return response.status_code, response.json() if kind.startswith("application/json") else response.content


class Run:
    """The script as a subprocess, its output in a file."""

    def __init__(self, tmp_path: Path):
        self.port, self.upstream_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "run.log"
        self.var_dir = tmp_path / "var"
        self.env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
        self.env.update(VAR_DIR=str(self.var_dir), HOST="127.0.0.1", PORT=str(self.port),
                        UPSTREAM_PORT=str(self.upstream_port), DEMO_SEND_EVERY="2", HEALTH_TIMEOUT="90")
        self.proc: subprocess.Popen | None = None
        self.milestones: dict[str, float] = {}

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # A session of its own: the terminal's Ctrl-C never reaches it, the test sends SIGINT itself.
            self.proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in re.findall(r"\[run\] started (\w+) \(pid (\d+)\)", self.output())}

    def assert_running(self) -> None:
        assert self.proc.poll() is None, f"run.sh exited with {self.proc.returncode}:\n{self.output()[-4000:]}"

    def logs(self) -> str:
        parts = [f"--- run.sh output ---\n{self.output()[-6000:]}"]
        for name in ("upstream", "worker", "beat", "streams"):
            path = self.var_dir / "log" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}.log ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def kill_leftovers(self) -> None:
        """After a failure: each process this run started, by its id."""
        for pid in [*self.children().values(), self.proc.pid]:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def wait_for(run: Run, what: str, probe):
    """Call ``probe`` until it returns something truthy, within the run's ALIVE_WITHIN seconds."""
    while True:
        run.assert_running()
        try:
            found = probe()
        except OSError:  # the web server is not listening yet
            found = None
        if found:
            run.milestones[what] = time.monotonic() - run.started
            return found
        waited = time.monotonic() - run.started
        assert waited < ALIVE_WITHIN, f"no {what} after {waited:.0f}s\n{run.logs()}"
        time.sleep(2)


def admin_dashboard(base: str) -> str:
    """The admin index as the demo's staff superuser sees it, logged in through the login form."""
    session = requests.Session()
    login = session.get(f"{base}/admin/login/?next=/admin/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    page = session.post(f"{base}/admin/login/?next=/admin/", timeout=30, headers={"Referer": f"{base}/admin/login/"},
                        data={"csrfmiddlewaretoken": token, "username": "admin", "password": "demo-pass-123"})
    assert page.status_code == 200 and page.url.rstrip("/").endswith("/admin"), (page.status_code, page.url)
    return page.text


def test_run_sh_brings_the_demo_alive_and_ctrl_c_stops_every_child(tmp_path):
    run = Run(tmp_path)
    run.start()
    try:
        def token():
            status, body = api(run.base, "/api/v1/auth/token/", body={
                "username": "demo-admin", "password": "demo-pass-123", "tenant": "demo"})
            return body["access"] if status == 200 else None

        access = wait_for(run, "JWT for demo-admin", token)

        def healthy():
            status, body = api(run.base, "/api/v1/integrations/?limit=100", access)
            assert status == 200, body
            states = {i["name"]: i["health_state"] for i in body["results"]}
            assert WITH_CREDENTIALS <= set(states), states
            return states if all(states[name] == "healthy" for name in WITH_CREDENTIALS) else None

        states = wait_for(run, "healthy demo integrations", healthy)
        assert states["Demo CRM"] == "unknown"  # not connected yet: nothing to check
        integrations = {i["name"]: i["id"] for i in api(run.base, "/api/v1/integrations/?limit=100", access)[1][
            "results"]}

        def changed_statuses():
            status, body = api(run.base, f"/api/v1/integrations/{integrations['Demo inventory API']}"
                                         "/statuses/changes/", access)
            assert status == 200, body
            return body["total"]

        assert wait_for(run, "status changes of the polled inventory", changed_statuses) >= 1
        status, statuses = api(run.base, f"/api/v1/integrations/{integrations['Demo inventory API']}/statuses/",
                               access)
        assert status == 200 and statuses["total"] == 6

        def processed_events():
            status, body = api(run.base, f"/api/v1/webhook-events/?status=processed&integration="
                                         f"{integrations['Demo payments']}", access)
            assert status == 200, body
            return body["total"]

        assert wait_for(run, "processed webhook events", processed_events) >= 1

        def verified_notifications():
            status, body = api(f"http://127.0.0.1:{run.upstream_port}", "/notifications")
            assert status == 200, body
            return [notification for notification in body if notification["verified"]]

        # The seeded endpoint on the upstream: the health changes of the seed's connection tests, signed.
        received = wait_for(run, "verified notifications at the demo upstream", verified_notifications)
        assert "integration.health_changed" in {notification["type"] for notification in received}, received
        status, deliveries = api(run.base, "/api/v1/notification-deliveries/?status=delivered", access)
        assert status == 200 and deliveries["total"] >= 1, deliveries

        shipping = integrations["Demo shipping"]

        def streamed_statuses():
            status, body = api(run.base, f"/api/v1/integrations/{shipping}/statuses/", access)
            assert status == 200, body
            return body["total"]

        # The consumer's snapshot holds every slot: all five arrive with the stream's first event.
        assert wait_for(run, "statuses of the streamed shipping slots", streamed_statuses) == 5
        status, stream = api(run.base, f"/api/v1/integrations/{shipping}/stream", access)
        assert status == 200 and stream["state"] == "connected" and stream["events_total"] >= 1, stream
        assert stream["consumer"] and stream["last_event_id"], stream
        dashboard = admin_dashboard(run.base)
        assert "Dashboard: every tenant" in dashboard
        assert re.search(r'data-figure="integrations-total">4<', dashboard), dashboard[:2000]
        assert re.search(r'data-figure="streams-connected">[1-9]', dashboard)  # the demo's live stream
        docs_status, docs = api(run.base, "/api/docs/", accept="text/html")
        assert docs_status == 200 and b"swagger" in docs.lower()
        print("run.sh, seconds after start: " + ", ".join(f"{what} {at:.1f}" for what, at in run.milestones.items()))

        children = run.children()
        assert set(children) == CHILDREN, run.output()
        assert all(alive(pid) for pid in children.values())

        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(timeout=STOP_WITHIN) == 130, run.logs()
        still = {name: pid for name, pid in children.items() if alive(pid)}
        assert not still, f"still running after run.sh ended: {still}\n{run.logs()}"
        assert "interrupted: shutting down" in run.output()
    finally:
        if run.proc.poll() is None or any(alive(pid) for pid in run.children().values()):
            run.kill_leftovers()
