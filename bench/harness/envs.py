"""The environments ours and the naive baseline run under, and the naive project's commands.

Ours runs under the production settings, as the Dockerfile runs it: a generated DJANGO_SECRET_KEY,
FERNET_KEYS (taken from the environment when set, else generated; the bench seeds its credentials
under the same keys), DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost, the public OAUTH_CALLBACK_URL, and
PROMETHEUS_MULTIPROC_DIR for gunicorn as docker-compose sets it. Production redirects plain HTTP to
HTTPS, so every request says ``X-Forwarded-Proto: https`` as the TLS proxy in front would.
"""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from .processes import NAIVE_DIR, ROOT

PROXY_HEADERS = {"X-Forwarded-Proto": "https"}
CALLBACK_URL = "https://hub.example.com/api/v1/oauth/callback"


def production_env(*, database_url: str, redis_url: str, broker_url: str) -> dict:
    """The variables production needs, beside what the caller's environment already holds."""
    fernet_keys = os.environ.get("FERNET_KEYS") or Fernet.generate_key().decode()
    return {
        "DJANGO_SETTINGS_MODULE": "integrations_site.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": fernet_keys,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url,
        "OAUTH_CALLBACK_URL": CALLBACK_URL,
    }


def setup_ours(env: dict) -> None:
    """This process becomes ours under ``env``: Django set up, the database migrated."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def ours_server_env(env: dict, work: Path, metrics_dir: str = "prometheus") -> dict:
    """What gunicorn gets: ``env`` and, as docker-compose sets it, an empty PROMETHEUS_MULTIPROC_DIR
    (``work``/``metrics_dir``: one per server)."""
    metrics = work / metrics_dir
    metrics.mkdir()
    return {**os.environ, **env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}


def naive_env(*, database_url: str, broker_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FERNET_", "REDIS_"))}
    return {**env, "DJANGO_SETTINGS_MODULE": "naive_site.settings", "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url, "PYTHONPATH": str(NAIVE_DIR)}


def naive_manage(env: dict, *args: str) -> str:
    """Run bench/naive/manage.py ``args`` under ``env``; its stdout (stderr passes through)."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=NAIVE_DIR, env=env, stdout=subprocess.PIPE,
                          text=True)
    if done.returncode:
        sys.exit(f"naive: manage.py {' '.join(args)} exited with {done.returncode}")
    return done.stdout


def naive_in_process(env: dict, request_sets: dict, repeat: int, expect: dict | None = None,
                     vary: str | None = None) -> dict:
    """harness/inprocess.py's measurement (the same arguments), run in a subprocess under the naive settings."""
    script = Path(__file__).with_name("inprocess.py")
    spec = {"request_sets": request_sets, "repeat": repeat, "expect": expect, "vary": vary}
    done = subprocess.run([sys.executable, str(script)], cwd=NAIVE_DIR, env=env, text=True, stdout=subprocess.PIPE,
                          input=json.dumps(spec))
    if done.returncode:
        sys.exit(f"naive: the in-process measurement exited with {done.returncode}")
    return json.loads(done.stdout)


def app_state() -> str:
    """The commit measured, and the files changed outside bench/ in the working tree (measured as they are)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    return f"app: commit {git('rev-parse', '--short', 'HEAD').strip()}" + (
        f", with uncommitted changes in {', '.join(changed)}" if changed else ", clean working tree")
