"""Rate limits per endpoint family: headers on every answer, 429 past the limit, who is counted.

The limits are lowered per test with the ``settings`` fixture; the count lives
in the shared cache (Redis in the test settings), keyed by family, caller and
minute. Callers are fresh rows (UUID keys), so no test sees another's count.
The "search" family is configured (RATE_LIMIT_SEARCH) but has no endpoint yet,
so it has no test here.
"""
import time
import uuid

import pytest

from audit.services import SYSTEM
from connections.models import Credential
from tenants.choices import Role
from tenants.services import api_key_create
from tests.connections.factories import IntegrationFactory

LIMIT = 3
GENEROUS = "100000/min"


def fresh_window():
    """Sleep past a minute boundary that would fall inside the next few seconds (windows are fixed minutes)."""
    into = time.time() % 60
    if into > 50:
        time.sleep(60 - into + 0.2)


@pytest.fixture
def limits(settings):
    """``limits(family=rate, …)``: every other family stays generous."""

    def set_limits(**rates):
        settings.API_RATE_LIMITS = {
            family: rates.get(family, GENEROUS) for family in ("providers", "integrations", "connections", "search",
                                                               "widgets")
        }
        fresh_window()

    return set_limits


def assert_headers(response, *, limit: int, remaining: int):
    assert response["X-RateLimit-Limit"] == str(limit)
    assert response["X-RateLimit-Remaining"] == str(remaining)
    reset = int(response["X-RateLimit-Reset"])
    now = time.time()
    assert now < reset <= now + 61  # epoch seconds of the window's end
    assert reset % 60 == 0


def assert_throttled(response, *, limit: int):
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert error["message"]
    retry_after = error["details"]["retry_after"]
    assert isinstance(retry_after, int) and 1 <= retry_after <= 60
    assert response["Retry-After"] == str(retry_after)
    assert error["request_id"] == response["X-Request-ID"]
    assert_headers(response, limit=limit, remaining=0)


def exhaust(call, *, limit: int = LIMIT):
    """``limit`` answers that pass with falling Remaining, then a 429."""
    for n in range(limit):
        response = call()
        assert response.status_code < 400, response.content
        assert_headers(response, limit=limit, remaining=limit - n - 1)
    throttled = call()
    assert_throttled(throttled, limit=limit)
    return throttled


# --- each family ----------------------------------------------------------------------------------------------


def test_providers_family_catalog_list_is_limited_with_headers_and_a_429(client_for, limits, provider):
    limits(providers=f"{LIMIT}/min")
    api = client_for(Role.MEMBER.value)
    exhaust(lambda: api.get("/api/v1/catalog/"))


def test_providers_family_covers_the_admin_provider_api_too(client_for, limits, provider):
    limits(providers=f"{LIMIT}/min")
    admin = client_for("super_admin", scoped=True)
    exhaust(lambda: admin.get(f"/api/v1/admin/providers/{provider.slug}/"))


def test_the_admin_provider_test_is_the_connections_family(client_for, limits, provider):
    limits(connections="1/min", providers="1/min")
    admin = client_for("super_admin", scoped=True)
    first = admin.post(f"/api/v1/admin/providers/{provider.slug}/test")
    assert first.status_code != 429, first.content
    assert first["X-RateLimit-Limit"] == "1" and first["X-RateLimit-Remaining"] == "0"
    assert_throttled(admin.post(f"/api/v1/admin/providers/{provider.slug}/test"), limit=1)
    # The providers family was not spent by the tests.
    assert admin.get(f"/api/v1/admin/providers/{provider.slug}/").status_code == 200


def test_integrations_family_list_and_detail_share_one_count(client_for, limits, integration):
    limits(integrations=f"{LIMIT}/min")
    api = client_for(Role.MEMBER.value)
    assert api.get("/api/v1/integrations/").status_code == 200
    assert api.get(f"/api/v1/integrations/{integration.pk}/").status_code == 200
    assert api.get(f"/api/v1/integrations/{integration.pk}/checks/").status_code == 200
    assert_throttled(api.get("/api/v1/integrations/"), limit=LIMIT)


def test_integrations_family_covers_webhook_endpoints(client_for, limits, integration):
    limits(integrations=f"{LIMIT}/min")
    api = client_for(Role.MEMBER.value)
    exhaust(lambda: api.get("/api/v1/webhooks/"))


