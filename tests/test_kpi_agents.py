"""Agent state-time facts, open stretches and agents-now with explicit timestamps (microseconds)."""

import itertools
import random
from collections import Counter
from datetime import UTC, datetime

from streams.kpi.agents import (STATE_RANK, AgentChange, AgentFact, AgentIntervals, AgentState, agent_facts,
                                agents_now)
from streams.kpi.windows import SiteClock

S = 1_000_000
CLOCK = SiteClock("UTC", 15)
T0 = int(datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()) * S      # an interval bound
T0_MS = T0 // 1000
I_MS = 15 * 60 * 1000
_ids = itertools.count()


def ch(state, seconds, *, reason=None, queues=("billing",), team="red", agent="a1", chat=None):
    return AgentChange(T0 + round(seconds * S), STATE_RANK[state], f"wfm|{next(_ids)}", state, reason, agent,
                       tuple(queues), team, chat)


def feed(changes, clock=CLOCK):
    """Apply changes in the given order; return the state, the aggregator and the summed deltas."""
    state, intervals, total = AgentState(), AgentIntervals(clock), Counter()
    for change in changes:
        for fact, us in state.apply(change, clock) or ():   # None for a repeat
            intervals.apply(fact, us)
            total[fact] += us
    return state, intervals, total


def window(intervals, state, at_s, scope=("center", "all"), interval=0):
    return intervals.windows_at([state], T0 + round(at_s * S)).get((*scope, T0_MS + interval * I_MS))


def test_stretch_is_split_at_interval_bounds_and_counts_in_every_scope_of_its_change():
    state, intervals, total = feed([ch("available", 600, queues=("billing", "sales")), ch("on_contact", 1200)])
    # available 09:10 -> 09:20: 300 s in each of the first two intervals, in both queues, team, agent, center
    for scope in [("queue", "billing"), ("queue", "sales"), ("team", "red"), ("agent", "a1"), ("center", "all")]:
        assert total[AgentFact(*scope, T0_MS, "available")] == 300 * S
        assert total[AgentFact(*scope, T0_MS + I_MS, "available")] == 300 * S
    assert len(total) == 10
    # the open on_contact stretch only appears at evaluation time, in the scopes of its own change
    w = window(intervals, state, 1500, interval=1)
    assert w.state_us == {"available": 300 * S, "on_contact": 300 * S} and w.occupancy == 0.5
    assert window(intervals, state, 1500, scope=("queue", "sales"), interval=1).state_us == {"available": 300 * S}
    assert intervals.windows[("center", "all", T0_MS + I_MS)].state_us == {"available": 300 * S}  # untouched


def test_a_change_exactly_on_a_bound_puts_nothing_in_the_earlier_interval():
    state, intervals, total = feed([ch("available", 0), ch("on_contact", 900), ch("acw", 1800)])
    assert total[AgentFact("center", "all", T0_MS, "available")] == 900 * S
    assert total[AgentFact("center", "all", T0_MS + I_MS, "on_contact")] == 900 * S
    assert not [f for f in total if f.interval_ms == T0_MS and f.state != "available"]
    assert window(intervals, state, 1800, interval=2) is None          # open acw of 0 s: no window
    assert window(intervals, state, 1800.000001, interval=2).state_us == {"acw": 1}
    assert window(intervals, state, 1800, interval=0).occupancy == 0.0


def test_occupancy_pools_seconds_and_ignores_not_ready_and_offline():
    state, intervals, _ = feed([ch("available", 0), ch("on_contact", 100), ch("not_ready", 400, reason="break"),
                                ch("offline", 500), ch("available", 600)])
    w = window(intervals, state, 900)
    assert w.state_us == {"available": 400 * S, "on_contact": 300 * S, "not_ready": 100 * S, "offline": 100 * S}
    assert w.not_ready_reason_us == {"break": 100 * S}
    assert w.occupancy == 300 / 700
    only_not_ready, intervals2, _ = feed([ch("not_ready", 0, agent="a2"), ch("offline", 60, agent="a2")])
    assert window(intervals2, only_not_ready, 120).occupancy is None


