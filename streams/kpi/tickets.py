"""Ticket lifecycles to ticket facts, robust to out-of-order, late and repeated events (section 5).

Same pattern as `streams.kpi.contacts`: `TicketState` keeps the few events of one ticket and the
facts it contributed; a new event recomputes the ticket's facts from its sorted events and returns
the signed difference. Two kinds of facts:

- **Event facts** (`created`, `first_response` with its time, `solved` with the resolution clock,
  `reopened`) depend only on the events: `ticket_facts`, returned by `TicketState.apply`.
- **Breach facts** (`first_response_breached`, `resolution_breached`) also depend on time passing:
  a breach counts once the evaluation time is strictly past its due instant. `ticket_breaches`
  gives every breach the known events imply with its due instant (the resolution due is pause
  adjusted, extrapolated from the last event while the clock runs); the facts at `at_us` are those
  with `due < at_us` (`breach_facts`). `TicketState.evaluate(at_us)` returns their signed change,
  and `TicketState.due_times()` tells a timer when to evaluate again.
- "Now" figures (backlog age bucket, at risk) are a pure function of the events and `at_us`:
  `ticket_now`.

Times are integer epoch microseconds (exact sums); `at_us // 1000` is the millisecond time
`streams.kpi.windows` buckets by. Targets are configuration (`TicketRules`), passed in, not kept
in the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from streams.kpi.facts import applied_ids, signed_diff
from streams.kpi.windows import SiteClock

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_US = 1_000_000
_HOUR_US = 3600 * _US
_DAY_US = 24 * _HOUR_US

# Order of one ticket's events that share a timestamp (as a helpdesk writes them).
RANK = {
    "ticket.created": 0, "ticket.assigned": 1, "ticket.customer_replied": 2, "ticket.reopened": 3,
    "ticket.agent_replied": 4, "ticket.status_changed": 5,
}
PAUSED = frozenset({"pending", "on_hold"})
UNSOLVED = frozenset({"new", "open", "pending", "on_hold"})
# (name, lower bound inclusive, upper bound exclusive) of a ticket's age, microseconds
AGE_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("<1h", 0, _HOUR_US), ("1-4h", _HOUR_US, 4 * _HOUR_US), ("4-24h", 4 * _HOUR_US, _DAY_US),
    ("1-3d", _DAY_US, 3 * _DAY_US), (">3d", 3 * _DAY_US, float("inf")),
)


def to_us(moment: datetime) -> int:
    """Exact epoch microseconds of an aware datetime."""
    return (moment - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class TicketRules:
    """SLA targets per priority (first response, resolution) in µs, pausing, warning lead."""

    targets: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "urgent": (1 * _HOUR_US, 4 * _HOUR_US),
        "high": (4 * _HOUR_US, 1 * _DAY_US),
        "normal": (8 * _HOUR_US, 3 * _DAY_US),
        "low": (24 * _HOUR_US, 5 * _DAY_US),
    })
    pause_resolution: bool = True
    warning_lead_us: int = 30 * 60 * _US

    @classmethod
    def of_seconds(cls, targets: dict[str, tuple[float, float]], pause_resolution: bool = True,
                   warning_lead_s: float = 30 * 60.0) -> TicketRules:
        return cls({p: (round(fr * _US), round(res * _US)) for p, (fr, res) in targets.items()},
                   pause_resolution, round(warning_lead_s * _US))


DEFAULT_RULES = TicketRules()


class TicketEvent(NamedTuple):
    """The part of a ticket event the ticket KPIs need. Sorts in timeline order."""

    at_us: int
    rank: int
    event_id: str                # source|event_id: what makes an event unique
    event_type: str
    queue: str | None = None     # created; assigned (None: no move)
    priority: str | None = None  # created
    status: str | None = None    # status_changed

    @classmethod
    def of(cls, event) -> TicketEvent:
        """From a decoded `models.events` ticket event."""
        priority = getattr(event, "priority", None)
        status = getattr(event, "status", None)
        return cls(to_us(event.occurred_at), RANK[event.event_type],
                   f"{event.source}|{event.event_id}", event.event_type, getattr(event, "queue", None),
                   None if priority is None else str(priority.value),
                   None if status is None else str(status.value))


class TicketFact(NamedTuple):
    """One contribution to one (queue, priority) counter, attributed at `at_us`.

    kind: created | first_response | solved | reopened (event facts) | first_response_breached |
    resolution_breached (breach facts; `at_us` is the due instant). `value_us`: first-response time
    of a first_response, resolution clock of a solve.
    """

    queue: str
    priority: str
    kind: str
    at_us: int
    value_us: int | None = None


class TicketDue(NamedTuple):
    """Due instants of the breaches the known events imply (None: none pending on that target).

    first_response_us: creation + target, when no first response (or stopping solve) came by it.
    resolution_us: the instant the resolution clock passes its target, pause adjusted; while the
    clock runs after the last event it is extrapolated, and a later event can move it."""

    first_response_us: int | None
    resolution_us: int | None


@dataclass(slots=True)
class _Walk:
    queue: str
    priority: str
    created_us: int
    status: str
    facts: Counter
    breaches: list  # [TicketFact] with at_us = due instant
    due: TicketDue
    first_response_stop_us: int | None
    clock_us: int        # resolution clock at `last_us`
    last_us: int
    running: bool


def _walk(events: Iterable[TicketEvent], rules: TicketRules, until_us: int | None = None) -> _Walk | None:
    """One pass over a ticket's events (those at or before `until_us` when given)."""
    evs = sorted(e for e in events if until_us is None or e.at_us <= until_us)
    created = next((e for e in evs if e.event_type == "ticket.created"), None)
    if created is None:
        return None  # a ticket whose creation never arrived is not counted
    queue, priority, status = created.queue, created.priority, "new"
    fr_target, res_target = rules.targets[priority]
    pause = rules.pause_resolution
    facts: Counter[TicketFact] = Counter({TicketFact(queue, priority, "created", created.at_us): 1})
    queue_changes = [(created.at_us, queue)]
    stop: int | None = None
    replied = False
    clock = 0
    last = created.at_us
    res_due: int | None = None
    res_queue = queue

    def running() -> bool:
        return status in UNSOLVED and not (pause and status in PAUSED)

    for e in evs:
        if e.at_us < created.at_us or e.event_id == created.event_id:
            continue
        if running():
            before = clock
            clock += e.at_us - last
            if res_due is None and before <= res_target < clock:
                res_due, res_queue = last + (res_target - before), queue
        last = e.at_us
        kind = e.event_type
        if kind == "ticket.assigned" and e.queue is not None:
            queue = e.queue
            queue_changes.append((e.at_us, queue))
        elif kind == "ticket.agent_replied" and not replied:
            replied = True
            if stop is None:
                stop = e.at_us
                facts[TicketFact(queue, priority, "first_response", e.at_us, e.at_us - created.at_us)] += 1
        elif kind == "ticket.reopened" and status not in UNSOLVED:
            status = "open"
            facts[TicketFact(queue, priority, "reopened", e.at_us)] += 1
        elif kind == "ticket.status_changed":
            new = e.status
            if new in UNSOLVED and status not in UNSOLVED:
                facts[TicketFact(queue, priority, "reopened", e.at_us)] += 1
            elif new not in UNSOLVED and status in UNSOLVED:
                facts[TicketFact(queue, priority, "solved", e.at_us, clock)] += 1
                if stop is None:
                    stop = e.at_us
            status = new
    is_running = running()
    if res_due is None and is_running:  # extrapolated: the clock keeps running after the last event
        res_due, res_queue = last + (res_target - clock), queue
    breaches = []
    fr_due = created.at_us + fr_target
    if stop is None or stop > fr_due:
        fr_queue = [q for when, q in queue_changes if when <= fr_due][-1]  # the queue at the due instant
        breaches.append(TicketFact(fr_queue, priority, "first_response_breached", fr_due))
    else:
        fr_due = None
    if res_due is not None:
        breaches.append(TicketFact(res_queue, priority, "resolution_breached", res_due))
    return _Walk(queue, priority, created.at_us, status, facts, breaches, TicketDue(fr_due, res_due),
                 stop, clock, last, is_running)


