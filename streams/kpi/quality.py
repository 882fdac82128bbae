"""Quality KPIs (section 6): CSAT, NPS, FCR disposition-based and repeat-based, as signed facts.

Same pattern as `streams.kpi.contacts` and `streams.kpi.tickets`. Two keyed records:

- **`QualityState`**, one per contact or ticket (the engine's entity key: a survey is keyed by its
  `contact_id` or `ticket_id`, see `models.events.SurveyResponded.entity_key`). It accepts the
  entity's lifecycle events *and* its surveys; `quality_facts` is a pure function of them, and
  `apply` returns the signed difference, so a survey that arrived before the contact's answer is
  first counted under no queue (or the wrong one) and moved when the answer arrives. Facts:

  - `csat` / `nps` (`score`), attributed at response time to the survey's queue, else the queue of
    the contact's last answer at or before the survey (the first answer if all are later), else the
    ticket's queue at the survey time; `None` when unknown (center total only).
  - `handled` (`resolved`, and the contact's `customer` / `start_us` when known), at ACW completion
    in the queue of the last answer before it (as `handled` in section 3): disposition FCR, and the
    input of the repeat-based FCR.
  - `start` (`customer`, `subject`), at a contact's start (first offered/enqueued) or a ticket's
    creation: routed by customer, never counted in a queue window.

- **`CustomerState`**, one per hashed `customer_ref`, fed the signed `start` and `handled` facts of
  that customer. The repeat outcome of a handled contact depends on the evaluation time:
  `repeat_facts(..., at_us)` is pure, `CustomerState.apply/evaluate` return signed changes of
  `RepeatFact` (kind `repeat_pending` / `repeat_reported`, and `repeat_fcr` for a reported one
  without a repeat), attributed at the ACW completion in its queue.

`QualityIntervals` applies both kinds of facts to counters per (queue, interval start ms).
Times are integer epoch microseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from streams.kpi.facts import applied_ids, signed_diff
from streams.kpi.tickets import to_us
from streams.kpi.windows import SiteClock

_US = 1_000_000
DEFAULT_REPEAT_WINDOW_US = 72 * 3600 * _US

# Order of one entity's events at the same instant (contacts as in `streams.kpi.contacts`, then
# tickets; a survey last: it answers about what happened).
RANK = {
    "contact.offered": 0, "contact.enqueued": 1, "contact.answered": 2, "contact.abandoned": 2,
    "contact.flowed_out": 2, "chat.message": 3, "contact.hold_started": 4, "contact.hold_ended": 5,
    "contact.transferred": 6, "contact.ended": 7, "contact.acw_completed": 8,
    "ticket.created": 0, "ticket.assigned": 1,
    "survey.responded": 9,
}
_NEEDED = frozenset({"contact.offered", "contact.enqueued", "contact.answered", "contact.acw_completed",
                     "ticket.created", "ticket.assigned", "survey.responded"})


def is_quality_event(event) -> bool:
    """Whether a decoded event matters to the quality record of its entity."""
    return event.event_type in _NEEDED


class QualityEvent(NamedTuple):
    """The part of a contact, ticket or survey event the quality KPIs need. Sorts in timeline order."""

    at_us: int
    rank: int
    event_id: str              # source|event_id
    event_type: str
    queue: str | None = None   # answered, ticket created/assigned, survey (optional)
    customer: str | None = None  # offered/enqueued, ticket.created (hashed customer_ref)
    resolved: bool | None = None  # acw_completed
    kind: str | None = None    # survey: csat | nps
    score: int | None = None   # survey

    @classmethod
    def of(cls, event) -> QualityEvent:
        """From a decoded `models.events` event (see `is_quality_event`)."""
        kind = getattr(event, "kind", None)
        return cls(to_us(event.occurred_at), RANK[event.event_type], f"{event.source}|{event.event_id}",
                   event.event_type, getattr(event, "queue", None), getattr(event, "customer_ref", None),
                   getattr(event, "resolved", None), None if kind is None else str(kind.value),
                   getattr(event, "score", None))


class QualityFact(NamedTuple):
    """One contribution of a contact/ticket record. kind: csat | nps | handled | start.

    `subject` names the start (`contact:<id>` / `ticket:<id>`; for a handled contact, its own);
    `start_us` is a handled contact's start."""

    kind: str
    queue: str | None
    at_us: int
    score: int | None = None
    resolved: bool | None = None
    customer: str | None = None
    start_us: int | None = None
    subject: str | None = None


def _queue_at(changes: list[tuple[int, str]], at_us: int) -> str | None:
    """The last queue set at or before `at_us`; the first one if all are later; None if none."""
    if not changes:
        return None
    before = [q for when, q in changes if when <= at_us]
    return before[-1] if before else changes[0][1]


