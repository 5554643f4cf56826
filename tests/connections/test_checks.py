"""Health checks behind the API: the state machine, the dispatcher, bulk runs, sweep and prune."""
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections import tasks
from connections.models import ConnectionCheck, Integration
from connections.services import checks, credential_set, health, probes, queueing, schedule
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


# --- the state machine ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("success", "latency", "failures", "expected"),
    [
        (True, 10, 0, "healthy"),
        (True, 2001, 0, "degraded"),
        (True, None, 0, "healthy"),
        (False, None, 1, "degraded"),
        (False, None, 2, "degraded"),
        (False, None, 3, "unhealthy"),
        (False, None, 7, "unhealthy"),
    ],
)
def test_next_health_state_follows_budget_and_threshold(settings, success, latency, failures, expected):
    settings.HEALTH_FAILURE_THRESHOLD = 3
    settings.HEALTH_LATENCY_BUDGET_MS = 2000

    assert health.next_health_state(success=success, latency_ms=latency, consecutive_failures=failures) == expected


def test_failure_threshold_is_a_setting(settings):
    settings.HEALTH_FAILURE_THRESHOLD = 5

    assert health.next_health_state(success=False, latency_ms=None, consecutive_failures=4) == "degraded"
    assert health.next_health_state(success=False, latency_ms=None, consecutive_failures=5) == "unhealthy"


def test_recorded_results_move_health_and_audit_only_transitions(integration):
    ok = probes.ProbeResult(success=True, status_code=200, latency_ms=5)
    bad = probes.ProbeResult(success=False, error_code="TIMEOUT", error_message="slow")

    for result in (ok, ok, bad, bad, bad, bad, ok):
        checks.checks_record(results={integration.pk: result}, kind="health")

    integration.refresh_from_db()
    assert integration.health_state == "healthy" and integration.consecutive_failures == 0
    assert integration.status == "connected" and integration.last_error == {}
    transitions = [
        (e.changes["health_state"]["from"], e.changes["health_state"]["to"])
        for e in AuditEvent.objects.filter(action="integration.health_changed").order_by("created_at", "id")
    ]
    assert transitions == [
        ("unknown", "healthy"), ("healthy", "degraded"), ("degraded", "unhealthy"), ("unhealthy", "healthy"),
    ]
    assert ConnectionCheck.objects.filter(integration=integration, kind="health").count() == 7


def test_a_check_keeps_a_disabled_integration_disabled(integration):
    Integration.objects.filter(pk=integration.pk).update(status="disabled")

    checks.checks_record(results={integration.pk: probes.ProbeResult(success=True, latency_ms=1)}, kind="test")

    integration.refresh_from_db()
    assert integration.status == "disabled" and integration.health_state == "healthy"


# --- the dispatcher -----------------------------------------------------------------------------------------------


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


# --- running checks in bulk -----------------------------------------------------------------------------------------


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


def test_a_result_the_batch_cannot_write_is_left_out_and_the_others_are_recorded(
    tenant, other_tenant, provider, caplog
):
    """Whatever still breaks the batch's statements (here a latency past every integer column, on both
    databases), the batch is written row by row and only that integration's check is missing."""
    poisoned = IntegrationFactory(tenant=tenant, provider=provider, name="Poisoned")
    others = [IntegrationFactory(tenant=other_tenant, provider=provider, name=f"Other {k}") for k in range(3)]
    results = {i.pk: probes.ProbeResult(success=True, status_code=200, latency_ms=12, attempts=1) for i in others}
    results[poisoned.pk] = probes.ProbeResult(success=True, status_code=200, latency_ms=2**64, attempts=1)

    with caplog.at_level("ERROR", logger="connections"):
        written = checks.checks_record(results=results, kind="health")

    assert {c.integration_id for c in written} == {i.pk for i in others}
    assert set(ConnectionCheck.objects.values_list("integration_id", flat=True)) == {i.pk for i in others}
    assert set(Integration.objects.filter(pk__in=[i.pk for i in others]).values_list("health_state", flat=True)) == {
        "healthy"}
    assert Integration.objects.get(pk=poisoned.pk).health_state == "unknown"
    dropped = [r.getMessage() for r in caplog.records if "record_dropped" in r.getMessage()]
    assert len(dropped) == 1 and f"integration={poisoned.pk}" in dropped[0]


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


# --- queued checks, sweep and prune --------------------------------------------------------------------------------


def aged(check: ConnectionCheck, **delta) -> ConnectionCheck:
    ConnectionCheck.objects.filter(pk=check.pk).update(created_at=timezone.now() - timedelta(**delta))
    return check


def new_check(integration, **fields) -> ConnectionCheck:
    return ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, **fields)


def test_prune_deletes_only_checks_older_than_the_retention(integration, settings):
    settings.CHECK_RETENTION_DAYS = 30
    old = aged(new_check(integration, success=True), days=31)
    recent = aged(new_check(integration, success=True), days=29)
    today = new_check(integration, success=False)

    assert checks.checks_prune() == 1

    assert set(ConnectionCheck.objects.values_list("pk", flat=True)) == {recent.pk, today.pk}
    assert not ConnectionCheck.objects.filter(pk=old.pk).exists()
    settings.CHECK_RETENTION_DAYS = 10
    assert checks.checks_prune() == 1
    assert list(ConnectionCheck.objects.values_list("pk", flat=True)) == [today.pk]


