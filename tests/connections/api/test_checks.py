"""Connection tests, check history, health and polling through the API, against real local HTTP servers."""
import json
import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from audit.models import AuditEvent
from audit.services import SYSTEM
from connections.models import ConnectionCheck, Credential, ExternalStatus, Integration, StatusChange
from connections.services import checks, credential_set
from tenants.choices import SUPER_ADMIN, Role
from tests.catalog.factories import ProviderFactory
from tests.connections.factories import IntegrationFactory
from tests.helpers import assert_error
from tests.tenants.factories import TenantFactory

URL = "/api/v1/integrations/"
TA, IM, MB = Role.TENANT_ADMIN.value, Role.INTEGRATION_MANAGER.value, Role.MEMBER.value
LIST_KEYS = {"results", "total", "limit", "offset", "has_more", "next_offset"}
TOKEN = "tok_live_far_side_secret_0001"
API_KEY = "key_live_far_side_secret_0002"


def action_url(integration, name: str) -> str:
    return f"{URL}{integration.pk}/{name}"


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


@pytest.fixture
def api(client_for):
    return client_for(TA)


@pytest.fixture
def far(integration, httpserver):
    """The tenant's integration pointed at the local server: /ping, no retries, 5 s timeout."""
    Integration.objects.filter(pk=integration.pk).update(
        api_base_url=httpserver.url_for("/").rstrip("/"), test_endpoint="/ping", retry_count=0, timeout_seconds=5,
    )
    integration.refresh_from_db()
    return integration


def set_bearer(integration, token: str = TOKEN) -> Credential:
    return credential_set(actor=SYSTEM, integration=integration, credential_type="bearer", data={"token": token})


def post_test(api, integration, **params):
    query = "?async=1" if params.get("async_") else ""
    return api.post(action_url(integration, "test") + query)


# --- POST /test ----------------------------------------------------------------------------------------------


