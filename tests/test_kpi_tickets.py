"""Unit tests of the pure ticket path (`streams/kpi/tickets.py`) with explicit timestamps."""

import itertools
from collections import Counter
from datetime import UTC, datetime

from streams.kpi.tickets import (
    RANK, TicketDue, TicketEvent, TicketFact, TicketIntervals, TicketRules, TicketState, breach_facts,
    ticket_facts, to_us,
)
from streams.kpi.windows import SiteClock

S = 1_000_000
H = 3600 * S
T0 = to_us(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
RULES = TicketRules()


def ev(at_s: float, kind: str, n: int | str, *, queue=None, priority=None, status=None) -> TicketEvent:
    kind = f"ticket.{kind}"
    return TicketEvent(T0 + round(at_s * S), RANK[kind], f"helpdesk|{n}", kind, queue, priority, status)


def created(at_s=0.0, queue="billing", priority="urgent", n="c") -> TicketEvent:
    return ev(at_s, "created", n, queue=queue, priority=priority)


def status(at_s: float, value: str, n) -> TicketEvent:
    return ev(at_s, "status_changed", n, status=value)


def feed(events, at_us=None, rules=RULES):
    """Apply events in the given order; return the state and the sum of all signed deltas."""
    state, total = TicketState(), Counter()
    for e in events:
        for fact, weight in state.apply(e, rules, at_us=at_us) or ():
            total[fact] += weight
    return state, +total


def kinds(facts) -> Counter:
    return Counter({(f.kind, f.queue, f.at_us - T0, f.value_us): n for f, n in facts.items()})


def test_first_response_and_resolution_with_pause_and_queue_move():
    events = [created(), ev(10, "assigned", 1, queue="tech"), ev(100, "agent_replied", 2),
              status(100, "pending", 3), ev(1000, "customer_replied", 4), status(1000, "open", 5),
              status(1500, "solved", 6), status(2000, "closed", 7)]
    _, facts = feed(events)
    assert kinds(facts) == Counter({
        ("created", "billing", 0, None): 1,
        ("first_response", "tech", 100 * S, 100 * S): 1,
        ("solved", "tech", 1500 * S, 600 * S): 1,  # 100 s open + 500 s open; 900 s pending paused; closed is no second solve
    })
    # without pausing, the resolution clock is calendar time
    _, facts = feed(events, rules=TicketRules(pause_resolution=False))
    assert ("solved", "tech", 1500 * S, 1500 * S) in kinds(facts)


def test_any_arrival_order_and_repeats_give_the_same_facts():
    events = [created(), ev(0, "assigned", 1, queue="tech"), ev(600, "agent_replied", 2),
              status(900, "solved", 4), ev(1200, "reopened", 5),
              status(1200, "open", 6), status(2400, "solved", 7)]
    expected = ticket_facts(events)
    for order in itertools.permutations(events):
        state, total = feed(order)
        assert total == expected
        assert state.apply(order[0]) is None and state.apply(order[-1]) is None  # repeats: no change
        assert state.contributed == expected


def test_reply_before_creation_arrives_counts_once_creation_comes():
    state = TicketState()
    assert state.apply(ev(300, "agent_replied", 1)) == []  # no creation yet: nothing counted
    delta = state.apply(created())
    assert sorted((f.kind, f.value_us, w) for f, w in delta) == [("created", None, 1), ("first_response", 300 * S, 1)]


def test_events_before_creation_are_ignored():
    _, facts = feed([ev(-5, "agent_replied", 1), ev(-5, "assigned", 2, queue="tech"), created()])
    assert kinds(facts) == Counter({("created", "billing", 0, None): 1})


def test_reopen_then_solve_again_reports_the_accumulated_clock():
    events = [created(), status(600, "solved", 1), ev(1000, "reopened", 2), status(1000, "open", 3),
              status(1300, "solved", 4), status(2000, "open", 5), status(2100, "closed", 6)]
    _, facts = feed(events)
    assert kinds(facts) == Counter({
        ("created", "billing", 0, None): 1,
        ("solved", "billing", 600 * S, 600 * S): 1,
        ("reopened", "billing", 1000 * S, None): 1,  # reopened + status open: one reopen
        ("solved", "billing", 1300 * S, 900 * S): 1,
        ("reopened", "billing", 2000 * S, None): 1,  # a status change alone reopens too
        ("solved", "billing", 2100 * S, 1000 * S): 1,  # straight to closed is a solve
    })


def test_a_pause_spanning_the_due_time_pushes_the_resolution_due_back():
    # urgent: resolution target 4 h; pending from 1 h to 5 h spans the nominal due (4 h)
    events = [created(), ev(3600, "agent_replied", 1), status(3600, "pending", 2), status(5 * 3600, "open", 3)]
    state, _ = feed(events)
    assert state.due_times() == TicketDue(None, T0 + 8 * H)  # replied exactly at the 1 h due: met
    assert state.evaluate(T0 + 8 * H) == []  # met exactly at the due instant is not a breach
    assert state.evaluate(T0 + 8 * H + 1) == [(TicketFact("billing", "urgent", "resolution_breached", T0 + 8 * H), 1)]
    # a solve exactly at the due instant arrives late: the breach is retracted
    delta = state.apply(status(8 * 3600, "solved", 4), at_us=T0 + 9 * H)
    assert sorted((f.kind, f.value_us, w) for f, w in delta) == [
        ("resolution_breached", None, -1), ("solved", 4 * H, 1)]
    assert state.due_times() == TicketDue(None, None)
    # while paused there is no resolution due; without pausing it is the nominal one
    paused, _ = feed(events[:3])
    assert paused.due_times() == TicketDue(None, None)
    assert paused.due_times(TicketRules(pause_resolution=False)) == TicketDue(None, T0 + 4 * H)


def test_first_response_breach_counts_once_past_due_and_a_late_reply_within_due_retracts_it():
    state, _ = feed([created(queue="billing"), ev(1800, "assigned", 1, queue="tech")])
    assert state.due_times() == TicketDue(T0 + H, T0 + 4 * H)
    assert state.next_due_us(T0 + 2 * S) == T0 + H
    assert state.evaluate(T0 + H) == []
    breach = TicketFact("tech", "urgent", "first_response_breached", T0 + H)  # queue at the due instant
    assert state.evaluate(T0 + H + 1) == [(breach, 1)]
    assert state.evaluate(T0 + 2 * H) == []  # counted once
    assert state.next_due_us(T0 + 2 * H) == T0 + 4 * H
    # a reply exactly at the due time, arriving late, means it was met
    delta = state.apply(ev(3600, "agent_replied", 2), at_us=T0 + 2 * H)
    assert sorted((f.kind, w) for f, w in delta) == [("first_response", 1), ("first_response_breached", -1)]
    # a reply after the due time only confirms the breach
    late, _ = feed([created(), ev(3601, "agent_replied", 1)])
    assert breach_facts(late.events, T0 + 2 * H) == Counter({TicketFact("billing", "urgent", "first_response_breached", T0 + H): 1})


def test_a_solve_before_any_reply_stops_the_first_response_clock():
    events = [created(), status(1200, "solved", 1), ev(2000, "reopened", 2), ev(9000, "agent_replied", 3)]
    state, facts = feed(events)
    assert "first_response" not in {f.kind for f in facts}  # the later reply is no first response
    assert state.due_times().first_response_us is None
    assert [f.kind for f in breach_facts(state.events, T0 + 30 * H)] == ["resolution_breached"]
    # solve after the due time: breached at the due instant
    late, _ = feed([created(), status(3601, "solved", 1)])
    assert [f.kind for f in breach_facts(late.events, T0 + 30 * H)] == ["first_response_breached"]


def test_evaluation_ignores_events_after_it():
    state, _ = feed([created(), ev(7200, "agent_replied", 1)])
    # at 30 min the reply at 2 h was not known yet: no breach, first response at risk
    assert breach_facts(state.events, T0 + H // 2) == Counter()
    now = state.now(T0 + H // 2)
    assert (now.age_bucket, now.at_risk_first_response, now.at_risk_resolution) == ("<1h", True, False)
    assert state.now(T0 - 1) is None  # not created yet


def test_backlog_and_at_risk_now():
    state, _ = feed([created(priority="high"), ev(60, "agent_replied", 1), status(60, "open", 2)])
    now = state.now(T0 + 23 * H + 40 * 60 * S)  # resolution due at 24 h, 20 min left
    assert now == ("billing", "high", "4-24h", False, True) and now.at_risk
    assert state.now(T0 + 24 * H).age_bucket == "1-3d"
    state.apply(status(3600, "pending", 3))
    assert not state.now(T0 + 23 * H + 40 * 60 * S).at_risk  # paused: not approaching its due
    state.apply(status(7200, "solved", 4))
    assert state.now(T0 + 3 * H) is None  # solved: out of the backlog


def test_interval_counters_apply_and_retract():
    engine = TicketIntervals(SiteClock("Europe/Berlin", 15))
    state = TicketState()
    for e in [created(), ev(100, "agent_replied", 1), status(400, "solved", 2), ev(50, "agent_replied", 3)]:
        for fact, weight in state.apply(e):
            engine.apply(fact, weight)
    counters = {k: v for k, v in engine.windows.items() if not v.is_empty()}
    start = SiteClock("Europe/Berlin", 15).interval_start(T0 // 1000)
    assert list(counters) == [("billing", "urgent", start)]
    c = counters[("billing", "urgent", start)]
    assert (c.created, c.first_responses, c.solved, c.breached) == (1, 1, 1, 0)
    assert c.average_first_response_s == 50.0 and c.average_resolution_s == 400.0


def test_breaches_count_in_the_queue_at_the_due_instant():
    # first response due at 1 h, resolution (running) due at 4 h; moves at 2 h and 5 h
    state, _ = feed([created(queue="billing"), ev(2 * 3600, "assigned", 1, queue="tech"),
                     ev(5 * 3600, "assigned", 2, queue="sales")])
    assert kinds(breach_facts(state.events, T0 + 6 * H)) == Counter({
        ("first_response_breached", "billing", H, None): 1,
        ("resolution_breached", "tech", 4 * H, None): 1,
    })
    # a move exactly at the due instant counts (the ticket is there at the due instant)
    state, _ = feed([created(queue="billing"), ev(3600, "assigned", 1, queue="tech")])
    assert {f.queue for f in breach_facts(state.events, T0 + 2 * H)} == {"tech"}


def test_reopened_only_counts_when_leaving_solved():
    events = [created(), status(600, "solved", 1), status(1000, "open", 2), ev(1001, "reopened", 3)]
    _, facts = feed(events)
    assert Counter(f.kind for f in facts)["reopened"] == 1


def test_at_risk_bounds_are_inclusive():
    state, _ = feed([created()])  # urgent: first response due at 1 h, lead 30 min
    assert state.now(T0 + H // 2).at_risk_first_response  # due - at == lead
    assert not state.now(T0 + H // 2 - 1).at_risk_first_response
    assert state.now(T0 + H).at_risk_first_response  # due - at == 0: not yet breached
    assert not state.now(T0 + H + 1).at_risk_first_response
