"""Unit tests of the pure quality path (`streams/kpi/quality.py`) with explicit timestamps."""

import itertools
import json
from datetime import UTC, datetime, timedelta

from models.events import EVENT_ADAPTER
from streams.kpi.quality import (CustomerState, QualityEvent, QualityIntervals, QualityState,
                                 is_quality_event, quality_facts, routes_to_customer)
from streams.kpi.tickets import to_us
from streams.kpi.windows import SiteClock, to_ms

S = 1_000_000
H = 3600 * S
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T0 = to_us(BASE)
Q0 = to_ms(BASE)  # the 09:00 interval
Q1 = Q0 + 15 * 60 * 1000  # the 09:15 interval


def decoded(at_s: float, event_type: str, n, **fields):
    body = {"event_id": str(n), "event_type": event_type, "source": "src",
            "occurred_at": (BASE + timedelta(seconds=at_s)).isoformat(), **fields}
    return EVENT_ADAPTER.validate_json(json.dumps(body), context={"customer_hash_key": b"k"})


def contact(at_s, kind, n, cid="c1", **fields):
    return decoded(at_s, f"contact.{kind}", n, contact_id=cid, channel="voice", **fields)


def answered(at_s, n, queue="billing", cid="c1"):
    return contact(at_s, "answered", n, cid, queue=queue, agent_id="a1")


def acw(at_s, n, resolved=None, cid="c1"):
    return contact(at_s, "acw_completed", n, cid, agent_id="a1", disposition="done", resolved=resolved)


def enqueued(at_s, n, cid="c1", queue="billing", customer=None):
    return contact(at_s, "enqueued", n, cid, queue=queue, customer_ref=customer)


def survey(at_s, n, kind, score, queue=None, cid="c1", tid=None):
    subject = {"ticket_id": tid} if tid else {"contact_id": cid}
    return decoded(at_s, "survey.responded", n, kind=kind, score=score, queue=queue, **subject)


class Pipeline:
    """Entity records -> customer records -> interval counters, as the engine wires them."""

    def __init__(self, window_s: float = 72 * 3600):
        self.intervals = QualityIntervals(SiteClock("UTC", 15))
        self.entities: dict[str, QualityState] = {}
        self.customers: dict[str, CustomerState] = {}
        self.window_us = round(window_s * S)
        self.at_us = None
        self.repeated = 0

    def feed(self, *events):
        for event in events:
            assert is_quality_event(event)
            at = to_us(event.occurred_at)
            self.at_us = at if self.at_us is None else max(self.at_us, at)
            key = event.entity_key
            delta = self.entities.setdefault(key, QualityState(key)).apply(QualityEvent.of(event))
            if delta is None:
                self.repeated += 1
                continue
            for fact, weight in delta:
                self.intervals.apply(fact, weight)
                if routes_to_customer(fact):
                    customer = self.customers.setdefault(fact.customer, CustomerState(self.window_us))
                    for repeat, w in customer.apply(fact, weight, self.at_us):
                        self.intervals.apply(repeat, w)
        return self

    def evaluate(self, at_s: float):
        """Time passes (a timer): the evaluation time never goes back."""
        self.at_us = max(self.at_us, T0 + round(at_s * S))
        for customer in self.customers.values():
            for fact, weight in customer.evaluate(self.at_us):
                self.intervals.apply(fact, weight)
        return self

    def windows(self) -> dict:
        return {k: v for k, v in self.intervals.windows.items() if not v.is_empty()}


def test_csat_counts_a_score_of_exactly_4_as_satisfied_and_3_not():
    p = Pipeline().feed(survey(0, 1, "csat", 4, "billing"), survey(1, 2, "csat", 3, "billing"),
                        survey(2, 3, "csat", 5, "billing"))
    (key, w), = p.windows().items()
    assert key == ("billing", Q0)
    assert (w.csat_responses, w.csat_satisfied, w.csat_score_sum) == (3, 2, 12)
    assert w.csat == 2 / 3 and w.csat_mean == 4.0
    assert w.nps is None and w.fcr_disposition is None and w.fcr_repeat is None


def test_nps_boundaries_9_is_a_promoter_6_a_detractor_7_and_8_passive():
    p = Pipeline().feed(*(survey(i, i, "nps", score, "billing") for i, score in enumerate([9, 6, 7, 8, 10, 0])))
    w = p.windows()[("billing", Q0)]
    assert (w.nps_responses, w.nps_promoters, w.nps_detractors) == (6, 2, 2)
    assert w.nps == 0.0 and w.csat is None
    w = Pipeline().feed(survey(0, 1, "nps", 9, "q"), survey(1, 2, "nps", 8, "q")).windows()[("q", Q0)]
    assert w.nps == 50.0
    w = Pipeline().feed(survey(0, 1, "nps", 6, "q")).windows()[("q", Q0)]
    assert w.nps == -100.0


