"""The health state machine, table by table: what one result does to an integration and its credential.

No database: ``health_apply`` moves unsaved rows in memory (``checks_record`` writes them).
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Credential, Integration
from connections.services import health
from connections.services.probes import ProbeResult

THRESHOLD = 3
BUDGET_MS = 1000


@pytest.fixture(autouse=True)
def policy(settings):
    settings.HEALTH_FAILURE_THRESHOLD = THRESHOLD
    settings.HEALTH_LATENCY_BUDGET_MS = BUDGET_MS


RESULTS = {
    "ok": ProbeResult(success=True, status_code=200, latency_ms=10),
    "ok at the budget": ProbeResult(success=True, status_code=200, latency_ms=BUDGET_MS),
    "ok, no latency": ProbeResult(success=True, status_code=200, latency_ms=None),
    "slow": ProbeResult(success=True, status_code=200, latency_ms=BUDGET_MS + 1),
    "timeout": ProbeResult(success=False, error_code="TIMEOUT", error_message="The API did not answer in time."),
    "5xx": ProbeResult(success=False, status_code=503, latency_ms=5, error_code="UNEXPECTED_STATUS",
                       error_message="The API answered 503."),
    "401": ProbeResult(success=False, status_code=401, latency_ms=5, error_code="INVALID_CREDENTIALS",
                       error_message="The API answered 401: the credentials were refused."),
    "not configured": ProbeResult(success=False, error_code="NOT_CONFIGURED", error_message="Set api_base_url."),
    "limit exceeded": ProbeResult(success=False, error_code="LIMIT_EXCEEDED", error_message="Budget spent."),
}

# (old state, old status, failures so far, result) -> (new state, failures, status)
TRANSITIONS = [
    ("unknown", "pending", 0, "ok", "healthy", 0, "connected"),
    ("unknown", "pending", 0, "slow", "degraded", 0, "connected"),
    ("unknown", "pending", 0, "timeout", "degraded", 1, "error"),
    ("healthy", "connected", 0, "ok", "healthy", 0, "connected"),
    ("healthy", "connected", 0, "ok at the budget", "healthy", 0, "connected"),
    ("healthy", "connected", 0, "ok, no latency", "healthy", 0, "connected"),
    ("healthy", "connected", 0, "slow", "degraded", 0, "connected"),
    ("healthy", "connected", 0, "timeout", "degraded", 1, "error"),
    ("healthy", "connected", 0, "5xx", "degraded", 1, "error"),
    ("healthy", "connected", 0, "401", "degraded", 1, "error"),
    ("degraded", "connected", 0, "ok", "healthy", 0, "connected"),
    ("degraded", "connected", 0, "slow", "degraded", 0, "connected"),
    ("degraded", "error", 1, "timeout", "degraded", 2, "error"),
    ("degraded", "error", THRESHOLD - 1, "timeout", "unhealthy", THRESHOLD, "error"),
    ("degraded", "error", THRESHOLD - 1, "401", "unhealthy", THRESHOLD, "error"),
    ("unhealthy", "error", THRESHOLD, "5xx", "unhealthy", THRESHOLD + 1, "error"),
    ("unhealthy", "error", 40, "timeout", "unhealthy", 41, "error"),
    ("unhealthy", "error", 40, "ok", "healthy", 0, "connected"),
    ("unhealthy", "error", 40, "slow", "degraded", 0, "connected"),
    # A disabled integration is still checked when asked, and stays disabled.
    ("healthy", "disabled", 0, "ok", "healthy", 0, "disabled"),
    ("healthy", "disabled", 0, "timeout", "degraded", 1, "disabled"),
    ("degraded", "disabled", THRESHOLD - 1, "5xx", "unhealthy", THRESHOLD, "disabled"),
]

# (credential status before, result) -> (credential status after, changed, validated now)
CREDENTIALS = [
    ("active", "ok", "active", True, True),
    ("active", "slow", "active", True, True),
    ("error", "ok", "active", True, True),
    ("expired", "ok", "active", True, True),
    ("active", "401", "error", True, False),
    ("error", "401", "error", True, False),
    ("expired", "401", "expired", False, False),  # keeps its re-authorization message
    ("revoked", "401", "revoked", False, False),
    ("active", "timeout", "active", False, False),
    ("active", "5xx", "active", False, False),
    ("error", "timeout", "error", False, False),
    ("active", "not configured", "active", False, False),
    ("active", "limit exceeded", "active", False, False),
]


def integration(state="healthy", status="connected", failures=0, **fields) -> Integration:
    return Integration(name="Main API", health_state=state, status=status, consecutive_failures=failures,
                       last_error={"code": "OLD", "message": "before"}, **fields)


def credential(status="active", *, is_set=True) -> Credential:
    return Credential(type="bearer", status=status, payload={"token": "t" * 20} if is_set else None,
                      validation_error="Re-authorization needed: refused." if status in ("expired", "revoked") else "")


def apply(row, cred, result_name, now=None):
    return health.health_apply(integration=row, credential=cred, result=RESULTS[result_name],
                               now=now or timezone.now())


@pytest.mark.parametrize(
    ("old_state", "old_status", "old_failures", "result", "state", "failures", "status"), TRANSITIONS,
    ids=[f"{t[0]}/{t[1]}/{t[2]}+{t[3]}" for t in TRANSITIONS],
)
def test_a_result_moves_state_failures_and_status(old_state, old_status, old_failures, result, state, failures,
                                                  status):
    row = integration(old_state, old_status, old_failures)
    now = timezone.now()

    transition, _ = apply(row, credential(), result, now)

    assert (row.health_state, row.consecutive_failures, row.status) == (state, failures, status)
    assert transition == ((old_state, state) if old_state != state else None)
    assert row.health_checked_at == now
    if RESULTS[result].success:
        assert row.last_success_at == now and row.last_error == {}
    else:
        assert row.last_success_at is None
        assert row.last_error == {"code": RESULTS[result].error_code, "message": RESULTS[result].error_message,
                                  "at": now.isoformat()}


@pytest.mark.parametrize(("before", "result", "after", "changed", "validated"), CREDENTIALS,
                         ids=[f"{c[0]}+{c[1]}" for c in CREDENTIALS])
def test_a_result_moves_the_credential_status(before, result, after, changed, validated):
    cred = credential(before)
    message_before = cred.validation_error
    now = timezone.now()

    _, credential_changed = apply(integration(), cred, result, now)

    assert cred.status == after and credential_changed is changed
    assert cred.last_validated_at == (now if validated else None)
    if validated:
        assert cred.validation_error == ""
    elif changed:
        assert cred.validation_error == RESULTS[result].error_message
    else:
        assert cred.validation_error == message_before


@pytest.mark.parametrize("status", ["expired", "revoked"])
def test_a_401_after_a_refused_refresh_asks_for_re_authorization(status):
    row, cred = integration(), credential(status)

    apply(row, cred, "401")

    assert row.last_error["code"] == "INVALID_CREDENTIALS"
    assert row.last_error["message"] == "Re-authorization needed: refused."
    cred.validation_error = ""
    apply(row, cred, "401")
    assert row.last_error["message"] == "Re-authorization needed."


@pytest.mark.parametrize("result", ["ok", "401", "timeout"])
def test_no_credential_or_one_without_secrets_is_left_alone(result):
    for cred in (None, credential("active", is_set=False)):
        row = integration()
        _, changed = apply(row, cred, result)
        assert changed is False
        if cred is not None:
            assert cred.status == "active" and cred.last_validated_at is None


@pytest.mark.parametrize("result", ["not configured", "limit exceeded"])
@pytest.mark.parametrize(
    ("state", "status", "failures"),
    [("unknown", "pending", 0), ("healthy", "connected", 0), ("degraded", "error", 2), ("unhealthy", "error", 7),
     ("healthy", "disabled", 0)],
)
def test_a_result_that_says_nothing_of_the_far_side_leaves_the_state_alone(result, state, status, failures):
    row, cred = integration(state, status, failures), credential("error")
    row.last_success_at = last_success = timezone.now() - timedelta(hours=1)
    now = timezone.now()

    transition, changed = apply(row, cred, result, now)

    assert (transition, changed) == (None, False)
    assert (row.health_state, row.status, row.consecutive_failures) == (state, status, failures)
    assert row.last_success_at == last_success and row.health_checked_at == now
    assert row.last_error == {"code": RESULTS[result].error_code, "message": RESULTS[result].error_message,
                              "at": now.isoformat()}
    assert (cred.status, cred.last_validated_at) == ("error", None)


def test_failures_in_a_row_reach_the_threshold_and_one_success_resets_them():
    row = integration("healthy", "connected", 0)
    seen = []
    for result in ("timeout",) * (THRESHOLD + 1) + ("ok",):
        apply(row, credential(), result)
        seen.append((row.health_state, row.consecutive_failures))

    assert seen == [("degraded", 1), ("degraded", 2), ("unhealthy", 3), ("unhealthy", 4), ("healthy", 0)]


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


def test_the_next_check_is_an_interval_away_plus_up_to_ten_percent():
    row = integration(health_check_interval_seconds=100)
    now = timezone.now()

    later = [health.next_check_time(row, now) - now for _ in range(200)]

    assert all(timedelta(seconds=100) <= delta <= timedelta(seconds=110) for delta in later)
    assert len(set(later)) > 1  # spread out, not all at once