def quality_facts(events: Iterable[QualityEvent], subject: str) -> Counter[QualityFact]:
    """Every quality fact of one contact or ticket (`subject`: its entity key) from its events and
    surveys in any order."""
    evs = sorted(events)
    facts: Counter[QualityFact] = Counter()
    start: int | None = None
    customer: str | None = None
    answers: list[tuple[int, str]] = []
    answered_queue: str | None = None
    handled: list[tuple[int, str, bool | None]] = []
    ticket_queues: list[tuple[int, bool, str]] = []
    surveys: list[QualityEvent] = []
    for e in evs:
        kind = e.event_type
        if kind in ("contact.offered", "contact.enqueued"):
            if start is None:
                start = e.at_us
            if customer is None and e.customer is not None:
                customer = e.customer
        elif kind == "contact.answered":
            answered_queue = e.queue
            answers.append((e.at_us, e.queue))
        elif kind == "contact.acw_completed" and answered_queue is not None:
            handled.append((e.at_us, answered_queue, e.resolved))
        elif kind == "ticket.created":
            ticket_queues.append((e.at_us, False, e.queue))
            if e.customer is not None:
                facts[QualityFact("start", None, e.at_us, customer=e.customer, subject=subject)] += 1
        elif kind == "ticket.assigned" and e.queue is not None:
            ticket_queues.append((e.at_us, True, e.queue))
        elif kind == "survey.responded":
            surveys.append(e)
    is_contact = subject.startswith("contact:")
    lifecycle = answers if is_contact else [(at, q) for at, _, q in sorted(ticket_queues)]
    for s in surveys:
        queue = s.queue if s.queue is not None else _queue_at(lifecycle, s.at_us)
        facts[QualityFact(s.kind, queue, s.at_us, s.score)] += 1
    if customer is not None and start is not None:
        facts[QualityFact("start", None, start, customer=customer, subject=subject)] += 1
    for done, queue, resolved in handled:
        facts[QualityFact("handled", queue, done, resolved=resolved, customer=customer,
                          start_us=start if customer is not None else None, subject=subject)] += 1
    return facts


@dataclass
class QualityState:
    """One contact or ticket with its surveys: events (ids applied) and the facts contributed."""

    subject: str  # the entity key: contact:<id> | ticket:<id>
    events: list[QualityEvent] = field(default_factory=list)
    contributed: Counter[QualityFact] = field(default_factory=Counter)
    _ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def _seen(self, event_id: str) -> bool:
        """Whether an event id was applied (a set beside the list: `applied_ids`)."""
        self._ids = ids = applied_ids(self._ids, self.events)
        return event_id in ids

    def apply(self, event: QualityEvent) -> list[tuple[QualityFact, int]] | None:
        """Add an event; the signed change in facts, or None for a repeated event id."""
        if self._seen(event.event_id):
            return None
        self.events.append(event)
        self._ids.add(event.event_id)
        now = quality_facts(self.events, self.subject)
        delta = signed_diff(now, self.contributed)
        self.contributed = now
        return delta


# -- repeat-based FCR, per customer ------------------------------------------------------------------

class RepeatFact(NamedTuple):
    """kind: repeat_pending | repeat_reported | repeat_fcr, at the ACW completion `at_us`."""

    kind: str
    queue: str
    at_us: int


def repeat_facts(starts: Iterable[tuple[int, str]], handled: Iterable[QualityFact], at_us: int,
                 window_us: int = DEFAULT_REPEAT_WINDOW_US) -> Counter[RepeatFact]:
    """Repeat outcomes of one customer's handled contacts as known at `at_us`.

    `starts`: (start, subject) of the customer's contacts and tickets; `handled`: its handled facts
    (with customer and start). Reported once `at_us >= done + window`: first-contact-resolved when no
    other subject starts in (start, done + window]; before that pending."""
    starts = list(starts)
    facts: Counter[RepeatFact] = Counter()
    for h in handled:
        end = h.at_us + window_us
        if at_us < end:
            facts[RepeatFact("repeat_pending", h.queue, h.at_us)] += 1
            continue
        facts[RepeatFact("repeat_reported", h.queue, h.at_us)] += 1
        if not any(h.start_us < started <= end and subject != h.subject for started, subject in starts):
            facts[RepeatFact("repeat_fcr", h.queue, h.at_us)] += 1
    return facts


