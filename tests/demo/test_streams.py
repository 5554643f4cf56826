"""The demo shipping's event stream (``/shipping/stream``) over real HTTP: its format, ids and resume,
pings, the end of a stream whose client went away; seed_demo's streamed integration; and a stream
consumer storing the streamed statuses."""
import http.client
import io
import json
import threading
import time

import pytest
from django.core.management import call_command

from audit.services import SYSTEM
from catalog.models import IntegrationProvider
from connections.models import ExternalStatus, Integration, StatusChange, StreamLease
from connections.services import integration_create, integration_update
from connections.services.streams import stream_state
from demo.management.commands.seed_demo import DEMO_STREAM_ENDPOINT
from demo.upstream import SHIPPING_PASSWORD, SHIPPING_USERNAME, DemoUpstream
from demo.upstream.streams import CLOSES_TICK, IDS_PER_TICK, REPLAY_TICKS, RETRY_MS, SLOT_STATUSES
from tenants.services import tenant_create
from tests.connections.streams.conftest import ConsumerThread, wait_for

from .conftest import ROTATE_EVERY, Clock, basic, call

AUTH = basic(SHIPPING_USERNAME, SHIPPING_PASSWORD)
SLOTS = {f"SLOT-{n:03d}" for n in range(1, 6)}


class Reader:
    """One client of the stream: blocks of field lines, each up to its blank line."""

    def __init__(self, upstream, last_event_id: str | None = None, headers: dict | None = None):
        host, port = upstream.httpd.server_address[:2]
        self.conn = http.client.HTTPConnection(host, port, timeout=10)
        sent = {**AUTH, **(headers or {})}
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        self.conn.request("GET", "/shipping/stream", headers=sent)
        self.response = self.conn.getresponse()

    def block(self) -> dict:
        fields: dict = {}
        while True:
            line = self.response.readline()
            assert line, "the stream ended"
            text = line.decode().rstrip("\n")
            if not text:
                if fields:
                    return fields
                continue
            if text.startswith(":"):
                fields["comment"] = text[1:].strip()
                continue
            name, _, value = text.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value

    def event(self) -> tuple[int, object]:
        """The next event (comments and a lone ``retry`` skipped): its id and its data."""
        while "data" not in (fields := self.block()):
            pass
        return int(fields["id"]), json.loads(fields["data"])

    def close(self) -> None:
        self.response.close()
        self.conn.close()


@pytest.fixture
def readers():
    opened = []

    def open_reader(upstream, *args, **kwargs) -> Reader:
        reader = Reader(upstream, *args, **kwargs)
        opened.append(reader)
        return reader

    yield open_reader
    for reader in opened:
        reader.close()


