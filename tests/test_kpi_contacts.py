"""Contact facts and queue counters with explicit timestamps (microseconds), no Faust."""

from collections import Counter

from streams.config import ServiceLevelFormula
from streams.kpi.contacts import RANK, ContactEvent, ContactState, QueueFact, contact_facts
from streams.kpi.queues import QueueCounters, QueueIntervals, QueueRules
from streams.kpi.windows import SiteClock

S = 1_000_000
RULES = QueueRules(threshold_us=20 * S, short_abandon_us=5 * S)
_ids = iter(range(10**9))


def e(event_type, seconds, queue="billing"):
    return ContactEvent(round(seconds * S), RANK[event_type], event_type, f"acd|{next(_ids)}", "voice",
                        queue if event_type in ("contact.enqueued", "contact.answered", "contact.abandoned",
                                                "contact.flowed_out") else None)


def counters_of(*events):
    c = QueueCounters()
    for fact, n in contact_facts(events).items():
        c.add(fact, n, RULES)
    return c


def test_threshold_boundaries_are_inclusive_for_sl_and_strict_for_short_abandons():
    at_t = counters_of(e("contact.enqueued", 0), e("contact.answered", 20))
    over_t = counters_of(e("contact.enqueued", 0), e("contact.answered", 20.000001))
    assert (at_t.answered_within_sl, over_t.answered_within_sl) == (1, 0)
    five = counters_of(e("contact.enqueued", 0), e("contact.abandoned", 5))
    under = counters_of(e("contact.enqueued", 0), e("contact.abandoned", 4.999999))
    assert (five.short_abandoned, under.short_abandoned) == (0, 1)
    assert (five.abandoned_within_sl, under.abandoned_within_sl) == (1, 1)


def test_answer_before_its_enqueue_is_corrected_when_the_enqueue_arrives():
    state = ContactState()
    answered = e("contact.answered", 30)
    first = state.apply(answered)
    assert first == [(QueueFact("billing", "voice", "answered", 30 * S, None), 1)]
    second = dict(state.apply(e("contact.enqueued", 12)))
    assert second == {QueueFact("billing", "voice", "answered", 30 * S, None): -1,
                      QueueFact("billing", "voice", "answered", 30 * S, 18 * S): 1,
                      QueueFact("billing", "voice", "offered", 12 * S): 1}
    assert state.apply(answered) is None, "a repeated event changes nothing"


def test_signed_facts_leave_counters_exactly_as_the_final_set():
    clock = SiteClock("UTC", 15)
    intervals = QueueIntervals(clock, lambda q, c: RULES)
    state = ContactState()
    log = [e("contact.acw_completed", 400), e("contact.answered", 30), e("contact.hold_started", 100),
           e("contact.ended", 300), e("contact.enqueued", 10), e("contact.hold_ended", 160)]
    for event in log:
        for fact, weight in state.apply(event):
            intervals.apply(fact, weight)
    (counters,) = [c for c in intervals.windows.values() if not c.is_empty()]
    assert (counters.offered, counters.answered, counters.answered_within_sl, counters.handled) == (1, 1, 1, 1)
    assert counters.asa_s == 20 and counters.hold_us == 60 * S and counters.talk_us == (270 - 60) * S
    assert counters.acw_us == 100 * S and counters.held == 1
    assert state.contributed == contact_facts(log)


def test_each_segment_counts_in_its_own_queue_and_transfer_in_the_answering_queue():
    facts = contact_facts([e("contact.enqueued", 0, "billing"), e("contact.answered", 5, "billing"),
                           e("contact.transferred", 60), e("contact.enqueued", 61, "sales"),
                           e("contact.answered", 70, "sales"), e("contact.ended", 100),
                           e("contact.acw_completed", 110)])
    kinds = Counter((f.queue, f.kind) for f in facts.elements())
    assert kinds == Counter({("billing", "offered"): 1, ("billing", "answered"): 1, ("billing", "transferred"): 1,
                             ("sales", "offered"): 1, ("sales", "answered"): 1, ("sales", "handled"): 1})


def test_service_level_formulas_and_empty_denominators():
    c = QueueCounters(answered=8, abandoned=4, short_abandoned=1, answered_within_sl=6, abandoned_within_sl=2)
    assert c.service_level(ServiceLevelFormula.answered_of_offered_excl_short) == 6 / (8 + 4 - 1)
    assert c.service_level("answered_of_answered") == 6 / 8
    assert c.service_level("met_of_removed") == (6 + 2) / (8 + 4)
    assert c.service_level("answered_of_offered") == 6 / (8 + 4)
    empty = QueueCounters()
    assert all(empty.service_level(f) is None for f in ServiceLevelFormula)
    assert empty.asa_s is None and empty.abandon_rate() is None and empty.is_empty()