def test_sweep_requeues_only_checks_left_queued_too_long(integration, settings, sent_tasks):
    settings.QUEUED_CHECK_SWEEP_SECONDS = 120
    requeued = sent_tasks[queueing.RUN_CONNECTION_CHECK]
    stale = aged(new_check(integration, state="queued", success=None), minutes=10)
    aged(new_check(integration, state="completed", success=True), minutes=10)
    new_check(integration, state="queued", success=None)

    assert checks.queued_checks_sweep() == 1

    assert requeued == [str(stale.pk)]


def test_connection_test_queue_hands_the_check_to_the_worker_after_commit(
    integration, sent_tasks, django_capture_on_commit_callbacks
):
    sent = sent_tasks[queueing.RUN_CONNECTION_CHECK]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)
    assert check.state == "queued" and not sent
    for callback in callbacks:
        callback()

    assert sent == [str(check.pk)]


def test_a_broker_failure_while_queueing_does_not_fail_the_caller(integration, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    sent_tasks.broker_down = True

    with django_capture_on_commit_callbacks(execute=True):
        check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)

    assert ConnectionCheck.objects.get(pk=check.pk).state == "queued"  # the sweep picks it up later


def test_executing_an_unknown_or_finished_check_is_a_no_op(integration):
    done = new_check(integration, state="completed", success=True)

    assert checks.connection_check_execute(check_id=done.pk) is None
    assert checks.connection_check_execute(check_id="00000000-0000-0000-0000-000000000000") is None
    done.refresh_from_db()
    assert done.state == "completed"


def test_the_worker_task_completes_a_queued_check(integration, httpserver):
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), test_endpoint="/ping", retry_count=0
    )
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)

    tasks.run_connection_check(str(check.pk))
    tasks.run_connection_check(str(check.pk))

    check.refresh_from_db()
    assert check.state == "completed" and check.success is True and check.finished_at is not None
    assert len(httpserver.log) == 1


def test_a_check_left_running_by_a_lost_worker_runs_again_and_is_swept(integration, httpserver, settings,
                                                                         sent_tasks):
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), test_endpoint="/ping", retry_count=0
    )
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    recent = new_check(integration, state="running", success=None, started_at=timezone.now())
    lost = new_check(integration, state="running", success=None,
                     started_at=timezone.now() - timedelta(seconds=checks.RUNNING_STALE_SECONDS + 60))
    aged(lost, seconds=checks.RUNNING_STALE_SECONDS + 60)
    aged(recent, seconds=checks.RUNNING_STALE_SECONDS + 60)
    requeued = sent_tasks[queueing.RUN_CONNECTION_CHECK]

    assert checks.queued_checks_sweep() == 1
    assert requeued == [str(lost.pk)]
    assert checks.connection_check_execute(check_id=recent.pk) is None  # still in a worker's hands
    assert checks.connection_check_execute(check_id=lost.pk) is not None

    lost.refresh_from_db()
    assert lost.state == "completed" and lost.success is True


# --- probing ---------------------------------------------------------------------------------------------------------


def test_an_absolute_test_endpoint_stands_alone(integration):
    integration.test_endpoint = "https://status.example.org/health"

    assert probes.endpoint_url(integration, integration.test_endpoint) == "https://status.example.org/health"
    integration.api_base_url = "https://api.example.com/v2/"
    assert probes.endpoint_url(integration, "/ping") == "https://api.example.com/v2/ping"
    assert probes.endpoint_url(integration, "") == "https://api.example.com/v2/"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2, 3, 4, 5]", [1, 2, 3]),
        (b'{"a": 1}', {"a": 1}),
        (b"not json", None),
        (b"\xff\xfe", None),
        (json.dumps(["y" * 3000]).encode(), {"truncated": True}),
    ],
)
def test_sample_is_small_json_or_nothing(body, expected):
    assert probes.make_sample(body) == expected


def test_a_refused_url_is_recorded_as_url_not_allowed_without_a_request(integration, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    Integration.objects.filter(pk=integration.pk).update(api_base_url="http://127.0.0.1:9", retry_count=0)
    integration.refresh_from_db()

    check = checks.connection_test_run(integration=integration, actor=SYSTEM)

    assert check.error_code == "URL_NOT_ALLOWED" and check.success is False and check.status_code is None


@pytest.mark.django_db(transaction=True)
def test_a_queued_check_runs_even_while_its_integration_row_is_locked(integration):
    """Claiming the check locks the check row only; a health check recording at that moment must not hide it."""
    Integration.objects.filter(pk=integration.pk).update(api_base_url="")  # NOT_CONFIGURED: no network needed
    check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                list(Integration.objects.select_for_update().filter(pk=integration.pk))
                locked.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(timeout=10)
    threading.Timer(0.5, release.set).start()

    done = checks.connection_check_execute(check_id=check.pk)
    holder.join(timeout=10)

    assert done is not None
    check.refresh_from_db()
    assert check.state == "completed" and check.error_code == "NOT_CONFIGURED"
