"""The dashboard's figures: a fixed number of aggregate queries over one tenant or all of them.

``dashboard_figures`` runs ``QUERIES`` queries whatever the number of integrations, checks or events; none
runs per row, per hour or per integration. Each answers a few rows: a grouped count, a window query that
returns only the ranks around each hour's percentiles, a top-10 list; the 7-day chart alone reads the
week's health transitions and the integrations created or deleted in the week. The answer is plain data
(picklable), cached per scope (one tenant, or all) for ``ADMIN_DASHBOARD_CACHE_SECONDS`` (0: not cached).
"""
import math
from collections import Counter, defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, FloatField, Q, Value, Window
from django.db.models.functions import Coalesce, RowNumber, TruncHour
from django.utils import timezone

from audit.models import AuditEvent
from connections.choices import CheckKind, CredentialStatus, HealthState, IntegrationStatus, StreamState
from connections.models import ConnectionCheck, Credential, Integration, StreamLease
from webhooks.choices import EventStatus
from webhooks.models import WebhookEvent

QUERIES = 13  # what dashboard_figures runs when nothing is cached (tests/admin/test_dashboard_page.py holds it)
HOURS = 24
DAYS = 7
EXPIRY_DAYS = 7
TOP_ROWS = 10
PERCENTILES = (0.5, 0.95)
HEALTH_CHANGED = "integration.health_changed"
# Audit actions that disable an integration: a person's (or the API's) disable, and the automatic one.
DISABLE_ACTIONS = ("integration.disabled", "integration.auto_disabled")
AUTO_DISABLED = "integration.auto_disabled"
HEALTH_ORDER = (HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.UNKNOWN)


def dashboard_figures(*, tenant=None, now=None) -> dict:
    """Every figure of the dashboard for ``tenant`` (None: every tenant), from the cache when fresh."""
    seconds = settings.ADMIN_DASHBOARD_CACHE_SECONDS
    key = f"admin-dashboard:v1:{tenant.pk if tenant is not None else 'all'}"
    if seconds > 0:
        cached = cache.get(key)
        if cached is not None:
            return cached
    figures = compute_figures(tenant=tenant, now=now or timezone.now())
    if seconds > 0:
        cache.set(key, figures, seconds)
    return figures


def compute_figures(*, tenant, now) -> dict:
    hours = hour_starts(now)
    day_ends = past_day_ends(now)
    integration_rows = _integration_counts(tenant)
    return {
        "generated_at": now,
        "tenant_id": tenant.pk if tenant is not None else None,
        **_integration_tiles(integration_rows),
        "webhooks_24h": _webhook_tile(tenant, now),
        "checks_24h": _check_tile(tenant, now),
        "credentials_expiring": _expiring_credentials(tenant, now),
        "streams_connected": _connected_streams(tenant, now),
        "check_hours": _check_hours(tenant, hours),
        "webhook_hours": _webhook_hours(tenant, hours),
        "health_days": _health_days(tenant, now, day_ends, integration_rows),
        "failing": _failing_longest(tenant),
        "disables": _recent_disables(tenant),
        "failed_events": _failed_events(tenant),
    }


def _scoped(model, tenant):
    """The one tenant's rows (through ``for_tenant``), or every tenant's for a platform-wide view."""
    return model.objects.for_tenant(tenant) if tenant is not None else model.objects.all()


def hour_starts(now) -> list:
    """The starts of the 24 hours charted, oldest first; the last is the hour now running."""
    current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]


def past_day_ends(now) -> list:
    """The ends (midnight) of the six days before today, oldest first: the 7-day chart's points with now."""
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return [midnight - timedelta(days=DAYS - 2 - i) for i in range(DAYS - 1)]


# --- tiles ------------------------------------------------------------------------------------------------


def _integration_counts(tenant) -> list[dict]:
    """Query 1: live integrations by (health state, status)."""
    return list(
        _scoped(Integration, tenant).live().order_by().values("health_state", "status").annotate(n=Count("pk"))
    )


def _integration_tiles(rows) -> dict:
    by_health, by_status = Counter(), Counter()
    for row in rows:
        by_health[row["health_state"]] += row["n"]
        by_status[row["status"]] += row["n"]
    return {
        "integrations_total": sum(by_health.values()),
        "integrations_by_health": [(c.value, c.label, by_health[c.value]) for c in HEALTH_ORDER],
        "integrations_by_status": [(c.value, c.label, by_status[c.value]) for c in IntegrationStatus],
    }


def _webhook_tile(tenant, now) -> dict:
    """Query 2: webhook events received in the last 24 h, by status."""
    since = now - timedelta(hours=24)
    counts = dict(
        _scoped(WebhookEvent, tenant).filter(received_at__gte=since).order_by()
        .values_list("status").annotate(n=Count("pk"))
    )
    by_status = [(c.value, c.label, counts.get(c.value, 0)) for c in EventStatus]
    return {"total": sum(counts.values()), "by_status": by_status, "since": since}


