"""Queue snapshots (streams.snapshots), pure: partials from two partitions merged per queue equal the
figures of one partition holding all events; a repeated partial changes nothing; revisions grow only
when figures change; an interval is published final once the watermark passes its end, and late
events re-publish it as a correction; the staffing figures follow Erlang C on the merged figures."""

from __future__ import annotations

import functools
import zlib

import orjson

from streams.config import load_settings
from streams.kpi import erlang
from streams.kpi.queues import QueueRules
from streams.kpi.windows import SiteClock
from streams.partition import PartitionConfig, PartitionState
from streams.snapshots import LatestSnapshots, merge, partition_partials, publish, published
from tests.test_engine_vs_oracle import arrivals

ZONE = "UTC"


def states(events, partitions: int):
    settings = load_settings()
    config = PartitionConfig(SiteClock(ZONE, 15), functools.cache(lambda q, c: QueueRules.of(settings.queue(q, c))))
    result = [PartitionState(config) for _ in range(partitions)]
    for i, event in enumerate(events):
        result[zlib.crc32(event.entity_key.encode()) % partitions].apply(event)
        if i % 100 == 0:
            for s in result:
                s.advance()
    for s in result:
        s.advance()
    return settings, config.clock, result


def merged_snapshots(settings, clock, parts, records=None):
    records = records if records is not None else {}
    out = []
    for p, state in enumerate(parts):
        for queue, partial in partition_partials(state).items():
            records[queue] = merge(records.get(queue), p, partial, clock)
            out += publish(records[queue], queue, settings, clock)
    return records, out


def latest(snaps):
    result = {}
    for s in snaps:
        result[(s.queue, s.channel, s.window.kind, s.window.start_ms)] = s
    return result


def test_partials_of_two_partitions_merge_to_the_figures_of_one(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = arrivals(seed=4, zone=ZONE, duration_s=2 * 3600)
    settings, clock, one = states(events, 1)
    _, _, two = states(events, 2)
    _, whole = merged_snapshots(settings, clock, one)
    records, split = merged_snapshots(settings, clock, two)
    a, b = latest(whole), latest(split)
    assert set(a) == set(b) and len(a) > 20
    # figures equal; `now` too, except that the split sees the max watermark of its two partitions
    assert {k: v.kpis for k, v in a.items()} == {k: v.kpis for k, v in b.items()}
    assert {s.window.kind for s in a.values()} >= {"interval", "today", "rolling_15m", "rolling_60m"}

    # the same partials again: nothing to publish
    again = []
    for p, state in enumerate(two):
        for queue, partial in partition_partials(state).items():
            records[queue] = merge(records[queue], p, partial, clock)
            again += publish(records[queue], queue, settings, clock)
    assert [s for s in again if s.window.kind in ("interval", "today")] == []


def test_revisions_final_and_corrections(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = sorted(arrivals(seed=6, zone=ZONE, duration_s=3 * 3600), key=lambda e: e.occurred_at)
    first_hour = [e for e in events if (e.occurred_at - events[0].occurred_at).total_seconds() < 3600]
    rest = events[len(first_hour):]
    settings, clock, parts = states(first_hour, 1)
    records, out1 = merged_snapshots(settings, clock, parts)
    state = parts[0]
    for e in rest:
        state.apply(e)
    state.advance()
    _, out2 = merged_snapshots(settings, clock, parts, records)
    closed = [s for s in out2 if s.window.kind == "interval" and s.final]
    assert closed and all(not s.correction for s in closed)
    assert all(s.now is None for s in closed)
    by_window = {(s.queue, s.channel, s.window.start_ms): s.revision for s in out1 if s.window.kind == "interval"}
    for s in closed:
        assert s.revision == by_window.get((s.queue, s.channel, s.window.start_ms), 0) + 1
    # a late answer into a closed interval: re-published as a correction, one revision up
    target = closed[0]
    late = next(e for e in events if e.event_type == "contact.enqueued" and e.queue == target.queue
                and target.window.start_ms <= e.occurred_at.timestamp() * 1000 < target.window.end_ms)
    state.apply(late.model_copy(update={"event_id": "late-1", "contact_id": "late-contact"}))
    state.advance()
    _, out3 = merged_snapshots(settings, clock, parts, records)
    (fixed,) = [s for s in out3 if s.window.kind == "interval" and s.queue == target.queue
                and s.channel == target.channel and s.window.start_ms == target.window.start_ms]
    assert fixed.final and fixed.correction and fixed.revision == target.revision + 1
    assert fixed.kpis.offered == target.kpis.offered + 1


def test_a_new_owner_exports_what_the_last_owner_published_from_the_restored_records(monkeypatch):
    """After a restart or rebalance the queue records say every window was sent, so `publish` sends
    nothing until figures change; the new owner's gauges come from `published` instead."""
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = arrivals(seed=4, zone=ZONE, duration_s=2 * 3600)
    settings, clock, parts = states(events, 2)
    records, out = merged_snapshots(settings, clock, parts)
    live = LatestSnapshots(clock)
    for snap in out:
        live.remember(snap)
    restored = {queue: orjson.loads(orjson.dumps(record)) for queue, record in records.items()}   # the changelog
    assert [s for queue in restored for s in publish(restored[queue], queue, settings, clock)] == []

    taken_over = LatestSnapshots(clock)
    for queue, record in restored.items():
        for snap in published(record, queue, settings, clock):
            taken_over.remember(snap)
    want, got = live.labelled(), taken_over.labelled()
    assert {"interval_current", "interval_previous", "today", "rolling_15m"} <= {k[2] for k in want}
    assert set(got) == set(want)
    for key, snap in want.items():
        assert (got[key].kpis, got[key].now, got[key].revision, got[key].final) == \
            (snap.kpis, snap.now, snap.revision, snap.final), key


def test_staffing_figures_follow_erlang_c_on_the_merged_window(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = arrivals(seed=4, zone=ZONE, duration_s=3 * 3600)
    settings, clock, parts = states(events, 2)
    _, snaps = merged_snapshots(settings, clock, parts)
    snaps = latest(snaps)
    checked = 0
    for (queue, channel, kind, _), s in snaps.items():
        if kind != "today" or s.now is None or s.now.required_agents is None:
            continue
        r15 = next(v for k, v in snaps.items() if k[:3] == (queue, channel, "rolling_15m"))
        r60 = next(v for k, v in snaps.items() if k[:3] == (queue, channel, "rolling_60m"))
        rules = settings.queue(queue, channel)
        concurrency = 1.0
        if channel == "chat" and s.now.agents_online:
            concurrency = max(1.0, s.now.agents_online and _capacity(parts, queue) / s.now.agents_online)
        want = erlang.required_agents(r15.kpis.offered / 900, r60.kpis.aht_s, rules.threshold_s, rules.sl_target,
                                      concurrency=concurrency)
        assert s.now.required_agents == want, (queue, channel)
        assert s.now.staffing_gap == want - (s.now.agents_available + s.now.agents_on_contact)
        serving = s.now.agents_available + s.now.agents_on_contact + s.now.agents_acw
        if serving:
            assert s.now.estimated_wait_s == (s.now.waiting + 1) * r60.kpis.aht_s / serving
        checked += 1
    assert checked >= 3


def _capacity(parts, queue) -> int:
    from streams.kpi.agents import agents_now
    total = 0
    for state in parts:
        now = agents_now(state.agents.values(), state.watermark_ms * 1000).get(("queue", queue))
        total += now.chat_capacity if now else 0
    return total