def ticket_facts(events: Iterable[TicketEvent], rules: TicketRules = DEFAULT_RULES) -> Counter[TicketFact]:
    """Every event fact of one ticket, from its events in any order."""
    walk = _walk(events, rules)
    return Counter() if walk is None else walk.facts


def ticket_breaches(events: Iterable[TicketEvent], rules: TicketRules = DEFAULT_RULES) -> list[TicketFact]:
    """The breaches the known events imply, each with its due instant as `at_us` (counted once the
    evaluation time is past it)."""
    walk = _walk(events, rules)
    return [] if walk is None else walk.breaches


def breach_facts(events: Iterable[TicketEvent], at_us: int, rules: TicketRules = DEFAULT_RULES) -> Counter[TicketFact]:
    """The breach facts of one ticket as known at evaluation time `at_us` (due < at_us).

    Only events at or before `at_us` are used; a breach due before `at_us` depends on no later
    event, so this equals filtering `ticket_breaches` when every known event is at or before it."""
    walk = _walk(events, rules, at_us)
    return Counter() if walk is None else Counter(b for b in walk.breaches if b.at_us < at_us)


class TicketNow(NamedTuple):
    """An open ticket at an evaluation time: where it counts and what it adds."""

    queue: str
    priority: str
    age_bucket: str
    at_risk_first_response: bool
    at_risk_resolution: bool

    @property
    def at_risk(self) -> bool:
        return self.at_risk_first_response or self.at_risk_resolution