def test_survey_attributed_at_response_time_interval_bound():
    p = Pipeline().feed(survey(15 * 60 - 0.001, 1, "csat", 5, "q"), survey(15 * 60, 2, "csat", 1, "q"))
    assert p.windows()[("q", Q0)].csat_responses == 1 and p.windows()[("q", Q1)].csat_score_sum == 1


def test_survey_before_the_answer_arrives_is_moved_to_the_answers_queue():
    p = Pipeline()
    p.feed(survey(600, 1, "csat", 5))  # the contact is not known yet: no queue
    assert set(p.windows()) == {(None, Q0)}
    p.feed(answered(10, 2, "tech"))   # a late answer: the survey moves to tech
    assert set(p.windows()) == {("tech", Q0)}
    assert p.windows()[("tech", Q0)].csat_responses == 1
    p.feed(answered(700, 3, "sales"))  # an answer after the survey does not take it
    assert set(p.windows()) == {("tech", Q0)}
    p.feed(answered(300, 4, "billing"))  # a later answer still before the survey does
    assert set(p.windows()) == {("billing", Q0)}
    p.feed(survey(601, 5, "nps", 10, queue="vip"))  # the survey's own queue wins
    assert p.windows()[("vip", Q0)].nps_promoters == 1 and p.windows()[("billing", Q0)].csat_responses == 1


def test_survey_about_a_contact_answered_only_after_it_takes_the_first_answer():
    # the oracle's rule: "the first one if all are later"
    p = Pipeline().feed(survey(0, 1, "csat", 5), answered(100, 2, "tech"), answered(200, 3, "sales"))
    assert set(p.windows()) == {("tech", Q0)}


def test_ticket_survey_takes_the_tickets_queue_at_survey_time():
    t = "t1"
    created = decoded(0, "ticket.created", 1, ticket_id=t, priority="normal", queue="mail")
    moved = decoded(1000, "ticket.assigned", 2, ticket_id=t, agent_id="a", queue="escal")
    unmoved = decoded(1100, "ticket.assigned", 3, ticket_id=t, agent_id="b")
    p = Pipeline().feed(survey(500, 4, "csat", 2, tid=t), survey(1200, 5, "csat", 5, tid=t))
    assert p.windows()[(None, Q0)].csat_responses == 1 and p.windows()[(None, Q1)].csat_responses == 1
    p.feed(moved, unmoved)
    # before the creation arrives, the only known queue (escal) counts for both
    assert p.windows()[("escal", Q0)].csat_responses == 1 and p.windows()[("escal", Q1)].csat_responses == 1
    p.feed(created)
    assert p.windows() == {("mail", Q0): p.windows()[("mail", Q0)], ("escal", Q1): p.windows()[("escal", Q1)]}
    assert p.windows()[("mail", Q0)].csat_score_sum == 2 and p.windows()[("escal", Q1)].csat_score_sum == 5


def test_disposition_fcr_in_the_queue_of_the_last_answer_unflagged_left_out():
    p = Pipeline().feed(
        answered(0, 1, "billing", cid="a"), acw(100, 2, True, cid="a"),
        answered(0, 3, "billing", cid="b"), acw(100, 4, False, cid="b"),
        answered(0, 5, "billing", cid="c"), acw(100, 6, None, cid="c"),
        acw(100, 7, True, cid="d"),  # never answered: not handled
    )
    w = p.windows()[("billing", Q0)]
    assert (w.fcr_flagged, w.fcr_resolved, w.fcr_unflagged) == (2, 1, 1)
    assert w.fcr_disposition == 0.5
    assert w.repeat_unknown_customer == 3 and w.repeat_pending == 0
    assert len(p.windows()) == 1


def test_disposition_fcr_moves_when_a_late_transfer_answer_arrives():
    p = Pipeline().feed(answered(0, 1, "billing"), acw(1000, 2, True))
    assert p.windows()[("billing", Q1)].fcr_resolved == 1
    p.feed(answered(500, 3, "tech"))  # the answer of the second leg, late
    assert set(p.windows()) == {("tech", Q1)}
    p.feed(answered(1500, 4, "sales"))  # after the completion: no effect
    assert set(p.windows()) == {("tech", Q1)}


def test_repeated_event_ids_are_ignored():
    p = Pipeline().feed(survey(0, 1, "csat", 5, "q"), survey(0, 1, "csat", 5, "q"))
    assert p.repeated == 1 and p.windows()[("q", Q0)].csat_responses == 1


def handled_contact(cid, start_s, done_s, n, customer="alice", resolved=True):
    return [enqueued(start_s, f"{n}e", cid, customer=customer), answered(start_s + 10, f"{n}a", cid=cid),
            acw(done_s, f"{n}w", resolved, cid=cid)]


W = 3600.0  # a 1 h repeat window in these tests


