"""The partition state (records + derived aggregates) against the oracles, and its rebuild from the
changelog values it emitted: a restarted worker must resume with exactly the same aggregates."""

from __future__ import annotations

import functools
from collections import Counter

import pytest

from streams.config import load_settings
from streams.kpi.queues import QueueCounters, QueueRules
from streams.kpi.windows import SiteClock, to_ms
from streams.partition import Outcome, PartitionConfig, PartitionState, TooLate
from tests import oracle
from tests.test_engine_vs_oracle import COUNTS, RATIOS, arrivals
from tests.oracle_compare import assert_same_window


@functools.cache
def feed(zone: str):
    return arrivals(seed=5, zone=zone, duration_s=6 * 3600)


REPEAT_WINDOW_S = 1800


def config_for(zone: str) -> PartitionConfig:
    settings = load_settings()
    return PartitionConfig(SiteClock(zone, 15), functools.cache(lambda q, c: QueueRules.of(settings.queue(q, c))),
                           repeat_window_us=REPEAT_WINDOW_S * 1_000_000)


def run(zone: str, events, changelog: dict[str, bytes] | None = None) -> PartitionState:
    state = PartitionState(config_for(zone))
    for n, event in enumerate(events, 1):
        state.apply(event)
        if n % 200 == 0 or n == len(events):
            for target, subject, payload in state.take_side():  # one partition: the targets are here
                state.apply_side(target, subject, payload)
            state.advance()
            if changelog is not None:
                changed, deleted = state.take_dirty()
                changelog.update(changed)
                for key in deleted:
                    changelog.pop(key, None)
    return state


