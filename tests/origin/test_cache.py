"""The origin's caches: size-bounded LRU eviction and TTL entries that can be served stale while
one refresh runs."""

from __future__ import annotations

from openams.origin.cache import LruCache, TtlCache


def test_lru_evicts_least_recently_used_by_weight() -> None:
    cache: LruCache[bytes] = LruCache(10, len)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # a is now the most recent
    cache.put("c", b"cccc")
    assert cache.get("b") is None and cache.get("a") == b"aaaa" and cache.get("c") == b"cccc"
    cache.put("huge", b"x" * 11)  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get("huge") is None and cache.size == 8


def test_ttl_fresh_stale_and_miss() -> None:
    now = [100.0]
    cache: TtlCache[str] = TtlCache(1.0, clock=lambda: now[0])
    cache.put("k", "v")
    assert cache.peek("k", 30) == ("fresh", "v") and cache.get("k") == (True, "v")
    now[0] += 5
    assert cache.peek("k", 30) == ("stale", "v") and cache.get("k") == (False, None)
    now[0] += 30
    assert cache.peek("k", 30) == ("miss", None)
    assert cache.peek("other", 30) == ("miss", None)
