"""The engine's pure ticket path (ticket facts -> signed interval counters) against the oracle.

A simulated half day with late, out-of-order and repeated events; at checkpoints during the feed and
at its end (evaluation time = the last event time seen), then at later evaluation times with no new
event (timers), every (queue, priority, interval) window must match `tests/oracle_tickets.py`,
counts exactly and averages to 1e-9, and so must the backlog and at-risk figures. Default targets,
and tight ones (with and without pausing) so that breaches actually happen.
"""

import functools
from collections import defaultdict
from datetime import timedelta

import pytest

from streams.kpi.tickets import RANK, TicketEvent, TicketIntervals, TicketRules, TicketState, to_us
from streams.kpi.windows import SiteClock, to_ms
from tests import oracle_tickets
from tests.oracle_compare import assert_same_window
from tests.test_engine_vs_oracle import arrivals

COUNTS = ("created", "first_responses", "solved", "reopened", "first_response_breached",
          "resolution_breached", "breached")
RATIOS = ("average_first_response_s", "average_resolution_s")


# Tight targets (seconds) so that the simulated replies and solves breach often, both ways.
TIGHT = {"urgent": (180.0, 240.0), "high": (300.0, 400.0), "normal": (400.0, 600.0), "low": (600.0, 900.0)}
CASES = {  # name -> (oracle targets, pause_resolution, warning lead s)
    "default": (oracle_tickets.DEFAULT_TARGETS, True, oracle_tickets.DEFAULT_WARNING_LEAD_S),
    "tight": (TIGHT, True, 120.0),
    "tight-no-pause": (TIGHT, False, 120.0),
}


def compare(engine: TicketIntervals, seen, zone: str, case, at=None) -> int:
    targets, pause, _ = case
    expected = oracle_tickets.ticket_kpis(seen, timezone=zone, interval_minutes=15, targets=targets,
                                          pause_resolution=pause, at=at)
    actual = {k: v for k, v in engine.windows.items() if not v.is_empty()}
    assert set(actual) == {(q, p, to_ms(start)) for q, p, start in expected}
    for (queue, priority, start), want in expected.items():
        got = actual[(queue, priority, to_ms(start))]
        where = (queue, priority, start.isoformat())
        assert_same_window(got, want, where, COUNTS, RATIOS)
    return len(expected)


def compare_now(tickets: dict[str, TicketState], seen, at, case, rules) -> int:
    targets, pause, lead = case
    expected = oracle_tickets.tickets_now(seen, at=at, targets=targets, pause_resolution=pause, warning_lead_s=lead)
    at_us = to_us(at)
    actual: dict = defaultdict(lambda: [defaultdict(int), 0, 0, 0])
    for state in tickets.values():
        now = state.now(at_us, rules)
        if now is not None:
            row = actual[(now.queue, now.priority)]
            row[0][now.age_bucket] += 1
            row[1] += now.at_risk_first_response
            row[2] += now.at_risk_resolution
            row[3] += now.at_risk
    assert set(actual) == set(expected)
    for key, want in expected.items():
        backlog, fr, res, either = actual[key]
        assert {k: v for k, v in backlog.items() if v} == {k: v for k, v in want.backlog.items() if v}, key
        assert (fr, res, either) == (want.at_risk_first_response, want.at_risk_resolution, want.at_risk), key
    return len(expected)


@functools.cache
def feed_of(zone: str):
    return arrivals(seed=21, zone=zone, duration_s=12 * 3600)


@pytest.mark.parametrize("case_name", list(CASES))
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_ticket_kpis_match_the_oracle_under_late_out_of_order_and_repeated_events(zone, case_name):
    case = CASES[case_name]
    rules = TicketRules.of_seconds(case[0], case[1], case[2])
    feed = feed_of(zone)
    ticket_feed: list = []  # what the oracle reads (it ignores other events given `at`)
    engine = TicketIntervals(SiteClock(zone, 15))
    tickets: dict[str, TicketState] = {}
    checkpoints = {len(feed) // 3, 2 * len(feed) // 3, len(feed)}
    latest = None
    repeats = compared = 0
    for n, event in enumerate(feed, 1):
        latest = event.occurred_at if latest is None else max(latest, event.occurred_at)
        at_us = to_us(latest)
        if event.event_type in RANK:
            ticket_feed.append(event)
            state = tickets.setdefault(event.ticket_id, TicketState())
            delta = state.apply(TicketEvent.of(event), rules, at_us=at_us)
            if delta is None:
                repeats += 1
            else:
                for fact, weight in delta:
                    engine.apply(fact, weight)
        if n in checkpoints:
            # the engine's timers: every ticket evaluated at the evaluation time (= last event time)
            for state in tickets.values():
                for fact, weight in state.evaluate(at_us, rules):
                    engine.apply(fact, weight)
            compared += compare(engine, ticket_feed, zone, case, at=latest)
            compared += compare_now(tickets, ticket_feed, latest, case, rules)
    # after the feed: time passes with no event; timers fire at later evaluation times
    for minutes in (3, 30, 240):
        later = latest + timedelta(minutes=minutes)
        for state in tickets.values():
            for fact, weight in state.evaluate(to_us(later), rules):
                engine.apply(fact, weight)
        compared += compare(engine, ticket_feed, zone, case, at=later)
        compared += compare_now(tickets, ticket_feed, later, case, rules)
    windows = engine.windows.values()
    solved = sum(w.solved for w in windows)
    reopened = sum(w.reopened for w in windows)
    breached = sum(w.first_response_breached for w in windows), sum(w.resolution_breached for w in windows)
    assert repeats > 5 and compared > 50 and solved > 50 and reopened > 0, (repeats, compared, solved, reopened)
    if case_name != "default":  # the simulated replies all come well within the default targets
        assert min(breached) > 20, breached