def snapshot(state: PartitionState) -> dict:
    def plain(table):
        return {k: v for k, v in table.items() if not v.is_empty()} if table else {}

    def agent(table):  # zero entries (a stretch added, then retracted) are no difference
        return {k: ({s: us for s, us in v.state_us.items() if us}, {r: us for r, us in v.not_ready_reason_us.items() if us})
                for k, v in table.items() if not v.is_empty()}

    return {
        "queue_intervals": plain(state.queues.intervals), "queue_days": plain(state.queues.days),
        "queue_buckets": plain(state.queues.buckets),
        "agent_intervals": agent(state.agent_time.intervals), "agent_days": agent(state.agent_time.days),
        "ticket_intervals": plain(state.tickets.intervals), "quality_intervals": plain(state.quality.intervals),
        "waiting": state.waiting, "handling": state.handling, "watermark": state.watermark_ms, "legs": state.legs,
        "records": sorted(state.records),
        "open_agents": {k: {i: tuple(b) for i, b in v.items() if b[0]} for k, v in state.open_agents.starts.items()
                        if any(b[0] for b in v.values())},
    }


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_queue_intervals_and_days_match_the_oracle(zone, monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    settings = load_settings()
    events = feed(zone)
    state = run(zone, events)
    assert state.counts["duplicate"] > 50 and state.counts["accepted"] > 5000
    expected = oracle.queue_kpis(
        events, timezone=zone, interval_minutes=15,
        rules=lambda q, c: oracle.QueueRules(settings.queue(q, c).threshold_s, settings.queue(q, c).short_abandon_s))
    actual = {k: v for k, v in state.queues.intervals.items() if not v.is_empty()}
    assert set(actual) == {(q, c, to_ms(s)) for q, c, s in expected}
    for (q, c, start), want in expected.items():
        assert_same_window(actual[(q, c, to_ms(start))], want, (q, c, start), COUNTS, RATIOS)
    # a day window is the sum of its intervals
    clock = state.config.clock
    for (q, c, day), got in state.queues.days.items():
        summed = QueueCounters()
        for (q2, c2, start), counters in state.queues.intervals.items():
            if (q2, c2) == (q, c) and clock.day_start(start) == day:
                for name in COUNTS:
                    setattr(summed, name, getattr(summed, name) + getattr(counters, name))
        for name in COUNTS:
            assert getattr(got, name) == getattr(summed, name), (q, c, day, name)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_rebuild_from_the_changelog_gives_the_same_aggregates(zone, monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    changelog: dict[str, bytes] = {}
    events = feed(zone)
    live = run(zone, events, changelog)
    rebuilt = PartitionState.rebuild(config_for(zone), changelog.items())
    assert snapshot(rebuilt) == snapshot(live)
    assert len(rebuilt.records) == len(live.records) > 1000
    for state in (live, rebuilt):   # kept as records come and go (the exposition's floorwatch_state_records)
        assert +state.record_kinds == Counter(key.split(":")[0] for key in state.records)
    # and the rebuilt state goes on exactly like the live one: repeats are still recognised
    again = [rebuilt.apply(e) for e in events[-300:]]
    assert all(o in (Outcome.duplicate, Outcome.ignored) or isinstance(o, TooLate) for o in again), again


def test_a_worker_killed_mid_write_resumes_like_the_live_state(monkeypatch):
    """SIGKILL while a batch's records are half written: the rebuild sees some records of the last
    batch at their new version and others at their old one, the engine replays from an earlier
    committed position, and the side entries the lost records produced never went out. Resending
    every side entry of the rebuilt partition makes it end exactly like the live state."""
    import random

    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = feed("Europe/Berlin")
    rng = random.Random(7)
    batch = 200

    def drive(state: PartitionState, evs, changelog: dict, lose_last: bool = False) -> None:
        for start in range(0, len(evs), batch):
            for event in evs[start:start + batch]:
                state.apply(event)
            for target, subject, payload in state.take_side():
                state.apply_side(target, subject, payload)
            state.advance()
            changed, deleted = state.take_dirty()
            if lose_last and start + batch >= len(evs):  # the kill: about half of the write is lost
                changed = {k: v for k, v in changed.items() if rng.random() < 0.5}
                deleted = {k for k in deleted if rng.random() < 0.5}
            changelog.update(changed)
            for key in deleted:
                changelog.pop(key, None)

    def resume(cut: int, resend: bool) -> PartitionState:
        changelog: dict[str, bytes] = {}
        drive(PartitionState(config_for("Europe/Berlin")), events[:cut], changelog, lose_last=True)
        rebuilt = PartitionState.rebuild(config_for("Europe/Berlin"), changelog.items())
        resent = rebuilt.take_side()
        chats = {key for key, r in rebuilt.records.items()
                 if r.contact is not None and any(e.channel == "chat" and e.agent for e in r.contact.events)}
        assert chats and chats <= {subject for _, subject, _ in resent}
        for target, subject, payload in resent if resend else ():
            rebuilt.apply_side(target, subject, payload)
        drive(rebuilt, events[cut - 3 * batch:], changelog)   # replay from three batches back
        return rebuilt

    live_state = PartitionState(config_for("Europe/Berlin"))
    drive(live_state, events, {})
    live = snapshot(live_state)
    cuts = [c - c % batch for c in (len(events) // 3, len(events) // 2, 2 * len(events) // 3)]
    for cut in cuts:
        assert snapshot(resume(cut, resend=True)) == live, cut
    # without the resend, the side entries of the lost records are missing somewhere
    assert any(snapshot(resume(cut, resend=False)) != live for cut in cuts)


def test_events_older_than_retention_are_too_late(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = feed("UTC")
    state = run("UTC", events)
    since = state.retained_since_ms()
    old = events[0].model_copy(update={"occurred_at": events[0].occurred_at.replace(year=2024),
                                       "event_id": "brand-new"})
    outcome = state.apply(old)
    assert isinstance(outcome, TooLate) and outcome.retained_since_us == since * 1000


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_chat_slots_and_repeat_fcr_through_side_entries_match_the_oracles(zone, monkeypatch):
    from datetime import UTC, datetime

    from tests import oracle_quality

    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = feed(zone)
    state = run(zone, events)
    at_us = state.watermark_ms * 1000
    at = datetime.fromtimestamp(state.watermark_ms / 1000, tz=UTC)
    assert_chat_slots_match_the_oracle([state], events, at_us)
    # repeat-based FCR per (queue, interval), as known at the watermark
    want = oracle_quality.quality_kpis(events, timezone=zone, interval_minutes=15, at=at,
                                       repeat_window_s=REPEAT_WINDOW_S)
    got = {key: c for key, c in state.quality.intervals.items() if not c.is_empty()}
    for (queue, start), w in want.items():
        c = got.get((queue, int(start.timestamp() * 1000)))
        for name in ("repeat_reported", "repeat_fcr", "repeat_pending", "repeat_unknown_customer"):
            assert (getattr(c, name) if c else 0) == getattr(w, name), (queue, start, name)
    assert sum(w.repeat_reported for w in want.values()) > 20
    assert sum(w.repeat_fcr for w in want.values()) < sum(w.repeat_reported for w in want.values())


def test_across_midnight_and_a_dst_change_with_retention(monkeypatch):
    """30 h of a Berlin site from the evening before the spring DST change (a 23-hour day) into the
    day after: windows stay exact on the retained days, older ones and their records are dropped
    (and deleted from the changelog), and a rebuild still equals the live state."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    settings = load_settings()
    zone = "Europe/Berlin"
    start = datetime(2025, 3, 29, 20, 0, tzinfo=ZoneInfo(zone))
    events = arrivals(seed=8, zone=zone, duration_s=31 * 3600, start=start)
    changelog: dict[str, bytes] = {}
    state = run(zone, events, changelog)
    clock = state.config.clock
    since = state.retained_since_ms()
    assert since == to_ms(datetime(2025, 3, 30, 0, 0, tzinfo=ZoneInfo(zone)))
    # the DST day is 23 hours long, and its day window is the sum of its 92 intervals
    day = clock.day_start(since)
    assert clock.day_end(day) - day == 23 * 3600 * 1000
    assert len(list(clock.intervals_between(day, clock.day_end(day)))) == 92
    # nothing before retention is kept; records from the first evening are gone, also from the changelog
    assert all(k[-1] >= since for k in state.queues.intervals) and all(k[-1] >= since for k in state.queues.days)
    evening = {e.entity_key for e in events if to_ms(e.occurred_at) < since - 3600_000}
    later = {e.entity_key for e in events if to_ms(e.occurred_at) >= since - 3600_000}
    gone = {k for k in evening - later if k.startswith("contact:")}
    assert gone and not gone & set(state.records) and not gone & set(changelog)
    # retained windows equal the oracle over all events (the dropped ones only touched older windows)
    expected = oracle.queue_kpis(
        events, timezone=zone, interval_minutes=15,
        rules=lambda q, c: oracle.QueueRules(settings.queue(q, c).threshold_s, settings.queue(q, c).short_abandon_s))
    kept = {(q, c, to_ms(s)): w for (q, c, s), w in expected.items() if to_ms(s) >= since}
    actual = {k: v for k, v in state.queues.intervals.items() if not v.is_empty()}
    assert set(actual) == set(kept)
    for key, want in kept.items():
        assert_same_window(actual[key], want, key, COUNTS, RATIOS)
    for (q, c, d), got in state.queues.days.items():
        if d == day:
            for name in COUNTS:
                assert getattr(got, name) == sum(getattr(w, name) for (q2, c2, s), w in kept.items()
                                                 if (q2, c2) == (q, c) and clock.day_start(s) == day), (q, c, name)
    assert snapshot(PartitionState.rebuild(config_for(zone), changelog.items())) == snapshot(state)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_open_agents_ledger_equals_every_agents_running_stretch_and_agents_now(zone, monkeypatch):
    """The scrape reads agents from `OpenAgents` buckets; they must equal the per-agent computation."""
    from collections import defaultdict

    from streams.kpi.agents import agents_now
    from streams.partition import AGENT_SCOPES

    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    state = run(zone, feed(zone))
    clock = state.config.clock
    later_us = (state.watermark_ms + 40 * 60_000) * 1000   # also 40 min after the last event
    for now_us in (state.watermark_ms * 1000, later_us):
        now_ms = now_us // 1000
        windows = [(clock.interval_start(now_ms), clock.interval_end(now_ms)),
                   (clock.previous_interval_start(now_ms), clock.interval_start(now_ms)),
                   (clock.day_start(now_ms), clock.day_end(now_ms))]
        expected: dict = defaultdict(int)
        for agent in state.agents.values():
            for fact, us in agent.open_facts(now_us, clock).items():
                if fact.scope_kind in AGENT_SCOPES:
                    for start, end in windows:
                        if start <= fact.interval_ms < end:
                            expected[(fact.scope_kind, fact.scope_name, fact.state, start)] += us
        got = {(*group, start): us for group in state.open_agents.starts for start, end in windows
               if (us := state.open_agents.running_us(group, start, end, now_us))}
        assert got == {k: v for k, v in expected.items() if v} and got
    want_now = {scope: now for scope, now in agents_now(state.agents.values(), state.watermark_ms * 1000).items()
                if scope[0] in AGENT_SCOPES}
    got_now = {scope: now for scope, now in state.open_agents.now.items() if now.online > 0}
    assert set(got_now) == set(want_now)
    for scope, want in want_now.items():
        got = got_now[scope]
        assert (got.online, got.available, got.on_contact, got.acw, got.not_ready, got.chat_capacity) == \
            (want.online, want.available, want.on_contact, want.acw, want.not_ready, want.chat_capacity), scope
        assert {r: n for r, n in got.not_ready_by_reason.items() if n} == dict(want.not_ready_by_reason), scope


@pytest.mark.parametrize("lagging", [0, 1, 2, 3])
def test_side_entries_that_overtake_their_targets_events_match_the_oracle(lagging, monkeypatch):
    """Four partitions; on one of them the agent events come after everything else (partitions run at
    their own pace): chat legs reach the agent's partition, which already has a watermark, before the
    agent's own first event there. The target keeps them until its own events come, so the occupied
    chat slots still end exactly like the oracle's (lost, they would never come again: the worker
    sends a leg only when it changes)."""
    from streams.ingest_process import entity_partition

    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    events = feed("Europe/Berlin")
    n, lag, batch = 4, len(events), 100
    states = [PartitionState(config_for("Europe/Berlin")) for _ in range(n)]
    # event i is applied at step i, or i + lag for the agent events of the lagging partition (a late
    # log-in, a partition behind the others): their partition has a watermark, their legs are there
    def step(i: int, event) -> int:
        late = event.event_type == "agent.state_changed" and entity_partition(event.entity_key, n) == lagging
        return i + lag if late else i

    steps = sorted((step(i, e), i) for i, e in enumerate(events))
    sent: dict = {}   # as streams.app.Floorwatch._send_side
    for start in range(0, len(steps), batch):
        for _, i in steps[start:start + batch]:
            states[entity_partition(events[i].entity_key, n)].apply(events[i])
        for state in states:
            for target, subject, payload in state.take_side():
                if sent.get((target, subject), ...) != payload:   # the worker sends changed entries only
                    sent[(target, subject)] = payload
                    states[entity_partition(target, n)].apply_side(target, subject, payload)
        for state in states:
            state.advance()
    assert_chat_slots_match_the_oracle(states, events, max(s.watermark_ms for s in states) * 1000)


def assert_chat_slots_match_the_oracle(states: list[PartitionState], events, at_us: int) -> None:
    """Chat slots occupied at `at_us`, per scope, summed over the partitions, against the oracle."""
    from collections import defaultdict
    from datetime import UTC, datetime

    from tests import oracle_agents

    occupied: dict = defaultdict(int)
    for state in states:
        for key in state.legs:
            slots = state.chat_occupied(key, at_us)
            if slots:
                for scope in state.agents[key].latest(at_us).scopes():
                    occupied[scope] += slots
    at = datetime.fromtimestamp(at_us / 1e6, tz=UTC)
    expected = {scope: now.chat_occupied for scope, now in oracle_agents.agents_now(events, at=at).items()
                if now.chat_occupied}
    assert dict(occupied) == expected and sum(expected.values()) > 0