def test_out_of_order_change_corrects_the_stretch_it_cuts_and_a_repeat_is_ignored():
    available, on_contact, acw = ch("available", 0), ch("on_contact", 600), ch("acw", 300)
    state, intervals, total = feed([available, on_contact])
    assert total == Counter({AgentFact(k, n, T0_MS, "available"): 600 * S
                             for k, n in [("queue", "billing"), ("team", "red"), ("agent", "a1"), ("center", "all")]})
    delta = state.apply(acw, CLOCK)   # arrives late: available now ends at 300 s
    assert sorted(w for f, w in delta if f.scope_kind == "center") == [-300 * S, 300 * S]
    for fact, us in delta:
        intervals.apply(fact, us)
    assert state.apply(acw, CLOCK) is None
    assert state.apply(ch("available", 0)._replace(event_id=available.event_id), CLOCK) is None
    assert intervals.windows[("center", "all", T0_MS)].state_us == {"available": 300 * S, "acw": 300 * S}


def test_ties_at_one_instant_keep_the_highest_rank_whatever_the_arrival_order():
    changes = [ch("available", 0), ch("not_ready", 60, reason="lunch"), ch("on_contact", 60), ch("available", 60),
               ch("offline", 120)]
    expected = agent_facts(changes, CLOCK)
    assert expected[AgentFact("center", "all", T0_MS, "on_contact")] == 60 * S
    assert not [f for f in expected if f.state == "not_ready"]
    for order in itertools.permutations(changes):
        state, _, total = feed(order)
        assert +total == expected
        assert state.latest(60 * S + T0).state == "on_contact"


def test_deltas_in_any_order_sum_to_the_batch_function_across_a_dst_change():
    clock = SiteClock("Europe/Berlin", 15)
    start = int(datetime(2026, 10, 25, 0, 0, tzinfo=UTC).timestamp()) * S   # 02:00 CEST, fall back at 01:00 UTC
    rng = random.Random(7)
    states = list(STATE_RANK)
    changes = [AgentChange(start + rng.randrange(0, 3 * 3600) * S + rng.randrange(3) * 137, 0, f"s|{i}", "", None,
                           "a1", ("q1",) if i % 2 else ("q1", "q2"), "t", None) for i in range(60)]
    changes = [c._replace(state=(s := rng.choice(states)), rank=STATE_RANK[s],
                          reason="break" if s == "not_ready" else None) for c in changes]
    expected = agent_facts(changes, clock)
    for _ in range(5):
        rng.shuffle(changes)
        _, _, total = feed(changes + changes[:5], clock)
        assert +total == expected
    # state time of one scope adds up to the span between first and last change
    span = max(c.at_us for c in changes) - min(c.at_us for c in changes)
    assert sum(us for f, us in expected.items() if f.scope_kind == "center") == span
    assert len({f.interval_ms for f in expected}) >= 12   # 3 h crossing the repeated hour: 13 intervals


def test_agents_now_by_scope_state_reason_and_chat_capacity():
    a1 = AgentState()
    for c in [ch("available", 0, chat=3), ch("not_ready", 100, reason="break", queues=("billing", "sales"))]:
        a1.apply(c, CLOCK)
    a2 = AgentState()
    for c in [ch("on_contact", 50, agent="a2", team="blue", chat=2), ch("offline", 200, agent="a2", team="blue")]:
        a2.apply(c, CLOCK)
    now = agents_now([a1, a2], T0 + 150 * S)
    assert now[("center", "all")].online == 2 and now[("center", "all")].chat_capacity == 5
    assert now[("queue", "sales")].not_ready_by_reason == {"break": 1}
    assert (now[("team", "blue")].on_contact, now[("team", "red")].not_ready) == (1, 1)
    later = agents_now([a1, a2], T0 + 200 * S)
    assert ("team", "blue") not in later and later[("center", "all")].online == 1
    assert ("queue", "sales") not in agents_now([a1], T0 + 50 * S)   # scopes of the latest change at `at`
    assert agents_now([a1], T0 - 1) == {}
