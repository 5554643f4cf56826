"""The badge of each state the connections admin shows (one tone per choice, see ``ChoiceBadges``), and a
connection check in words."""
from django.utils.html import format_html

from integrations_site.admin import ChoiceBadges, ago, badge

from ..choices import CredentialStatus, DisabledReason, HealthState, IntegrationStatus, StreamState

HEALTH_BADGES = ChoiceBadges(HealthState, {
    HealthState.HEALTHY: "ok", HealthState.DEGRADED: "warn", HealthState.UNHEALTHY: "bad",
    HealthState.UNKNOWN: "neutral",
})
STATUS_BADGES = ChoiceBadges(IntegrationStatus, {
    IntegrationStatus.CONNECTED: "ok", IntegrationStatus.PENDING: "info", IntegrationStatus.ERROR: "bad",
    IntegrationStatus.DISABLED: "neutral",
})
CREDENTIAL_BADGES = ChoiceBadges(CredentialStatus, {
    CredentialStatus.ACTIVE: "ok", CredentialStatus.EXPIRED: "warn", CredentialStatus.REVOKED: "neutral",
    CredentialStatus.ERROR: "bad",
})
DISABLED_BADGES = ChoiceBadges(DisabledReason, {
    DisabledReason.NONE: "neutral", DisabledReason.MANUAL: "neutral", DisabledReason.AUTO_DISABLED: "bad",
})
STREAM_BADGES = ChoiceBadges(StreamState, {
    StreamState.CONNECTED: "ok", StreamState.CONNECTING: "info", StreamState.BACKOFF: "warn",
    StreamState.STOPPED: "neutral",
})


def check_outcome_badge(check) -> str:
    """A connection check's outcome: OK, Failed, or where it stands while it has none (Queued, Running)."""
    if check.success is True:
        return badge("ok", "OK", "ok")
    if check.success is False:
        return badge("failed", "Failed", "bad")
    return badge(check.state, check.get_state_display(), "info")


def check_in_words(check) -> str:
    """One check on a line: outcome, HTTP status, latency, its error, what kind and how long ago."""
    measured = " · ".join(part for part in (
        f"HTTP {check.status_code}" if check.status_code is not None else "",
        f"{check.latency_ms} ms" if check.latency_ms is not None else "",
    ) if part)
    error = format_html(" · <strong>{}</strong>: {}", check.error_code, check.error_message) if check.error_code \
        else ""
    return format_html("{} {}{} ({}, {})", check_outcome_badge(check), measured, error,
                       check.get_kind_display().lower(), ago(check.tested_at))