def _check_tile(tenant, now) -> dict:
    """Query 3: completed connection tests and scheduled health checks of the last 24 h, and how many succeeded."""
    figures = (
        _scoped(ConnectionCheck, tenant)
        .filter(created_at__gte=now - timedelta(hours=24), kind__in=(CheckKind.HEALTH, CheckKind.TEST),
                success__isnull=False)
        .aggregate(total=Count("pk"), succeeded=Count("pk", filter=Q(success=True)))
    )
    return {**figures, "rate": _percent(figures["succeeded"], figures["total"])}


def _expiring_credentials(tenant, now) -> int:
    """Query 4: credentials in use (not revoked, of a live integration) whose expiry falls in the next 7 days."""
    return (
        _scoped(Credential, tenant)
        .filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=EXPIRY_DAYS),
                integration__deleted_at__isnull=True)
        .exclude(status=CredentialStatus.REVOKED).count()
    )


def _connected_streams(tenant, now) -> int:
    """Query 5: event streams connected under a lease that has not run out."""
    return _scoped(StreamLease, tenant).filter(state=StreamState.CONNECTED, lease_until__gt=now).count()


# --- charts -----------------------------------------------------------------------------------------------


def _check_hours(tenant, hours) -> list[dict]:
    """Queries 6 and 7: scheduled health checks per hour (count, successes), and their p50/p95 latency."""
    checks = _scoped(ConnectionCheck, tenant).filter(
        kind=CheckKind.HEALTH, created_at__gte=hours[0], success__isnull=False
    )
    counts = {
        row["hour"]: row for row in
        checks.order_by().annotate(hour=TruncHour("created_at")).values("hour")
        .annotate(total=Count("pk"), succeeded=Count("pk", filter=Q(success=True)))
    }
    latencies = hourly_percentiles(checks)
    rows = []
    for hour in hours:
        row = counts.get(hour, {"total": 0, "succeeded": 0})
        p50, p95 = latencies.get(hour, (None, None))
        rows.append({"hour": hour, "total": row["total"], "succeeded": row["succeeded"],
                     "rate": _percent(row["succeeded"], row["total"]), "p50": p50, "p95": p95})
    return rows


def hourly_percentiles(checks) -> dict:
    """{hour: (p50, p95)} of ``latency_ms``, interpolated as PostgreSQL's percentile_cont does.

    One query on both databases, whose answer is bounded by the hours, not the rows: each hour's latencies
    are ranked by a window function and only the few ranks around each percentile come back.
    """
    hour = TruncHour("created_at")
    ranked = checks.filter(latency_ms__isnull=False).order_by().annotate(
        hour=hour,
        rank=Window(RowNumber(), partition_by=[hour], order_by=[F("latency_ms").asc(), F("pk").asc()]),
        size=Window(Count("pk"), partition_by=[hour]),
    )
    near = Q()
    for p in PERCENTILES:
        # The 0-based position p * (size - 1) lies between ranks floor+1 and ceil+1 (rank is 1-based); one
        # rank more on each side, so a rounding of the product in SQL other than Python's loses none.
        position = (F("size") - 1) * Value(p, output_field=FloatField())
        near |= Q(rank__gt=position - 1, rank__lt=position + 3)
    found = defaultdict(dict)
    sizes = {}
    for when, rank, size, latency in ranked.filter(near).values_list("hour", "rank", "size", "latency_ms"):
        found[when][rank - 1] = latency
        sizes[when] = size
    answer = {}
    for when, values in found.items():
        answer[when] = tuple(_interpolate(values, sizes[when], p) for p in PERCENTILES)
    return answer


def _interpolate(values: dict, size: int, p: float) -> float:
    position = p * (size - 1)
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def _webhook_hours(tenant, hours) -> list[dict]:
    """Query 8: webhook events per hour received, by their status now."""
    counts = defaultdict(Counter)
    rows = (
        _scoped(WebhookEvent, tenant).filter(received_at__gte=hours[0]).order_by()
        .annotate(hour=TruncHour("received_at")).values_list("hour", "status").annotate(n=Count("pk"))
    )
    for hour, status, n in rows:
        counts[hour][status] += n
    return [
        {"hour": hour, "received": sum(counts[hour].values()), "processed": counts[hour][EventStatus.PROCESSED],
         "failed": counts[hour][EventStatus.FAILED]}
        for hour in hours
    ]


