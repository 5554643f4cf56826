"""docker-compose.yml and .env.example: the structure of the stack (there is no Docker engine here to run
it), the health checks' commands run for real against a Celery worker, beat and a stream consumer, and
.env.example against the production settings."""
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from celery.signals import beat_init, heartbeat_sent, worker_ready, worker_shutdown
from cryptography.fernet import Fernet
from django.core.management import load_command_class

from connections.models import StreamConsumer, StreamLease
from tests.connections.factories import IntegrationFactory
from tests.helpers import current_database_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
ENV_EXAMPLE_LINES = (ROOT / ".env.example").read_text().splitlines()
ENV_EXAMPLE = dict(line.split("=", 1) for line in ENV_EXAMPLE_LINES if re.match(r"^[A-Z][A-Z0-9_]*=", line))
IMAGE = "integrations-hub:latest"
APP_SERVICES = {"migrate", "setup", "web", "worker", "beat", "streams"}
HEARTBEATS = (("worker", "WORKER_HEARTBEAT_FILE"), ("beat", "BEAT_HEARTBEAT_FILE"),
              ("streams", "STREAMS_HEARTBEAT_FILE"))


# --- structure -------------------------------------------------------------------------------------------------


def test_the_services_are_the_stack_with_its_streams_consumer():
    assert set(SERVICES) == {"postgres", "redis", *APP_SERVICES}


def test_the_streams_service_runs_the_consumer_scalable_and_stops_it_with_sigterm_in_time():
    streams = SERVICES["streams"]
    assert streams["command"] == ["python", "manage.py", "run_streams"]
    assert streams["image"] == SERVICES["worker"]["image"]
    # Scales with --scale: no fixed container name, no published port.
    assert "container_name" not in streams and "ports" not in streams
    assert streams["stop_signal"] == "SIGTERM"
    grace = re.fullmatch(r"(\d+)s", streams["stop_grace_period"])
    # Longer than a lease round (at most 2 s) and Docker's default 10 s.
    assert grace and int(grace.group(1)) > 10
    assert "--scale streams" in COMPOSE_TEXT.split("services:")[0]  # the header comment says how


def test_every_app_service_runs_the_one_image_and_only_migrate_builds_it():
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service["image"] == IMAGE, name
        assert service["pull_policy"] == "never", name  # never looked up in a registry
        assert service["env_file"] == ".env", name
        assert service["environment"]["DJANGO_SETTINGS_MODULE"] == "integrations_site.settings.production", name
    builders = [name for name, service in SERVICES.items() if "build" in service]
    assert builders == ["migrate"]
    assert SERVICES["migrate"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert "migrate" in COMPOSE_TEXT.split("services:")[0]  # the header comment says how


def test_migrate_waits_for_postgresql_only_and_the_rest_wait_for_migrate_and_redis():
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat", "streams", "setup"):
        assert SERVICES[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "worker", "beat", "streams"])
def test_long_running_services_have_a_health_check(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"] and check["interval"] and check["retries"]


def test_worker_beat_and_streams_health_checks_read_a_heartbeat_file_not_the_broker():
    for name, variable in HEARTBEATS:
        service = SERVICES[name]
        command = " ".join(service["healthcheck"]["test"])
        assert variable in command and "getmtime" in command
        assert "inspect" not in command and "ping" not in command and "celery" not in command
        assert service["environment"][variable].startswith("/tmp/")
    assert "--without-heartbeat" not in " ".join(SERVICES["worker"]["command"])


def test_the_setup_one_shot_creates_the_superuser_and_the_catalog_and_is_not_started_by_up():
    setup = SERVICES["setup"]
    assert setup["profiles"] == ["setup"] and setup["restart"] == "no"
    shell, flag, script = setup["command"]
    assert (shell, flag) == ("sh", "-c")
    assert "python manage.py createsuperuser --noinput" in script
    assert "python manage.py seed_catalog" in script
    assert "$" not in script  # nothing for compose to interpolate
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert "docker compose run --rm setup" in COMPOSE_TEXT


def test_the_setup_one_shot_is_idempotent_and_stops_on_a_real_error(tmp_path):
    """The script run with stand-ins for manage.py: an existing user is fine, another error is not."""
    script = SERVICES["setup"]["command"][2].replace("/tmp/createsuperuser.err", str(tmp_path / "err"))
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncase "$2" in\n'  # python manage.py <command> <option>
                    '  createsuperuser) [ -z "$ERR" ] || { echo "CommandError: Error: $ERR" >&2; exit 1; };;\n'
                    '  seed_catalog) echo "seeded the catalog";;\nesac\n')
    fake.chmod(0o755)

    def run(err):
        env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "ERR": err}
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)

    assert run("").stdout.strip() == "seeded the catalog"
    again = run("That username is already taken.")
    assert again.returncode == 0 and again.stdout.strip().endswith("seeded the catalog")
    broken = run("You must use --username with --noinput.")
    assert broken.returncode == 1 and "seeded" not in broken.stdout and "--username" in broken.stderr


