"""The health state machine: what one probe result does to an integration and its credential.

Pure: it reads and sets attributes of the rows it is handed and touches no database
(``checks.checks_record`` loads and writes them in bulk; only ``check_interval`` asked
without a policy reads one).

| result                                      | health state | failures | status     | credential                   |
|---------------------------------------------|--------------|----------|------------|------------------------------|
| success within HEALTH_LATENCY_BUDGET_MS     | healthy      | 0        | connected  | active, validated now        |
| success, slower than the budget             | degraded     | 0        | connected  | active, validated now        |
| failure, failures < HEALTH_FAILURE_THRESHOLD| degraded     | +1       | error      | error on INVALID_CREDENTIALS |
| failure, failures >= the threshold          | unhealthy    | +1       | error      | error on INVALID_CREDENTIALS |
| NOT_CONFIGURED or LIMIT_EXCEEDED            | unchanged    | same     | unchanged  | unchanged                    |

A disabled integration keeps its status; an expired or revoked credential keeps its
status and its re-authorization message. Every result sets ``health_checked_at`` and
``last_error`` (cleared by a success).

The threshold and the budget are the tenant's effective policy (``tenants.selectors``), handed
in by the caller, which resolves it once per tenant per batch; without one, the platform's.

A failing streak: the first failure sets ``failing_since``, a success clears it and
``failure_warned_at``. ``streak_action`` then says what the policy asks of the streak: the
warning (once per streak) at ``failure_warning_after`` failures, auto-disable at
``auto_disable_after`` failures once the streak is ``auto_disable_min_hours`` old (0 turns
either off). ``checks.checks_record`` carries them out.
"""
import random
from datetime import timedelta

from django.utils import timezone

from tenants.selectors import Policy, effective_policy, platform_policy

from ..choices import CheckError, CredentialStatus, HealthState, IntegrationStatus
from ..models import Credential, Integration
from .probes import ProbeResult

# Results that say nothing about the far side: recorded as the last error, nothing else moves.
UNPROBED = (CheckError.NOT_CONFIGURED, CheckError.LIMIT_EXCEEDED)
# Credentials that only a new authorization brings back.
REAUTHORIZE = (CredentialStatus.EXPIRED, CredentialStatus.REVOKED)

# What health_apply reads of an integration and a credential (the rest it only sets).
INTEGRATION_READ = ["consecutive_failures", "failing_since", "failure_warned_at", "health_state", "status"]
INTEGRATION_WRITTEN = [
    "consecutive_failures", "failing_since", "failure_warned_at", "health_state", "health_checked_at",
    "last_success_at", "last_error", "status",
]
CREDENTIAL_READ = ["status", "validation_error"]
CREDENTIAL_WRITTEN = ["status", "last_validated_at", "validation_error"]

# What streak_action asks for.
WARN, AUTO_DISABLE = "warn", "auto_disable"


def next_health_state(
    *, success: bool, latency_ms: int | None, consecutive_failures: int, policy: Policy | None = None
) -> str:
    """healthy / degraded (slow, or 1..N-1 failures in a row) / unhealthy (N failures in a row)."""
    policy = policy or platform_policy()
    if success:
        slow = latency_ms is not None and latency_ms > policy.health_latency_budget_ms
        return HealthState.DEGRADED if slow else HealthState.HEALTHY
    if consecutive_failures >= policy.health_failure_threshold:
        return HealthState.UNHEALTHY
    return HealthState.DEGRADED


def check_interval(integration: Integration, policy: Policy | None = None) -> int:
    """Seconds between the integration's scheduled checks: its own, else its tenant policy's default
    (``policy`` when the caller resolved it, else one query)."""
    if integration.health_check_interval_seconds is not None:
        return integration.health_check_interval_seconds
    return (policy or effective_policy(integration.tenant_id)).default_check_interval_seconds


def next_check_time(integration: Integration, now=None, *, policy: Policy | None = None):
    """The next scheduled check: the interval plus up to 10 % jitter, so checks spread out."""
    now = now or timezone.now()
    interval = check_interval(integration, policy)
    return now + timedelta(seconds=interval + random.uniform(0, interval * 0.1))


def health_apply(
    *, integration: Integration, credential: Credential | None, result: ProbeResult, now,
    policy: Policy | None = None,
) -> tuple[tuple[str, str] | None, bool]:
    """Move the in-memory rows by one result; returns (the health transition or None, credential changed)."""
    integration.health_checked_at = now
    if result.error_code in UNPROBED:
        integration.last_error = _error(result.error_code, result.error_message, now)
        return None, False
    failures = 0 if result.success else integration.consecutive_failures + 1
    old_state = integration.health_state
    integration.consecutive_failures = failures
    integration.health_state = next_health_state(
        success=result.success, latency_ms=result.latency_ms, consecutive_failures=failures, policy=policy
    )
    if result.success:
        integration.failing_since = integration.failure_warned_at = None
    elif integration.failing_since is None:
        integration.failing_since = now
    if result.success:
        integration.last_success_at = now
        integration.last_error = {}
    elif (result.error_code == CheckError.INVALID_CREDENTIALS and credential is not None
          and credential.status in REAUTHORIZE):
        # The refresh that followed the 401 was refused: what the user must do is re-authorize.
        integration.last_error = _error(result.error_code, credential.validation_error or "Re-authorization needed.",
                                        now)
    else:
        integration.last_error = _error(result.error_code, result.error_message, now)
    if integration.status != IntegrationStatus.DISABLED:
        integration.status = IntegrationStatus.CONNECTED if result.success else IntegrationStatus.ERROR
    transition = (old_state, integration.health_state) if old_state != integration.health_state else None
    return transition, _apply_to_credential(credential, result, now)


def streak_action(*, integration: Integration, policy: Policy, now) -> str | None:
    """What the policy asks of the integration's failing streak after ``health_apply``: ``AUTO_DISABLE``,
    ``WARN`` (marking the streak warned: once per streak) or None. A disabled integration is left alone."""
    failures = integration.consecutive_failures
    if failures == 0 or integration.status == IntegrationStatus.DISABLED:
        return None
    since = integration.failing_since
    if (policy.auto_disable_after and failures >= policy.auto_disable_after and since is not None
            and now - since >= timedelta(hours=policy.auto_disable_min_hours)):
        return AUTO_DISABLE
    if policy.failure_warning_after and failures >= policy.failure_warning_after and (
            integration.failure_warned_at is None):
        integration.failure_warned_at = now
        return WARN
    return None


def _apply_to_credential(credential: Credential | None, result: ProbeResult, now) -> bool:
    if credential is None or not credential.is_set:
        return False
    if result.success:
        credential.status, credential.last_validated_at, credential.validation_error = CredentialStatus.ACTIVE, now, ""
        return True
    if result.error_code == CheckError.INVALID_CREDENTIALS and credential.status not in REAUTHORIZE:
        credential.status, credential.validation_error = CredentialStatus.ERROR, result.error_message
        return True
    return False


def _error(code: str, message: str, now) -> dict:
    return {"code": code, "message": message, "at": now.isoformat()}
