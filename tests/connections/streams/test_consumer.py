"""The consumer against a real local SSE server: statuses applied, resume, backoff, idle, errors."""
import time

import pytest
from django.utils import timezone

from audit.services import SYSTEM
from connections.models import ExternalStatus, Integration, StatusChange, StreamLease
from connections.services import credential_set
from connections.services.streams import stream_restart, stream_state
from tests.connections.streams.conftest import stream_integration, wait_for
from tests.connections.streams.sse_server import SSEServer

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


def lease_of(integration) -> StreamLease:
    """The stream's lease row; an unsaved one (defaults) until the first lease round made it."""
    return StreamLease.objects.filter(integration=integration).first() or StreamLease()


def test_auth_headers_are_sent_and_a_reconnect_resumes_from_the_last_applied_event(
        sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/feed")
    credential_set(actor=SYSTEM, integration=integration, credential_type="api_key", data={"api_key": "sk-stream-1"})
    consumers()
    sse_server.publish("/feed", {"id": "a", "status": "open"}, id="e1")
    sse_server.publish("/feed", {"id": "a", "status": "sold"}, id="e2")
    wait_for(lambda: lease_of(integration).last_event_id == "e2", what="e2 applied")
    first = sse_server.connections_to("/feed")[0]["headers"]
    assert first["X-API-Key"] == "sk-stream-1" and first["Accept"] == "text/event-stream"
    assert "Last-Event-ID" not in first
    sse_server.drop("/feed")
    second = sse_server.wait_for_connections("/feed", 2)[1]["headers"]
    assert second["Last-Event-ID"] == "e2"
    sse_server.publish("/feed", {"id": "a", "status": "open"}, id="e3")
    wait_for(lambda: lease_of(integration).last_event_id == "e3", what="e3 applied")
    assert StatusChange.objects.filter(integration=integration).count() == 2
    assert lease_of(integration).reconnects >= 1


def test_a_replay_after_reconnect_is_not_applied_twice(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/feed")
    sse_server.feed("/feed", replay_all=True)  # a server that ignores Last-Event-ID
    consumers()
    for n, status in enumerate(["open", "sold", "open"], start=1):
        sse_server.publish("/feed", {"id": "a", "status": status}, id=f"e{n}")
    wait_for(lambda: lease_of(integration).events_total == 3, what="three events applied")
    sse_server.drop("/feed")
    sse_server.wait_for_connections("/feed", 2)
    wait_for(lambda: lease_of(integration).events_duplicate == 3, what="the replay counted")
    sse_server.publish("/feed", {"id": "a", "status": "sold"}, id="e4")
    wait_for(lambda: lease_of(integration).events_total == 4, what="e4 applied")
    changes = sorted(StatusChange.objects.filter(integration=integration).values_list("old_raw", "new_raw"))
    assert changes == [("open", "sold"), ("open", "sold"), ("sold", "open")]


def test_retry_is_honoured_and_backoff_is_bounded(sse_server, loopback_allowed, consumers):
    stream_integration(sse_server, "/closing")
    sse_server.feed("/closing", close_at_once=True, retry_ms=300)
    consumers()
    sse_server.wait_for_connections("/closing", 1)
    time.sleep(3)
    times = [c["at"] for c in sse_server.connections_to("/closing")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 2 <= len(times) <= 6, times  # not a hot loop: 0.3 s, then 0.6, 1.2, 2.4 …
    assert 0.29 <= gaps[0] < 0.9, gaps  # the server's retry, not the default 1 s
    assert all(later >= earlier * 1.4 for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps


def test_a_silent_stream_is_dropped_after_the_idle_time_and_a_heartbeat_keeps_it(
        sse_server, loopback_allowed, consumers):
    silent = stream_integration(sse_server, "/silent")
    stream_integration(sse_server, "/beating")
    sse_server.feed("/beating", heartbeat=0.3)
    consumers(idle_seconds=1)
    sse_server.wait_for_connections("/silent", 2, timeout=6)
    wait_for(lambda: lease_of(silent).last_error.get("code") == "TIMEOUT", what="the idle timeout recorded")
    time.sleep(1.5)
    assert len(sse_server.connections_to("/beating")) == 1


def test_401_backs_off_with_the_error_shown(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/refused")
    sse_server.feed("/refused", status=401)
    consumers()
    wait_for(lambda: lease_of(integration).state == "backoff", what="backoff")
    time.sleep(2)
    lease = lease_of(integration)
    assert lease.last_error["code"] == "INVALID_CREDENTIALS" and "401" in lease.last_error["message"]
    assert len(sse_server.connections_to("/refused")) <= 3  # 1 s, 2 s …: no hot loop
    assert stream_state(integration)["state"] == "backoff"


def test_an_oversized_event_is_skipped_and_the_next_applied(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/big")
    consumers(max_event_bytes=300)
    sse_server.publish("/big", {"id": "big", "status": "open", "padding": "x" * 1000}, id="1")
    sse_server.publish("/big", {"id": "small", "status": "sold"}, id="2")
    wait_for(lambda: lease_of(integration).last_event_id == "2", what="the small event applied")
    wait_for(lambda: lease_of(integration).events_oversized == 1, what="the big one counted")
    assert statuses(integration) == {"small": "sold"}
    assert len(sse_server.connections_to("/big")) == 1  # not fatal: the same connection read on


def test_invalid_data_is_counted_not_fatal(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/mixed")
    consumers()
    sse_server.publish("/mixed", "not json", id="1")
    sse_server.publish("/mixed", {"nothing": "useful"}, id="2")
    sse_server.publish("/mixed", {"id": "a", "status": "open"}, id="3")
    wait_for(lambda: lease_of(integration).last_event_id == "3", what="the valid event applied")
    lease = lease_of(integration)
    assert lease.events_invalid == 2 and lease.events_total == 1
    assert lease.last_error["code"] == "INVALID_EVENT"
    assert statuses(integration) == {"a": "available"}


@pytest.mark.parametrize("change", ["update_method", "disable", "delete", "endpoint"])
def test_a_config_change_reaches_the_holder(sse_server, loopback_allowed, consumers, change):
    integration = stream_integration(sse_server, "/feed")
    sse_server.feed("/other")
    consumers()
    wait_for(lambda: sse_server.open_to("/feed") == 1, what="the stream open")
    if change == "update_method":
        Integration.objects.filter(pk=integration.pk).update(update_method="polling")
    elif change == "disable":
        Integration.objects.filter(pk=integration.pk).update(status="disabled")
    elif change == "delete":
        Integration.objects.filter(pk=integration.pk).update(deleted_at=timezone.now())
    else:
        Integration.objects.filter(pk=integration.pk).update(stream_endpoint="/other")
    wait_for(lambda: sse_server.open_to("/feed") == 0, timeout=10, what="the stream closed")
    if change == "endpoint":
        wait_for(lambda: sse_server.open_to("/other") == 1, timeout=10, what="the new endpoint read")
    else:
        wait_for(lambda: lease_of(integration).state == "stopped", what="the lease stopped")
        assert lease_of(integration).consumer == ""


def test_a_restart_asked_for_reconnects(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/feed")
    consumers()
    sse_server.wait_for_connections("/feed", 1)
    stream_restart(integrations=[integration], actor=SYSTEM)
    sse_server.wait_for_connections("/feed", 2, timeout=10)
    wait_for(lambda: sse_server.open_to("/feed") == 1, what="one stream open again")


def test_a_refused_address_gets_no_connection(loopback_allowed, consumers):
    refused = SSEServer(host="127.0.0.2").start()  # loopback, but not in OUTBOUND_ALLOWED_HOSTS
    allowed = SSEServer().start()
    try:
        direct = stream_integration(refused, "/feed")
        redirected = stream_integration(allowed, "/hop")
        allowed.feed("/hop", redirect_to=refused.url("/feed"))
        consumers()
        wait_for(lambda: lease_of(direct).last_error.get("code") == "URL_NOT_ALLOWED", what="the refusal")
        wait_for(lambda: lease_of(redirected).last_error.get("code") == "URL_NOT_ALLOWED", what="the redirect refused")
        assert refused.connections_to("/feed") == []
        assert len(allowed.connections_to("/hop")) >= 1
    finally:
        refused.stop()
        allowed.stop()


def test_an_event_id_no_header_can_carry_is_not_sent_back(sse_server, loopback_allowed, consumers):
    integration = stream_integration(sse_server, "/odd")
    consumers()
    sse_server.publish_raw("/odd", b'id: bad\x01id\ndata: {"id": "a", "status": "open"}\n\n', id="bad\x01id")
    wait_for(lambda: lease_of(integration).events_total == 1, what="the event applied")
    sse_server.drop("/odd")
    second = sse_server.wait_for_connections("/odd", 2)[1]["headers"]
    assert "Last-Event-ID" not in second  # resumed from the start: the replay is recognised by its id
    wait_for(lambda: lease_of(integration).events_duplicate == 1, what="the replay skipped")
    assert lease_of(integration).events_total == 1