def test_the_catalog_seed_is_a_catalog_command_and_the_demo_seed_still_takes_the_catalog_only_flag():
    assert load_command_class("catalog", "seed_catalog").create_parser("manage.py", "seed_catalog").parse_args([])
    command = load_command_class("demo", "seed_demo")
    assert command.create_parser("manage.py", "seed_demo").parse_args(["--catalog-only"]).catalog_only


def test_the_yaml_parses_with_its_anchors_merged():
    assert SERVICES["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert not any(key.startswith("x-") for key in SERVICES)


# --- .env.example ----------------------------------------------------------------------------------------------


def test_every_variable_compose_interpolates_is_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_TEXT))
    assert used >= {"POSTGRES_PASSWORD", "WEB_PORT"}
    assert used - set(ENV_EXAMPLE) == set()


def test_env_example_lists_what_production_needs_with_the_secrets_empty():
    required = {"DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL",
                "CELERY_BROKER_URL", "FERNET_KEYS", "OAUTH_CALLBACK_URL", "METRICS_TOKEN", "OUTBOUND_ALLOWED_HOSTS",
                "POSTGRES_PASSWORD", "DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD",
                "DJANGO_SUPERUSER_EMAIL"}
    assert required - set(ENV_EXAMPLE) == set()
    for secret in ("DJANGO_SECRET_KEY", "FERNET_KEYS", "POSTGRES_PASSWORD", "DJANGO_SUPERUSER_PASSWORD",
                   "OAUTH_CALLBACK_URL"):
        assert ENV_EXAMPLE[secret] == "", secret
    # Set by compose for the web service only; explained, never set for every container.
    assert "PROMETHEUS_MULTIPROC_DIR" not in ENV_EXAMPLE
    assert any("PROMETHEUS_MULTIPROC_DIR" in line for line in ENV_EXAMPLE_LINES if line.startswith("#"))


def test_every_variable_in_env_example_has_a_comment_in_its_paragraph():
    uncommented = []
    for index, line in enumerate(ENV_EXAMPLE_LINES):
        if not re.match(r"^[A-Z][A-Z0-9_]*=", line):
            continue
        above = index - 1
        while above >= 0 and ENV_EXAMPLE_LINES[above].strip() and not ENV_EXAMPLE_LINES[above].startswith("#"):
            above -= 1
        if above < 0 or not ENV_EXAMPLE_LINES[above].startswith("#") or ENV_EXAMPLE_LINES[above].startswith("# ---"):
            uncommented.append(line.split("=")[0])
    assert uncommented == []


def _production(env: dict) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_env_example_as_copied_is_refused_naming_what_to_fill_in():
    done = _production(ENV_EXAMPLE)
    assert done.returncode != 0
    for name in ("DJANGO_SECRET_KEY", "FERNET_KEYS", "DJANGO_ALLOWED_HOSTS", "OAUTH_CALLBACK_URL"):
        assert name in done.stderr


