"""An integration's state in the admin: the badges and the 24-hour success ratio of the list, and the
"State" block and recent checks of the change page."""
from datetime import timedelta

from django.contrib import admin
from django.db.models import Count, F, FloatField, OuterRef, Subquery
from django.db.models.functions import Cast, Coalesce, NullIf
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from integrations_site.admin import ago, error_in_words

from ..choices import CheckKind, DisabledReason
from ..models import ConnectionCheck
from ..selectors import credential_of
from .badges import (
    CREDENTIAL_BADGES,
    DISABLED_BADGES,
    HEALTH_BADGES,
    STATUS_BADGES,
    check_in_words,
    check_outcome_badge,
)

RECENT_CHECKS = 20
# The checks the ratio counts: connection tests and scheduled health checks that have an outcome.
RATIO_KINDS = (CheckKind.TEST, CheckKind.HEALTH)


def with_checks_24h(queryset, *, now=None):
    """Annotate ``_checks_24h``, ``_ok_24h`` and ``_ratio_24h`` (None without checks) on integrations.

    Correlated subqueries served by the (integration, -created_at) index: the whole page is one
    query, whatever its number of rows or of checks.
    """
    since = (now or timezone.now()) - timedelta(hours=24)
    recent = ConnectionCheck.objects.filter(
        integration=OuterRef("pk"), created_at__gte=since, kind__in=RATIO_KINDS, success__isnull=False,
    ).order_by().values("integration")

    def counted(checks):
        return Coalesce(Subquery(checks.annotate(n=Count("pk")).values("n")), 0)

    return queryset.annotate(_checks_24h=counted(recent), _ok_24h=counted(recent.filter(success=True))).annotate(
        _ratio_24h=Cast(F("_ok_24h"), FloatField()) / NullIf(F("_checks_24h"), 0)
    )


def _moment(at, depth: int = 2):
    """A time in words, with the exact time for whoever hovers it."""
    if not at:
        return "—"
    return _time(at, ago(at, depth))


def _time(at, words: str):
    return format_html('<time datetime="{}" title="{}">{}</time>', at.isoformat(),
                       timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z"), words)


class IntegrationStateAdminMixin:
    """For ``IntegrationAdmin``: the list's state columns and the change page's "State" block (first)."""

    state_fields = (
        "health_badge", "status_badge", "disabled_because", "consecutive_failures", "failing_for", "last_success",
        "latest_check", "last_error_in_words", "success_24h", "credential_summary",
    )
    # Shown in the State block only where set: why it is disabled, how long its failing streak lasts.
    state_fields_when_set = {"disabled_because": "disabled_reason", "failing_for": "failing_since"}
    record_fields = (
        "next_check_at", "last_polled_at", "next_poll_at", "created_by", "created_at", "updated_at", "deleted_at",
    )

    def state_fields_of(self, obj) -> tuple:
        """The State block's fields for ``obj``: those of ``state_fields_when_set`` only where set."""
        return tuple(name for name in self.state_fields
                     if name not in self.state_fields_when_set or getattr(obj, self.state_fields_when_set[name]))

    def get_queryset(self, request):
        return with_checks_24h(super().get_queryset(request))

    # --- the list --------------------------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_column(self, obj):
        missing = not getattr(obj, "_has_credentials", True)
        note = format_html('<span class="hub-note">{}</span>', "no credentials") if missing else ""
        if obj.disabled_reason == DisabledReason.AUTO_DISABLED:
            note = format_html('{}<span class="hub-note">{}</span>', note, "after failing checks")
        return format_html("{}{}", STATUS_BADGES(obj.status), note)

    @admin.display(description="health", ordering="health_state")
    def health_column(self, obj):
        failures = obj.consecutive_failures
        note = format_html('<span class="hub-note">{} failure{} in a row</span>', failures, pluralize(failures)) \
            if failures else ""
        return format_html("{}{}", HEALTH_BADGES(obj.health_state), note)

    @admin.display(description="success, 24 h", ordering="_ratio_24h")
    def success_24h(self, obj):
        total, ok = getattr(obj, "_checks_24h", 0), getattr(obj, "_ok_24h", 0)
        if not total:
            return "—"
        # The percentage keeps its sign (a no-break space); the counts may go to a second line.
        return format_html("{}\u00a0% ({}/{})", ok * 100 // total, ok, total)

    @admin.display(description="last check", ordering="health_checked_at")
    def last_check(self, obj):
        code = (obj.last_error or {}).get("code")
        return format_html("{}{}", _moment(obj.health_checked_at, depth=1),
                           format_html('<span class="hub-note hub-note--code">{}</span>', code) if code else "")

    # --- the change page -------------------------------------------------------------------------------------

    @admin.display(description="health")
    def health_badge(self, obj):
        return HEALTH_BADGES(obj.health_state)

    @admin.display(description="status")
    def status_badge(self, obj):
        return STATUS_BADGES(obj.status)

    @admin.display(description="disabled")
    def disabled_because(self, obj):
        return DISABLED_BADGES(obj.disabled_reason)

    @admin.display(description="failing")
    def failing_for(self, obj):
        """How long the failing streak has lasted, and whether its warning went out."""
        since = obj.failing_since
        if not since:
            return "—"
        warned = format_html("; warning sent {}", _moment(obj.failure_warned_at, depth=1)) \
            if obj.failure_warned_at else ""
        return format_html("{}{}", _time(since, f"failing for {timesince(since, depth=1)}"), warned)

    @admin.display(description="last success")
    def last_success(self, obj):
        return _moment(obj.last_success_at)

    @admin.display(description="last error")
    def last_error_in_words(self, obj):
        return error_in_words(obj.last_error)

    @admin.display(description="last check")
    def latest_check(self, obj):
        checks = self._recent_checks(obj)
        return check_in_words(checks[0]) if checks else "No checks yet."

    @admin.display(description="credential")
    def credential_summary(self, obj):
        credential = credential_of(obj) if obj.pk else None
        if credential is None:
            return "none"
        url = reverse("admin:connections_credential_change", args=[credential.pk])
        return format_html('<a href="{}">{}</a>, version {} {}', url, credential, credential.version,
                           CREDENTIAL_BADGES(credential.status))

    @staticmethod
    def _recent_checks(obj) -> list:
        if not hasattr(obj, "_recent_check_rows"):
            obj._recent_check_rows = list(
                ConnectionCheck.objects.filter(integration_id=obj.pk).order_by("-created_at").only(
                    "id", "kind", "state", "success", "status_code", "latency_ms", "error_code", "error_message",
                    "created_at", "finished_at",
                )[:RECENT_CHECKS]
            ) if obj.pk else []
        return obj._recent_check_rows

    @admin.display(description=f"latest {RECENT_CHECKS} checks")
    def recent_checks(self, obj):
        """The newest checks as a read-only table (a link leads to the full history)."""
        rows = self._recent_checks(obj)
        if not rows:
            return "No checks yet."
        history = reverse("admin:connections_connectioncheck_changelist") + f"?integration__id__exact={obj.pk}"
        body = format_html_join(
            "",
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:connections_connectioncheck_change", args=[row.pk]),
                    row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    row.get_kind_display(),
                    check_outcome_badge(row),
                    row.status_code if row.status_code is not None else "—",
                    f"{row.latency_ms} ms" if row.latency_ms is not None else "—",
                    row.error_code or "—",
                )
                for row in rows
            ),
        )
        return format_html(
            '<table class="recent-checks"><thead><tr><th>created</th><th>kind</th><th>outcome</th>'
            "<th>status code</th><th>latency</th><th>error</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All checks of this integration</a></p>',
            body, history,
        )
