"""/metrics for event streams: connected streams, events by outcome, reconnects and lag, read from the lease rows."""
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.choices import StreamState, UpdateMethod
from connections.models import StreamLease
from integrations_site.metrics import DatabaseCollector
from tests.connections.factories import IntegrationFactory
from tests.integrations_site.test_metrics import by_label, scrape, value

OUTCOMES = {"applied", "duplicate", "oversized", "invalid"}


def lease(tenant, provider, name, *, held=True, **fields) -> StreamLease:
    integration = IntegrationFactory(tenant=tenant, provider=provider, name=name, update_method=UpdateMethod.SSE,
                                     stream_endpoint="/events")
    now = timezone.now()
    until = now + timedelta(seconds=30) if held else now - timedelta(seconds=1)
    return StreamLease.objects.create(integration=integration, tenant=tenant, consumer="host-a:1" if held else "",
                                      lease_until=until, **fields)


def test_no_stream_scrapes_zeros_with_every_outcome(client, db):
    samples = scrape(client)
    assert value(samples, "streams_connected") == 0
    assert by_label(samples, "stream_events_total", "outcome") == dict.fromkeys(OUTCOMES, 0)
    assert value(samples, "stream_reconnects_total") == 0
    assert value(samples, "stream_lag_seconds") == 0


def test_stream_figures_are_the_sums_and_the_largest_lag_of_the_lease_rows(client, tenant, other_tenant, provider):
    lease(tenant, provider, "a", state=StreamState.CONNECTED, events_total=10, events_duplicate=2,
          events_oversized=1, events_invalid=3, reconnects=4, lag_seconds=1.5)
    lease(other_tenant, provider, "b", state=StreamState.CONNECTED, events_total=5, reconnects=1, lag_seconds=0.25)
    lease(tenant, provider, "c", state=StreamState.BACKOFF, events_total=7, events_invalid=1, reconnects=9,
          lag_seconds=4.0)
    # Expired: still counted in the totals, neither connected nor lagging.
    lease(tenant, provider, "d", held=False, state=StreamState.CONNECTED, events_total=1, events_duplicate=1,
          lag_seconds=600.0)

    samples = scrape(client)

    assert value(samples, "streams_connected") == 2
    assert by_label(samples, "stream_events_total", "outcome") == {
        "applied": 23, "duplicate": 3, "oversized": 1, "invalid": 4,
    }
    assert value(samples, "stream_reconnects_total") == 14
    assert value(samples, "stream_lag_seconds") == 4.0


def test_held_streams_without_a_lag_yet_scrape_a_lag_of_zero(client, tenant, provider):
    lease(tenant, provider, "fresh", state=StreamState.CONNECTING)
    lease(tenant, provider, "gone", held=False, lag_seconds=30.0)
    samples = scrape(client)
    assert value(samples, "stream_lag_seconds") == 0
    assert value(samples, "streams_connected") == 0


def test_the_help_text_says_the_lag_is_of_the_last_applied_events(client, db):
    text = client.get("/metrics").content.decode()
    help_line = next(line for line in text.splitlines() if line.startswith("# HELP stream_lag_seconds "))
    assert "largest lag of the last applied events" in help_line
    assert "# TYPE stream_events_total counter" in text and "# TYPE streams_connected gauge" in text


def test_the_stream_figures_are_one_query_whatever_the_number_of_streams(tenant, provider):
    for i in range(5):
        lease(tenant, provider, f"s{i}", state=StreamState.CONNECTED, events_total=i, lag_seconds=float(i))
    with CaptureQueriesContext(connection) as queries:
        families = {family.name: family for family in DatabaseCollector._streams()}
    assert len(queries.captured_queries) == 1
    assert set(families) == {"streams_connected", "stream_events", "stream_reconnects", "stream_lag_seconds"}
