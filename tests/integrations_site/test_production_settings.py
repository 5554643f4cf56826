"""The production settings, each imported in a fresh process with an environment of the test's choosing:
what they refuse (naming the variable, never echoing a secret) and that good values pass
``manage.py check --deploy --fail-level WARNING``."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "FERNET_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
    "DJANGO_ALLOWED_HOSTS": "hub.example.com,.hub.example.com",
    "OAUTH_CALLBACK_URL": "https://hub.example.com/api/v1/oauth/callback",
}


def environment(**overrides) -> dict:
    """A clean environment: only what the settings read, never the caller's own values. A variable
    meant to be missing is set empty, so that a .env file in the project cannot fill it in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "integrations_site.settings.production",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://ih:ih@127.0.0.1:55432/ih"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0"),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:56379/0"),
        **GOOD,
    }
    env.update(overrides)
    return env


def run(*args: str, **overrides) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment(**overrides), capture_output=True,
                          text=True, timeout=120)


def refusal(**overrides) -> str:
    """The ImproperlyConfigured message of importing the production settings with ``overrides``."""
    done = run("-c", "import integrations_site.settings.production", **overrides)
    assert done.returncode != 0, f"accepted: {overrides}"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: "), done.stderr
    return last


def accepted(**overrides) -> None:
    done = run("-c", "import integrations_site.settings.production", **overrides)
    assert done.returncode == 0, done.stderr


# --- secrets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DJANGO_SECRET_KEY", "FERNET_KEYS"])
def test_a_missing_secret_is_refused_by_name(name):
    assert f"{name} must be set" in refusal(**{name: ""})


@pytest.mark.parametrize("key", [
    "change-me",
    "changeme" + secrets.token_urlsafe(50),
    secrets.token_urlsafe(30) + "-change-me-" + secrets.token_urlsafe(30),
    "django-insecure-" + secrets.token_urlsafe(50),
    "insecure-local-only-secret-key-change-me-0123456789",  # base's embedded-run default
    "my-Secret-Key-" + secrets.token_urlsafe(50),
])
def test_a_placeholder_secret_key_is_refused_without_echoing_it(key):
    message = refusal(DJANGO_SECRET_KEY=key)
    assert "DJANGO_SECRET_KEY" in message and "placeholder" in message
    assert key not in message


@pytest.mark.parametrize("key", [
    secrets.token_urlsafe(36),  # 48 characters
    "a" * 49 + "b",
    "abcd" * 20,  # long, but 4 distinct characters
])
def test_a_short_or_repetitive_secret_key_is_refused_without_echoing_it(key):
    message = refusal(DJANGO_SECRET_KEY=key)
    assert "DJANGO_SECRET_KEY must be at least 50 characters" in message
    assert key not in message


def test_a_secret_key_of_exactly_fifty_characters_of_five_kinds_is_accepted():
    accepted(DJANGO_SECRET_KEY="abcde" * 10)


@pytest.mark.parametrize("keys", ["not-a-fernet-key", f"{Fernet.generate_key().decode()},short"])
def test_a_fernet_key_that_is_not_one_is_refused_without_echoing_it(keys):
    message = refusal(FERNET_KEYS=keys)
    assert "FERNET_KEYS" in message and "short" not in message and "not-a-fernet-key" not in message


def test_a_jwt_signing_key_when_set_follows_the_secret_key_rules():
    assert "JWT_SIGNING_KEY must be at least 50 characters" in refusal(JWT_SIGNING_KEY="short-jwt-key")
    accepted(JWT_SIGNING_KEY=secrets.token_urlsafe(50))


@pytest.mark.parametrize("name, empty", [("DJANGO_ALLOWED_HOSTS", ""), ("DJANGO_ALLOWED_HOSTS", " , "),
                                         ("DATABASE_URL", "")])
def test_empty_allowed_hosts_or_database_url_are_refused(name, empty):
    assert f"{name} must be set" in refusal(**{name: empty})


def test_every_problem_is_named_at_once():
    message = refusal(DJANGO_SECRET_KEY="", FERNET_KEYS="", OAUTH_CALLBACK_URL="http://127.0.0.1:8000/cb")
    for name in ("DJANGO_SECRET_KEY", "FERNET_KEYS", "OAUTH_CALLBACK_URL"):
        assert name in message


# --- the OAuth callback URL ------------------------------------------------------------------------------------


def test_the_callback_url_must_be_set_explicitly():
    assert "OAUTH_CALLBACK_URL must be set" in refusal(OAUTH_CALLBACK_URL="")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/api/v1/oauth/callback",  # base's embedded-run default
    "https://127.10.0.3/api/v1/oauth/callback",
    "http://localhost/api/v1/oauth/callback",
    "https://LocalHost./api/v1/oauth/callback",
    "https://hub.localhost/api/v1/oauth/callback",
    "https://[::1]:8443/api/v1/oauth/callback",
    "https://[::ffff:127.0.0.1]/api/v1/oauth/callback",
    "http://0.0.0.0:8000/api/v1/oauth/callback",
])
def test_a_loopback_callback_url_is_refused(url):
    message = refusal(OAUTH_CALLBACK_URL=url)
    assert "OAUTH_CALLBACK_URL" in message and "loopback" in message


@pytest.mark.parametrize("url", [
    "ftp://hub.example.com/api/v1/oauth/callback",
    "javascript:alert(1)",
    "hub.example.com/api/v1/oauth/callback",
    "https:///api/v1/oauth/callback",
    "https://[not-an-address/api/v1/oauth/callback",
])
def test_a_callback_url_that_is_not_http_or_https_with_a_host_is_refused(url):
    assert "OAUTH_CALLBACK_URL" in refusal(OAUTH_CALLBACK_URL=url)


@pytest.mark.parametrize("url", [
    "https://hub.example.com/api/v1/oauth/callback",
    "http://hub.internal.example/api/v1/oauth/callback",
    "https://203.0.113.7:8443/api/v1/oauth/callback",
])
def test_a_public_http_or_https_callback_url_is_accepted(url):
    accepted(OAUTH_CALLBACK_URL=url)


# --- good values -----------------------------------------------------------------------------------------------


def test_good_values_pass_the_deploy_checks_at_warning_level():
    done = run("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_good_values_are_the_settings_in_force():
    script = ("from django.conf import settings as s; "
              "print(s.DEBUG, s.ALLOWED_HOSTS, s.OAUTH_CALLBACK_URL, len(s.FERNET_KEYS), "
              "s.SECRET_KEY == s.SIMPLE_JWT['SIGNING_KEY'])")
    done = run("-c", f"import django; django.setup(); {script}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "['hub.example.com',", "'.hub.example.com']",
                                   GOOD["OAUTH_CALLBACK_URL"], "2", "True"]