def test_connections_family_test_and_credentials_share_one_count(client_for, limits, integration):
    limits(connections=f"{LIMIT}/min")
    api = client_for(Role.INTEGRATION_MANAGER.value)
    base = f"/api/v1/integrations/{integration.pk}"
    first = api.put(f"{base}/credentials", {"type": "bearer", "token": "tok-throttle-0123456789"}, format="json")
    assert first.status_code == 200, first.content
    assert_headers(first, limit=LIMIT, remaining=2)
    second = api.post(f"{base}/test")  # no test endpoint: a NOT_CONFIGURED check, still counted
    assert second.status_code == 200, second.content
    assert_headers(second, limit=LIMIT, remaining=1)
    third = api.post(f"{base}/disconnect")
    assert third.status_code == 200, third.content
    assert_headers(third, limit=LIMIT, remaining=0)
    assert_throttled(api.post(f"{base}/test"), limit=LIMIT)
    # Other families of the same tenant are not affected.
    other = api.get(f"{base}/")
    assert other.status_code == 200
    assert other["X-RateLimit-Limit"] == "100000"


def test_a_throttled_call_does_not_run(client_for, limits, integration):
    limits(connections="1/min")
    api = client_for(Role.INTEGRATION_MANAGER.value)
    url = f"/api/v1/integrations/{integration.pk}/credentials"
    assert api.put(url, {"type": "bearer", "token": "tok-first-0123456789"}, format="json").status_code == 200
    refused = api.put(url, {"type": "bearer", "token": "tok-second-0123456789"}, format="json")
    assert_throttled(refused, limit=1)
    assert Credential.objects.get(integration=integration, user__isnull=True).version == 1


def test_widgets_family_status_and_activity_are_limited(client_for, limits, integration):
    limits(widgets=f"{LIMIT}/min")
    api = client_for(Role.MEMBER.value)
    base = f"/api/v1/integrations/{integration.pk}/widgets"
    assert api.get(f"{base}/status").status_code == 200
    assert api.get(f"{base}/activity").status_code == 200
    assert api.get(f"{base}/status").status_code == 200
    assert_throttled(api.get(f"{base}/activity"), limit=LIMIT)
    # The integration's own feed is the integrations family, still open.
    assert api.get(f"/api/v1/integrations/{integration.pk}/activity").status_code == 200


def test_me_connections_are_the_connections_family(client_for, limits, tenant, provider):
    limits(connections="2/min")
    scoped = IntegrationFactory(tenant=tenant, provider=provider, name="Per user", user_scoped=True)
    api = client_for(Role.MEMBER.value)
    exhaust(lambda: api.get(f"/api/v1/me/integrations/{scoped.pk}/connection"), limit=2)


def test_the_limit_comes_from_settings_each_request(client_for, limits, settings, integration):
    limits(integrations="1/min")
    api = client_for(Role.MEMBER.value)
    assert api.get("/api/v1/integrations/").status_code == 200
    assert_throttled(api.get("/api/v1/integrations/"), limit=1)
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": "5/min"}
    allowed = api.get("/api/v1/integrations/")
    assert allowed.status_code == 200
    assert_headers(allowed, limit=5, remaining=2)  # the window's count carries on: 3 of 5


def test_rate_limit_environment_variables_override_the_defaults(monkeypatch):
    import importlib

    import integrations_site.settings.base as base

    monkeypatch.setenv("RATE_LIMIT_PROVIDERS", "7/min")
    monkeypatch.setenv("RATE_LIMIT_SEARCH", "3/min")
    try:
        reloaded = importlib.reload(base)
        assert reloaded.API_RATE_LIMITS["providers"] == "7/min"
        assert reloaded.API_RATE_LIMITS["search"] == "3/min"
        assert reloaded.API_RATE_LIMITS["integrations"] == "200/min"
        assert reloaded.API_RATE_LIMITS["connections"] == "50/min"
        assert reloaded.API_RATE_LIMITS["widgets"] == "100/min"
    finally:
        monkeypatch.delenv("RATE_LIMIT_PROVIDERS")
        monkeypatch.delenv("RATE_LIMIT_SEARCH")
        importlib.reload(base)


