"""The ``text/event-stream`` parser: framing per the HTML standard, the size cap, chunking anywhere.

Plain functions: no database, no network.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations_site.outbound.sse import BOM, EventStreamParser

MSG = "message"


def parse(stream: bytes, cap: int = 1024 * 1024, chunks: list[bytes] | None = None):
    parser = EventStreamParser(max_event_bytes=cap)
    events = []
    for chunk in [stream] if chunks is None else chunks:
        events.extend(parser.feed(chunk))
    return parser, events


def triples(events):
    return [(e.id, e.event, e.data) for e in events]


# (stream, expected (id, event, data) triples, expected parser attributes, cap)
CASES = {
    "simple data": (b"data: hello\n\n", [("", MSG, "hello")], {}, None),
    "multi-line data": (b"data: a\ndata: b\ndata: c\n\n", [("", MSG, "a\nb\nc")], {}, None),
    "event type": (b"event: update\ndata: x\n\n", [("", "update", "x")], {}, None),
    "event type reset after dispatch": (
        b"event: u\ndata: 1\n\ndata: 2\n\n", [("", "u", "1"), ("", MSG, "2")], {}, None),
    "empty event type is message": (b"event:\ndata: x\n\n", [("", MSG, "x")], {}, None),
    "id persists to following events": (
        b"id: 7\ndata: a\n\ndata: b\n\n", [("7", MSG, "a"), ("7", MSG, "b")], {"last_event_id": "7"}, None),
    "id with NUL ignored": (
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", [("1", MSG, "a"), ("1", MSG, "b")], {"last_event_id": "1"}, None),
    "id reset with empty id line": (
        b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 2\ndata: c\n\nid:\ndata: d\n\n",
        [("1", MSG, "a"), ("", MSG, "b"), ("2", MSG, "c"), ("", MSG, "d")], {"last_event_id": ""}, None),
    "id alone sets the last event id": (b"id: 3\n\n", [], {"last_event_id": "3"}, None),
    "id of an incomplete event not taken": (
        b"data: a\n\nid: 9\ndata: b\n", [("", MSG, "a")], {"last_event_id": ""}, None),
    "comments only": (b": hi\n:\n: there\n\n:x\n", [], {"last_event_id": "", "retry": None}, None),
    "heartbeat comment between events": (
        b"data: a\n\n:keepalive\n\ndata: b\n\n", [("", MSG, "a"), ("", MSG, "b")], {}, None),
    "comment inside an event": (b"data: a\n: note\ndata: b\n\n", [("", MSG, "a\nb")], {}, None),
    "CRLF line ends": (b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", [("", MSG, "a\nb"), ("", MSG, "c")], {}, None),
    "LF line ends": (b"data: a\ndata: b\n\n", [("", MSG, "a\nb")], {}, None),
    "CR line ends": (b"data: a\rdata: b\r\rdata: c\r\r", [("", MSG, "a\nb"), ("", MSG, "c")], {}, None),
    "mixed line ends": (b"data: a\r\ndata: b\rdata: c\n\r\n", [("", MSG, "a\nb\nc")], {}, None),
    "CR then CRLF is two line ends": (b"data: a\r\r\ndata: b\n\n", [("", MSG, "a"), ("", MSG, "b")], {}, None),
    "LF then CR is two line ends": (b"data: a\n\rdata: b\n\n", [("", MSG, "a"), ("", MSG, "b")], {}, None),
    "BOM at start dropped": (BOM + b"data: x\n\n", [("", MSG, "x")], {}, None),
    "second BOM not dropped": (BOM + BOM + b"data: x\n\ndata: y\n\n", [("", MSG, "y")], {}, None),
    "BOM after the start not dropped": (b"data: a\n\n" + BOM + b"data: b\n\n", [("", MSG, "a")], {}, None),
    "BOM-like prefix that is not a BOM": (b"\xef\xbbdata: x\n\ndata: y\n\n", [("", MSG, "y")], {}, None),
    "data without colon": (b"data\n\n", [("", MSG, "")], {}, None),
    "two data lines without colon": (b"data\ndata\n\n", [("", MSG, "\n")], {}, None),
    "data: with nothing": (b"data:\n\n", [("", MSG, "")], {}, None),
    "data: with one space": (b"data: \n\n", [("", MSG, "")], {}, None),
    "data: only one space removed": (b"data:  x\n\n", [("", MSG, " x")], {}, None),
    "data:x without space": (b"data:x\n\n", [("", MSG, "x")], {}, None),
    "a colon in the value kept": (b"data: a: b:c\n\n", [("", MSG, "a: b:c")], {}, None),
    "trailing spaces kept": (b"data: x  \n\n", [("", MSG, "x  ")], {}, None),
    "unknown field ignored": (b"foo: bar\ndata: x\nfoo\n\n", [("", MSG, "x")], {}, None),
    "field names are case-sensitive": (b"Data: x\nEVENT: e\n\n", [], {}, None),
    "a space before the field name": (b" data: x\n\n", [], {}, None),
    "retry valid": (b"retry: 5000\n\n", [], {"retry": 5000}, None),
    "retry without space": (b"retry:250\ndata: x\n\n", [("", MSG, "x")], {"retry": 250}, None),
    "retry zero": (b"retry: 0\n\n", [], {"retry": 0}, None),
    "retry with leading zeros": (b"retry: 007\n\n", [], {"retry": 7}, None),
    "retry last valid value kept": (b"retry: 10\n\nretry: x\n\nretry: 20\nretry: 2x\n\n", [], {"retry": 20}, None),
    "retry applies without a blank line": (b"retry: 30\n", [], {"retry": 30}, None),
    "retry with a second space": (b"retry:  5\n\n", [], {"retry": None}, None),
    "retry 5x": (b"retry: 5x\n\n", [], {"retry": None}, None),
    "retry +5": (b"retry: +5\n\n", [], {"retry": None}, None),
    "retry -5": (b"retry: -5\n\n", [], {"retry": None}, None),
    "retry 1_0": (b"retry: 1_0\n\n", [], {"retry": None}, None),
    "retry 5.0": (b"retry: 5.0\n\n", [], {"retry": None}, None),
    "retry arabic-indic digits": ("retry: ١٢\n\n".encode(), [], {"retry": None}, None),
    "retry empty": (b"retry:\n\nretry\n\n", [], {"retry": None}, None),
    "retry trailing space": (b"retry: 5 \n\n", [], {"retry": None}, None),
    "retry beyond int() digit limit ignored": (b"retry: 3\nretry: " + b"9" * 5000 + b"\n\n", [], {"retry": 3}, None),
    "blank line with empty data buffer dispatches nothing": (
        b"event: x\n\n\n\ndata: y\n\n", [("", MSG, "y")], {}, None),
    "incomplete final event without blank line": (b"data: a\n\ndata: b\n", [("", MSG, "a")], {}, None),
    "incomplete final line": (b"data: a\n\ndata: b", [("", MSG, "a")], {}, None),
    "invalid UTF-8 replaced": (b"data: a\xffb\n\n", [("", MSG, "a\ufffdb")], {}, None),
    "truncated multibyte before a line end": (
        b"data: \xe2\x82\ndata: \xe2\x82\xac\n\n", [("", MSG, "\ufffd\n\u20ac")], {}, None),
    "invalid UTF-8 in id and event": (b"id: \xc3\nevent: \xff\ndata: x\n\n", [("\ufffd", "\ufffd", "x")], {}, None),
    "event over the cap skipped, next applied": (
        b"data: 0123456789abcdef\n\ndata: ok\n\n", [("", MSG, "ok")], {"oversized": 1}, 20),
    "skipped event's id not taken": (
        b"id: 1\ndata: a\n\nid: 2\ndata: 0123456789abcdef\n\ndata: b\n\n",
        [("1", MSG, "a"), ("1", MSG, "b")], {"oversized": 1, "last_event_id": "1"}, 20),
    "skipped event's id before the crossing line not taken": (
        b"id: 2\ndata: 0123456789\ndata: 0123456789\n\ndata: b\n\n", [("", MSG, "b")],
        {"oversized": 1, "last_event_id": ""}, 30),
    "skipped event's retry not taken": (
        b"retry: 5\n\nretry: 7\ndata: 0123456789abcdefghij\n\n", [], {"oversized": 1, "retry": 5}, 20),
    "skipped event discarded up to its blank line": (
        b"data: 0123456789\ndata: x\nid: 9\nretry: 1\n\ndata: y\n\n", [("", MSG, "y")],
        {"oversized": 1, "last_event_id": "", "retry": None}, 10),
    "skipped event counted once": (b"data: 0123456789\ndata: 0123456789\n\n", [], {"oversized": 1}, 10),
    "two skipped events counted twice": (
        b"data: 0123456789\n\ndata: 0123456789\n\ndata: ok\n\n", [("", MSG, "ok")], {"oversized": 2}, 10),
    # The cap counts the raw bytes of field lines with their line ends: "data: 123\n" is 10 bytes.
    "event exactly at the cap accepted (LF)": (b"data: 123\n\n", [("", MSG, "123")], {"oversized": 0}, 10),
    "event one byte over the cap skipped (LF)": (b"data: 1234\n\n", [], {"oversized": 1}, 10),
    "event exactly at the cap accepted (CRLF)": (b"data: 12\r\n\r\n", [("", MSG, "12")], {"oversized": 0}, 10),
    "event one byte over the cap skipped (CRLF)": (b"data: 123\r\n\r\n", [], {"oversized": 1}, 10),
    "all field lines count toward the cap": (b"id: 1\ndata: 1\n\nid: 1\ndata: 12\n\n", [("1", MSG, "1")],
                                             {"oversized": 1}, 14),
    "comments and BOM do not count toward the cap": (
        BOM + b": a long comment, longer than the cap\ndata: 123\n: another\n\n", [("", MSG, "123")],
        {"oversized": 0}, 10),
    "a long comment is not an oversized event": (b":" + b"c" * 100 + b"\ndata: x\n\n", [("", MSG, "x")],
                                                 {"oversized": 0}, 10),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("cut", ["whole", "bytewise"])
def test_framing(name, cut):
    stream, expected, attributes, cap = CASES[name]
    chunks = None if cut == "whole" else [stream[i:i + 1] for i in range(len(stream))]
    parser, events = parse(stream, cap or 1024 * 1024, chunks)
    assert triples(events) == expected
    for attribute, value in attributes.items():
        assert getattr(parser, attribute) == value, attribute
    assert parser.bytes_seen == len(stream)


def test_event_size_is_field_lines_with_line_ends():
    _, events = parse(b": c\r\nid: 1\r\ndata: ab\n\n")
    assert [e.size for e in events] == [len(b"id: 1\r\n") + len(b"data: ab\n")]


def test_feed_returns_events_completed_by_that_chunk():
    parser = EventStreamParser()
    assert parser.feed(b"data: a\n") == []
    assert triples(parser.feed(b"\ndata: b\n\ndata: c\n\nda")) == [("", MSG, "a"), ("", MSG, "b"), ("", MSG, "c")]
    assert triples(parser.feed(b"ta: d\n\n")) == [("", MSG, "d")]


def test_cr_at_chunk_end_then_lf_is_one_line_end():
    _, events = parse(b"", chunks=[b"data: a\r", b"\n", b"data: b\r", b"\ndata: c\r", b"", b"\n\r", b"\n"])
    assert triples(events) == [("", MSG, "a\nb\nc")]


def test_bom_split_across_chunks_dropped_once():
    _, events = parse(b"", chunks=[b"\xef", b"\xbb", b"\xbfdata: a\n\n", BOM + b"data: b\n\n"])
    assert triples(events) == [("", MSG, "a")]


def test_reset_event_drops_partial_event_keeps_id_and_retry():
    parser = EventStreamParser()
    parser.feed(b"retry: 100\nid: 1\ndata: a\n\nid: 2\ndata: partial\ndata: cut mid-li")
    parser.reset_event()
    assert (parser.last_event_id, parser.retry) == ("1", 100)
    assert triples(parser.feed(BOM + b"ne\ndata: b\n\n")) == [("1", MSG, "b")]


def test_bytes_seen_grows_for_a_comment_only_chunk():
    parser = EventStreamParser()
    assert parser.feed(b": ping\n") == []
    assert parser.bytes_seen == 7
    assert parser.feed(b":\n\n") == []
    assert parser.bytes_seen == 10


MIB = 1024 * 1024


def test_huge_line_without_newline_keeps_buffer_bounded():
    parser = EventStreamParser(max_event_bytes=MIB)
    assert parser.feed(b"id: 5\ndata: ") == []
    for _ in range(20):
        assert parser.feed(b"x" * MIB) == []
        assert parser.buffered <= MIB + MIB
        assert parser._size <= MIB
    assert parser.oversized == 1
    assert parser.feed(b"x" * 100 + b"\ndata: still the skipped event\n") == []
    assert parser.buffered <= MIB
    assert triples(parser.feed(b"\ndata: next\n\n")) == [("", MSG, "next")]
    assert (parser.oversized, parser.last_event_id, parser.buffered) == (1, "", 0)


def test_huge_comment_without_newline_keeps_buffer_bounded():
    parser = EventStreamParser(max_event_bytes=MIB)
    parser.feed(b":")
    for _ in range(20):
        parser.feed(b"c" * MIB)
        assert parser.buffered <= MIB
    assert triples(parser.feed(b"\ndata: next\n\n")) == [("", MSG, "next")]
    assert parser.oversized == 0


def test_huge_line_in_one_chunk_with_line_end():
    parser = EventStreamParser(max_event_bytes=1000)
    events = parser.feed(b"data: " + b"x" * 5_000_000 + b"\n\ndata: after\n\n" + b"data: " + b"y" * 5000)
    assert triples(events) == [("", MSG, "after")]
    assert parser.oversized == 2  # the second is still incomplete, already past the cap
    assert parser.buffered <= 1000


# --- Chunking anywhere gives the same result as feeding whole --------------------------------

PIECES = [
    b"data", b"data:", b"data: ", b"id: ", b"id", b"event: ", b"retry: ", b":", b" ", b"x", b"12", b"0",
    b"\r", b"\n", b"\r\n", b"\n\n", b"\r\r", b"\x00", BOM, b"\xef\xbb", b"\xc3\xa9", b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80", b"\xff", b"\xe2\x82", b"yyyyyyyyyyyyyyyyyyyy",
]
streams = st.one_of(
    st.tuples(st.booleans(), st.lists(st.sampled_from(PIECES), max_size=60)).map(
        lambda t: (BOM if t[0] else b"") + b"".join(t[1])),
    st.binary(max_size=200),
)


def outcome(parser, events):
    return triples(events), [e.size for e in events], parser.last_event_id, parser.retry, parser.oversized


@settings(max_examples=400, deadline=None)
@given(stream=streams, cap=st.sampled_from([1024 * 1024, 40, 12]), data=st.data())
def test_chunking_anywhere_gives_the_same_events(stream, cap, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert outcome(*parse(stream, cap, chunks)) == outcome(*parse(stream, cap))


@settings(max_examples=200, deadline=None)
@given(stream=streams, cap=st.sampled_from([1024 * 1024, 40]))
def test_bytewise_feeding_gives_the_same_events(stream, cap):
    chunks = [stream[i:i + 1] for i in range(len(stream))]
    assert outcome(*parse(stream, cap, chunks)) == outcome(*parse(stream, cap))


REFERENCE = (
    BOM + b"retry: 10\r\nid: 1\r\ndata: caf\xc3\xa9\r\n\r\n: beat\r\rdata: \xe2\x82\xac\rid: 22\r\r"
    b"event: e\ndata: 0123456789\ndata\n\nretry: 5\r\nid: 3\r\ndata: x\r\n\r\ndata: \xf0\x9f\x98\x80\n\n"
)


@pytest.mark.parametrize("cap", [1024 * 1024, *range(8, 40)])
def test_every_single_cut_gives_the_same_events(cap):
    """Every cut of a stream with CRLFs, CRs, a BOM and multibyte characters, at caps across its event sizes."""
    whole = outcome(*parse(REFERENCE, cap))
    for cut in range(len(REFERENCE) + 1):
        assert outcome(*parse(REFERENCE, cap, [REFERENCE[:cut], REFERENCE[cut:]])) == whole, cut
