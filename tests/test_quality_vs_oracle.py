"""The engine's pure quality path (entity + survey records -> signed facts -> customer records ->
interval counters) against `tests/oracle_quality.py`.

A simulated half day with late, out-of-order and repeated events, in UTC and Europe/Berlin. At
checkpoints and at the end of the feed (evaluation time = the last event time seen), then at later
evaluation times with no new event (timers for the repeat window), every (queue, interval) window
must match the oracle: counts exactly, ratios to 1e-9. Repeat windows of 72 h (all pending within
the feed) and short ones (so that contacts get reported, both ways).
"""

import functools
from datetime import timedelta

import pytest

from streams.kpi.quality import (CustomerState, QualityEvent, QualityIntervals, QualityState,
                                 is_quality_event, routes_to_customer)
from streams.kpi.tickets import to_us
from streams.kpi.windows import SiteClock, to_ms
from tests import oracle_quality
from tests.oracle_compare import assert_same_window
from tests.test_engine_vs_oracle import arrivals

COUNTS = ("csat_responses", "csat_satisfied", "csat_score_sum", "nps_responses", "nps_promoters",
          "nps_detractors", "fcr_flagged", "fcr_resolved", "fcr_unflagged", "repeat_reported", "repeat_fcr",
          "repeat_pending", "repeat_unknown_customer")
RATIOS = ("csat", "csat_mean", "nps", "fcr_disposition", "fcr_repeat")


@functools.cache
def feed_of(zone: str):
    """The simulated feed, with the `queue` of every other survey removed (those are attributed
    through the contact's answers or the ticket's queue, which may arrive after the survey) and the
    `resolved` flag of every other ACW completion (unflagged)."""
    feed = arrivals(seed=21, zone=zone, duration_s=12 * 3600)
    return [_strip(e) for e in feed]


def _strip(event):
    odd = int(event.event_id.encode().hex(), 16) % 2
    if event.event_type == "survey.responded" and odd:
        return event.model_copy(update={"queue": None})
    if event.event_type == "contact.acw_completed" and odd:  # a source that does not flag `resolved`
        return event.model_copy(update={"resolved": None})
    return event


def compare(engine: QualityIntervals, seen, zone: str, at, window_s: float) -> int:
    expected = oracle_quality.quality_kpis(seen, timezone=zone, interval_minutes=15, at=at,
                                           repeat_window_s=window_s)
    actual = {k: v for k, v in engine.windows.items() if not v.is_empty()}
    expected = {k: v for k, v in expected.items() if any(getattr(v, n) for n in COUNTS)}
    assert set(actual) == {(q, to_ms(start)) for q, start in expected}
    for (queue, start), want in expected.items():
        got = actual[(queue, to_ms(start))]
        where = (queue, start.isoformat())
        assert_same_window(got, want, where, COUNTS, RATIOS)
    return len(expected)


@pytest.mark.parametrize("window_h", [72.0, 1.0])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_quality_kpis_match_the_oracle_under_late_out_of_order_and_repeated_events(zone, window_h):
    window_us = round(window_h * 3600 * 1_000_000)
    feed = feed_of(zone)
    engine = QualityIntervals(SiteClock(zone, 15))
    entities: dict[str, QualityState] = {}
    customers: dict[str, CustomerState] = {}
    checkpoints = {len(feed) // 2, len(feed)}
    latest = None
    repeats = compared = moved = 0

    def evaluate_all(at_us):  # the customer stage's timers
        for customer in customers.values():
            for fact, weight in customer.evaluate(at_us):
                engine.apply(fact, weight)

    for n, event in enumerate(feed, 1):
        latest = event.occurred_at if latest is None else max(latest, event.occurred_at)
        at_us = to_us(latest)
        if is_quality_event(event):
            key = event.entity_key
            delta = entities.setdefault(key, QualityState(key)).apply(QualityEvent.of(event))
            if delta is None:
                repeats += 1
                continue
            moved += any(weight < 0 and fact.kind in ("csat", "nps") for fact, weight in delta)
            for fact, weight in delta:
                engine.apply(fact, weight)
                if routes_to_customer(fact):
                    customer = customers.setdefault(fact.customer, CustomerState(window_us))
                    for repeat, w in customer.apply(fact, weight, at_us):
                        engine.apply(repeat, w)
        if n in checkpoints:
            evaluate_all(at_us)
            compared += compare(engine, feed[:n], zone, latest, window_h * 3600)
    for hours in (1, 80):
        later = latest + timedelta(hours=hours)
        evaluate_all(to_us(later))
        compared += compare(engine, feed, zone, later, window_h * 3600)
    total = lambda name: sum(getattr(w, name) for w in engine.windows.values())  # noqa: E731
    assert repeats > 5 and compared > 50 and moved > 0, (repeats, compared, moved)
    assert total("csat_responses") > 20 and total("nps_responses") > 20 and total("fcr_flagged") > 100 and total("fcr_unflagged") > 100
    assert total("repeat_reported") > 100 and 0 < total("repeat_fcr") < total("repeat_reported")
