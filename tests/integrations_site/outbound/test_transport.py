"""The transport: keep-alive and stale connections, checked addresses, request_many, loops and threads.

Every test talks to ``Server`` (conftest): raw sockets, exact bytes, counted
connections and requests in flight.
"""
import asyncio
import os
import socket
import threading
import time

import pytest

from integrations_site import outbound
from integrations_site.outbound import transport

from .conftest import Reply, closed_port, delayed, echo_path, ok


def wait_for_hang_up(server):
    assert server.hung_up.wait(2)
    time.sleep(0.05)  # the FIN reaches the client while its loop is idle


# --- Keep-alive ---------------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(allow_local, serve):
    server = serve(echo_path)
    bodies = [outbound.request("GET", server.url(f"/{i}")).body for i in range(5)]
    assert bodies == [f"/{i}".encode() for i in range(5)]
    assert [(r.connection, r.number) for r in server.received] == [(0, i) for i in range(5)]


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close"])
def test_connection_close_in_an_answer_means_a_new_connection_next_time(allow_local, serve, value):
    server = serve(lambda received: ok(headers=b"Connection: %s\r\n" % value))
    for _ in range(3):
        assert outbound.request("GET", server.url()).body == b"ok"
    assert server.connections == 3


def test_an_http_1_0_answer_is_not_reused(allow_local, serve):
    server = serve(lambda received: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    for _ in range(2):
        assert outbound.request("GET", server.url()).body == b"ok"
    assert server.connections == 2


def test_a_close_delimited_body_is_read_whole_and_the_connection_not_reused(allow_local, serve):
    server = serve(lambda r: Reply([b"HTTP/1.1 200 OK\r\n\r\n", b"first part,", 0.05, b" second part"], close=True))
    first, second = (outbound.request("GET", server.url()) for _ in range(2))
    assert first.body == second.body == b"first part, second part"
    assert server.connections == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_after_the_server_closed_an_idle_connection_the_next_request_uses_a_new_one(allow_local, serve, method):
    server = serve(lambda received: Reply([ok(received.method.encode())], close=received.connection == 0))
    assert outbound.request(method, server.url()).body == method.encode()
    wait_for_hang_up(server)
    assert outbound.request(method, server.url(), body=b"payload" if method == "POST" else None).body == method.encode()
    assert [(r.connection, r.number) for r in server.received] == [(0, 0), (1, 0)]


def drop_the_second_request(received):
    """Echo the path, but close the first connection when its second request arrives."""
    if (received.connection, received.number) == (0, 1):
        return Reply([], close=True)
    return echo_path(received)


def test_a_get_is_sent_again_on_a_new_connection_when_a_kept_one_is_dropped_on_the_request(allow_local, serve):
    server = serve(drop_the_second_request)
    assert outbound.request("GET", server.url("/one")).body == b"/one"
    assert outbound.request("GET", server.url("/two")).body == b"/two"
    assert [(r.connection, r.number, r.path) for r in server.received] == [(0, 0, "/one"), (0, 1, "/two"),
                                                                           (1, 0, "/two")]


def test_a_post_is_not_sent_again_when_a_kept_connection_is_dropped_on_the_request(allow_local, serve):
    server = serve(drop_the_second_request)
    assert outbound.request("GET", server.url("/one")).body == b"/one"
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("POST", server.url("/two"), body=b"{}", retries=2)
    assert "closed unexpectedly" in caught.value.message
    assert [r.method for r in server.received] == ["GET", "POST"]


def test_a_post_closed_before_the_answer_is_sent_once(allow_local, serve):
    server = serve(lambda received: Reply([], close=True))
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("POST", server.url(), body=b"{}")
    assert "closed unexpectedly" in caught.value.message
    assert server.connections == 1


@pytest.mark.parametrize("loop", ["thread", "process"])
@pytest.mark.parametrize("pause", [0.05, None], ids=["later", "same-packet"])
@pytest.mark.parametrize("extra", [
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",  # a second answer nobody asked for
    b"garbage",
])
def test_bytes_sent_after_a_complete_answer_are_never_taken_as_the_next_answer(allow_local, serve, loop, pause,
                                                                               extra):
    def answer(received):
        if received.connection == 0:
            return Reply([ok(b"first"), pause, extra] if pause else [ok(b"first") + extra])
        return ok(b"second")

    def send():
        if loop == "thread":
            return outbound.request("GET", server.url())
        answer = outbound.request_many([{"method": "GET", "url": server.url()}], concurrency=1, process_wide=True)[0]
        if isinstance(answer, outbound.OutboundError):
            raise answer
        return answer

    server = serve(answer)
    try:
        assert send().body == b"first"
    except outbound.OutboundError as exc:  # garbage read with the answer in one read refuses that read whole
        assert (extra, pause, "malformed" in exc.message) == (b"garbage", None, True)
    time.sleep(0.2)  # the extra bytes arrive while the connection is idle (parsed at once on the process loop)
    response = send()
    assert (response.status_code, response.body) == (200, b"second")
    assert server.connections == 2


def test_an_idle_connection_older_than_the_pool_limit_is_not_reused(allow_local, serve, monkeypatch):
    monkeypatch.setattr(transport, "POOL_IDLE_SECONDS", 0.05)
    monkeypatch.setattr(transport, "_local", threading.local())  # a new loop, with a session made now
    server = serve(echo_path)
    outbound.request("GET", server.url("/1"))
    outbound.request("GET", server.url("/2"))
    time.sleep(0.1)
    outbound.request("GET", server.url("/3"))
    assert [r.connection for r in server.received] == [0, 0, 1]


def test_an_answer_refused_before_its_end_leaves_its_connection_unused(allow_local, serve):
    # The rest of the body is still on its way: it must never be read as the next answer.
    server = serve(lambda received: ok(b"x" * 4_000_000) if received.path == "/big" else echo_path(received))
    assert outbound.request("GET", server.url("/one")).body == b"/one"
    with pytest.raises(outbound.ResponseTooLarge):
        outbound.request("GET", server.url("/big"), max_bytes=100)
    assert outbound.request("GET", server.url("/two")).body == b"/two"
    assert [(r.connection, r.path) for r in server.received] == [(0, "/one"), (0, "/big"), (1, "/two")]


def test_different_host_names_on_one_address_do_not_share_connections(settings, stub_dns, serve):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    stub_dns({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    server = serve(echo_path)
    for host in ("a.test", "b.test", "a.test"):
        outbound.request("GET", f"http://{host}:{server.port}/")
    assert [(r.connection, r.header("host")) for r in server.received] == [
        (0, [f"a.test:{server.port}"]), (1, [f"b.test:{server.port}"]), (0, [f"a.test:{server.port}"])]


# --- Checked addresses --------------------------------------------------------------------------


def test_each_checked_address_is_tried_in_turn(settings, stub_dns, serve):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.0/8", "::1"]
    server = serve(echo_path)
    stub_dns({"api.test": ["::1", "127.0.0.3", "127.0.0.1"]})  # nothing listens on the first two
    assert outbound.request("GET", f"http://api.test:{server.port}/x").body == b"/x"


def test_an_ipv6_address_is_reached(settings, stub_dns, serve):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    settings.OUTBOUND_ALLOWED_HOSTS = ["::1"]
    server = serve(echo_path, host="::1", family=socket.AF_INET6)
    stub_dns({"v6.test": ["127.0.0.1", "::1"]})
    settings.OUTBOUND_ALLOWED_HOSTS = ["::1", "127.0.0.1"]
    assert outbound.request("GET", f"http://v6.test:{server.port}/six").body == b"/six"
    assert outbound.request("GET", f"http://[::1]:{server.port}/literal").body == b"/literal"


def test_when_no_checked_address_answers_the_request_fails(settings, stub_dns):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.0/8"]
    stub_dns({"api.test": ["127.0.0.2", "127.0.0.3"]})
    with pytest.raises(outbound.OutboundError) as caught:
        outbound.request("GET", f"http://api.test:{closed_port()}/")
    assert (caught.value.code, type(caught.value)) == ("CONNECTION_FAILED", outbound.OutboundError)


def test_the_resolver_checks_a_host_the_client_did_not_check_first(settings, stub_dns):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    stub_dns({"api.test": ["8.8.8.8", "10.0.0.1"]})

    async def resolve():
        return await transport.RESOLVER.resolve("api.test", 443)

    with pytest.raises(outbound.UrlNotAllowed):
        asyncio.run(resolve())


# --- request_many -------------------------------------------------------------------------------


def test_request_many_answers_in_call_order_not_completion_order(allow_local, serve):
    finished = []

    def answer(received):
        time.sleep({"/a": 0.3, "/b": 0.15, "/c": 0.0}[received.path])
        finished.append(received.path)
        return echo_path(received)

    server = serve(answer)
    results = outbound.request_many([{"method": "GET", "url": server.url(p)} for p in ("/a", "/b", "/c")],
                                    concurrency=3)
    assert finished == ["/c", "/b", "/a"]
    assert [r.body for r in results] == [b"/a", b"/b", b"/c"]


def test_request_many_returns_each_error_in_its_slot_while_the_others_succeed(allow_local, serve):
    server = serve(lambda received: (received.path != "/slow" or server.stopped.wait(3)) and echo_path(received))
    calls = [
        {"method": "GET", "url": server.url("/first")},
        {"method": "GET", "url": "http://10.0.0.1/refused"},
        {"method": "GET", "url": f"http://127.0.0.1:{closed_port()}/closed"},
        {"method": "GET", "url": server.url("/slow"), "timeout": 0.3},
        {"method": "GET", "url": server.url("/last")},
    ]
    results = outbound.request_many(calls, concurrency=5)
    assert [type(r) for r in results] == [outbound.OutboundResponse, outbound.UrlNotAllowed, outbound.OutboundError,
                                          outbound.OutboundTimeout, outbound.OutboundResponse]
    assert [results[0].body, results[4].body] == [b"/first", b"/last"]
    assert [r.code for r in results[1:4]] == ["URL_NOT_ALLOWED", "CONNECTION_FAILED", "TIMEOUT"]
    assert all(e.started_at is not None and e.elapsed_ms is not None for e in results[1:4])
    assert results[3].elapsed_ms >= 250


@pytest.mark.parametrize(("concurrency", "limit"), [(1, 1), (3, 3), (0, 1)])
def test_request_many_keeps_at_most_concurrency_requests_in_flight(allow_local, serve, concurrency, limit):
    server = serve(delayed(0.08))
    results = outbound.request_many([{"method": "GET", "url": server.url(f"/{i}")} for i in range(9)],
                                    concurrency=concurrency)
    assert [r.body for r in results] == [f"/{i}".encode() for i in range(9)]
    assert server.max_in_flight == limit


def test_request_many_reuses_its_connections(allow_local, serve):
    server = serve(delayed(0.02))
    results = outbound.request_many([{"method": "GET", "url": server.url(f"/{i}")} for i in range(12)],
                                    concurrency=3)
    assert all(r.status_code == 200 for r in results)
    assert server.connections <= 3


def test_request_many_of_nothing_returns_an_empty_list_without_starting_a_loop(monkeypatch):
    monkeypatch.setattr(transport, "process_loop", lambda: pytest.fail("the process loop was started"))
    monkeypatch.setattr(transport, "run", lambda coro: pytest.fail("a thread loop was started"))
    assert outbound.request_many([], concurrency=3) == []
    assert outbound.request_many([], concurrency=3, process_wide=True) == []


# --- Loops and threads --------------------------------------------------------------------------


def run_in_threads(count: int, work) -> dict:
    """``work(index)`` in ``count`` threads started together; their results by index."""
    barrier = threading.Barrier(count)
    results, errors = {}, []

    def target(index):
        try:
            barrier.wait(5)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    return results


def test_process_wide_limit_is_shared_by_every_thread(allow_local, serve):
    server = serve(delayed(0.04))

    def work(thread):
        calls = [{"method": "GET", "url": server.url(f"/t{thread}/{i}")} for i in range(10)]
        return outbound.request_many(calls, concurrency=3, process_wide=True)

    results = run_in_threads(4, work)
    for thread in range(4):
        assert [r.body for r in results[thread]] == [f"/t{thread}/{i}".encode() for i in range(10)]
    assert server.max_in_flight == 3
    assert server.connections <= 3  # one loop, one pool of connections for the whole process


def test_without_process_wide_each_thread_has_its_own_limit(allow_local, serve):
    server = serve(delayed(0.25))

    def work(thread):
        return outbound.request_many([{"method": "GET", "url": server.url(f"/t{thread}/{i}")} for i in range(3)],
                                     concurrency=3)

    results = run_in_threads(4, work)
    assert all(r.status_code == 200 for thread in results.values() for r in thread)
    assert server.max_in_flight > 3


async def running_loop():
    return asyncio.get_running_loop()


def test_request_works_from_two_threads_each_on_its_own_loop(allow_local, serve):
    server = serve(delayed(0.02))

    def work(thread):
        bodies = [outbound.request("GET", server.url(f"/t{thread}/{i}")).body for i in range(3)]
        return bodies, transport.run(running_loop()), transport.run(running_loop())

    results = run_in_threads(2, work)
    for thread in range(2):
        bodies, loop, same_loop = results[thread]
        assert bodies == [f"/t{thread}/{i}".encode() for i in range(3)]
        assert loop is same_loop
    assert results[0][1] is not results[1][1]
    assert server.connections == 2  # each thread keeps its own connection, never the other's


def test_a_thread_can_use_its_own_loop_and_the_process_loop_in_turn(allow_local, serve):
    server = serve(echo_path)

    def work(thread):
        first = outbound.request("GET", server.url(f"/t{thread}/a")).body
        shared = outbound.request_many([{"method": "GET", "url": server.url(f"/t{thread}/b")}], concurrency=2,
                                       process_wide=True)[0].body
        return [first, shared, outbound.request("GET", server.url(f"/t{thread}/c")).body]

    results = run_in_threads(2, work)
    for thread in range(2):
        assert results[thread] == [f"/t{thread}/{step}".encode() for step in "abc"]


def test_arequest_on_a_loop_of_the_callers_own(allow_local, serve):
    server = serve(echo_path)

    async def main():
        try:
            answers = await asyncio.gather(*(outbound.arequest("GET", server.url(f"/{i}")) for i in range(3)))
            return [a.body for a in answers]
        finally:
            await transport.aclose()

    assert asyncio.run(main()) == [b"/0", b"/1", b"/2"]


def test_a_forked_child_uses_none_of_its_parents_connections(allow_local, serve):
    server = serve(echo_path)
    outbound.request("GET", server.url("/parent"))
    outbound.request_many([{"method": "GET", "url": server.url("/parent-shared")}], concurrency=1, process_wide=True)
    pid = os.fork()
    if pid == 0:  # the child: its own loops and connections, or a non-zero exit
        code = 1
        try:
            inherited = list(transport._sessions.values())
            transport._close_sessions()  # what exit runs: a child must leave its parent's connections alone
            assert inherited and not any(s.closed for s in inherited)
            ok_thread = outbound.request("GET", server.url("/child")).body == b"/child"
            ok_shared = outbound.request_many([{"method": "GET", "url": server.url("/child-shared")}], concurrency=1,
                                              process_wide=True)[0].body == b"/child-shared"
            code = 0 if ok_thread and ok_shared else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    by_path = {r.path: r.connection for r in server.received}
    assert by_path["/child"] not in (by_path["/parent"], by_path["/parent-shared"])
    assert by_path["/child-shared"] not in (by_path["/parent"], by_path["/parent-shared"])
