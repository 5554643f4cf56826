"""Scheduled health checks: the dispatcher claims what is due and queues it in chunks; a chunk runs in bulk."""
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.services import SYSTEM
from connections.models import ConnectionCheck, Integration
from connections.services import credential_set, queueing, schedule
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def queued_ids(sent_tasks):
    """What the dispatcher hands to the queue: the id chunks sent as ``run_health_checks``, per thread."""
    seen: dict[int, list[list[str]]] = {}
    lock = threading.Lock()

    def record(name, args):
        if name == queueing.RUN_HEALTH_CHECKS:
            with lock:
                seen.setdefault(threading.get_ident(), []).append(list(args[0]))

    sent_tasks.on_send = record
    return seen


def flat(seen: dict) -> list[str]:
    return [i for chunks in seen.values() for chunk in chunks for i in chunk]


# --- the dispatcher ----------------------------------------------------------------------------------------------


def test_dispatcher_claims_only_due_rows_and_moves_them_by_the_interval_with_jitter(
    tenant, provider, queued_ids, django_capture_on_commit_callbacks
):
    now = timezone.now()
    make = lambda name, **kw: IntegrationFactory(  # noqa: E731
        tenant=tenant, provider=provider, name=name, health_check_interval_seconds=100, **kw
    )
    never = make("never checked")
    past = make("past due", next_check_at=now - timedelta(minutes=5))
    on_time = make("due now", next_check_at=now)
    future = make("future", next_check_at=now + timedelta(minutes=5))
    disabled = make("disabled", status="disabled", next_check_at=now - timedelta(minutes=5))
    deleted = make("deleted", deleted_at=now, next_check_at=now - timedelta(minutes=5))
    before = {i.pk: i.next_check_at for i in (future, disabled, deleted)}

    with django_capture_on_commit_callbacks(execute=True):
        claimed = schedule.health_checks_dispatch(now=now)

    assert claimed == 3
    assert sorted(flat(queued_ids)) == sorted(str(i.pk) for i in (never, past, on_time))
    for row in Integration.objects.filter(pk__in=[never.pk, past.pk, on_time.pk]):
        assert now + timedelta(seconds=100) <= row.next_check_at <= now + timedelta(seconds=110)
    for row in Integration.objects.filter(pk__in=before):
        assert row.next_check_at == before[row.pk]

    with django_capture_on_commit_callbacks(execute=True):
        assert schedule.health_checks_dispatch(now=now) == 0  # nothing is due twice
    assert len(flat(queued_ids)) == 3


def test_dispatcher_works_through_batches_and_queues_chunks(
    tenant, provider, settings, queued_ids, django_capture_on_commit_callbacks
):
    settings.HEALTH_DISPATCH_BATCH = 3
    settings.HEALTH_TASK_CHUNK = 2
    due = [IntegrationFactory(tenant=tenant, provider=provider) for _ in range(8)]

    with django_capture_on_commit_callbacks(execute=True):
        assert schedule.health_checks_dispatch() == 8

    chunks = [chunk for per_thread in queued_ids.values() for chunk in per_thread]
    assert all(1 <= len(chunk) <= 2 for chunk in chunks)
    assert sorted(flat(queued_ids)) == sorted(str(i.pk) for i in due)


def test_dispatcher_leaves_integrations_that_cannot_be_checked_until_they_can(
    tenant, queued_ids, django_capture_on_commit_callbacks
):
    keyed = ProviderFactory(slug="keyed-api", auth_type="api_key")
    open_api = ProviderFactory(slug="open-api", auth_type="none")
    waiting = IntegrationFactory(tenant=tenant, provider=keyed, name="no key yet")
    user_only = IntegrationFactory(tenant=tenant, provider=keyed, name="user scoped", user_scoped=True)
    no_url = IntegrationFactory(tenant=tenant, provider=open_api, name="no url", api_base_url="")
    ready = IntegrationFactory(tenant=tenant, provider=open_api, name="ready")

    with django_capture_on_commit_callbacks(execute=True):
        assert schedule.health_checks_dispatch() == 1
    assert flat(queued_ids) == [str(ready.pk)]
    for row in Integration.objects.filter(pk__in=[waiting.pk, user_only.pk, no_url.pk]):
        assert row.next_check_at is None and row.health_state == "unknown"
    assert not ConnectionCheck.objects.filter(integration__in=[waiting, user_only, no_url]).exists()

    credential_set(actor=SYSTEM, integration=waiting, credential_type="api_key", data={"api_key": "k" * 20})
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule.health_checks_dispatch() == 1  # due at once, not an interval later
    assert flat(queued_ids)[-1] == str(waiting.pk)


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_claim_the_same_row(tenant, provider, settings, queued_ids):
    settings.HEALTH_DISPATCH_BATCH = 7
    due = {str(IntegrationFactory(tenant=tenant, provider=provider).pk) for _ in range(120)}
    IntegrationFactory(tenant=tenant, provider=provider, next_check_at=timezone.now() + timedelta(hours=1))
    start = threading.Barrier(2)
    errors, claimed = [], {}

    def dispatcher():
        try:
            start.wait(timeout=10)
            claimed[threading.get_ident()] = schedule.health_checks_dispatch()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sum(claimed.values()) == len(due)
    per_thread = [set(flat({ident: chunks})) for ident, chunks in queued_ids.items()]
    all_ids = flat(queued_ids)
    assert len(all_ids) == len(set(all_ids)), "a row was claimed twice"
    assert set(all_ids) == due
    if len(per_thread) == 2:
        assert not per_thread[0] & per_thread[1]


