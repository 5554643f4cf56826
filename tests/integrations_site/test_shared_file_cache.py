"""The embedded default's file cache: a cull removes what expired before anything live."""
import time

from integrations_site.cache import SharedFileCache


def test_a_cull_removes_expired_entries_and_keeps_the_live_counters(tmp_path):
    cache = SharedFileCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2}})
    for n in range(12):
        cache.set(f"old-{n}", n, timeout=1)
    cache.add("ratelimit:live", 0, timeout=60)
    cache.incr("ratelimit:live", 5)
    time.sleep(1.1)
    # Past the limit with the expired files, within it without them: each set may cull, and a cull that
    # removes the expired entries leaves every live one (8 new and the counter: 9 of at most 10).
    for n in range(8):
        cache.set(f"new-{n}", n, timeout=60)
    assert cache.get("ratelimit:live") == 5
    assert all(cache.get(f"new-{n}") == n for n in range(8))
    assert not any(cache.has_key(f"old-{n}") for n in range(12))


def test_live_entries_past_the_limit_are_still_culled(tmp_path):
    cache = SharedFileCache(str(tmp_path), {"OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2}})
    for n in range(30):
        cache.set(f"live-{n}", n, timeout=60)
    assert len(cache._list_cache_files()) <= 15  # the random cull still bounds the folder