def age_bucket(age_us: int) -> str:
    for name, low, high in AGE_BUCKETS:
        if low <= age_us < high:
            return name
    raise ValueError(age_us)


def ticket_now(events: Iterable[TicketEvent], at_us: int, rules: TicketRules = DEFAULT_RULES) -> TicketNow | None:
    """The ticket's backlog/at-risk contribution at `at_us`; None unless created and unsolved then."""
    return _now_of(_walk(events, rules, at_us), at_us, rules)


def _now_of(walk: _Walk | None, at_us: int, rules: TicketRules) -> TicketNow | None:
    if walk is None or walk.status not in UNSOLVED:
        return None
    fr_target, res_target = rules.targets[walk.priority]
    lead = rules.warning_lead_us
    fr_left = walk.created_us + fr_target - at_us
    fr_risk = walk.first_response_stop_us is None and 0 <= fr_left <= lead
    clock = walk.clock_us + (at_us - walk.last_us if walk.running else 0)
    res_risk = walk.running and 0 <= res_target - clock <= lead
    return TicketNow(walk.queue, walk.priority, age_bucket(at_us - walk.created_us), fr_risk, res_risk)


@dataclass
class TicketState:
    """One ticket: its events (ids applied) and the event and breach facts it contributed."""

    events: list[TicketEvent] = field(default_factory=list)
    contributed: Counter[TicketFact] = field(default_factory=Counter)
    breached: Counter[TicketFact] = field(default_factory=Counter)
    _ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    # The walk over all events, for evaluation times after the last event (every scrape): it only
    # changes when an event is added. (number of events, rules, walk, last event µs).
    _walk_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def _seen(self, event_id: str) -> bool:
        """Whether an event id was applied (a set beside the list: `applied_ids`)."""
        self._ids = ids = applied_ids(self._ids, self.events)
        return event_id in ids

    def apply(self, event: TicketEvent, rules: TicketRules = DEFAULT_RULES,
              at_us: int | None = None) -> list[tuple[TicketFact, int]] | None:
        """Add an event; return the signed change in event facts (and, with `at_us`, in breach facts
        as of that evaluation time), or None for a repeated event id."""
        if self._seen(event.event_id):
            return None
        self.events.append(event)
        self._ids.add(event.event_id)
        now = ticket_facts(self.events, rules)
        delta = signed_diff(now, self.contributed)
        self.contributed = now
        if at_us is not None:
            delta += self.evaluate(at_us, rules)
        return delta

    def evaluate(self, at_us: int, rules: TicketRules = DEFAULT_RULES) -> list[tuple[TicketFact, int]]:
        """The signed change in breach facts as known at `at_us` (call on timers, after late events).
        Evaluation times are expected not to go back; a smaller one retracts breaches not yet due."""
        now = breach_facts(self.events, at_us, rules)
        delta = signed_diff(now, self.breached)
        self.breached = now
        return delta

    def due_times(self, rules: TicketRules = DEFAULT_RULES) -> TicketDue:
        """Due instants of the breaches the known events imply; evaluate after them (`at > due`)."""
        walk = _walk(self.events, rules)
        return TicketDue(None, None) if walk is None else walk.due

    def next_due_us(self, after_us: int, rules: TicketRules = DEFAULT_RULES) -> int | None:
        """The earliest due instant not yet counted at `after_us` (due >= after_us): a timer target."""
        pending = [d for d in self.due_times(rules) if d is not None and d >= after_us]
        return min(pending, default=None)

    def _cached_walk(self, rules: TicketRules) -> tuple | None:
        cached = self._walk_cache
        if cached is None or cached[0] != len(self.events) or cached[1] is not rules:
            if not self.events:
                return None
            cached = self._walk_cache = (len(self.events), rules, _walk(self.events, rules), self.last_event_us)
        return cached

    def now(self, at_us: int, rules: TicketRules = DEFAULT_RULES) -> TicketNow | None:
        cached = self._cached_walk(rules)
        if cached is None:
            return None
        if at_us < cached[3]:   # before its last event: walk only the events known then
            return ticket_now(self.events, at_us, rules)
        return _now_of(cached[2], at_us, rules)

    def owed(self, rules: TicketRules = DEFAULT_RULES) -> tuple[str, str, int | None, int | None] | None:
        """(queue, priority, first-response due µs, resolution due µs) after the known events; a due is
        None once it is no longer owed (first response given, ticket solved). None: not created."""
        cached = self._cached_walk(rules)
        walk = cached[2] if cached is not None else None
        if walk is None:
            return None
        first_response = walk.due.first_response_us if walk.first_response_stop_us is None else None
        resolution = walk.due.resolution_us if walk.status in UNSOLVED else None
        return walk.queue, walk.priority, first_response, resolution

    @property
    def last_event_us(self) -> int:
        return max(e.at_us for e in self.events)


