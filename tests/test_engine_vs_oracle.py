"""The engine's pure queue path (contact facts -> signed interval counters) against the oracle.

A simulated day with late, out-of-order and repeated events: at checkpoints during the feed and at
the end, every queue window must match the oracle over the events seen so far, counts exactly and
ratios to 1e-9, for all four service-level formulas.
"""

import random

import pytest

from models.events import EVENT_ADAPTER
from streams.config import ServiceLevelFormula, load_settings
from streams.kpi.contacts import RANK, ContactEvent, ContactState
from streams.kpi.queues import QueueIntervals, QueueRules
from streams.kpi.windows import SiteClock, to_ms
from streams.simulator import SimConfig, generate
from tests import oracle
from tests.oracle_compare import assert_same_window

COUNTS = ("offered", "answered", "abandoned", "short_abandoned", "flowed_out", "answered_within_sl",
          "abandoned_within_sl", "transferred", "handled", "held")
RATIOS = ("asa_s", "average_abandon_time_s", "aht_s", "average_talk_s", "average_hold_s", "average_acw_s",
          "hold_rate", "transfer_rate")


def arrivals(seed: int, zone: str, duration_s: float, start=None):
    """Valid simulated events in a perturbed arrival order, with repeats."""
    rng = random.Random(seed)
    events = [EVENT_ADAPTER.validate_json(m.value, context={"customer_hash_key": b"k"})
              for m in generate(SimConfig(seed=seed, duration_s=duration_s, rate=6, timezone=zone, start=start))
              if m.kind == "valid"]
    stamped = []
    for event in events:
        delay = rng.uniform(0, 1800) if rng.random() < 0.03 else rng.expovariate(1 / 5)
        stamped.append((to_ms(event.occurred_at) + delay * 1000, event))
        if rng.random() < 0.02:  # the source delivers it again later
            stamped.append((to_ms(event.occurred_at) + rng.uniform(1, 600) * 1000, event))
    stamped.sort(key=lambda pair: pair[0])
    return [event for _, event in stamped]


def compare(engine: QueueIntervals, seen, zone: str, settings) -> int:
    expected = oracle.queue_kpis(
        seen, timezone=zone, interval_minutes=15,
        rules=lambda q, c: oracle.QueueRules(settings.queue(q, c).threshold_s, settings.queue(q, c).short_abandon_s))
    actual = {k: v for k, v in engine.windows.items() if not v.is_empty()}
    expected_keys = {(q, c, to_ms(start)) for q, c, start in expected}
    assert set(actual) == expected_keys
    for (queue, channel, start), want in expected.items():
        got = actual[(queue, channel, to_ms(start))]
        where = (queue, channel, start.isoformat())
        assert_same_window(got, want, where, COUNTS, RATIOS)
        for formula in ServiceLevelFormula:
            g, w = got.service_level(formula), want.service_level(formula.value)
            assert (g is None) == (w is None) and (g is None or abs(g - w) <= 1e-9), (where, formula)
        for excludes in (True, False):
            g, w = got.abandon_rate(excludes), want.abandon_rate(excludes)
            assert (g is None) == (w is None) and (g is None or abs(g - w) <= 1e-9), (where, excludes)
    return len(expected)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_queue_kpis_match_the_oracle_under_late_out_of_order_and_repeated_events(zone, monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    settings = load_settings()
    feed = arrivals(seed=21, zone=zone, duration_s=12 * 3600)
    engine = QueueIntervals(SiteClock(zone, 15), lambda q, c: QueueRules.of(settings.queue(q, c)))
    contacts: dict[str, ContactState] = {}
    checkpoints = {len(feed) // 3, 2 * len(feed) // 3, len(feed)}
    repeats = compared = 0
    for n, event in enumerate(feed, 1):
        if event.event_type in RANK:
            delta = contacts.setdefault(event.contact_id, ContactState()).apply(ContactEvent.of(event))
            if delta is None:
                repeats += 1
            else:
                for fact, weight in delta:
                    engine.apply(fact, weight)
        if n in checkpoints:
            compared += compare(engine, feed[:n], zone, settings)
    assert repeats > 100 and compared > 100, (repeats, compared)