def repeat_counts(p):
    w = p.windows()[("billing", Q0)]
    return w.repeat_pending, w.repeat_reported, w.repeat_fcr


def test_repeat_fcr_pending_until_the_window_elapses_then_reported():
    p = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1))
    assert repeat_counts(p) == (1, 0, 0)
    p.evaluate(100 + W - 0.001)
    assert repeat_counts(p) == (1, 0, 0)
    p.evaluate(100 + W)  # at == completion + window: reported
    assert repeat_counts(p) == (0, 1, 1)
    assert p.windows()[("billing", Q0)].fcr_repeat == 1.0


def test_a_start_at_the_windows_end_is_a_repeat_just_after_it_is_not():
    at_end = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1), enqueued(100 + W, 9, "c2", customer="alice"))
    at_end.evaluate(100 + W)
    assert repeat_counts(at_end) == (0, 1, 0)
    after = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1), enqueued(100 + W + 0.001, 9, "c2", customer="alice"))
    assert repeat_counts(after) == (0, 1, 1)
    other = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1), enqueued(200, 9, "c2", customer="bob"))
    other.evaluate(100 + W)
    assert repeat_counts(other) == (0, 1, 1)


def test_a_second_contact_started_during_the_first_is_a_repeat_one_at_the_same_instant_is_not():
    during = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1), enqueued(50, 9, "c2", customer="alice"))
    during.evaluate(100 + W)
    assert repeat_counts(during) == (0, 1, 0)
    same = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1), enqueued(0, 9, "c2", customer="alice"))
    same.evaluate(100 + W)
    assert repeat_counts(same) == (0, 1, 1)


def test_a_ticket_of_the_same_customer_is_a_repeat_and_a_late_start_corrects_a_reported_fcr():
    p = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1))
    p.evaluate(100 + W + 10)
    assert repeat_counts(p) == (0, 1, 1)
    # a ticket created within the window arrives late (after the report): the FCR is retracted
    p.feed(decoded(2000, "ticket.created", 5, ticket_id="t1", priority="low", queue="mail", customer_ref="alice"))
    assert repeat_counts(p) == (0, 1, 0)
    assert p.windows()[("billing", Q0)].fcr_repeat == 0.0


def test_the_customer_is_the_first_customer_ref_and_unknown_customers_stay_out():
    p = Pipeline(W).feed(enqueued(0, 1, "c1"), contact(5, "offered", 2, "c1"), answered(10, 3),
                         acw(100, 4, True))
    w = p.windows()[("billing", Q0)]
    assert (w.repeat_unknown_customer, w.repeat_pending, w.repeat_reported) == (1, 0, 0)
    p.feed(enqueued(50, 5, "c1", queue="tech", customer="alice"))  # the customer becomes known
    p.evaluate(100 + W)
    w = p.windows()[("billing", Q0)]
    assert (w.repeat_unknown_customer, w.repeat_pending, w.repeat_reported, w.repeat_fcr) == (0, 0, 1, 1)


def test_quality_facts_are_a_pure_function_of_the_events():
    events = [QualityEvent.of(e) for e in (survey(600, 1, "csat", 4), answered(10, 2, "tech"), acw(500, 3, False))]
    facts = {tuple(f[:3]) + (n,) for f, n in quality_facts(events, "contact:c1").items()}
    assert facts == {("csat", "tech", T0 + 600 * S, 1), ("handled", "tech", T0 + 500 * S, 1)}


def test_arrival_order_does_not_matter():
    events = [*handled_contact("c1", 0, 100, 1), enqueued(50, 9, "c2", customer="alice"),
              *handled_contact("c3", 4000, 4100, 3, customer="alice", resolved=False),
              survey(300, 20, "csat", 4), survey(4200, 21, "nps", 6, cid="c3"),
              decoded(7000, "ticket.created", 22, ticket_id="t1", priority="low", queue="mail", customer_ref="alice")]
    results = set()
    for order in itertools.islice(itertools.permutations(events), 0, None, 997):
        p = Pipeline(W).feed(*order).evaluate(7000)
        results.add(tuple(sorted((k, tuple(sorted(vars_of(v).items()))) for k, v in p.windows().items())))
    assert len(results) == 1
    (windows,) = results
    billing = dict(dict(windows)[("billing", Q0)])
    assert billing["repeat_reported"] == 1 and billing["repeat_fcr"] == 0 and billing["csat_satisfied"] == 1


def vars_of(counters) -> dict:
    return {name: getattr(counters, name) for name in counters.__slots__}


def test_customer_state_next_due():
    state = CustomerState(round(W * S))
    p = Pipeline(W).feed(*handled_contact("c1", 0, 100, 1))
    (customer,) = p.customers.values()
    assert customer.next_due_us(T0) == T0 + round((100 + W) * S)
    assert customer.next_due_us(T0 + round((100 + W) * S) + 1) is None
    assert state.next_due_us(T0) is None
