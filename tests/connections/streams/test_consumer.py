"""The consumer against a real local SSE server: statuses applied, resume, backoff, idle, errors."""
import pytest

from connections.models import ExternalStatus, StatusChange, StreamLease
from tests.connections.streams.conftest import stream_integration, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(integration) -> dict:
    return dict(ExternalStatus.objects.filter(integration=integration).values_list("external_id", "canonical_status"))


def test_single_and_list_events_are_applied_and_mapped(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/feed")
    consumers()
    sse_server.publish("/feed", {"id": "a", "status": "open"}, id="1")
    sse_server.publish("/feed", [{"id": "b", "status": "sold"}, {"id": "c", "status": "weird"}], id="2")
    wait_for(lambda: len(statuses(integration)) == 3, what="three statuses")
    assert statuses(integration) == {"a": "available", "b": "sold", "c": "unavailable"}
    assert ExternalStatus.objects.get(integration=integration, external_id="c").is_unknown
    sse_server.publish("/feed", {"id": "a", "status": "sold"}, id="3")
    wait_for(lambda: statuses(integration)["a"] == "sold", what="a sold")
    change = StatusChange.objects.get(integration=integration)
    assert (change.old_canonical, change.new_canonical) == ("available", "sold")
    lease = StreamLease.objects.get(integration=integration)
    assert lease.last_event_id == "3" and lease.events_total == 3 and lease.state == "connected"
