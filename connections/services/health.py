"""The health state machine: what one probe result does to an integration and its credential.

Pure: it reads and sets attributes of the rows it is handed and touches no database
(``checks.checks_record`` loads and writes them in bulk).

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
"""
import random
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ..choices import CheckError, CredentialStatus, HealthState, IntegrationStatus
from ..models import Credential, Integration
from .probes import ProbeResult

# Results that say nothing about the far side: recorded as the last error, nothing else moves.
UNPROBED = (CheckError.NOT_CONFIGURED, CheckError.LIMIT_EXCEEDED)
# Credentials that only a new authorization brings back.
REAUTHORIZE = (CredentialStatus.EXPIRED, CredentialStatus.REVOKED)

# What health_apply reads of an integration and a credential (the rest it only sets).
INTEGRATION_READ = ["consecutive_failures", "health_state", "status"]
INTEGRATION_WRITTEN = [
    "consecutive_failures", "health_state", "health_checked_at", "last_success_at", "last_error", "status",
]
CREDENTIAL_READ = ["status", "validation_error"]
CREDENTIAL_WRITTEN = ["status", "last_validated_at", "validation_error"]


def next_health_state(*, success: bool, latency_ms: int | None, consecutive_failures: int) -> str:
    """healthy / degraded (slow, or 1..N-1 failures in a row) / unhealthy (N failures in a row)."""
    if success:
        slow = latency_ms is not None and latency_ms > settings.HEALTH_LATENCY_BUDGET_MS
        return HealthState.DEGRADED if slow else HealthState.HEALTHY
    if consecutive_failures >= settings.HEALTH_FAILURE_THRESHOLD:
        return HealthState.UNHEALTHY
    return HealthState.DEGRADED


def next_check_time(integration: Integration, now=None):
    """The next scheduled check: the interval plus up to 10 % jitter, so checks spread out."""
    now = now or timezone.now()
    interval = integration.health_check_interval_seconds
    return now + timedelta(seconds=interval + random.uniform(0, interval * 0.1))


def health_apply(
    *, integration: Integration, credential: Credential | None, result: ProbeResult, now
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
        success=result.success, latency_ms=result.latency_ms, consecutive_failures=failures
    )
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
