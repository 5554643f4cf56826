"""/healthz and /readyz. Redis is stopped for real: a private redis-server on a free port (never the
shared one), named by this test's cache and broker settings, stopped and started again."""
import shutil
import socket
import subprocess
import time

import pytest

from integrations_site.celery import app as celery_app
from tests.helpers import celery_broker

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, "redis-server exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def redis_cache(url: str) -> dict:
    return {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}}}


@pytest.fixture
def on_private_redis(settings, private_redis):
    """The cache and the broker of this process both on the private Redis."""
    settings.CACHES = redis_cache(private_redis.url)
    settings.CELERY_BROKER_URL = private_redis.url
    with celery_broker(private_redis.url):
        yield private_redis


def ready(client):
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


# --- /healthz ----------------------------------------------------------------------------------------------------


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_healthz_refuses_other_methods_with_the_envelope(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


# --- /readyz -----------------------------------------------------------------------------------------------------


def test_readyz_is_200_when_database_cache_and_broker_answer(client, db, on_private_redis):
    status, body = ready(client)
    assert status == 200, body
    assert body["status"] == "ok" and "down" not in body
    assert {name: (c["status"], c["service"]) for name, c in body["components"].items()} == {
        "database": ("ok", "database"), "cache": ("ok", "redis"), "broker": ("ok", "redis"),
    }
    assert all(isinstance(c["latency_ms"], int) for c in body["components"].values())


def test_readyz_is_503_naming_redis_while_redis_is_stopped_and_200_once_it_is_back(client, db, on_private_redis):
    assert ready(client)[0] == 200
    on_private_redis.stop()

    status, body = ready(client)
    assert status == 503, body
    assert body["status"] == "unavailable"
    assert body["down"] == ["redis"]
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["cache"]["status"] == "down"
    assert body["components"]["broker"]["status"] == "down"
    assert body["components"]["cache"]["error"]

    on_private_redis.start()
    deadline = time.monotonic() + 15
    while (answer := ready(client))[0] != 200:  # pooled connections from before the restart are dropped on use
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    assert "down" not in answer[1]


def test_readyz_checks_the_broker_the_celery_app_uses(client, db, settings, private_redis):
    """Cache on a live Redis, broker on the private one: stopping it downs the broker alone."""
    settings.CELERY_BROKER_URL = private_redis.url
    with celery_broker(private_redis.url):
        assert celery_app.conf.broker_url == private_redis.url
        assert ready(client)[0] == 200
        private_redis.stop()
        status, body = ready(client)
    assert status == 503, body
    assert body["components"]["cache"]["status"] == "ok"
    assert body["components"]["broker"]["status"] == "down"
    assert body["down"] == ["redis"]


def test_a_component_that_hangs_is_down_within_the_readiness_timeout(client, db, settings):
    """A cache that accepts the connection and never answers: /readyz does not wait for its socket timeout."""
    settings.READYZ_TIMEOUT = 0.5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nothing ever answers
        settings.CACHES = {"default": {
            "BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 5, "SOCKET_TIMEOUT": 5},
        }}
        started = time.monotonic()
        status, body = ready(client)
        took = time.monotonic() - started
    assert status == 503, body
    assert body["components"]["cache"] == {**body["components"]["cache"], "status": "down", "error": "TimeoutError"}
    assert took < 2.5, f"/readyz took {took:.1f}s"


def test_non_redis_backends_are_named_as_such(client, db, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.CELERY_BROKER_URL = "memory://"
    with celery_broker("memory://"):
        status, body = ready(client)
    assert status == 200, body
    assert (body["components"]["cache"]["service"], body["components"]["broker"]["service"]) == ("cache", "broker")
