"""What the admin index shows above the app list: whose figures (the tenant filter), the tiles, charts and tables.

A super admin sees every tenant and may narrow to one (``?tenant=<uuid>``); other staff see the tenants
they are members of, one at a time; staff of no tenant see no figures. The admin site has already
refused anyone who is not active staff (its login page), so nothing here runs for them.
"""
import uuid
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from tenants.authentication import is_super_admin
from tenants.models import Membership, Tenant

from .charts import Series, line_chart, stacked_bar_chart
from .figures import dashboard_figures

GREEN, AMBER, RED, GREY, BLUE, PURPLE = "#2e7d32", "#b26a00", "#c62828", "#757575", "#1565c0", "#6a1b9a"
HEALTH_COLOURS = {"healthy": (GREEN, ""), "degraded": (AMBER, "6 3"), "unhealthy": (RED, "2 2"),
                  "unknown": (GREY, "1 3")}


def dashboard_context(request) -> dict:
    """``{"dashboard": {...}}`` for the index template, or a note saying why there are no figures."""
    super_admin = is_super_admin(request.user)
    if super_admin:
        choices = list(Tenant.objects.order_by("name").only("id", "name", "slug"))
    else:
        choices = [m.tenant for m in Membership.objects.filter(user=request.user, tenant__is_active=True)
                   .select_related("tenant").order_by("tenant__name")]
        if not choices:
            return {"dashboard_note": "The dashboard shows the figures of the tenants you are a member of: "
                                      "you are a member of none."}
    tenant = _chosen(request.GET.get("tenant", ""), choices)
    if tenant is None and not super_admin:
        tenant = choices[0]
    figures = dashboard_figures(tenant=tenant)
    return {"dashboard": {
        "figures": figures,
        "tenant": tenant,
        "tenant_choices": choices,
        "all_tenants": super_admin,
        "tiles": tiles(figures, tenant),
        "charts": charts(figures),
        "failing": [{**row, "url": _change_url("connections", "integration", row["id"])} for row in figures["failing"]],
        "disables": [{**row, "url": _change_url("connections", "integration", row["integration_id"])}
                     for row in figures["disables"]],
        "failed_events": [{**row, "url": _change_url("webhooks", "webhookevent", row["id"])}
                          for row in figures["failed_events"]],
    }}


def tiles(figures: dict, tenant) -> dict:
    """The tiles' counts, each with a link to the admin list of what it counts (narrowed to the tenant)."""
    scope = {"tenant__id__exact": str(tenant.pk)} if tenant is not None else {}
    integrations = reverse("admin:connections_integration_changelist")
    events = reverse("admin:webhooks_webhookevent_changelist")

    since = {"received_at__gte": figures["webhooks_24h"]["since"].isoformat()}

    def entries(rows, url, field, extra=None):
        return [{"value": value, "label": label, "count": count,
                 "url": _query(url, {f"{field}__exact": value, **scope, **(extra or {})})}
                for value, label, count in rows]

    return {
        "by_health": entries(figures["integrations_by_health"], integrations, "health_state"),
        "by_status": entries(figures["integrations_by_status"], integrations, "status"),
        "events_by_status": entries(figures["webhooks_24h"]["by_status"], events, "status", since),
    }


def _query(url: str, params: dict) -> str:
    return f"{url}?{urlencode(params)}"


def _chosen(value: str, choices: list):
    try:
        wanted = uuid.UUID(value)
    except ValueError:
        return None
    return next((tenant for tenant in choices if tenant.pk == wanted), None)


def _change_url(app_label: str, model_name: str, pk) -> str:
    return reverse(f"admin:{app_label}_{model_name}_change", args=[pk])


def charts(figures: dict) -> list:
    return [_checks_rate_chart(figures), _checks_latency_chart(figures), _webhooks_chart(figures),
            _health_chart(figures)]


def _zone() -> str:
    return timezone.get_current_timezone_name()


def _hour_labels(rows) -> list[str]:
    return [f"{row['hour']:%H}:00" for row in rows]


def _checks_rate_chart(figures):
    rows = figures["check_hours"]
    total, succeeded = sum(r["total"] for r in rows), sum(r["succeeded"] for r in rows)
    worst = min((r for r in rows if r["rate"] is not None), key=lambda r: r["rate"], default=None)
    summary = (f"{total} scheduled health checks in the last 24 hours, {succeeded} succeeded"
               + (f"; the lowest hourly success rate was {worst['rate']}% at {worst['hour']:%H}:00." if worst else "."))
    return line_chart(
        chart_id="chart-check-success", title="Scheduled checks: success rate per hour", summary=summary,
        caption=f"Completed scheduled health checks (kind “health”) in each of the last 24 hours ({_zone()}); "
                "an hour without checks shows no point.",
        labels=_hour_labels(rows), series=[Series("Success rate", [r["rate"] for r in rows], GREEN)],
        unit="%", y_max=100, label_every=3, x_heading=f"Hour ({_zone()})",
    )


def _checks_latency_chart(figures):
    rows = figures["check_hours"]
    p95s = [(r["p95"], r["hour"]) for r in rows if r["p95"] is not None]
    peak = max(p95s, key=lambda item: item[0], default=None)
    summary = (f"The highest hourly p95 latency was {peak[0]:.0f} ms at {peak[1]:%H}:00." if peak
               else "No scheduled check recorded a latency in the last 24 hours.")
    return line_chart(
        chart_id="chart-check-latency", title="Scheduled checks: latency p50 and p95 per hour", summary=summary,
        caption="Median and 95th percentile of the latency of each hour’s scheduled health checks, "
                "interpolated between ranks as PostgreSQL’s percentile_cont does.",
        labels=_hour_labels(rows), unit="ms", label_every=3, x_heading=f"Hour ({_zone()})",
        series=[Series("p50", [r["p50"] for r in rows], BLUE), Series("p95", [r["p95"] for r in rows], PURPLE, "6 3")],
    )


def _webhooks_chart(figures):
    rows = figures["webhook_hours"]
    received = sum(r["received"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    return line_chart(
        chart_id="chart-webhooks", title="Webhook events per hour",
        summary=f"{received} webhook events received in the last 24 hours; {failed} of them failed.",
        caption=f"Events by the hour they were received ({_zone()}); processed and failed count those events "
                "by their status now.",
        labels=_hour_labels(rows), label_every=3, x_heading=f"Hour ({_zone()})",
        series=[Series("Received", [r["received"] for r in rows], BLUE),
                Series("Processed", [r["processed"] for r in rows], GREEN, "6 3"),
                Series("Failed", [r["failed"] for r in rows], RED, "2 2")],
    )


def _health_chart(figures):
    days = figures["health_days"]
    today = days[-1]
    summary = "Today: " + ", ".join(f"{today[state]} {state}" for state in HEALTH_COLOURS) + "."
    return stacked_bar_chart(
        chart_id="chart-health-days", title="Integrations by health state over 7 days", summary=summary,
        caption="The integrations that existed at each day’s end (today: now), in the state they were in then: "
                "worked back from their current state through the health transitions of the audit trail "
                "(integration.health_changed).",
        labels=[f"{d['day']:%a %d}" for d in days], x_heading="Day",
        series=[Series(state.capitalize(), [d[state] for d in days], colour, dash)
                for state, (colour, dash) in HEALTH_COLOURS.items()],
    )