@dataclass
class CustomerState:
    """One customer (hashed customer_ref): its starts and handled contacts (signed multisets, fed by
    the `start` and `handled` facts of its contacts and tickets) and the repeat facts contributed."""

    window_us: int = DEFAULT_REPEAT_WINDOW_US
    starts: Counter[tuple[int, str]] = field(default_factory=Counter)
    handled: Counter[QualityFact] = field(default_factory=Counter)
    contributed: Counter[RepeatFact] = field(default_factory=Counter)

    def apply(self, fact: QualityFact, weight: int, at_us: int) -> list[tuple[RepeatFact, int]]:
        """Apply a signed `start` or `handled` fact of this customer; the signed change in repeat
        facts as known at `at_us`."""
        if fact.kind == "start":
            self.starts[(fact.at_us, fact.subject)] += weight
        elif fact.kind == "handled":
            self.handled[fact] += weight
        else:
            raise ValueError(f"not a customer fact: {fact.kind!r}")
        return self.evaluate(at_us)

    def evaluate(self, at_us: int) -> list[tuple[RepeatFact, int]]:
        """The signed change in repeat facts as known at `at_us` (on timers: see `next_due_us`).
        Evaluation times are expected not to go back; a smaller one makes reported contacts pending."""
        starts = [s for s, n in self.starts.items() for _ in range(n) if n > 0]
        handled = [h for h, n in self.handled.items() for _ in range(n) if n > 0]
        now = repeat_facts(starts, handled, at_us, self.window_us)
        delta = signed_diff(now, self.contributed)
        self.contributed = now
        return delta

    def next_due_us(self, after_us: int) -> int | None:
        """The earliest instant >= after_us at which a pending handled contact gets reported."""
        due = [h.at_us + self.window_us for h, n in self.handled.items() if n > 0]
        return min((d for d in due if d >= after_us), default=None)


def routes_to_customer(fact: QualityFact) -> bool:
    """Whether a contact/ticket fact also goes to the customer stage (keyed by `fact.customer`)."""
    return fact.kind in ("start", "handled") and fact.customer is not None


# -- aggregation -----------------------------------------------------------------------------------

@dataclass(slots=True)
class QualityCounters:
    csat_responses: int = 0
    csat_satisfied: int = 0
    csat_score_sum: int = 0
    nps_responses: int = 0
    nps_promoters: int = 0
    nps_detractors: int = 0
    fcr_flagged: int = 0
    fcr_resolved: int = 0
    fcr_unflagged: int = 0
    repeat_reported: int = 0
    repeat_fcr: int = 0
    repeat_pending: int = 0
    repeat_unknown_customer: int = 0

    def add(self, fact: QualityFact | RepeatFact, weight: int) -> None:
        kind = fact.kind
        if kind == "csat":
            self.csat_responses += weight
            self.csat_satisfied += weight * (fact.score >= 4)
            self.csat_score_sum += weight * fact.score
        elif kind == "nps":
            self.nps_responses += weight
            self.nps_promoters += weight * (fact.score >= 9)
            self.nps_detractors += weight * (fact.score <= 6)
        elif kind == "handled":
            if fact.resolved is None:
                self.fcr_unflagged += weight
            else:
                self.fcr_flagged += weight
                self.fcr_resolved += weight * fact.resolved
            if fact.customer is None:
                self.repeat_unknown_customer += weight
        elif kind == "repeat_pending":
            self.repeat_pending += weight
        elif kind == "repeat_reported":
            self.repeat_reported += weight
        elif kind == "repeat_fcr":
            self.repeat_fcr += weight
        else:
            raise ValueError(f"unknown fact kind {kind!r}")

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    @property
    def csat(self) -> float | None:
        return _ratio(self.csat_satisfied, self.csat_responses)

    @property
    def csat_mean(self) -> float | None:
        return _ratio(self.csat_score_sum, self.csat_responses)

    @property
    def nps(self) -> float | None:
        return _ratio(100 * (self.nps_promoters - self.nps_detractors), self.nps_responses)

    @property
    def fcr_disposition(self) -> float | None:
        return _ratio(self.fcr_resolved, self.fcr_flagged)

    @property
    def fcr_repeat(self) -> float | None:
        return _ratio(self.repeat_fcr, self.repeat_reported)


def _ratio(numerator: float, denominator: int) -> float | None:
    return None if denominator <= 0 else numerator / denominator


class QualityIntervals:
    """Counters per (queue or None, interval start ms) for one site."""

    def __init__(self, clock: SiteClock) -> None:
        self.clock = clock
        self.windows: dict[tuple[str | None, int], QualityCounters] = {}

    def apply(self, fact: QualityFact | RepeatFact, weight: int) -> tuple[str | None, int] | None:
        """Apply a signed fact; `start` facts belong to the customer stage and are ignored here."""
        if fact.kind == "start":
            return None
        key = (fact.queue, self.clock.interval_start(fact.at_us // 1000))
        counters = self.windows.get(key)
        if counters is None:
            counters = self.windows[key] = QualityCounters()
        counters.add(fact, weight)
        return key
