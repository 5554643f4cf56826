"""Each process's copies of shared-cache entries (integrations_site/nearcache.py): given only while this
process listens on the channel, a fresh object each time, forgotten by a message from any process, and
never kept by a read that raced a forget. Without Redis nothing is kept.

Each test has a channel of its own, so no other test's messages reach it.
"""
import json
import time
import uuid

import pytest
import redis
from django.conf import settings

from integrations_site.nearcache import NearCache
from tests.helpers import embedded_broker

pytestmark = pytest.mark.django_db

REDIS = not embedded_broker()


@pytest.fixture
def near():
    return NearCache(f"test:nearcache:{uuid.uuid4().hex}")


def raw_redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def kept(near, name="record", value=None) -> dict:
    value = {"id": name, "tags": ["a"]} if value is None else value
    assert near.wait_listening(), "the listener did not subscribe"
    near.put(name, value, 30, near.generation())
    return value


def test_a_copy_is_given_only_while_listening_and_each_get_is_an_object_of_its_own(near):
    assert near.get("record") is None  # the first ask starts the listener: nothing is given before it listens
    if not REDIS:
        # Embedded: no channel, so nothing is ever kept and every read goes to the shared cache.
        assert near.wait_listening(timeout=0.2) is False
        near.put("record", {"id": 1}, 30, near.generation())
        assert near.get("record") is None
        return
    value = kept(near)
    first, second = near.get("record"), near.get("record")
    assert first == second == value
    first["tags"].append("changed by one request")
    assert near.get("record") == value  # another request never sees it
    assert first is not second


def test_copies_end_with_their_timeout(near):
    if not REDIS:
        assert near.generation() is None
        return
    assert near.wait_listening()
    near.put("short", {"id": 1}, 0.05, near.generation())
    assert near.get("short") == {"id": 1}
    time.sleep(0.1)
    assert near.get("short") is None


def test_a_forget_from_another_process_drops_the_copy(near):
    if not REDIS:
        near.forget(["record"])  # no channel: nothing to publish, and nothing fails
        assert near.get("record") is None
        return
    kept(near, "record")
    kept(near, "other")
    # Another process's forget is a message on the channel, published here on a connection of its own.
    assert raw_redis().publish(near.channel, json.dumps(["record"])) == 1  # this process's listener heard it
    assert near.get("record") is None  # given no more: the message waits unread, or has been applied
    assert near.wait_listening()  # applied
    assert near.get("record") is None
    assert near.get("other") is not None  # only what was named is forgotten


def test_no_copy_is_given_while_a_message_waits_unread(near):
    if not REDIS:
        return _embedded_keeps_nothing(near)
    kept(near)
    near._busy = True  # the listener has read a message off its connection and not applied it yet
    try:
        assert near.get("record") is None
    finally:
        near._busy = False
    assert near.get("record") is not None


def test_a_read_that_raced_a_forget_keeps_nothing(near):
    if not REDIS:
        return _embedded_keeps_nothing(near)
    assert near.wait_listening()
    before = near.generation()  # a request begins its read of the shared cache
    near.forget(["record"])  # meanwhile the record changes
    near.put("record", {"id": "read before the change"}, 30, before)
    assert near.get("record") is None
    assert until(lambda: near.generation() is not None)  # the forget's own message, heard here too, is applied
    near.put("record", {"id": "read after"}, 30, near.generation())
    assert near.get("record") == {"id": "read after"}


def test_a_lost_connection_drops_every_copy_and_gives_none_until_subscribed_again(near):
    if not REDIS:
        return _embedded_keeps_nothing(near)
    kept(near)
    assert raw_redis().client_kill_filter(_type="pubsub") >= 1
    # While the listener is not subscribed no copy is given; once it is again, the old ones are gone.
    assert until(lambda: not near._trusted())
    assert near.wait_listening(timeout=10)
    assert near.get("record") is None


def test_a_forked_child_starts_its_own_listener_with_no_copies(near):
    import os

    if not REDIS:
        return _embedded_keeps_nothing(near)
    kept(near)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's copies are not its own to give
        try:
            answer = {"at_once": near.get("record"), "listening": near.wait_listening(timeout=5)}
            answer["after"] = near.get("record")
            os.write(write, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = json.loads(os.read(read, 4096))
    os.waitpid(pid, 0)
    assert answer == {"at_once": None, "listening": True, "after": None}
    assert near.get("record") is not None  # the parent's own copy is untouched


def _embedded_keeps_nothing(near):
    near.put("record", {"id": 1}, 30, near.generation())
    assert near.get("record") is None
    assert near.wait_listening(timeout=0.1) is False
