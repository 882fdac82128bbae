"""The engine's pure agent path (state changes -> signed state-time facts) against the oracle.

A simulated day with late, out-of-order and repeated events: at checkpoints and at the end of the
feed, with the evaluation time = the latest event time seen, every (scope, interval) state time must
match `tests/oracle_agents.agent_time` (integer microseconds against the oracle's float seconds, to
1e-6 s), occupancy to 1e-9, and agents-now counts exactly (chat slots are not in the engine yet).
"""

from datetime import UTC, datetime, timedelta

import pytest

from streams.kpi.agents import AgentChange, AgentIntervals, AgentState, agents_now
from streams.kpi.windows import SiteClock, to_ms
from tests import oracle_agents
from tests.test_engine_vs_oracle import arrivals

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000


def compare(intervals: AgentIntervals, agents: dict[str, AgentState], seen, zone: str) -> int:
    at = max(e.occurred_at for e in seen)
    at_us = (at - _EPOCH) // timedelta(microseconds=1)
    expected = oracle_agents.agent_time(seen, timezone=zone, interval_minutes=15, until=at)
    actual = intervals.windows_at(agents.values(), at_us)
    # the oracle keeps a window for any positive piece; ours drops all-zero ones: same key sets
    assert set(actual) == {(kind, name, to_ms(start)) for kind, name, start in expected}
    for (kind, name, start), want in expected.items():
        got = actual[(kind, name, to_ms(start))]
        where = (kind, name, start.isoformat())
        states = {s for s, v in want.state_s.items() if v} | {s for s, v in got.state_us.items() if v}
        for state in states:
            assert abs(got.state_us.get(state, 0) / _US - want.state_s.get(state, 0.0)) <= 1e-6, (where, state)
        reasons = set(want.not_ready_reason_s) | set(got.not_ready_reason_us)
        for reason in reasons:
            g, w = got.not_ready_reason_us.get(reason, 0) / _US, want.not_ready_reason_s.get(reason, 0.0)
            assert abs(g - w) <= 1e-6, (where, reason)
        g, w = got.occupancy, want.occupancy
        assert (g is None) == (w is None) and (g is None or abs(g - w) <= 1e-9), (where, g, w)

    now_want = oracle_agents.agents_now(seen, at=at)
    now_got = agents_now(agents.values(), at_us)
    assert set(now_got) == set(now_want)
    for scope, want in now_want.items():
        got = now_got[scope]
        for name in ("online", "available", "on_contact", "acw", "not_ready", "chat_capacity"):
            assert getattr(got, name) == getattr(want, name), (scope, name)
        assert {k: v for k, v in got.not_ready_by_reason.items() if v} == \
               {k: v for k, v in want.not_ready_by_reason.items() if v}, scope
    return len(expected)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_agent_time_matches_the_oracle_under_late_out_of_order_and_repeated_events(zone):
    feed = arrivals(seed=33, zone=zone, duration_s=12 * 3600)
    clock = SiteClock(zone, 15)
    intervals = AgentIntervals(clock)
    agents: dict[str, AgentState] = {}
    checkpoints = {len(feed) // 2, len(feed)}
    repeats = corrections = compared = 0
    for n, event in enumerate(feed, 1):
        if event.event_type == "agent.state_changed":
            delta = agents.setdefault(event.agent_id, AgentState()).apply(AgentChange.of(event), clock)
            if delta is None:
                repeats += 1
            else:
                corrections += any(w < 0 for _, w in delta)
                for fact, weight in delta:
                    intervals.apply(fact, weight)
        if n in checkpoints:
            compared += compare(intervals, agents, feed[:n], zone)
    assert repeats > 10 and corrections > 10 and compared > 100, (repeats, corrections, compared)
