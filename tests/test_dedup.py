"""The de-duplication window, in event time, per partition (explicit timestamps, no clock)."""

import pytest

from streams.dedup import ExpiryIndex

MIN = 60_000


def test_ids_expire_only_after_the_window_in_event_time_of_their_partition():
    index = ExpiryIndex(window_ms=10 * MIN, sweep_every_ms=MIN)
    index.add(0, "a", 0)
    index.add(0, "b", 5 * MIN)
    index.add(1, "x", 0)
    index.add(0, "c", 10 * MIN)          # watermark 10 min: nothing is older than 0
    assert index.pop_expired(0) == []
    index.add(0, "d", 12 * MIN)          # cutoff 2 min: a goes
    assert index.pop_expired(0) == ["a"]
    index.add(0, "e", 30 * MIN)          # cutoff 20 min: b, c, d go
    assert sorted(index.pop_expired(0)) == ["b", "c", "d"]
    assert index.pop_expired(1) == [], "partition 1's watermark did not move"
    assert index.size() == 2


def test_late_event_is_indexed_by_its_own_time():
    index = ExpiryIndex(window_ms=10 * MIN)
    index.add(0, "new", 60 * MIN)
    index.add(0, "late", 52 * MIN)       # out of order but inside the window
    assert index.is_expired(0, 52 * MIN) is False
    assert index.is_expired(0, 49 * MIN) is True
    index.add(0, "newer", 63 * MIN)
    assert index.pop_expired(0) == ["late"]


def test_sweeps_are_due_once_per_sweep_interval_of_event_time():
    index = ExpiryIndex(window_ms=10 * MIN, sweep_every_ms=MIN)
    assert not index.due(0)
    index.add(0, "a", 0)
    assert index.due(0)
    index.pop_expired(0)
    index.add(0, "b", 30_000)
    assert not index.due(0)
    index.add(0, "c", MIN)
    assert index.due(0)


def test_forget_partition_and_bad_window():
    index = ExpiryIndex(window_ms=MIN)
    index.add(2, "a", 0)
    index.forget_partition(2)
    assert index.size() == 0 and index.watermark(2) is None
    with pytest.raises(ValueError):
        ExpiryIndex(window_ms=0)