def tick_of(clock: Clock) -> int:
    return int(clock() // ROTATE_EVERY)


# --- the stream ---------------------------------------------------------------------------------------------


def test_the_stream_needs_the_shipping_credential_and_answers_an_event_stream(upstream):
    assert call(upstream.url("/shipping/stream")).status == 401
    assert call(upstream.url("/shipping/stream"), headers=basic(SHIPPING_USERNAME, "nope")).status == 401
    slots = call(upstream.url("/shipping/slots"), headers=AUTH)
    assert slots.status == 200 and {item["id"] for item in slots.json()["items"]} == SLOTS


def test_a_new_client_gets_retry_then_every_slot_then_each_change(upstream, clock, readers):
    tick = tick_of(clock)
    reader = readers(upstream)
    assert reader.response.status == 200
    assert reader.response.getheader("Content-Type") == "text/event-stream"
    assert reader.response.getheader("Cache-Control") == "no-cache"
    assert reader.block() == {"retry": str(RETRY_MS)}

    snapshot_id, snapshot = reader.event()
    assert snapshot_id == tick * IDS_PER_TICK + CLOSES_TICK
    assert snapshot == upstream.slots.items() and {item["id"] for item in snapshot} == SLOTS

    before = {item["id"]: item for item in snapshot}
    clock.advance(ROTATE_EVERY)
    now = {item["id"]: item for item in upstream.slots.items()}
    changed = sorted(k for k in now if now[k]["status"] != before[k]["status"])
    assert changed and len(changed) < len(SLOTS)  # some slots change, some stay
    events = [reader.event() for _ in changed]

    assert [data for _, data in events] == [now[k] for k in changed]  # one status object per event
    assert [event_id for event_id, _ in events] == [(tick + 1) * IDS_PER_TICK + int(k[-3:]) for k in changed]


def test_each_tick_sends_its_changes_one_object_per_event_and_now_and_then_a_list(upstream, clock, readers):
    start = tick_of(clock)
    reader = readers(upstream)
    _, snapshot = reader.event()
    states = {item["id"]: item["status"] for item in snapshot}
    ids, singles, lists = [], 0, 0
    while True:
        clock.advance(ROTATE_EVERY)
        now = tick_of(clock)
        expected = {item["id"]: item["status"] for item in upstream.slots.items()}
        while states != expected:
            event_id, data = reader.event()
            ids.append(event_id)
            assert event_id // IDS_PER_TICK == now
            items = data if isinstance(data, list) else [data]
            if isinstance(data, list):
                lists += 1
                assert event_id % IDS_PER_TICK == CLOSES_TICK and len(data) > 1
            else:
                singles += 1
                assert event_id % IDS_PER_TICK == int(data["id"][-3:])  # the slot's number
            for item in items:
                assert states[item["id"]] != item["status"]  # only changes are sent
                assert set(item) == {"id", "name", "status", "updated_at"} and item["status"] in SLOT_STATUSES
                states[item["id"]] = item["status"]
        if now - start >= 6 and lists:
            break
    assert ids == sorted(set(ids)) and singles > lists >= 1


def test_last_event_id_gets_the_events_after_it_and_no_snapshot(upstream, clock, readers):
    first = readers(upstream)
    first.event()  # the snapshot
    sent = []
    for _ in range(3):
        clock.advance(ROTATE_EVERY)
        sent += [first.event() for _ in upstream.slot_stream.tick_events(tick_of(clock))]
    assert len(sent) >= 4

    again = readers(upstream, last_event_id=str(sent[0][0]))
    assert again.block() == {"retry": str(RETRY_MS)}
    replayed = [again.event() for _ in sent[1:]]

    assert replayed == sent[1:]  # the same ids and data, nothing before them, no snapshot


@pytest.mark.parametrize("last_event_id", ["not-a-number", "", "-5", "12.5", "old", "ahead"])
def test_an_id_that_cannot_be_resumed_gets_every_slot_first(upstream, clock, readers, last_event_id):
    tick = tick_of(clock)
    last_event_id = {"old": str((tick - REPLAY_TICKS - 1) * IDS_PER_TICK + 1),
                     "ahead": str((tick + 1) * IDS_PER_TICK + 1)}.get(last_event_id, last_event_id)
    reader = readers(upstream, last_event_id=last_event_id)
    event_id, data = reader.event()
    assert event_id == tick * IDS_PER_TICK + CLOSES_TICK and {item["id"] for item in data} == SLOTS


def test_an_id_closing_the_current_tick_resumes_with_the_next_tick(upstream, clock, readers):
    tick = tick_of(clock)
    reader = readers(upstream, last_event_id=str(tick * IDS_PER_TICK + CLOSES_TICK))
    assert reader.block() == {"retry": str(RETRY_MS)}
    clock.advance(ROTATE_EVERY)
    event_id, _ = reader.event()
    assert event_id // IDS_PER_TICK == tick + 1


def test_a_ping_comment_keeps_a_quiet_stream_alive(upstream, readers):
    upstream.slot_stream.ping_every = 0.2  # the clock stands still: nothing but pings
    reader = readers(upstream)
    reader.event()
    started = time.monotonic()
    assert reader.block() == {"comment": "ping"}
    assert reader.block() == {"comment": "ping"}
    assert time.monotonic() - started < 3


# --- the end of a stream -------------------------------------------------------------------------------------


def handler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name and t.is_alive()]


def test_a_stream_and_its_thread_end_when_the_client_goes_away(upstream, clock):
    before = len(handler_threads())
    reader = Reader(upstream)
    reader.event()
    assert upstream.slot_stream.open == 1 and len(handler_threads()) == before + 1

    reader.close()
    deadline = time.monotonic() + 10
    while upstream.slot_stream.open or len(handler_threads()) > before:
        assert time.monotonic() < deadline, "the stream's handler is still running"
        clock.advance(ROTATE_EVERY)  # something to write: a write on the closed connection fails
        time.sleep(0.1)
    assert call(upstream.url("/health")).status == 200  # the server serves on