def test_unthrottled_paths_carry_no_rate_limit_headers(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


# --- who is counted -------------------------------------------------------------------------------------------


def test_users_of_one_tenant_share_the_tenant_count(client_for, limits, integration):
    limits(integrations="2/min")
    member, manager = client_for(Role.MEMBER.value), client_for(Role.INTEGRATION_MANAGER.value)
    assert member.get("/api/v1/integrations/").status_code == 200
    assert manager.get("/api/v1/integrations/").status_code == 200
    assert_throttled(member.get("/api/v1/integrations/"), limit=2)
    assert_throttled(manager.get("/api/v1/integrations/"), limit=2)


def test_another_tenant_has_its_own_count(client_for, limits, integration):
    limits(integrations="1/min")
    assert client_for(Role.MEMBER.value).get("/api/v1/integrations/").status_code == 200
    assert_throttled(client_for(Role.MEMBER.value).get("/api/v1/integrations/"), limit=1)
    other = client_for("other_tenant").get("/api/v1/integrations/")
    assert other.status_code == 200
    assert_headers(other, limit=1, remaining=0)


def test_each_api_key_has_its_own_count_apart_from_the_tenant(client_for, limits, tenant, integration):
    from rest_framework.test import APIClient

    limits(integrations="2/min")
    _, raw_one = api_key_create(actor=SYSTEM, tenant=tenant, name="one", role=Role.MEMBER.value)
    _, raw_two = api_key_create(actor=SYSTEM, tenant=tenant, name="two", role=Role.MEMBER.value)
    key_one, key_two = APIClient(), APIClient()
    key_one.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_one}")
    key_two.credentials(HTTP_X_API_KEY=raw_two)

    exhaust(lambda: key_one.get("/api/v1/integrations/"), limit=2)
    # The second key, and the tenant's users, still have their whole allowance.
    second = key_two.get("/api/v1/integrations/")
    assert second.status_code == 200
    assert_headers(second, limit=2, remaining=1)
    user = client_for(Role.MEMBER.value).get("/api/v1/integrations/")
    assert user.status_code == 200
    assert_headers(user, limit=2, remaining=1)


def test_an_api_key_request_reads_its_key_and_counts_itself_in_one_round_trip(limits, tenant, integration,
                                                                               monkeypatch):
    """On Redis the cached key and the rate count are one round trip (one script); every cache counts once."""
    from django.core.cache import caches
    from django_redis.cache import RedisCache
    from redis.connection import AbstractConnection
    from rest_framework.test import APIClient

    limits(integrations="3/min")
    _, raw = api_key_create(actor=SYSTEM, tenant=tenant, name="one", role=Role.MEMBER.value)
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw)
    assert api.get(f"/api/v1/integrations/{integration.pk}/").status_code == 200  # the key is now cached
    sent = []
    send = AbstractConnection.send_packed_command
    monkeypatch.setattr(AbstractConnection, "send_packed_command",
                        lambda self, command, check_health=True: sent.append(command) or send(self, command,
                                                                                          check_health))
    second = api.get(f"/api/v1/integrations/{integration.pk}/")
    assert second.status_code == 200
    assert_headers(second, limit=3, remaining=1)  # counted once, not by the lookup and the throttle both
    if isinstance(caches["default"], RedisCache):
        assert len(sent) == 1
    assert_headers(api.get(f"/api/v1/integrations/{integration.pk}/"), limit=3, remaining=0)
    assert_throttled(api.get(f"/api/v1/integrations/{integration.pk}/"), limit=3)


def test_an_api_key_far_from_its_limit_costs_no_round_trip_once_its_key_is_kept_here(limits, tenant, integration,
                                                                                    monkeypatch):
    """This process's copy of the key (integrations_site/nearcache.py) and the places reserved ahead: on Redis
    most requests of a busy key make no round trip at all; the answers are the same."""
    from django.core.cache import caches
    from django_redis.cache import RedisCache
    from redis.connection import AbstractConnection
    from rest_framework.test import APIClient

    from tenants.authentication import NEAR

    limits(integrations=GENEROUS)
    _, raw = api_key_create(actor=SYSTEM, tenant=tenant, name="busy", role=Role.MEMBER.value)
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=raw)
    on_redis = isinstance(caches["default"], RedisCache)
    assert NEAR.wait_listening() is on_redis
    assert api.get(f"/api/v1/integrations/{integration.pk}/").status_code == 200  # kept here, places reserved
    sent = []
    send = AbstractConnection.send_packed_command
    monkeypatch.setattr(AbstractConnection, "send_packed_command",
                        lambda self, command, check_health=True: sent.append(command) or send(self, command,
                                                                                          check_health))
    for n in range(2, 12):
        answer = api.get(f"/api/v1/integrations/{integration.pk}/")
        assert answer.status_code == 200 and answer.json()["id"] == str(integration.pk)
        assert_headers(answer, limit=100000, remaining=100000 - n)
    if on_redis:
        assert sent == []


