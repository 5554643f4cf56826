"""Real ``run_streams`` processes sharing streams by leases, and one taking over from a SIGKILLed one."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connections.models import StatusChange, StreamConsumer, StreamLease
from tests.connections.streams.conftest import stream_integration, wait_for
from tests.helpers import current_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
LEASE_SECONDS = 4
STREAMS = 20


class Consumers:
    """``manage.py run_streams`` subprocesses on the test database; logs printed when a test fails."""

    def __init__(self, log_dir: Path):
        self.log_dir, self.procs = log_dir, {}
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test",
            "DATABASE_URL": current_database_url(), "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
        }

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop_all)
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_streams", "--name", name, "--lease-seconds", str(LEASE_SECONDS)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = (proc, log)
        return proc

    def stop_all(self) -> None:
        for proc, log in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()

    def logs(self) -> str:
        return "\n".join((self.log_dir / f"{name}.log").read_text(errors="replace") for name in self.procs)


@pytest.fixture
def processes(tmp_path):
    started = Consumers(tmp_path)
    yield started
    started.stop_all()
    print(started.logs())


def holders() -> dict[str, str]:
    return {str(pk): consumer for pk, consumer in StreamLease.objects.values_list("integration_id", "consumer")}


class Publisher:
    """One event per stream every ``interval`` s, the statuses alternating so that every event is a change."""

    def __init__(self, server, paths, interval=0.1):
        self.server, self.paths, self.interval = server, paths, interval
        self.sent = dict.fromkeys(paths, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for path in self.paths:
                n = self.sent[path] = self.sent[path] + 1
                self.server.publish(path, {"id": "item", "status": "open" if n % 2 else "sold"}, id=f"{path}-{n}")
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def test_two_consumers_share_streams_and_one_takes_over_from_a_killed_one(sse_server, processes):
    integrations = [stream_integration(sse_server, f"/s{n}") for n in range(STREAMS)]
    paths = [f"/s{n}" for n in range(STREAMS)]
    first = processes.start("consumer-a")
    processes.start("consumer-b")

    def shared():
        held = holders()
        owners = [held.get(str(i.pk)) for i in integrations]
        counts = {name: owners.count(name) for name in ("consumer-a", "consumer-b")}
        both = counts["consumer-a"] >= 1 and counts["consumer-b"] >= 1
        return all(owners) and both and sum(counts.values()) == STREAMS

    wait_for(shared, timeout=30, what="both consumers holding streams")
    wait_for(lambda: all(sse_server.open_to(p) == 1 for p in paths), timeout=15, what="one connection per stream")
    with Publisher(sse_server, paths) as publisher:
        time.sleep(1.5)
        assert all(sse_server.open_to(p) == 1 for p in paths), "a stream read twice"
        killed = {pk for pk, name in holders().items() if name == "consumer-a"}
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        killed_at = time.monotonic()
        wait_for(lambda: all(holders()[pk] == "consumer-b" for pk in killed), timeout=LEASE_SECONDS + 10,
                 what="consumer-b holding the killed consumer's streams")
        took_over = time.monotonic() - killed_at
        time.sleep(1.5)
    assert took_over <= LEASE_SECONDS + 5, took_over
    sent = dict(publisher.sent)
    by_path = {f"/s{n}": integration for n, integration in enumerate(integrations)}

    def all_applied():
        leases = {str(pk): total for pk, total in StreamLease.objects.values_list("integration_id", "events_total")}
        return all(leases[str(by_path[p].pk)] == sent[p] for p in paths)

    wait_for(all_applied, timeout=15, what="every event sent applied")
    for path in paths:
        integration = by_path[path]
        # Every event changed the status: one change per event after the first, none lost, none twice.
        assert StatusChange.objects.filter(integration=integration).count() == sent[path] - 1, path
        assert StreamLease.objects.get(integration=integration).last_event_id == f"{path}-{sent[path]}"


def test_sigterm_releases_the_leases_at_once(sse_server, processes):
    integrations = [stream_integration(sse_server, f"/t{n}") for n in range(3)]
    proc = processes.start("consumer-t")
    wait_for(lambda: all(holders().get(str(i.pk)) == "consumer-t" for i in integrations), timeout=20,
             what="the consumer holding the streams")
    wait_for(lambda: all(sse_server.open_to(f"/t{n}") == 1 for n in range(3)), what="the streams open")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert set(holders().values()) == {""}
    assert not StreamConsumer.objects.filter(pk="consumer-t").exists()
    wait_for(lambda: all(sse_server.open_to(f"/t{n}") == 0 for n in range(3)), what="the streams closed")
