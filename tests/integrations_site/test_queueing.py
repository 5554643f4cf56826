"""Sending tasks by name: a failed send is tried once more, then given up on with a log line (the sweeps
queue the work again later)."""
import os
import subprocess
import sys
from pathlib import Path

from integrations_site import queueing

ROOT = Path(__file__).resolve().parents[2]


def test_a_send_that_fails_once_is_tried_again_and_goes_through(monkeypatch):
    calls = []

    def flaky(name, args, countdown):
        calls.append((name, args, countdown))
        if len(calls) == 1:
            raise OSError("broker restarting")

    monkeypatch.setattr(queueing, "_send", flaky)
    monkeypatch.setattr(queueing, "RETRY_PAUSE_SECONDS", 0)
    assert queueing.enqueue("connections.run_connection_check", "c-1", countdown=5) is True
    assert calls == [("connections.run_connection_check", ["c-1"], 5)] * 2


def test_a_broker_that_stays_down_is_given_up_on_with_a_log_line_naming_the_task(monkeypatch, caplog):
    def down(name, args, countdown):
        raise OSError("Connection refused")

    monkeypatch.setattr(queueing, "_send", down)
    monkeypatch.setattr(queueing, "RETRY_PAUSE_SECONDS", 0)
    with caplog.at_level("WARNING", logger="integrations_site.queueing"):
        assert queueing.enqueue("webhooks.process_webhook_events", ["e-1"], log_event="webhooks.handoff.failed",
                                log_detail="events=1") is False
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "webhooks.handoff.failed task=webhooks.process_webhook_events events=1 error=OSError"


def test_the_embedded_broker_connects_without_kombu_warning_of_a_missing_host(tmp_path):
    """``filesystem://`` (the embedded default, or set by hand) has no host; kombu would warn on every connection
    of every process (web, worker, beat) that it fell back to "localhost"."""
    script = (
        "import logging, django; logging.basicConfig(level=logging.WARNING); django.setup()\n"
        "from django.conf import settings\n"
        "from integrations_site.celery import app\n"
        "with app.connection_for_write() as connection:\n"
        "    print(settings.CELERY_BROKER_URL, connection.info()['hostname'], connection.info()['transport'])\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "DJANGO_SETTINGS_MODULE": "integrations_site.settings.local", "VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": "", "CELERY_BROKER_URL": "filesystem://"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["filesystem://localhost", "localhost", "filesystem"]
    assert "No hostname was supplied" not in done.stderr
    assert "WARNING" not in done.stderr, done.stderr
