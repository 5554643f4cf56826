"""Issue 5: a token about to expire is refreshed by ``connections.refresh_oauth_tokens`` running in a
real Celery worker process (Redis broker, the test's PostgreSQL database) against the local OAuth2
authorization server.

The connection is made through the API first; the worker also runs the connection test the callback
queued. The task is sent with ``.delay()`` from this process.
"""
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from connections.models import ConnectionCheck, Credential
from connections.tasks import refresh_oauth_tokens
from tests.connections.oauth_server import (  # noqa: F401 (fixtures, known by their names)
    connect,
    oauth_integration_fixture,
    oauth_provider_fixture,
    oauth_server_fixture,
)
from tests.helpers import celery_broker, current_database_url, fresh_broker_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
BROKER_DB = 6  # a Redis database of this test's own, flushed before and after
WAIT_SECONDS = 60


def database_url() -> str:
    return current_database_url()


class Worker:
    """One ``celery worker`` subprocess; its log is kept in a file and shown when the test fails."""

    def __init__(self, log_path: Path, broker: str):
        self.log_path = log_path
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker,
            "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [CELERY, "-A", "integrations_site", "worker", "--pool=threads", "--concurrency=2", "-l", "info",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", f"oauth-journey-{os.getpid()}@%h"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_running(self) -> None:
        assert self.proc.poll() is None, f"the worker exited with {self.proc.returncode}:\n{self.log()[-20000:]}"

    def wait_for(self, what: str, condition, timeout: float = WAIT_SECONDS):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"{what} did not happen within {timeout}s; worker log:\n{self.log()[-20000:]}")

    def task_outcome(self, task_id: str) -> str | None:
        found = re.search(rf"Task connections\.refresh_oauth_tokens\[{task_id}\] succeeded in [^:]+: (.*)", self.log())
        return found.group(1).strip() if found else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown: tasks in flight finish
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@pytest.fixture
def redis_broker():
    url = fresh_broker_url(BROKER_DB)
    with celery_broker(url):
        yield url
    fresh_broker_url(BROKER_DB)


@pytest.fixture
def start_worker(tmp_path, redis_broker):
    started = []

    def start() -> Worker:
        worker = Worker(tmp_path / "worker.log", redis_broker)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        print(f"----- celery worker log -----\n{worker.log()[-20000:]}")


def test_a_worker_refreshes_a_token_about_to_expire_and_leaves_fresh_tokens_alone(
    admin_client_api, oauth_integration, oauth_server, start_worker, settings
):
    assert settings.OAUTH_REFRESH_MARGIN_SECONDS == 900
    answer = connect(admin_client_api, oauth_integration, oauth_server)
    assert answer.status_code == 302 and answer["Location"].endswith("status=connected")
    credential = Credential.objects.get(integration=oauth_integration, user__isnull=True)
    old = dict(credential.payload)
    # Five minutes left: inside the 15-minute margin.
    Credential.objects.filter(pk=credential.pk).update(expires_at=timezone.now() + timedelta(minutes=5))

    worker = start_worker()
    # The connection test queued by the callback runs in the worker with the first access token.
    check = worker.wait_for(
        "the queued connection test",
        lambda: ConnectionCheck.objects.filter(integration=oauth_integration, state="completed").first(),
    )
    assert check.success is True and oauth_server.pings == [200]

    sent = refresh_oauth_tokens.delay()
    outcome = worker.wait_for("the refresh task", lambda: worker.task_outcome(sent.id))
    assert outcome == "{'refreshed': 1, 'failed': 0}"

    fresh = Credential.objects.get(pk=credential.pk)
    assert fresh.version == credential.version + 1 and fresh.status == "active"
    assert fresh.payload["access_token"] != old["access_token"]
    assert fresh.payload["refresh_token"] != old["refresh_token"]  # rotated: the new one replaced it
    assert oauth_server.access_token_is_live(fresh.payload["access_token"])
    assert oauth_server.refresh_token_is_live(fresh.payload["refresh_token"])
    assert not oauth_server.refresh_token_is_live(old["refresh_token"])
    assert fresh.expires_at > timezone.now() + timedelta(minutes=55)
    assert fresh.refresh_lease_until is None and fresh.refresh_failures == 0
    calls = oauth_server.refresh_calls()
    assert len(calls) == 1 and calls[0].status == 200 and calls[0].client_auth == "basic"
    event = AuditEvent.objects.get(action="oauth.refreshed")
    assert event.actor == "system" and event.changes["rotated"] is True

    # A second run finds nothing due: the fresh token is an hour away from expiring.
    again = refresh_oauth_tokens.delay()
    assert worker.wait_for("the second refresh task", lambda: worker.task_outcome(again.id)) == (
        "{'refreshed': 0, 'failed': 0}"
    )
    assert len(oauth_server.refresh_calls()) == 1
    assert Credential.objects.get(pk=credential.pk).version == fresh.version

    # The token the worker stored works: a test through the API uses it without another refresh.
    tested = admin_client_api.post(f"/api/v1/integrations/{oauth_integration.pk}/test")
    assert tested.json()["success"] is True and oauth_server.pings == [200, 200]
    assert len(oauth_server.refresh_calls()) == 1