def test_env_example_filled_in_starts_the_production_settings():
    done = _production({**ENV_EXAMPLE, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                        "FERNET_KEYS": Fernet.generate_key().decode(), "DJANGO_ALLOWED_HOSTS": "hub.example.com",
                        "OAUTH_CALLBACK_URL": "https://hub.example.com/api/v1/oauth/callback"})
    assert done.returncode == 0, done.stderr


# --- heartbeats: the signal handlers -----------------------------------------------------------------------------


@pytest.fixture
def heartbeat_files(tmp_path, monkeypatch):
    files = SimpleNamespace(worker=tmp_path / "worker.heartbeat", beat=tmp_path / "beat.heartbeat")
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(files.worker))
    monkeypatch.setenv("BEAT_HEARTBEAT_FILE", str(files.beat))
    return files


def test_the_worker_file_is_touched_when_ready_and_on_each_heartbeat_and_removed_at_shutdown(heartbeat_files):
    worker_ready.send(sender=None)
    assert heartbeat_files.worker.exists()
    os.utime(heartbeat_files.worker, (time.time() - 600, time.time() - 600))
    heartbeat_sent.send(sender=None)
    assert time.time() - heartbeat_files.worker.stat().st_mtime < 5
    worker_shutdown.send(sender=None)
    assert not heartbeat_files.worker.exists()
    worker_shutdown.send(sender=None)  # already gone: nothing to do


def test_a_worker_heart_built_now_sends_the_signal():
    """Celery's Heart decides at construction whether heartbeat_sent has receivers."""
    from celery.worker.heartbeat import Heart

    heart = Heart(timer=SimpleNamespace(), eventer=SimpleNamespace(on_enabled=set(), on_disabled=set()))
    assert heart._send_sent_signal is not None


class BeatService:
    """What beat_init is sent with: the beat Service, holding its scheduler."""

    def __init__(self, tick):
        self.scheduler = SimpleNamespace(tick=tick)


def test_beat_touches_its_file_after_each_scheduler_pass(heartbeat_files):
    passes = []
    service = BeatService(tick=lambda: passes.append(1) or 5.0)
    scheduler = service.scheduler
    beat_init.send(sender=service)
    assert heartbeat_files.beat.exists()
    os.utime(heartbeat_files.beat, (time.time() - 600, time.time() - 600))
    assert scheduler.tick() == 5.0 and passes == [1]
    assert time.time() - heartbeat_files.beat.stat().st_mtime < 5


def test_without_the_variables_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKER_HEARTBEAT_FILE", raising=False)
    monkeypatch.delenv("BEAT_HEARTBEAT_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    service = BeatService(tick=lambda: 1.0)
    tick = service.scheduler.tick
    worker_ready.send(sender=None)
    heartbeat_sent.send(sender=None)
    beat_init.send(sender=service)
    assert service.scheduler.tick is tick and list(tmp_path.iterdir()) == []


def test_a_file_that_cannot_be_written_does_not_stop_the_worker(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKER_HEARTBEAT_FILE", str(tmp_path / "missing-folder" / "worker.heartbeat"))
    heartbeat_sent.send(sender=None)
    worker_shutdown.send(sender=None)


# --- heartbeats: a real worker and beat, checked by the compose health checks --------------------------------------


def health_check(service: str, env: dict) -> int:
    kind, *command = SERVICES[service]["healthcheck"]["test"]
    assert kind == "CMD" and command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env={**os.environ, **env}, timeout=30).returncode


def _celery(tmp_path, *args, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "integrations_site", *args, "--loglevel=warning"], cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test", **env},
        stdout=open(tmp_path / "celery.log", "w"), stderr=subprocess.STDOUT,
    )


def _wait_for(predicate, timeout=60.0, what=""):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("service, variable", HEARTBEATS)
def test_a_missing_or_stale_heartbeat_file_fails_the_health_check(tmp_path, service, variable):
    path = tmp_path / "heartbeat"
    assert health_check(service, {variable: str(path)}) != 0
    path.touch()
    assert health_check(service, {variable: str(path)}) == 0
    os.utime(path, (time.time() - 120, time.time() - 120))
    assert health_check(service, {variable: str(path)}) != 0


