"""Prometheus metrics.

Two kinds, both correct under several gunicorn workers:
- Business figures are computed from the database at scrape time (one
  collector, a handful of aggregate queries), so every process answers the
  same numbers and nothing is lost across restarts. Rows pruned by the
  retention tasks leave these totals.
- HTTP request counts and latency by route are counted in-process by
  ``MetricsMiddleware``; with ``PROMETHEUS_MULTIPROC_DIR`` set (as under
  gunicorn) prometheus_client shares them across worker processes. The route
  label is the route's URI template as the OpenAPI document writes it
  (``/api/v1/integrations/{id}/enable``), ``unmatched`` when no route matched.
"""
import os
import re
import time
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.contrib.admindocs.views import simplify_regex
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Q, Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from integrations_site.api import errors
from integrations_site.api.errors import envelope

PROCESSING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
NOTIFICATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# stream_events_total{outcome} → the StreamLease counter it sums.
STREAM_EVENT_OUTCOMES = {"applied": "events_total", "duplicate": "events_duplicate",
                         "oversized": "events_oversized", "invalid": "events_invalid"}

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests by route, method and status.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency by route.", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SEARCH_REQUESTS = Counter(
    "search_requests_total", "Searches answered, by outcome: ok (every upstream answered), partial (some did not), "
    "failed (none did), empty (nothing was searchable).", ["outcome"],
)
SEARCH_UPSTREAM_SECONDS = Histogram(
    "search_upstream_seconds", "Time of each upstream search request.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
SEARCH_UPSTREAM_ERRORS = Counter(
    "search_upstream_errors_total", "Upstream search requests that gave no items, by error code.", ["code"]
)


UNMATCHED = "unmatched"
# ``<name>`` and ``<converter:name>`` as simplify_regex leaves them.
_PARAMETER = re.compile(r"<(?:[^>:]+:)?(?P<name>\w+)>")


@lru_cache(maxsize=1024)
def route_template(route: str) -> str:
    """The URI template of a resolver route (``ResolverMatch.route``: the patterns of every include
    joined), written as the OpenAPI document writes paths (drf-spectacular: simplify_regex, each
    parameter ``{name}``, ``pk`` shown as ``id``, an optional trailing slash shown without it).

    ``api/v1/integrations/(?P<pk>[^/.]+)/enable/?$`` → ``/api/v1/integrations/{id}/enable``;
    ``hooks/<str:path>`` → ``/hooks/{path}``. Cached: the routes are the URL conf's, a bounded set.
    """
    if route.endswith("/?$"):
        route = route[:-3]
    path = simplify_regex(route).replace("\\.", ".")
    return _PARAMETER.sub(lambda m: "{" + ("id" if m["name"] == "pk" else m["name"]) + "}", path)


def _catch_all(match) -> bool:
    """Routes that only answer 404 (or redirect) for paths no real route matched."""
    return match.func is errors.api_not_found or getattr(match.func, "__name__", "") == "catch_all_view"


def route_label(match) -> str:
    if match is None or _catch_all(match):
        return UNMATCHED
    return route_template(match.route)


class MetricsMiddleware:
    """Counts requests by route template (never the raw path: ids would explode the label set)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        counter, latency = _children(request.method, route_label(getattr(request, "resolver_match", None)),
                                     response.status_code)
        counter.inc()
        latency.observe(time.perf_counter() - started)
        return response


@lru_cache(maxsize=4096)
def _children(method: str, route: str, status: int):
    """The request counter and latency histogram of one method, route and status, looked up once per process
    (``labels()`` takes a lock and builds the label tuple on every call)."""
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route)


def _tenant_labels() -> bool:
    from tenants.models import Tenant

    return settings.METRICS_TENANT_LABELS and Tenant.objects.count() <= settings.METRICS_TENANT_LABEL_LIMIT


class DatabaseCollector:
    """Business metrics read from the database at scrape time."""

    def collect(self):
        from audit.models import AuditEvent
        from connections.choices import HealthState, IntegrationStatus
        from connections.models import ConnectionCheck, Integration
        from webhooks.choices import EventStatus
        from webhooks.models import WebhookEndpoint, WebhookEvent

        per_tenant = _tenant_labels()
        live = Integration.objects.live()

        by_status = GaugeMetricFamily(
            "integrations_by_status", "Live integrations by status.",
            labels=["status", "tenant"] if per_tenant else ["status"],
        )
        group = ("status", "tenant__slug") if per_tenant else ("status",)
        rows = {tuple(row[g] for g in group): row["n"]
                for row in live.values(*group).annotate(n=Count("id")).order_by(*group)}
        if not per_tenant:  # every status appears, at 0 when none
            rows = {(status,): rows.get((status,), 0) for status in IntegrationStatus.values}
        for labels, count in rows.items():
            by_status.add_metric(list(labels), count)
        yield by_status

        health = live.aggregate(**{state: Count("id", filter=Q(health_state=state)) for state in HealthState.values})
        by_health = GaugeMetricFamily("integrations_by_health_state", "Live integrations by cached health state.",
                                      labels=["health_state"])
        for state in HealthState.values:  # every state appears, at 0 when none
            by_health.add_metric([state], health[state])
        yield by_health

        by_type = GaugeMetricFamily("integrations_by_type", "Live integrations by provider category.",
                                    labels=["category"])
        for row in live.values("provider__category").annotate(n=Count("id")).order_by("provider__category"):
            by_type.add_metric([row["provider__category"]], row["n"])
        yield by_type

        endpoints = WebhookEndpoint.objects.live().aggregate(
            total=Count("id"), active=Count("id", filter=Q(active=True))
        )
        yield GaugeMetricFamily("webhook_endpoints_total", "Webhook endpoints.", value=endpoints["total"])
        yield GaugeMetricFamily("webhook_endpoints_active", "Active webhook endpoints.", value=endpoints["active"])

        events = CounterMetricFamily("webhook_events", "Webhook events received, by status.", labels=["status"])
        counted = dict(WebhookEvent.objects.values_list("status").annotate(n=Count("id")).order_by("status"))
        for status in EventStatus.values:
            events.add_metric([status], counted.get(status, 0))
        yield events
        since = timezone.now() - timedelta(hours=24)
        yield GaugeMetricFamily("webhook_events_last_24h", "Webhook events received in the last 24 hours.",
                                value=WebhookEvent.objects.filter(received_at__gte=since).count())
        yield self._processing_histogram(WebhookEvent)

        for name, kinds, help_text in (
            ("connection_tests", ("test", "system"), "Connection tests by outcome."),
            ("health_checks", ("health",), "Scheduled health checks by outcome."),
        ):
            family = CounterMetricFamily(name, help_text, labels=["outcome"])
            counts = ConnectionCheck.objects.filter(kind__in=kinds, success__isnull=False).aggregate(
                n_success=Count("id", filter=Q(success=True)), n_failure=Count("id", filter=Q(success=False))
            )
            for outcome in ("success", "failure"):
                family.add_metric([outcome], counts[f"n_{outcome}"])
            yield family

        refresh = CounterMetricFamily("oauth_refresh", "OAuth token refreshes by outcome.", labels=["outcome"])
        counts = AuditEvent.objects.filter(action__in=("oauth.refreshed", "oauth.refresh_failed")).aggregate(
            success=Count("id", filter=Q(action="oauth.refreshed")),
            failure=Count("id", filter=Q(action="oauth.refresh_failed")),
        )
        for outcome in ("success", "failure"):
            refresh.add_metric([outcome], counts[outcome])
        yield refresh
        yield from self._streams()
        yield from self._notifications()

    @staticmethod
    def _streams():
        """Event streams, from their lease rows in one aggregate: held now, events by outcome, reconnects, lag."""
        from connections.choices import StreamState
        from connections.models import StreamLease

        held = Q(lease_until__gt=timezone.now())
        row = StreamLease.objects.aggregate(
            connected=Count("pk", filter=held & Q(state=StreamState.CONNECTED)),
            lag=Max("lag_seconds", filter=held),
            reconnects=Sum("reconnects"),
            **{outcome: Sum(field) for outcome, field in STREAM_EVENT_OUTCOMES.items()},
        )
        yield GaugeMetricFamily("streams_connected", "Event streams connected now (held by a live consumer).",
                                value=row["connected"])
        events = CounterMetricFamily("stream_events", "Stream events by outcome: applied, duplicate (a replay "
                                     "not applied again), oversized (skipped), invalid (no status).",
                                     labels=["outcome"])
        for outcome in STREAM_EVENT_OUTCOMES:
            events.add_metric([outcome], row[outcome] or 0)
        yield events
        yield CounterMetricFamily("stream_reconnects", "Event stream reconnects.", value=row["reconnects"] or 0)
        yield GaugeMetricFamily(
            "stream_lag_seconds", "The largest lag of the last applied events among the held streams (now minus "
            "the event's own time, as of its application); 0 when none.", value=row["lag"] or 0,
        )

    @staticmethod
    def _notifications():
        """Notifications to tenants, from their delivery and attempt rows: totals by type and outcome, and the
        time of each POST."""
        from notifications.choices import DeliveryStatus
        from notifications.models import NotificationAttempt, NotificationDelivery

        totals = CounterMetricFamily(
            "notifications", "Notification deliveries by type and outcome: delivered, failed (after the last "
            "retry, or not retryable) and pending (not yet either; a redelivery moves one back here).",
            labels=["type", "outcome"],
        )
        rows = NotificationDelivery.objects.values_list("type", "status").annotate(n=Count("id")).order_by()
        counted = {(kind, status): n for kind, status, n in rows}
        for kind in sorted({kind for kind, _ in counted}):
            for status in DeliveryStatus.values:
                totals.add_metric([kind, status], counted.get((kind, status), 0))
        yield totals
        # From the attempt rows rather than an in-process histogram: the worker that sends is not the
        # process /metrics is scraped from, and the rows give every process the same figures.
        aggregates = {f"le_{i}": Count("id", filter=Q(latency_ms__lte=b * 1000))
                      for i, b in enumerate(NOTIFICATION_BUCKETS)}
        row = NotificationAttempt.objects.filter(latency_ms__isnull=False).aggregate(
            total=Count("id"), took=Sum("latency_ms"), **aggregates)
        buckets = [(floatToGoString(b), row[f"le_{i}"]) for i, b in enumerate(NOTIFICATION_BUCKETS)]
        buckets.append(("+Inf", row["total"]))
        family = HistogramMetricFamily(
            "notification_delivery_seconds", "Seconds each notification POST took, to the receiver's answer or "
            "the error (every attempt; from the stored attempts, so the figure is the same whichever process is "
            "scraped and survives restarts)."
        )
        family.add_metric([], buckets, sum_value=(row["took"] or 0) / 1000)
        yield family

    @staticmethod
    def _processing_histogram(model):
        took = ExpressionWrapper(F("processed_at") - F("received_at"), output_field=DurationField())
        processed = model.objects.filter(status="processed", processed_at__isnull=False).annotate(took=took)
        aggregates = {f"le_{i}": Count("id", filter=Q(took__lte=timedelta(seconds=b)))
                      for i, b in enumerate(PROCESSING_BUCKETS)}
        row = processed.aggregate(total=Count("id"), took_sum=Sum("took"), **aggregates)
        seconds = row["took_sum"].total_seconds() if row["took_sum"] else 0.0
        # Bucket bounds written as the client library writes them ("5.0", not "5").
        buckets = [(floatToGoString(b), row[f"le_{i}"]) for i, b in enumerate(PROCESSING_BUCKETS)]
        buckets.append(("+Inf", row["total"]))
        family = HistogramMetricFamily(
            "webhook_processing_seconds", "Seconds from receipt to processed, for processed webhook events."
        )
        family.add_metric([], buckets, sum_value=seconds)
        return family


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(reg)
    else:
        reg.register(_ProcessLocal())
    reg.register(DatabaseCollector())
    return reg


class _ProcessLocal:
    """This process's counted metrics (when not in multiprocess mode)."""

    def collect(self):
        for metric in (HTTP_REQUESTS, HTTP_LATENCY, SEARCH_REQUESTS, SEARCH_UPSTREAM_SECONDS, SEARCH_UPSTREAM_ERRORS):
            yield from metric.collect()


def metrics_view(request):
    token = settings.METRICS_TOKEN
    if token:
        import hmac

        given = request.META.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = JsonResponse(envelope("NOT_AUTHENTICATED", "A valid metrics token is required."), status=401)
            response["WWW-Authenticate"] = "Bearer"
            return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