def test_healthy_server_answers_the_contract_shape_and_marks_everything_good(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_json([{"id": n, "name": f"item {n}"} for n in range(10)])
    credential = set_bearer(far)

    response = post_test(api, far)

    assert response.status_code == 200, response.content
    body = response.json()
    assert {"check_id", "success", "status_code", "latency_ms", "error", "tested_at", "sample"} <= set(body)
    assert body["success"] is True and body["status_code"] == 200 and body["error"] is None
    assert isinstance(body["latency_ms"], int) and body["latency_ms"] >= 0
    assert body["tested_at"]
    assert body["sample"] == [{"id": 0, "name": "item 0"}, {"id": 1, "name": "item 1"}, {"id": 2, "name": "item 2"}]
    check = ConnectionCheck.objects.get(pk=body["check_id"])
    assert check.kind == "test" and check.state == "completed" and check.success is True
    far.refresh_from_db()
    credential.refresh_from_db()
    assert far.status == "connected" and far.health_state == "healthy" and far.consecutive_failures == 0
    assert far.last_success_at is not None
    assert credential.status == "active" and credential.last_validated_at is not None
    event = AuditEvent.objects.get(action="integration.tested")
    assert event.target_id == str(far.pk) and event.outcome == "success"
    assert event.changes["check_id"] == body["check_id"]


def test_sample_of_a_large_answer_keeps_at_most_three_items_and_two_kilobytes(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_json(
        {"items": [{"id": n, "blob": "x" * 900} for n in range(10)], "total": 10}
    )

    body = post_test(api, far).json()

    assert body["success"] is True
    sample = body["sample"]
    assert isinstance(sample, dict)
    assert len(json.dumps(sample)) <= 2048
    assert sample == {"items": [{"id": 0, "blob": "x" * 900}, {"id": 1, "blob": "x" * 900}], "total": 10}


def test_sample_of_a_json_object_cuts_its_lists_to_three_items(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_json({"data": list(range(50)), "ok": True})

    body = post_test(api, far).json()

    assert body["sample"] == {"data": [0, 1, 2], "ok": True}


def test_bearer_secret_reaches_the_server_in_the_authorization_header_and_nowhere_else(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    set_bearer(far)

    response = post_test(api, far)

    assert response.status_code == 200
    request, _ = httpserver.log[-1]
    assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
    assert TOKEN not in response.content.decode()
    assert TOKEN not in json.dumps(list(ConnectionCheck.objects.values()), default=str)
    assert TOKEN not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_api_key_secret_is_sent_in_the_configured_header(api, far, httpserver):
    httpserver.expect_request("/ping", headers={"X-Service-Key": API_KEY}).respond_with_json({"ok": True})
    credential_set(actor=SYSTEM, integration=far, credential_type="api_key",
                   data={"api_key": API_KEY, "header_name": "X-Service-Key"})

    response = post_test(api, far)

    assert response.json()["success"] is True, response.json()
    request, _ = httpserver.log[-1]
    assert request.headers.get("X-Service-Key") == API_KEY
    assert "Authorization" not in request.headers
    assert API_KEY not in json.dumps(list(ConnectionCheck.objects.values()), default=str)
    assert API_KEY not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_slow_server_is_a_success_but_degraded(api, far, httpserver, settings):
    settings.HEALTH_LATENCY_BUDGET_MS = 100

    def slow(request):
        time.sleep(0.3)
        return Response(json.dumps({"ok": True}), content_type="application/json")

    httpserver.expect_request("/ping").respond_with_handler(slow)

    body = post_test(api, far).json()

    assert body["success"] is True and body["latency_ms"] >= 300
    far.refresh_from_db()
    assert far.health_state == "degraded" and far.consecutive_failures == 0 and far.status == "connected"


def test_401_is_invalid_credentials_and_marks_credential_and_integration_as_error(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_json({"error": "bad token"}, status=401)
    credential = set_bearer(far)

    body = post_test(api, far).json()

    assert body["success"] is False and body["status_code"] == 401
    assert body["error"]["code"] == "INVALID_CREDENTIALS" and body["error"]["message"]
    assert body["sample"] is None
    credential.refresh_from_db()
    far.refresh_from_db()
    assert credential.status == "error" and credential.validation_error
    assert credential.last_validated_at is None
    assert far.status == "error" and far.consecutive_failures == 1
    assert AuditEvent.objects.get(action="integration.tested").outcome == "failure"


def test_500_is_unexpected_status(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_data("boom", status=500)

    body = post_test(api, far).json()

    assert body["success"] is False and body["status_code"] == 500
    assert body["error"]["code"] == "UNEXPECTED_STATUS"
    far.refresh_from_db()
    assert far.status == "error" and far.last_error["code"] == "UNEXPECTED_STATUS"


def test_500_then_200_succeeds_with_one_retry(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(retry_count=1)
    httpserver.expect_oneshot_request("/ping").respond_with_data("boom", status=500)
    httpserver.expect_request("/ping").respond_with_json({"ok": True})

    body = post_test(api, far).json()

    assert body["success"] is True and body["status_code"] == 200
    assert body["attempts"] == 2
    assert len(httpserver.log) == 2


def test_server_slower_than_the_timeout_is_a_timeout(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(timeout_seconds=1)

    def stuck(request):
        time.sleep(2)
        return Response("late")

    httpserver.expect_request("/ping").respond_with_handler(stuck)

    started = time.monotonic()
    body = post_test(api, far).json()

    assert time.monotonic() - started < 1.9
    assert body["success"] is False and body["status_code"] is None
    assert body["error"]["code"] == "TIMEOUT"
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:  # let the stuck handler finish before the next test
        time.sleep(0.05)


def test_redirect_to_a_refused_address_is_400_url_not_allowed_with_the_check_recorded(api, far, httpserver, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    httpserver.expect_request("/ping").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.1:{httpserver.port}/inside"}
    )
    httpserver.expect_request("/inside").respond_with_json({"secret": "internal"})

    response = post_test(api, far)

    error = assert_error(response, 400, "URL_NOT_ALLOWED")
    check = ConnectionCheck.objects.get(pk=error["details"]["check_id"])
    assert check.integration_id == far.pk and check.error_code == "URL_NOT_ALLOWED" and check.success is False
    assert [r.path for r, _ in httpserver.log] == ["/ping"]
    assert AuditEvent.objects.filter(action="integration.tested", target_id=str(far.pk)).count() == 1


def test_non_json_200_is_a_success_without_a_sample(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_data("<html>ok</html>", content_type="text/html")

    body = post_test(api, far).json()

    assert body["success"] is True and body["sample"] is None and body["error"] is None


def test_huge_body_is_response_too_large(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_data(b"x" * (1024 * 1024 + 100))

    body = post_test(api, far).json()

    assert body["success"] is False and body["error"]["code"] == "RESPONSE_TOO_LARGE"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_is_connection_failed(api, far):
    Integration.objects.filter(pk=far.pk).update(api_base_url=f"http://127.0.0.1:{closed_port()}")

    body = post_test(api, far).json()

    assert body["success"] is False and body["status_code"] is None
    assert body["error"]["code"] == "CONNECTION_FAILED"


def test_poll_with_nothing_listening_is_502_connection_failed(api, far):
    Integration.objects.filter(pk=far.pk).update(
        api_base_url=f"http://127.0.0.1:{closed_port()}", status_endpoint="/statuses"
    )

    assert_error(api.post(action_url(far, "poll")), 502, "CONNECTION_FAILED")


def test_missing_base_url_is_not_configured_and_leaves_health_alone(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(
        api_base_url="", health_state="healthy", status="connected", consecutive_failures=0
    )

    body = post_test(api, far).json()

    assert body["success"] is False and body["error"]["code"] == "NOT_CONFIGURED"
    far.refresh_from_db()
    assert far.health_state == "healthy" and far.status == "connected" and far.consecutive_failures == 0
    assert not httpserver.log
    assert AuditEvent.objects.filter(action="integration.tested").count() == 1
    assert not AuditEvent.objects.filter(action="integration.health_changed").exists()


def test_provider_needing_an_api_key_without_credentials_is_not_configured(api, tenant, httpserver):
    keyed = ProviderFactory(slug="keyed", auth_type="api_key")
    integration = IntegrationFactory(
        tenant=tenant, provider=keyed, api_base_url=httpserver.url_for("/").rstrip("/"), retry_count=0,
    )

    body = post_test(api, integration).json()

    assert body["error"]["code"] == "NOT_CONFIGURED"
    assert not httpserver.log
    integration.refresh_from_db()
    assert integration.health_state == "unknown"


def test_every_check_writes_one_tested_audit_event(api, far, httpserver):
    httpserver.expect_request("/ping").respond_with_json({"ok": True})

    for _ in range(3):
        post_test(api, far)

    events = AuditEvent.objects.filter(action="integration.tested", target_id=str(far.pk))
    assert events.count() == 3
    assert {e.changes["check_id"] for e in events} == {str(c.pk) for c in ConnectionCheck.objects.all()}


def test_async_test_queues_a_check_that_the_worker_completes_once(
    api, far, httpserver, django_capture_on_commit_callbacks
):
    httpserver.expect_request("/ping").respond_with_json({"ok": True})

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(action_url(far, "test") + "?async=1")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and set(body) == {"check_id", "status"}
    assert len(callbacks) == 1
    queued = api.get(f"{URL}{far.pk}/checks/{body['check_id']}/").json()
    assert queued["state"] == "queued" and queued["success"] is None
    assert not httpserver.log

    done = checks.connection_check_execute(check_id=body["check_id"])

    assert done is not None
    check = ConnectionCheck.objects.get(pk=body["check_id"])
    assert check.state == "completed" and check.success is True and check.status_code == 200
    assert ConnectionCheck.objects.count() == 1
    assert len(httpserver.log) == 1
    assert checks.connection_check_execute(check_id=body["check_id"]) is None
    assert len(httpserver.log) == 1
    assert AuditEvent.objects.filter(action="integration.tested").count() == 1


# --- roles -----------------------------------------------------------------------------------------------------


@pytest.fixture
def polled(far, httpserver):
    Integration.objects.filter(pk=far.pk).update(status_endpoint="/statuses")
    httpserver.expect_request("/statuses").respond_with_json([{"id": "a", "status": "available"}])
    httpserver.expect_request("/ping").respond_with_json({"ok": True})
    far.refresh_from_db()
    return far


@pytest.mark.parametrize(
    ("role", "status"),
    [(SUPER_ADMIN, 200), (TA, 200), (IM, 200), (MB, 403), ("anonymous", 401), ("other_tenant", 404)],
)
@pytest.mark.parametrize("name", ["test", "poll"])
def test_role_matrix_for_test_and_poll(client_for, polled, role, status, name):
    response = client_for(role).post(action_url(polled, name))

    if status == 200:
        assert response.status_code == 200, response.content
    else:
        code = {403: "PERMISSION_DENIED", 401: "NOT_AUTHENTICATED", 404: "INTEGRATION_NOT_FOUND"}[status]
        assert_error(response, status, code)
        assert not ConnectionCheck.objects.exists() and not ExternalStatus.objects.exists()


@pytest.mark.parametrize(
    ("role", "status"),
    [(SUPER_ADMIN, 200), (TA, 200), (IM, 200), (MB, 200), ("anonymous", 401), ("other_tenant", 404)],
)
@pytest.mark.parametrize("path", ["health", "checks/", "statuses/", "statuses/changes/"])
def test_role_matrix_for_reads(client_for, far, role, status, path):
    response = client_for(role).get(f"{URL}{far.pk}/{path}")

    if status == 200:
        assert response.status_code == 200, response.content
    else:
        assert_error(response, status, {401: "NOT_AUTHENTICATED", 404: "INTEGRATION_NOT_FOUND"}[status])


def test_unknown_integration_id_is_integration_not_found_for_every_endpoint(api):
    for method, path in [("post", "test"), ("post", "poll"), ("get", "health"), ("get", "checks/"),
                         ("get", "statuses/"), ("get", "statuses/changes/")]:
        for ident in (uuid.uuid4(), "not-a-uuid"):
            assert_error(getattr(api, method)(f"{URL}{ident}/{path}"), 404, "INTEGRATION_NOT_FOUND")


# --- check history ---------------------------------------------------------------------------------------------


def make_check(integration, minutes_ago: int, **fields) -> ConnectionCheck:
    check = ConnectionCheck.objects.create(tenant=integration.tenant, integration=integration, **fields)
    ConnectionCheck.objects.filter(pk=check.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return check


def test_checks_list_is_newest_first_in_the_list_envelope(api, integration):
    old = make_check(integration, 30, kind="health", success=True, status_code=200)
    mid = make_check(integration, 20, kind="test", success=False, error_code="TIMEOUT", error_message="slow")
    new = make_check(integration, 10, kind="health", success=False, error_code="UNEXPECTED_STATUS")

    body = api.get(f"{URL}{integration.pk}/checks/").json()

    assert set(body) == LIST_KEYS and body["total"] == 3 and body["has_more"] is False
    assert [c["check_id"] for c in body["results"]] == [str(new.pk), str(mid.pk), str(old.pk)]
    assert body["results"][1]["error"] == {"code": "TIMEOUT", "message": "slow"}
    assert body["results"][2]["error"] is None


def test_checks_list_filters_by_kind_and_success(api, integration):
    ok_health = make_check(integration, 30, kind="health", success=True)
    bad_health = make_check(integration, 20, kind="health", success=False, error_code="TIMEOUT")
    bad_test = make_check(integration, 10, kind="test", success=False, error_code="TIMEOUT")
    base = f"{URL}{integration.pk}/checks/"

    def ids(query):
        response = api.get(base, query)
        assert response.status_code == 200, response.content
        return [c["check_id"] for c in response.json()["results"]]

    assert ids({"kind": "health"}) == [str(bad_health.pk), str(ok_health.pk)]
    assert ids({"success": "false"}) == [str(bad_test.pk), str(bad_health.pk)]
    assert ids({"kind": "health", "success": "true"}) == [str(ok_health.pk)]
    assert ids({"error_code": "TIMEOUT", "kind": "test"}) == [str(bad_test.pk)]
    assert_error(api.get(base, {"kind": "nonsense"}), 400, "VALIDATION_ERROR")


def test_one_check_by_id_and_another_integrations_check_is_404(api, tenant, provider, integration):
    mine = make_check(integration, 5, kind="test", success=True, status_code=200, latency_ms=12)
    sibling = IntegrationFactory(tenant=tenant, provider=provider, name="Sibling")
    theirs = make_check(sibling, 5, kind="test", success=True)

    response = api.get(f"{URL}{integration.pk}/checks/{mine.pk}/")

    assert response.status_code == 200
    assert response.json()["check_id"] == str(mine.pk) and response.json()["latency_ms"] == 12
    assert_error(api.get(f"{URL}{integration.pk}/checks/{theirs.pk}/"), 404, "NOT_FOUND")
    assert_error(api.get(f"{URL}{integration.pk}/checks/{uuid.uuid4()}/"), 404, "NOT_FOUND")
    assert_error(api.get(f"{URL}{integration.pk}/checks/nope/"), 404, "NOT_FOUND")


# --- health state machine -----------------------------------------------------------------------------------------


@pytest.fixture
def switchable(far, httpserver):
    """The far side answers ``state["status"]`` on /ping."""
    state = {"status": 200}
    httpserver.expect_request("/ping").respond_with_handler(
        lambda request: Response(json.dumps({"ok": state["status"] == 200}), status=state["status"],
                                 content_type="application/json")
    )
    return state


def test_health_moves_healthy_degraded_unhealthy_and_back_with_audited_transitions(
    api, far, switchable, settings
):
    settings.HEALTH_FAILURE_THRESHOLD = 3
    seen = []
    for status in (200, 500, 500, 500, 200):
        switchable["status"] = status
        assert post_test(api, far).status_code == 200
        far.refresh_from_db()
        seen.append((far.health_state, far.consecutive_failures))
        if status == 200:
            assert far.last_success_at is not None

    assert seen == [("healthy", 0), ("degraded", 1), ("degraded", 2), ("unhealthy", 3), ("healthy", 0)]
    transitions = [
        (e.changes["health_state"]["from"], e.changes["health_state"]["to"])
        for e in AuditEvent.objects.filter(action="integration.health_changed").order_by("created_at")
    ]
    assert transitions == [
        ("unknown", "healthy"), ("healthy", "degraded"), ("degraded", "unhealthy"), ("unhealthy", "healthy"),
    ]


def test_health_endpoint_reports_state_last_error_and_24h_success_rate(api, far, switchable):
    for status in (200, 500, 200, 500):
        switchable["status"] = status
        post_test(api, far)
    make_check(far, 60 * 25, kind="health", success=False, error_code="TIMEOUT")  # outside the window
    make_check(far, 1, kind="test", state="queued", success=None)  # not finished: not counted

    body = api.get(action_url(far, "health")).json()

    assert {"state", "health_checked_at", "consecutive_failures", "last_success_at", "last_error",
            "success_rate_24h"} <= set(body)
    assert body["state"] == "degraded" and body["consecutive_failures"] == 1
    assert body["health_checked_at"] and body["last_success_at"]
    assert body["last_error"]["code"] == "UNEXPECTED_STATUS" and body["last_error"]["message"]
    assert set(body["last_error"]) == {"code", "message"}
    assert body["success_rate_24h"] == 0.5


def test_health_of_a_never_checked_integration_is_unknown(api, integration):
    body = api.get(action_url(integration, "health")).json()

    assert body["state"] == "unknown" and body["health_checked_at"] is None
    assert body["last_error"] is None and body["success_rate_24h"] is None and body["consecutive_failures"] == 0


# --- polling ----------------------------------------------------------------------------------------------------


@pytest.fixture
def status_far(far, httpserver):
    """Statuses on /statuses; the provider maps open/free/gone, the integration overrides 'open'."""
    far.provider.default_status_mapping = {"available": ["open", "free"], "sold": ["gone"]}
    far.provider.save(update_fields=["default_status_mapping"])
    Integration.objects.filter(pk=far.pk).update(status_endpoint="/statuses", status_mapping={"hold": ["open"]})
    far.refresh_from_db()
    state = {"items": []}
    httpserver.expect_request("/statuses").respond_with_handler(
        lambda request: Response(json.dumps(state["items"]), content_type="application/json")
    )
    return state


def items(**statuses) -> list[dict]:
    return [{"id": key, "status": value} for key, value in statuses.items()]


def test_poll_maps_statuses_counts_unknowns_and_records_changes(api, far, status_far):
    status_far["items"] = items(a="open", b="FREE", c="gone", d="weird", e="weird")

    first = api.post(action_url(far, "poll"))

    assert first.status_code == 200, first.content
    assert first.json() == {"seen": 5, "changed": 0, "unknown": {"weird": 2}}
    rows = {s.external_id: s for s in ExternalStatus.objects.filter(integration=far)}
    assert {k: (r.canonical_status, r.raw_status, r.is_unknown) for k, r in rows.items()} == {
        "a": ("hold", "open", False), "b": ("available", "FREE", False), "c": ("sold", "gone", False),
        "d": ("unavailable", "weird", True), "e": ("unavailable", "weird", True),
    }
    between = timezone.now()

    status_far["items"] = items(a="gone", b="FREE", c="gone", d="open", e="weird")
    second = api.post(action_url(far, "poll"))

    assert second.json() == {"seen": 5, "changed": 2, "unknown": {"weird": 1}}
    assert ExternalStatus.objects.filter(integration=far).count() == 5
    changes = {c.external_id: c for c in StatusChange.objects.filter(integration=far)}
    assert set(changes) == {"a", "d"}
    assert (changes["a"].old_canonical, changes["a"].new_canonical, changes["a"].old_raw, changes["a"].new_raw) == (
        "hold", "sold", "open", "gone"
    )
    assert (changes["d"].old_canonical, changes["d"].new_canonical) == ("unavailable", "hold")

    base = f"{URL}{far.pk}/statuses/"
    sold = api.get(base, {"canonical_status": "sold"}).json()
    assert set(sold) == LIST_KEYS
    assert [s["external_id"] for s in sold["results"]] == ["a", "c"]
    recent = api.get(base, {"changed_since": between.isoformat()}).json()
    assert [s["external_id"] for s in recent["results"]] == ["a", "d"]
    history = api.get(f"{base}changes/").json()
    assert set(history) == LIST_KEYS and history["total"] == 2
    assert {(h["external_id"], h["old_canonical"], h["new_canonical"], h["old_raw"], h["new_raw"])
            for h in history["results"]} == {("a", "hold", "sold", "open", "gone"), ("d", "unavailable", "hold",
                                                                                   "weird", "open")}
    assert AuditEvent.objects.filter(action="integration.polled", target_id=str(far.pk)).count() == 2


def test_statuses_filters_reject_bad_values_with_400(api, far):
    base = f"{URL}{far.pk}/statuses/"

    assert_error(api.get(base, {"canonical_status": "nonsense"}), 400, "VALIDATION_ERROR")
    assert_error(api.get(base, {"changed_since": "yesterday"}), 400, "VALIDATION_ERROR")


def test_poll_reads_items_through_custom_path_and_fields(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(
        status_endpoint="/units", status_items_path="data.units", status_id_field="unit_id", status_field="state",
        status_mapping={"available": ["vacant"], "sold": ["taken"]},
    )
    httpserver.expect_request("/units").respond_with_json(
        {"data": {"units": [{"unit_id": 101, "state": "vacant"}, {"unit_id": 102, "state": "taken"},
                            {"unit_id": 103}, "junk"]}}
    )

    body = api.post(action_url(far, "poll")).json()

    assert body == {"seen": 2, "changed": 0, "unknown": {}}
    assert dict(ExternalStatus.objects.filter(integration=far).values_list("external_id", "canonical_status")) == {
        "101": "available", "102": "sold",
    }


def test_poll_of_a_non_json_answer_is_502_in_the_envelope(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(status_endpoint="/statuses")
    httpserver.expect_request("/statuses").respond_with_data("<html>maintenance</html>", content_type="text/html")

    assert_error(api.post(action_url(far, "poll")), 502, "UNEXPECTED_STATUS")
    assert not ExternalStatus.objects.exists()


def test_poll_answered_401_is_502_invalid_credentials(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(status_endpoint="/statuses")
    httpserver.expect_request("/statuses").respond_with_json({"error": "no"}, status=401)

    assert_error(api.post(action_url(far, "poll")), 502, "INVALID_CREDENTIALS")


def test_poll_without_a_status_endpoint_is_400(api, far, httpserver):
    error = assert_error(api.post(action_url(far, "poll")), 400, "VALIDATION_ERROR")

    assert "status_endpoint" in error["details"]
    assert not httpserver.log


def test_poll_redirected_to_a_refused_address_is_400_url_not_allowed(api, far, httpserver, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    Integration.objects.filter(pk=far.pk).update(status_endpoint="/statuses")
    httpserver.expect_request("/statuses").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.1:{httpserver.port}/inside"}
    )

    assert_error(api.post(action_url(far, "poll")), 400, "URL_NOT_ALLOWED")


def test_async_poll_answers_202_and_polls_nothing_yet(api, far, status_far, httpserver,
                                                      django_capture_on_commit_callbacks):
    status_far["items"] = items(a="open")

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(action_url(far, "poll") + "?async=1")

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    assert len(callbacks) == 1
    assert not httpserver.log and not ExternalStatus.objects.exists()


# --- system provider test -------------------------------------------------------------------------------------------


@pytest.fixture
def system_provider(db):
    return ProviderFactory(slug="mailer", name="Mailer", audience="system", auth_type="none")


def test_system_provider_test_uses_the_platform_tenants_integration(client_for, system_provider, httpserver):
    platform = TenantFactory(slug="platform", name="Platform")
    integration = IntegrationFactory(
        tenant=platform, provider=system_provider, api_base_url=httpserver.url_for("/").rstrip("/"),
        test_endpoint="/ping", retry_count=0,
    )
    httpserver.expect_request("/ping").respond_with_json({"ok": True})

    response = client_for(SUPER_ADMIN).post(f"/api/v1/admin/providers/{system_provider.slug}/test")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "system" and body["success"] is True
    check = ConnectionCheck.objects.get(pk=body["check_id"])
    assert check.integration_id == integration.pk
    assert AuditEvent.objects.filter(action="integration.tested", tenant=platform).count() == 1


def test_system_test_of_a_tenant_audience_provider_is_400(client_for, provider):
    assert_error(client_for(SUPER_ADMIN).post(f"/api/v1/admin/providers/{provider.slug}/test"), 400,
                 "VALIDATION_ERROR")


def test_system_test_without_a_platform_integration_is_400(client_for, system_provider, tenant):
    IntegrationFactory(tenant=tenant, provider=system_provider)  # not the platform's

    assert_error(client_for(SUPER_ADMIN).post(f"/api/v1/admin/providers/{system_provider.slug}/test"), 400,
                 "VALIDATION_ERROR")
    assert not ConnectionCheck.objects.exists()


@pytest.mark.parametrize(("role", "status", "code"), [
    (TA, 403, "PERMISSION_DENIED"), (MB, 403, "PERMISSION_DENIED"), ("anonymous", 401, "NOT_AUTHENTICATED"),
])
def test_system_test_is_for_super_admins_only(client_for, system_provider, role, status, code):
    assert_error(client_for(role).post(f"/api/v1/admin/providers/{system_provider.slug}/test"), status, code)


def test_system_test_of_an_unknown_provider_is_404(client_for):
    assert_error(client_for(SUPER_ADMIN).post("/api/v1/admin/providers/nope/test"), 404, "PROVIDER_NOT_FOUND")


# --- what a hostile upstream answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, sample", [
    (b'{"ok": true, "a\\u0000": "b\\u0000c"}', {"ok": True, "a": "bc"}),
    (b"[" * 100_000 + b"]" * 100_000, None),
    (b'{"ok": Infinity}', None),
])
def test_a_test_against_hostile_json_is_answered_with_a_bounded_sample(api, far, httpserver, body, sample):
    httpserver.expect_request("/ping").respond_with_data(body, content_type="application/json")
    response = post_test(api, far)
    assert response.status_code == 200, response.content
    assert response.json()["success"] is True and response.json()["sample"] == sample
    assert ConnectionCheck.objects.get(integration=far).sample == sample


def test_a_poll_of_statuses_holding_nul_stores_them_without_it(api, far, status_far):
    status_far["items"] = [{"id": "a\u0000b", "status": "op\u0000en"}]
    response = api.post(action_url(far, "poll"))
    assert response.status_code == 200, response.content
    assert response.json()["seen"] == 1
    assert list(ExternalStatus.objects.filter(integration=far).values_list("external_id", "raw_status")) == [
        ("ab", "open")]


def test_a_poll_of_json_nested_too_deep_is_a_typed_error_not_a_500(api, far, httpserver):
    Integration.objects.filter(pk=far.pk).update(status_endpoint="/deep")
    httpserver.expect_request("/deep").respond_with_data(b"[" * 100_000 + b"]" * 100_000,
                                                         content_type="application/json")
    assert_error(api.post(action_url(far, "poll")), 502, "UNEXPECTED_STATUS")
    assert not ExternalStatus.objects.filter(integration=far).exists()
