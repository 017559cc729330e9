"""Small in-process caches for the origin's hot path.

`LruCache` bounds by total size (segments, indexes) so memory stays predictable whatever the
catalogue size; `TtlCache` remembers database lookups for a moment, which is what lets one
locator serve hundreds of segment requests per second without a query each (a deleted or
expired locator stops working within the TTL — one second by default).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """Least-recently-used mapping bounded by the sum of `weigh(value)`."""

    def __init__(self, capacity: int, weigh: Callable[[V], int] = lambda v: 1) -> None:
        self.capacity = capacity
        self._weigh = weigh
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: V) -> None:
        weight = self._weigh(value)
        if weight > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, weight)
            self._size += weight
            while self._size > self.capacity and self._items:
                _k, (_v, w) = self._items.popitem(last=False)
                self._size -= w

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)


class TtlCache(Generic[V]):
    """A mapping whose entries are forgotten `ttl` seconds after they were stored."""

    def __init__(self, ttl: float, max_items: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._clock = clock
        self._items: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable) -> tuple[bool, V | None]:
        item = self._items.get(key)
        if item is None or item[0] < self._clock():
            return False, None
        return True, item[1]

    def peek(self, key: Hashable, grace: float) -> tuple[str, V | None]:
        """("fresh" | "stale" | "miss", value): a stale entry (expired less than `grace` seconds
        ago) may still be served while one caller refreshes it — so an expiry never makes every
        concurrent request wait for the database at once."""
        item = self._items.get(key)
        if item is None:
            return "miss", None
        now = self._clock()
        if item[0] >= now:
            return "fresh", item[1]
        if item[0] + grace >= now:
            return "stale", item[1]
        return "miss", None

    def put(self, key: Hashable, value: V) -> None:
        if len(self._items) >= self.max_items:
            now = self._clock()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= self.max_items:
                self._items.clear()
        self._items[key] = (self._clock() + self.ttl, value)

    def clear(self) -> None:
        self._items.clear()