def test_places_are_reserved_ahead_far_from_the_limit_and_each_is_unique_across_processes(settings, monkeypatch):
    """Far from the limit a process reserves up to RATE_LIMIT_RESERVE_MAX places with one count; another
    process reserves the next ones: each answer's Remaining is its own place, on every cache."""
    from django.core.cache import cache

    from integrations_site.api import throttles

    limit = 100_000
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": f"{limit}/min"}
    key = f"test:{uuid.uuid4().hex}"
    fresh_window()
    stored = throttles._window("integrations", key, None)[3]
    first = [throttles.hit("integrations", key)[1].remaining for _ in range(100)]
    assert first == list(range(limit - 1, limit - 101, -1))  # one process: exact, as if counted one by one
    assert cache.get(stored) == 2 * settings.RATE_LIMIT_RESERVE_MAX  # two counts made, for 100 requests

    mine = throttles._reservations
    monkeypatch.setattr(throttles, "_reservations", throttles._Reservations())  # another process
    assert throttles.hit("integrations", key)[1].remaining == limit - 129  # past every place reserved so far
    monkeypatch.setattr(throttles, "_reservations", mine)
    assert throttles.hit("integrations", key)[1].remaining == limit - 101  # the next of its own


def test_near_the_limit_every_request_is_counted_and_two_processes_allow_exactly_the_limit(settings, monkeypatch):
    """Two processes answering a caller in turn: every place up to the limit is given once, none past it."""
    from django.core.cache import cache

    from integrations_site.api import throttles

    limit = 1000  # reservations of 3 places, then 2, then (the last 512) every request counted as it comes
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": f"{limit}/min"}
    key = f"test:{uuid.uuid4().hex}"
    fresh_window()
    processes = [throttles._Reservations(), throttles._Reservations()]
    answers = []
    for n in range(1500):
        monkeypatch.setattr(throttles, "_reservations", processes[n % 2])
        answers.append(throttles.hit("integrations", key))
    allowed = [state.remaining for ok, state in answers if ok]
    assert len(allowed) == limit
    assert sorted(allowed) == list(range(limit))  # each allowed request had a place of its own
    assert all(state.headers()["X-RateLimit-Remaining"] == "0" for ok, state in answers if not ok)
    assert limit < cache.get(throttles._window("integrations", key, None)[3]) <= limit + 2


def test_a_spent_window_is_refused_from_memory_until_it_ends(settings, monkeypatch):
    from integrations_site.api import throttles

    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": "1/min"}
    key = f"test:{uuid.uuid4().hex}"
    fresh_window()
    counts = []
    count = throttles._count
    monkeypatch.setattr(throttles, "_count", lambda *args: counts.append(args) or count(*args))
    assert throttles.hit("integrations", key)[0] is True
    assert throttles.hit("integrations", key)[0] is False  # the count that finds the window spent
    for _ in range(5):
        allowed, state = throttles.hit("integrations", key)
        assert allowed is False and state.headers()["X-RateLimit-Remaining"] == "0"
    assert len(counts) == 2
    now = time.time()
    assert throttles.hit("integrations", key, now=now + 60)[0] is True  # the next window opens again
    assert len(counts) == 3


def test_reservations_off_count_every_request_in_the_shared_cache(settings):
    from django.core.cache import cache

    from integrations_site.api import throttles

    settings.RATE_LIMIT_RESERVE_MAX = 1
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": "10000/min"}
    key = f"test:{uuid.uuid4().hex}"
    fresh_window()
    for _ in range(5):
        throttles.hit("integrations", key)
    assert cache.get(throttles._window("integrations", key, None)[3]) == 5


def test_a_refused_request_still_counts_so_hammering_does_not_reopen_the_window(client_for, limits, integration):
    limits(integrations="1/min")
    api = client_for(Role.MEMBER.value)
    assert api.get("/api/v1/integrations/").status_code == 200
    for _ in range(3):
        assert_throttled(api.get("/api/v1/integrations/"), limit=1)


def test_the_next_window_opens_again(client_for, settings, integration):
    """The window is the clock's minute: a count from a past minute does not limit the next one."""
    from integrations_site.api.throttles import hit

    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "integrations": "1/min"}
    key = f"tenant:{integration.tenant_id}"
    now = time.time()
    past = now - 60
    assert hit("integrations", key, now=past)[0] is True
    allowed, state = hit("integrations", key, now=past)
    assert allowed is False and state.remaining == -1
    allowed, state = hit("integrations", key, now=now)
    assert allowed is True and state.headers()["X-RateLimit-Remaining"] == "0"


