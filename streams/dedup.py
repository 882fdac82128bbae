"""Bounded memory of seen event ids, expiring in event time.

Sources deliver at least once, so the same event can arrive twice; the engine remembers each
event's id for `window_ms` of event time after the newest event seen on the same partition (the
partition's watermark) and drops repeats. The ids themselves live in a Faust table (so the memory
survives a restart through its changelog); this module only decides which ids have fallen out of
the window, per partition, so that deletions go to the partition that owns them.
"""

from __future__ import annotations

import heapq
from collections import defaultdict


class ExpiryIndex:
    """Per-partition min-heaps of (event time, key), popped as the partition's watermark advances."""

    __slots__ = ("window_ms", "sweep_every_ms", "_heaps", "_watermark", "_swept_at")

    def __init__(self, window_ms: int, sweep_every_ms: int = 60_000) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        self.window_ms = window_ms
        self.sweep_every_ms = sweep_every_ms
        self._heaps: defaultdict[int, list[tuple[int, str]]] = defaultdict(list)
        self._watermark: dict[int, int] = {}
        self._swept_at: dict[int, int] = {}

    def add(self, partition: int, key: str, event_ms: int) -> None:
        heapq.heappush(self._heaps[partition], (event_ms, key))
        if event_ms > self._watermark.get(partition, -1):
            self._watermark[partition] = event_ms

    def watermark(self, partition: int) -> int | None:
        return self._watermark.get(partition)

    def is_expired(self, partition: int, event_ms: int) -> bool:
        """Whether an event this old is already outside the window (its id may have been forgotten)."""
        mark = self._watermark.get(partition)
        return mark is not None and event_ms < mark - self.window_ms

    def due(self, partition: int) -> bool:
        """Whether enough event time passed on this partition since its last sweep."""
        mark = self._watermark.get(partition)
        return mark is not None and mark - self._swept_at.get(partition, -(2**62)) >= self.sweep_every_ms

    def pop_expired(self, partition: int) -> list[str]:
        """Remove and return the keys older than the partition's watermark minus the window."""
        mark = self._watermark.get(partition)
        heap = self._heaps.get(partition)
        if mark is None or not heap:
            return []
        self._swept_at[partition] = mark
        cutoff = mark - self.window_ms
        expired = []
        while heap and heap[0][0] < cutoff:
            expired.append(heapq.heappop(heap)[1])
        return expired

    def forget_partition(self, partition: int) -> None:
        """Drop a partition's index (it was revoked: another worker owns its ids now)."""
        self._heaps.pop(partition, None)
        self._watermark.pop(partition, None)
        self._swept_at.pop(partition, None)

    def size(self) -> int:
        return sum(len(h) for h in self._heaps.values())
