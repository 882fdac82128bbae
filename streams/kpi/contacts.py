"""Contact lifecycles to queue facts, robust to out-of-order, late and repeated events.

A contact's contribution to the queue KPIs is a pure function of its events sorted by event time
(docs/kpi-definitions.md, "Queue segments" and "Handle time"). `ContactState` keeps the few events
of one contact, recomputes that function when an event arrives and returns the difference from
what it contributed before: new facts with weight +1, retracted ones with -1. Applying the signed
facts to the queue counters therefore gives, at every moment, exactly the counts of the batch
definition over the events seen so far, whatever order they came in. The ids of the applied events
live in the same record, so a repeated event is recognised where it would do harm, and both reach
the changelog together.

Times are integer epoch microseconds, computed exactly from the aware datetimes (event times may
carry sub-millisecond digits); sums of waits and handle times stay integers, so the counters are
exact. `at_us // 1000` gives the millisecond time `streams.kpi.windows` buckets by.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from streams.kpi.facts import applied_ids, signed_diff

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Lifecycle order of events of one contact that share a timestamp.
RANK = {
    "contact.offered": 0, "contact.enqueued": 1, "contact.answered": 2, "contact.abandoned": 2,
    "contact.flowed_out": 2, "chat.message": 3, "contact.hold_started": 4, "contact.hold_ended": 5,
    "contact.transferred": 6, "contact.ended": 7, "contact.acw_completed": 8,
}
_CLOSES = {"contact.answered": "answered", "contact.abandoned": "abandoned", "contact.flowed_out": "flowed_out"}


class ContactEvent(NamedTuple):
    """The part of a contact event the queue KPIs need."""

    at_us: int
    rank: int
    event_type: str
    event_id: str    # source|event_id: what makes an event unique
    channel: str
    queue: str | None = None
    agent: str | None = None   # contact.answered: the agent who took it (chat slots)

    @classmethod
    def of(cls, event) -> ContactEvent:
        """From a decoded `models.events` contact event."""
        return cls((event.occurred_at - _EPOCH) // _MICROSECOND, RANK[event.event_type], event.event_type,
                   f"{event.source}|{event.event_id}", event.channel.value, getattr(event, "queue", None),
                   getattr(event, "agent_id", None) if event.event_type == "contact.answered" else None)


class QueueFact(NamedTuple):
    """One contribution to one queue's counters, attributed at `at_us`.

    kind: offered | answered | abandoned | flowed_out | transferred | handled. `wait_us` is set for
    answered and abandoned segments whose enqueue is known; talk/hold/acw and `held` for handled.
    """

    queue: str
    channel: str
    kind: str
    at_us: int
    wait_us: int | None = None
    talk_us: int = 0
    hold_us: int = 0
    acw_us: int = 0
    held: bool = False


def contact_facts(events: Iterable[ContactEvent]) -> Counter[QueueFact]:
    """Every queue fact of one contact, from its events in any order."""
    facts: Counter[QueueFact] = Counter()
    waiting: dict[str, list[int]] = {}          # queue -> enqueue times of open segments, oldest first
    leg_start: int | None = None                # last answer: the handled leg
    leg_queue: str | None = None
    leg_end: int | None = None                  # first contact.ended after the answer
    holds: list[list[int | None]] = []          # [start, end] of holds in the leg
    for e in sorted(events):
        kind = e.event_type
        if kind == "contact.enqueued":
            waiting.setdefault(e.queue, []).append(e.at_us)
            facts[QueueFact(e.queue, e.channel, "offered", e.at_us)] += 1
        elif kind in _CLOSES:
            open_segments = waiting.get(e.queue)
            wait = e.at_us - open_segments.pop(0) if open_segments else None
            outcome = _CLOSES[kind]
            facts[QueueFact(e.queue, e.channel, outcome, e.at_us,
                            wait if outcome != "flowed_out" else None)] += 1
            if outcome == "answered":
                leg_start, leg_queue, leg_end, holds = e.at_us, e.queue, None, []
        elif leg_start is None:
            continue  # holds, transfers and wrap-up of a contact never answered: no queue figure
        elif kind == "contact.hold_started" and leg_end is None:
            holds.append([e.at_us, None])
        elif kind == "contact.hold_ended" and leg_end is None and holds and holds[-1][1] is None:
            holds[-1][1] = e.at_us
        elif kind == "contact.transferred":
            facts[QueueFact(e.queue or leg_queue, e.channel, "transferred", e.at_us)] += 1
        elif kind == "contact.ended" and leg_end is None:
            leg_end = e.at_us
        elif kind == "contact.acw_completed":
            talk_end = leg_end if leg_end is not None else e.at_us
            hold = sum((end if end is not None else talk_end) - start for start, end in holds)
            facts[QueueFact(leg_queue, e.channel, "handled", e.at_us, None,
                            talk_end - leg_start - hold, hold, e.at_us - talk_end, bool(holds))] += 1
    return facts


@dataclass
class ContactState:
    """One contact: its events, the ids already applied and the facts it contributed."""

    events: list[ContactEvent] = field(default_factory=list)
    contributed: Counter[QueueFact] = field(default_factory=Counter)
    _ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def _seen(self, event_id: str) -> bool:
        """Whether an event id was applied (a set beside the list: `applied_ids`)."""
        self._ids = ids = applied_ids(self._ids, self.events)
        return event_id in ids

    def apply(self, event: ContactEvent) -> list[tuple[QueueFact, int]] | None:
        """Add an event; return the signed change in facts, or None for a repeated event id."""
        if self._seen(event.event_id):
            return None
        self.events.append(event)
        self._ids.add(event.event_id)
        now = contact_facts(self.events)
        delta = signed_diff(now, self.contributed)
        self.contributed = now
        return delta

    @property
    def last_event_us(self) -> int:
        return max(e.at_us for e in self.events)


def open_segments(events: Iterable[ContactEvent]) -> list[tuple[str, str, int]]:
    """The contact's queue segments still waiting after its known events: (queue, channel, enqueued µs).

    Same pairing as `contact_facts`: an answer, abandon or flow-out closes the oldest open segment of
    its queue."""
    waiting: dict[str, list[tuple[str, int]]] = {}
    for e in sorted(events):
        if e.event_type == "contact.enqueued":
            waiting.setdefault(e.queue, []).append((e.channel, e.at_us))
        elif e.event_type in _CLOSES and waiting.get(e.queue):
            waiting[e.queue].pop(0)
    return [(queue, channel, at) for queue, segments in waiting.items() for channel, at in segments]


def chat_slots(events: Iterable[ContactEvent]) -> dict[str, int | None]:
    """Agent -> answer time (µs) of the chat leg occupying one of its slots now, or None for every
    other agent that answered this contact (its slot is free). Empty for a non-chat contact.

    A leg occupies a slot from `contact.answered` until the `contact.acw_completed` that follows, a
    `contact.transferred`, or the next `contact.answered` (docs/kpi-definitions.md, chat utilization)."""
    legs: dict[str, int | None] = {}
    leg: tuple[str, int] | None = None
    for e in sorted(events):
        if e.channel != "chat":
            return {}
        if e.event_type == "contact.answered" and e.agent is not None:
            if leg is not None:
                legs[leg[0]] = None
            leg = (e.agent, e.at_us)
            legs.setdefault(e.agent, None)
        elif e.event_type in ("contact.acw_completed", "contact.transferred") and leg is not None:
            leg = None
    if leg is not None:
        legs[leg[0]] = leg[1]
    return legs


def in_progress(events: Iterable[ContactEvent]) -> tuple[str, str, int] | None:
    """(queue, channel, answered µs) while the contact is handled: from its last answer until the ACW
    that follows completes; None otherwise."""
    leg: tuple[str, str, int] | None = None
    for e in sorted(events):
        if e.event_type == "contact.answered":
            leg = (e.queue, e.channel, e.at_us)
        elif e.event_type == "contact.acw_completed":
            leg = None
    return leg