def test_stopping_the_upstream_ends_its_open_streams(clock):
    server = DemoUpstream(port=0, rotate_every=ROTATE_EVERY, clock=clock).start()
    reader = Reader(server)
    try:
        reader.event()
        server.stop()
        assert reader.response.read() == b""  # the server ended the stream
        wait_for(lambda: server.slot_stream.open == 0, timeout=5, what="the stream to end")
    finally:
        reader.close()


# --- seed_demo ----------------------------------------------------------------------------------------------------


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture
def demo_env(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    monkeypatch.setenv("DEMO_UPSTREAM_URL", "http://127.0.0.1:18001")
    monkeypatch.setenv("DEMO_HUB_URL", "http://127.0.0.1:18000")


def shipping() -> Integration:
    return Integration.objects.live().get(tenant__slug="demo", name="Demo shipping")


@pytest.mark.django_db
def test_the_demo_shipping_reads_the_upstream_stream(demo_env):
    output = seed()
    integration = shipping()

    assert (integration.update_method, integration.stream_endpoint) == ("sse", DEMO_STREAM_ENDPOINT)
    assert integration.status_mapping["sold"] == ["sold", "closed", "completed"]
    assert integration.test_endpoint == "/shipping/ping" and integration.search_enabled
    assert f"streamed from {DEMO_STREAM_ENDPOINT}" in output
    assert stream_state(integration)["state"] == "connecting"  # eligible: waiting for a consumer


@pytest.mark.django_db
def test_a_shipping_integration_seeded_before_streams_gets_its_stream_once(demo_env):
    seed()
    integration_update(actor=SYSTEM, integration=shipping(), data={  # as an older seed left it
        "update_method": "polling", "stream_endpoint": "", "status_mapping": {}})

    seed()
    upgraded = shipping()
    assert (upgraded.update_method, upgraded.stream_endpoint) == ("sse", DEMO_STREAM_ENDPOINT)
    assert upgraded.status_mapping

    # What a person changes afterwards stays.
    integration_update(actor=SYSTEM, integration=upgraded, data={"update_method": "polling"})
    versions = upgraded.versions.count()
    seed()
    assert shipping().update_method == "polling" and shipping().versions.count() == versions


@pytest.mark.django_db
def test_an_integration_with_the_demo_name_but_a_mapping_of_its_own_keeps_it(demo_env):
    call_command("seed_demo", "--catalog-only", stdout=io.StringIO())
    tenant = tenant_create(actor=SYSTEM, data={"slug": "demo", "name": "Demo Company", "plan": "pro"})
    own = {"available": ["open"]}
    integration_create(actor=SYSTEM, tenant=tenant, provider=IntegrationProvider.objects.get(slug="generic-rest"),
                       data={"name": "Demo shipping", "api_base_url": "http://127.0.0.1:18001",
                             "status_mapping": own})
    seed()
    assert shipping().stream_endpoint == DEMO_STREAM_ENDPOINT and shipping().status_mapping == own


# --- a consumer reading the seeded stream ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_consumer_stores_the_streamed_slot_statuses_and_their_changes(
        upstream, clock, monkeypatch, settings, sent_tasks):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    monkeypatch.setenv("DEMO_UPSTREAM_URL", upstream.base_url)
    seed()
    integration = shipping()
    consumer = ConsumerThread(lease_seconds=3).start()
    try:
        def stored():
            return dict(ExternalStatus.objects.filter(integration=integration)
                        .values_list("external_id", "raw_status"))

        first = wait_for(lambda: len(stored()) == 5 and stored(), timeout=20, what="the five slots stored")
        assert first == {item["id"]: item["status"] for item in upstream.slots.items()}
        assert not ExternalStatus.objects.filter(integration=integration, canonical_status="unavailable").exists()

        clock.advance(ROTATE_EVERY)
        wait_for(lambda: StatusChange.objects.filter(integration=integration).exists(), timeout=10,
                 what="a streamed change")
        assert stored() == {item["id"]: item["status"] for item in upstream.slots.items()}
        lease = StreamLease.objects.get(integration=integration)
        assert int(lease.last_event_id) // IDS_PER_TICK == tick_of(clock) and lease.events_total >= 2
        assert stream_state(integration)["state"] == "connected"
    finally:
        consumer.stop()
    assert StreamLease.objects.get(integration=integration).consumer == ""  # released on stop
