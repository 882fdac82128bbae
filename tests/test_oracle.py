"""The oracle itself, on hand-built logs with hand-computed answers (explicit timestamps)."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.events import EVENT_ADAPTER
from tests.oracle import FORMULAS, QueueRules, interval_start, queue_kpis
from zoneinfo import ZoneInfo

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
_counter = iter(range(10**9))


def ev(event_type, seconds, contact="c1", queue="billing", channel="voice", **fields):
    payload = {"event_id": f"e{next(_counter)}", "event_type": event_type, "source": "acd-1",
               "occurred_at": (T0 + timedelta(seconds=seconds)).isoformat(), "contact_id": contact,
               "channel": channel, **fields}
    if event_type in ("contact.enqueued", "contact.answered", "contact.abandoned", "contact.flowed_out"):
        payload["queue"] = queue
    if event_type in ("contact.answered", "contact.hold_started", "contact.hold_ended", "contact.acw_completed",
                      "contact.transferred"):
        payload.setdefault("agent_id", "a1")
    if event_type == "contact.acw_completed":
        payload.setdefault("disposition", "done")
    return EVENT_ADAPTER.validate_json(orjson.dumps(payload))


def rules(threshold=20.0, short=5.0):
    return lambda queue, channel: QueueRules(threshold_s=threshold, short_abandon_s=short)


def only(result, queue="billing", channel="voice", at=T0):
    return result[(queue, channel, interval_start(at, ZoneInfo("UTC"), 15))]


def compute(events, **kw):
    return queue_kpis(events, timezone="UTC", interval_minutes=15, rules=kw.pop("rules", rules()))


def test_service_level_formulas_and_boundaries():
    log = [
        ev("contact.enqueued", 0, "a"), ev("contact.answered", 20, "a"),     # wait 20 = T: within
        ev("contact.enqueued", 0, "b"), ev("contact.answered", 21, "b"),     # wait 21: not within
        ev("contact.enqueued", 0, "c"), ev("contact.abandoned", 4.999, "c"),  # short abandon, within T
        ev("contact.enqueued", 0, "d"), ev("contact.abandoned", 5, "d"),      # 5 s is not short (strictly below)
        ev("contact.enqueued", 0, "e"), ev("contact.abandoned", 30, "e"),     # abandoned beyond T
        ev("contact.enqueued", 0, "f"), ev("contact.flowed_out", 100, "f"),
        ev("contact.enqueued", 10, "g"),                                       # still waiting
    ]
    w = only(compute(log))
    assert (w.offered, w.answered, w.abandoned, w.short_abandoned, w.flowed_out) == (7, 2, 3, 1, 1)
    assert (w.answered_within_sl, w.abandoned_within_sl) == (1, 2)
    assert w.service_level("answered_of_offered_excl_short") == 1 / (2 + 3 - 1)
    assert w.service_level("answered_of_answered") == 1 / 2
    assert w.service_level("met_of_removed") == (1 + 2) / (2 + 3)
    assert w.service_level("answered_of_offered") == 1 / (2 + 3)
    assert w.asa_s == pytest.approx((20 + 21) / 2, abs=1e-9)
    assert w.average_abandon_time_s == pytest.approx((4.999 + 5 + 30) / 3, abs=1e-9)
    assert w.abandon_rate(excludes_short=True) == (3 - 1) / (7 - 1)
    assert w.abandon_rate(excludes_short=False) == 3 / 7


def test_empty_denominators_give_no_value():
    w = only(compute([ev("contact.enqueued", 0)]))
    for formula in FORMULAS:
        assert w.service_level(formula) is None
    assert w.asa_s is None and w.aht_s is None and w.transfer_rate is None and w.hold_rate is None


def test_attribution_offered_at_enqueue_answered_at_answer():
    log = [ev("contact.enqueued", 14 * 60 + 50), ev("contact.answered", 15 * 60 + 5)]
    result = compute(log)
    first, second = only(result, at=T0), only(result, at=T0 + timedelta(minutes=15))
    assert (first.offered, first.answered, second.offered, second.answered) == (1, 0, 0, 1)
    assert second.answered_within_sl == 1 and second.asa_s == 15


def test_each_queue_segment_counts_in_its_own_queue():
    log = [ev("contact.enqueued", 0, queue="billing"), ev("contact.flowed_out", 100, queue="billing"),
           ev("contact.enqueued", 100, queue="support"), ev("contact.answered", 110, queue="support")]
    result = compute(log)
    billing, support = only(result, "billing"), only(result, "support")
    assert (billing.offered, billing.flowed_out, billing.answered) == (1, 1, 0)
    assert (support.offered, support.answered, support.answered_within_sl, support.asa_s) == (1, 1, 1, 10)


def test_handle_time_with_hold_and_acw_attributed_at_acw_completion():
    log = [ev("contact.enqueued", 0), ev("contact.answered", 10),
           ev("contact.hold_started", 40), ev("contact.hold_ended", 70),
           ev("contact.ended", 130), ev("contact.acw_completed", 14 * 60 + 59 + 60)]  # next interval
    result = compute(log)
    later = only(result, at=T0 + timedelta(minutes=15))
    assert (later.handled, later.held) == (1, 1)
    assert later.hold_s == 30 and later.talk_s == 120 - 30 and later.acw_s == (14 * 60 + 59 + 60) - 130
    assert later.aht_s == later.talk_s + later.hold_s + later.acw_s
    assert only(result).handled == 0


def test_transfer_counts_in_the_queue_of_the_answered_segment():
    log = [ev("contact.enqueued", 0), ev("contact.answered", 5), ev("contact.transferred", 60, to_queue="sales"),
           ev("contact.enqueued", 61, queue="sales"), ev("contact.answered", 70, queue="sales"),
           ev("contact.ended", 200), ev("contact.acw_completed", 230)]
    result = compute(log)
    billing, sales = only(result, "billing"), only(result, "sales")
    assert (billing.transferred, billing.transfer_rate, billing.handled) == (1, 1.0, 0)
    assert (sales.handled, sales.talk_s, sales.acw_s) == (1, 130, 30)


def test_answer_without_enqueue_counts_but_has_no_wait():
    w = only(compute([ev("contact.answered", 5)]))
    assert (w.answered, w.answered_within_sl, w.asa_s) == (1, 0, None)


def test_arrival_order_and_duplicates_do_not_matter():
    log = [ev("contact.enqueued", 0, "a"), ev("contact.answered", 8, "a"), ev("contact.enqueued", 1, "b"),
           ev("contact.abandoned", 3, "b")]
    base = compute(log)
    shuffled = compute([log[3], log[1], log[0], log[2], log[1], log[0]])
    assert base == shuffled


def test_intervals_follow_the_site_clock_across_the_fall_back_hour():
    zone = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 10, 25, 0, 5, tzinfo=UTC)    # 02:05 CEST
    second = datetime(2026, 10, 25, 1, 5, tzinfo=UTC)   # 02:05 CET, the repeated hour
    a, b = interval_start(first, zone, 15), interval_start(second, zone, 15)
    assert a != b and (b - a) == timedelta(hours=1)
    assert a.astimezone(zone).strftime("%H:%M") == b.astimezone(zone).strftime("%H:%M") == "02:00"