# --- running checks in bulk --------------------------------------------------------------------------------------


def far_side(tenant, provider, httpserver, n: int, tag: str, **fields) -> list[Integration]:
    base = httpserver.url_for("/").rstrip("/")
    return [
        IntegrationFactory(tenant=tenant, provider=provider, name=f"{tag} {k}", api_base_url=base,
                           test_endpoint="/ping", retry_count=0, timeout_seconds=5, **fields)
        for k in range(n)
    ]


def test_health_checks_run_writes_one_health_check_per_integration(tenant, provider, httpserver):
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    httpserver.expect_request("/broken").respond_with_data("no", status=503)
    good = far_side(tenant, provider, httpserver, 3, "good")
    bad = far_side(tenant, provider, httpserver, 1, "bad")[0]
    Integration.objects.filter(pk=bad.pk).update(test_endpoint="/broken")
    disabled = far_side(tenant, provider, httpserver, 1, "off", status="disabled")[0]

    ran = schedule.health_checks_run(integration_ids=[str(i.pk) for i in (*good, bad, disabled)])

    assert ran == 4
    rows = ConnectionCheck.objects.filter(kind="health")
    assert rows.count() == 4 and not rows.filter(integration=disabled).exists()
    assert {r.integration_id for r in rows.filter(success=True)} == {i.pk for i in good}
    assert rows.get(integration=bad).error_code == "UNEXPECTED_STATUS"
    states = dict(Integration.objects.filter(pk__in=[i.pk for i in (*good, bad)]).values_list("pk", "health_state"))
    assert states == {**{i.pk: "healthy" for i in good}, bad.pk: "degraded"}
    assert len(httpserver.log) == 4


HOSTILE_ANSWERS = {
    "/nul": b'{"ok": true, "note": "a\\u0000b", "k\\u0000": [1]}',  # JSON escapes of NUL
    "/deep": b"[" * 100_000 + b"]" * 100_000,
    "/nan": b'{"ok": NaN}',
}


def test_hostile_answers_of_one_tenant_do_not_stop_the_other_tenants_checks(
    tenant, other_tenant, provider, httpserver
):
    """Scheduled checks of many tenants are written together: answers holding NUL, nested 100,000 deep or
    holding NaN are bounded before they are stored, and every integration's check is recorded."""
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    for path, body in HOSTILE_ANSWERS.items():
        httpserver.expect_request(path).respond_with_data(body, content_type="application/json")
    hostile = {path: far_side(tenant, provider, httpserver, 1, path)[0] for path in HOSTILE_ANSWERS}
    for path, integration in hostile.items():
        Integration.objects.filter(pk=integration.pk).update(test_endpoint=path)
    others = far_side(other_tenant, provider, httpserver, 3, "other")

    ran = schedule.health_checks_run(integration_ids=[str(i.pk) for i in (*hostile.values(), *others)])

    assert ran == 6
    rows = {r.integration_id: r for r in ConnectionCheck.objects.filter(kind="health")}
    assert len(rows) == 6 and all(r.success for r in rows.values())
    assert rows[hostile["/nul"].pk].sample == {"ok": True, "note": "ab", "k": [1]}
    assert rows[hostile["/deep"].pk].sample is None and rows[hostile["/nan"].pk].sample is None
    assert set(Integration.objects.filter(pk__in=rows).values_list("health_state", flat=True)) == {"healthy"}


def test_health_checks_run_writes_in_a_fixed_number_of_queries(tenant, provider, httpserver):
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    few = far_side(tenant, provider, httpserver, 2, "few")
    many = far_side(tenant, provider, httpserver, 8, "many")

    with CaptureQueriesContext(connection) as small:
        schedule.health_checks_run(integration_ids=[i.pk for i in few])
    with CaptureQueriesContext(connection) as large:
        schedule.health_checks_run(integration_ids=[i.pk for i in many])

    assert ConnectionCheck.objects.count() == 10
    assert len(large) == len(small)


def test_health_checks_run_with_nothing_live_does_nothing(integration):
    Integration.objects.filter(pk=integration.pk).update(deleted_at=timezone.now())

    assert schedule.health_checks_run(integration_ids=[integration.pk]) == 0
    assert not ConnectionCheck.objects.exists()