def test_a_running_worker_keeps_its_health_check_passing_and_fails_it_when_stopped(tmp_path):
    path = tmp_path / "worker.heartbeat"
    # A queue of its own (no task of the suite is taken), one name for every run.
    worker = _celery(tmp_path, "worker", "--pool=threads", "--concurrency=1", "-n",
                     f"heartbeat-{uuid.uuid4().hex[:8]}@%h", "-Q", "compose-heartbeat-check",
                     WORKER_HEARTBEAT_FILE=str(path))
    try:
        _wait_for(path.exists, what=f"the worker's heartbeat ({(tmp_path / 'celery.log').read_text()[-2000:]})")
        first = path.stat().st_mtime
        os.utime(path, (first - 100, first - 100))
        _wait_for(lambda: path.stat().st_mtime > first - 50, timeout=15, what="the next heartbeat")
        assert health_check("worker", {"WORKER_HEARTBEAT_FILE": str(path)}) == 0
    finally:
        _stop(worker)
    assert not path.exists()
    assert health_check("worker", {"WORKER_HEARTBEAT_FILE": str(path)}) != 0


def test_a_running_beat_keeps_its_health_check_passing(tmp_path):
    path = tmp_path / "beat.heartbeat"
    beat = _celery(tmp_path, "beat", "--scheduler", "celery.beat:PersistentScheduler",
                   "--schedule", str(tmp_path / "schedule"), "--max-interval", "1", BEAT_HEARTBEAT_FILE=str(path))
    try:
        _wait_for(path.exists, what=f"beat's heartbeat ({(tmp_path / 'celery.log').read_text()[-2000:]})")
        first = path.stat().st_mtime
        os.utime(path, (first - 100, first - 100))
        _wait_for(lambda: path.stat().st_mtime > first - 50, timeout=15, what="the next scheduler pass")
        assert health_check("beat", {"BEAT_HEARTBEAT_FILE": str(path)}) == 0
    finally:
        _stop(beat)


@pytest.mark.django_db(transaction=True)
def test_a_running_stream_consumer_keeps_its_health_check_passing_and_sigterm_releases_its_leases(tmp_path):
    path = tmp_path / "streams.heartbeat"
    # An sse integration whose address the outbound policy refuses: leased and backing off, no connection made.
    integration = IntegrationFactory(update_method="sse", api_base_url="http://127.0.0.1:9", stream_endpoint="/events")
    consumer = subprocess.Popen(
        [sys.executable, "manage.py", "run_streams", "--lease-seconds", "3", "--name", "compose-heartbeat-check"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "integrations_site.settings.test",
                       "DATABASE_URL": current_database_url(), "OUTBOUND_ALLOWED_HOSTS": "",
                       "STREAMS_HEARTBEAT_FILE": str(path)},
        stdout=open(tmp_path / "streams.log", "w"), stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(path.exists, what=f"the consumer's heartbeat ({(tmp_path / 'streams.log').read_text()[-2000:]})")
        _wait_for(lambda: StreamLease.objects.filter(integration=integration, consumer="compose-heartbeat-check")
                  .exists(), timeout=15, what="the stream leased")
        first = path.stat().st_mtime
        os.utime(path, (first - 100, first - 100))
        _wait_for(lambda: path.stat().st_mtime > first - 50, timeout=10, what="the next lease round")
        assert health_check("streams", {"STREAMS_HEARTBEAT_FILE": str(path)}) == 0
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=int(SERVICES["streams"]["stop_grace_period"].rstrip("s"))) == 0
    finally:
        _stop(consumer)
    assert StreamLease.objects.get(integration=integration).consumer == ""
    assert not StreamConsumer.objects.filter(pk="compose-heartbeat-check").exists()
    os.utime(path, (time.time() - 120, time.time() - 120))  # nothing touches it any more
    assert health_check("streams", {"STREAMS_HEARTBEAT_FILE": str(path)}) != 0