# --- two web processes, one count -----------------------------------------------------------------------------

SHARED_REDIS_DB = 7  # a Redis database of this test's own, flushed before and after


def _shared_redis_url() -> str:
    import os
    from urllib.parse import urlsplit, urlunsplit

    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return urlunsplit(urlsplit(base)._replace(path=f"/{SHARED_REDIS_DB}"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, dict, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, dict(answer.headers), answer.read()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_servers_on_one_store_share_the_limit_and_the_request_metrics(tenant, tmp_path):
    """Two gunicorn masters (two workers each) on one Redis database, or in the embedded pass on one
    file cache folder: the sum allowed is the limit.

    Both also share a PROMETHEUS_MULTIPROC_DIR, so /metrics of either counts every worker's requests.
    """
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import redis
    from django.core.cache import cache
    from prometheus_client.parser import text_string_to_metric_families
    from rest_framework_simplejwt.tokens import RefreshToken

    from tenants.authentication import TENANT_CLAIM
    from tests.conftest import make_user
    from tests.helpers import current_database_url, embedded_broker

    limit, sent = 10, 24
    # The pass's shared store: one Redis database, or (embedded pass) the file cache under VAR_DIR.
    embedded = embedded_broker()
    redis_url = "" if embedded else _shared_redis_url()
    if embedded:
        cache.clear()
    else:
        if not embedded:
            redis.Redis.from_url(redis_url).flushdb()
    (tmp_path / "ops_two_process_settings.py").write_text(
        "from integrations_site.settings.test import *  # noqa: F401,F403\n"
        f"API_RATE_LIMITS = {{**API_RATE_LIMITS, 'integrations': '{limit}/min'}}  # noqa: F405\n"
    )
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    user = make_user(Role.MEMBER.value, tenant, "two-process-member")
    refresh = RefreshToken.for_user(user)
    refresh[TENANT_CLAIM] = str(tenant.pk)
    token = str(refresh.access_token)

    root = Path(__file__).resolve().parent.parent.parent
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    servers = []
    try:
        for n in range(2):
            port = _free_port()
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "ops_two_process_settings",
                "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
                "DATABASE_URL": current_database_url(),
                "REDIS_URL": redis_url,
                "CELERY_BROKER_URL": redis_url or "filesystem://",
                "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": "2",
            }
            log = open(tmp_path / f"gunicorn-{n}.log", "wb")  # noqa: SIM115 (closed after Popen)
            proc = subprocess.Popen(
                [gunicorn, "-c", str(root / "gunicorn.conf.py"), "integrations_site.wsgi"],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            log.close()
            servers.append((proc, f"http://127.0.0.1:{port}"))

        def logs() -> str:
            return "\n".join((tmp_path / f"gunicorn-{n}.log").read_text(errors="replace")[-5000:] for n in range(2))

        deadline = time.monotonic() + 30
        for proc, base in servers:
            while True:
                assert proc.poll() is None, f"gunicorn exited:\n{logs()}"
                try:
                    if _get(f"{base}/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"gunicorn did not start:\n{logs()}"
                time.sleep(0.2)

        fresh_window()
        urls = [f"{servers[i % 2][1]}/api/v1/integrations/" for i in range(sent)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda url: (url, _get(url, token)), urls))

        statuses = [status for _, (status, _, _) in answers]
        assert statuses.count(200) == limit, f"{statuses}\n{logs()}"
        assert statuses.count(429) == sent - limit
        for base in (servers[0][1], servers[1][1]):
            assert any(url.startswith(base) and status == 429 for url, (status, _, _) in answers)
        remaining = sorted(int(headers["X-RateLimit-Remaining"]) for _, (status, headers, _) in answers
                           if status == 200)
        assert remaining == list(range(limit))  # each allowed request saw its own place in one count
        assert all(headers["X-RateLimit-Limit"] == str(limit) for _, (_, headers, _) in answers)

        # Every worker of both servers is in the request counter either server exposes.
        status, _, body = _get(f"{servers[1][1]}/metrics")
        assert status == 200
        counted: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "http_requests_total" and sample.labels.get("route") == "/api/v1/integrations/":
                    assert sample.labels["method"] == "GET"
                    counted[sample.labels["status"]] = counted.get(sample.labels["status"], 0) + sample.value
        assert counted == {"200": limit, "429": sent - limit}, counted
    finally:
        for proc, _ in servers:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=5)
        if not embedded:
            redis.Redis.from_url(redis_url).flushdb()