def _health_days(tenant, now, day_ends, integration_rows) -> list[dict]:
    """Queries 9 and 10: the health state of the integrations that existed at each of the last 7 days' end.

    There is no table of past states; the audit trail holds every transition (``integration.health_changed``,
    from → to, written with the check that made it). A day's state is worked back from today's: an integration
    that changed after the day's end was then in the ``from`` state of its first later change. Integrations
    created or deleted during the week are read once more (their dates and state), so each day counts the
    integrations that existed at its end. Rows read: the week's transitions and the week's new and deleted
    integrations, never one per check.
    """
    transitions = (
        _scoped(AuditEvent, tenant).filter(action=HEALTH_CHANGED, created_at__gt=day_ends[0])
        .order_by("created_at").values_list("target_id", "created_at", "changes")
    )
    changes_of = defaultdict(list)
    for target_id, at, changes in transitions:
        change = (changes or {}).get("health_state") or {}
        if change.get("from") and change.get("to"):
            changes_of[target_id].append((at, change["from"], change["to"]))
    recent = {
        str(pk): (created, deleted, state) for pk, created, deleted, state in
        _scoped(Integration, tenant).filter(Q(created_at__gt=day_ends[0]) | Q(deleted_at__gt=day_ends[0]))
        .order_by().values_list("pk", "created_at", "deleted_at", "health_state")
    }
    current = Counter()
    for row in integration_rows:
        current[row["health_state"]] += row["n"]
    days = [_day(timezone.localtime(end - timedelta(seconds=1)).date(), _counts_at(end, current, changes_of, recent))
            for end in day_ends]
    days.append(_day(timezone.localtime(now).date(), current))
    return days


def _counts_at(end, current: Counter, changes_of: dict, recent: dict) -> Counter:
    def state_then(target_id, state_now):
        later = [change for change in changes_of.get(target_id, ()) if change[0] > end]
        return later[0][1] if later else state_now

    counts = Counter(current)
    for target_id, changes in changes_of.items():
        deleted = target_id in recent and recent[target_id][1] is not None
        if not deleted:  # live now: counted in ``current`` by its state now, the last change's ``to``
            counts[changes[-1][2]] -= 1
            counts[state_then(target_id, changes[-1][2])] += 1
    for target_id, (created, deleted, state_now) in recent.items():
        existed = created <= end and (deleted is None or deleted > end)
        if deleted is None and not existed:
            counts[state_then(target_id, state_now)] -= 1
        elif deleted is not None and existed:
            counts[state_then(target_id, state_now)] += 1
    return counts


def _day(day, counts) -> dict:
    return {"day": day, **{state.value: max(counts[state.value], 0) for state in HEALTH_ORDER}}


# --- tables -----------------------------------------------------------------------------------------------


def _failing_longest(tenant) -> list[dict]:
    """Query 11: the enabled live integrations failing longest: since their last success, or their creation
    when they never succeeded."""
    rows = (
        _scoped(Integration, tenant).live().filter(consecutive_failures__gt=0)
        .exclude(status=IntegrationStatus.DISABLED)
        .annotate(since=Coalesce("last_success_at", "created_at"))
        .order_by("since", "-consecutive_failures", "pk")
        .values("pk", "name", "tenant__name", "provider__display_name", "provider__name", "consecutive_failures",
                "last_success_at", "since", "health_checked_at", "health_state", "last_error")[:TOP_ROWS]
    )
    return [
        {"id": row["pk"], "name": row["name"], "tenant": row["tenant__name"],
         "provider": row["provider__display_name"] or row["provider__name"], "failures": row["consecutive_failures"],
         "since": row["since"], "never_succeeded": row["last_success_at"] is None,
         "checked_at": row["health_checked_at"], "health_state": row["health_state"],
         "error": error_in_words(row["last_error"])}
        for row in rows
    ]


def error_in_words(error) -> str:
    """``CODE: message`` of an integration's ``last_error`` (``{"code", "message", "at"}``)."""
    if not isinstance(error, dict) or not (error.get("code") or error.get("message")):
        return ""
    code, message = str(error.get("code") or ""), str(error.get("message") or "")
    return f"{code}: {message}" if code and message else code or message


def _recent_disables(tenant) -> list[dict]:
    """Query 12: the latest integrations disabled, as the audit trail records them (a disable that changed
    nothing is left out)."""
    rows = (
        _scoped(AuditEvent, tenant)
        .filter(Q(action=AUTO_DISABLED) | Q(action__in=DISABLE_ACTIONS, changes__has_key="status"))
        .order_by("-created_at")
        .values("created_at", "actor", "action", "target_id", "target_repr", "tenant__name")[:TOP_ROWS]
    )
    return [
        {"at": row["created_at"], "actor": row["actor"], "automatic": row["action"] == AUTO_DISABLED,
         "integration_id": row["target_id"], "integration": row["target_repr"], "tenant": row["tenant__name"]}
        for row in rows
    ]


def _failed_events(tenant) -> list[dict]:
    """Query 13: the latest webhook events that failed."""
    rows = (
        _scoped(WebhookEvent, tenant).filter(status=EventStatus.FAILED).order_by("-received_at")
        .values("pk", "received_at", "attempts", "last_error", "endpoint__name", "tenant__name")[:TOP_ROWS]
    )
    return [
        {"id": row["pk"], "received_at": row["received_at"], "attempts": row["attempts"],
         "error": row["last_error"][:300], "endpoint": row["endpoint__name"], "tenant": row["tenant__name"]}
        for row in rows
    ]


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None