# -- aggregation -----------------------------------------------------------------------------------

@dataclass(slots=True)
class TicketCounters:
    created: int = 0
    first_responses: int = 0
    first_response_us: int = 0
    solved: int = 0
    resolution_us: int = 0
    reopened: int = 0
    first_response_breached: int = 0
    resolution_breached: int = 0

    def add(self, fact: TicketFact, weight: int) -> None:
        kind = fact.kind
        if kind == "created":
            self.created += weight
        elif kind == "first_response":
            self.first_responses += weight
            self.first_response_us += weight * fact.value_us
        elif kind == "solved":
            self.solved += weight
            self.resolution_us += weight * fact.value_us
        elif kind == "reopened":
            self.reopened += weight
        elif kind == "first_response_breached":
            self.first_response_breached += weight
        elif kind == "resolution_breached":
            self.resolution_breached += weight
        else:
            raise ValueError(f"unknown fact kind {kind!r}")

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    @property
    def breached(self) -> int:
        return self.first_response_breached + self.resolution_breached

    @property
    def average_first_response_s(self) -> float | None:
        return None if self.first_responses <= 0 else self.first_response_us / _US / self.first_responses

    @property
    def average_resolution_s(self) -> float | None:
        return None if self.solved <= 0 else self.resolution_us / _US / self.solved


class TicketIntervals:
    """Counters per (queue, priority, interval start ms) for one site."""

    def __init__(self, clock: SiteClock) -> None:
        self.clock = clock
        self.windows: dict[tuple[str, str, int], TicketCounters] = {}

    def apply(self, fact: TicketFact, weight: int) -> tuple[str, str, int]:
        key = (fact.queue, fact.priority, self.clock.interval_start(fact.at_us // 1000))
        counters = self.windows.get(key)
        if counters is None:
            counters = self.windows[key] = TicketCounters()
        counters.add(fact, weight)
        return key
