"""One partition's KPI state: entity records and the window aggregates derived from them.

Pure: no Faust, no Kafka. The worker keeps one `PartitionState` per partition of the internal
events topic it owns (`streams.app`).

*Entity records* are the state of truth: one per contact, agent or ticket (`EntityRecord`), holding
the compact events applied to it, so the ids that guard against a repeated event and the state they
guard are one value, written to the changelog together. *Aggregates* (interval, day and rolling
counters per queue, agents by scope, tickets, quality, contacts waiting) are a pure function of the
records: applying an event adds the record's signed change in facts, and `PartitionState.rebuild`
recomputes them from restored records after a restart or rebalance. So aggregates need no changelog
of their own and cannot disagree with the records they come from.

What is retained (docs/kpi-definitions.md, "Windows"): interval and day windows from
`SiteClock.retained_since(watermark)`, rolling sub-buckets for the longest rolling window. Records
whose last event is older than retention are dropped with their windows; an event older than
retention is `too_late`. The partition's watermark (newest event time applied) drives both, so a
replay of the partition decides the same way.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

import orjson

from streams.kpi.agents import AgentChange, AgentFact, AgentState, AgentWindow
from streams.kpi.contacts import RANK as CONTACT_RANK
from streams.kpi.contacts import ContactEvent, ContactState, QueueFact, open_segments
from streams.kpi.quality import QualityCounters, QualityEvent, QualityFact, QualityState, is_quality_event
from streams.kpi.queues import QueueCounters, QueueRules
from streams.kpi.tickets import RANK as TICKET_RANK
from streams.kpi.tickets import DEFAULT_RULES, TicketCounters, TicketEvent, TicketFact, TicketRules, TicketState
from streams.kpi.tickets import to_us as _to_us
from streams.kpi.windows import SiteClock

# Scopes aggregated per partition. Per-agent detail stays in the agent's record (snapshots), never in
# an aggregate: 10,000 agents x 96 intervals would dominate memory and must not become labels.
AGENT_SCOPES = frozenset({"queue", "team", "center"})


class Outcome(Enum):
    accepted = "accepted"
    duplicate = "duplicate"
    too_late = "too_late"
    ignored = "ignored"      # an event no KPI uses (e.g. a survey without contact or ticket)


_COUNTED_KINDS = frozenset({*CONTACT_RANK, *TICKET_RANK, "agent.state_changed", "survey.responded"})


def event_parts(event) -> tuple:
    """(event_type, entity key, event time µs, ContactEvent, AgentChange, TicketEvent, QualityEvent) of a
    decoded `models.events` event: all `PartitionState` needs (None for the parts it has none of)."""
    kind = event.event_type
    return (kind, event.entity_key, _to_us(event.occurred_at),
            ContactEvent.of(event) if kind in CONTACT_RANK else None,
            AgentChange.of(event) if kind == "agent.state_changed" else None,
            TicketEvent.of(event) if kind in TICKET_RANK else None,
            QualityEvent.of(event) if is_quality_event(event) else None)


def encode_parts(parts: tuple) -> bytes:
    """`event_parts` as compact JSON (what ingest ships to the engine; no tab or newline in it)."""
    kind, key, at_us, contact, agent, ticket, quality = parts
    return orjson.dumps((kind, key, at_us, None if contact is None else tuple(contact),
                         None if agent is None else tuple(agent), None if ticket is None else tuple(ticket),
                         None if quality is None else tuple(quality)))


def decode_parts(value: bytes) -> tuple:
    """The inverse of `encode_parts`: tuples equal to those `event_parts` made."""
    kind, key, at_us, contact, agent, ticket, quality = orjson.loads(value)
    return (kind, key, at_us,
            None if contact is None else ContactEvent(*contact),
            None if agent is None else AgentChange(*agent[:6], tuple(agent[6]), *agent[7:]),
            None if ticket is None else TicketEvent(*ticket),
            None if quality is None else QualityEvent(*quality))


# -- records ---------------------------------------------------------------------------------------

@dataclass
class EntityRecord:
    """One contact, agent or ticket; its quality part holds its surveys (contacts and tickets)."""

    key: str
    contact: ContactState | None = None
    agent: AgentState | None = None
    ticket: TicketState | None = None
    quality: QualityState | None = None
    last_event_us: int = 0

    def encode(self) -> bytes:
        """The changelog value: the compact events of each part (the facts are recomputed)."""
        value: dict[str, list] = {}
        if self.contact is not None:
            value["c"] = [tuple(e) for e in self.contact.events]
        if self.agent is not None:
            value["a"] = [tuple(c) for c in self.agent.changes]
        if self.ticket is not None:
            value["t"] = [tuple(e) for e in self.ticket.events]
        if self.quality is not None:
            value["q"] = [tuple(e) for e in self.quality.events]
        return orjson.dumps(value)

    @staticmethod
    def decode_events(value: bytes) -> dict[str, list]:
        """The compact events of a changelog value, as the pure modules' tuples."""
        raw = orjson.loads(value)
        return {
            "c": [ContactEvent(*e) for e in raw.get("c", ())],
            "a": [AgentChange(*c[:6], tuple(c[6]), *c[7:]) for c in raw.get("a", ())],
            "t": [TicketEvent(*e) for e in raw.get("t", ())],
            "q": [QualityEvent(*e) for e in raw.get("q", ())],
        }


# -- windowed counters -----------------------------------------------------------------------------

class Windows:
    """Counters per (labels, interval start), (labels, day start) and (labels, sub-bucket start)."""

    def __init__(self, factory: Callable[[], object], rolling: bool = False) -> None:
        self.factory = factory
        self.intervals: dict[tuple, object] = {}
        self.days: dict[tuple, object] = {}
        self.buckets: dict[tuple, object] | None = {} if rolling else None

    def _get(self, table: dict, key: tuple):
        counters = table.get(key)
        if counters is None:
            counters = table[key] = self.factory()
        return counters

    def counters(self, labels: tuple, interval_ms: int, day_ms: int, bucket_ms: int | None) -> list:
        found = [self._get(self.intervals, (*labels, interval_ms)), self._get(self.days, (*labels, day_ms))]
        if bucket_ms is not None and self.buckets is not None:
            found.append(self._get(self.buckets, (*labels, bucket_ms)))
        return found

    def prune(self, retained_since_ms: int, rolling_since_ms: int) -> None:
        for table, since in ((self.intervals, retained_since_ms), (self.days, retained_since_ms),
                             (self.buckets, rolling_since_ms)):
            if table:
                for key in [k for k in table if k[-1] < since]:
                    del table[key]


# -- the partition ---------------------------------------------------------------------------------

@dataclass
class PartitionConfig:
    clock: SiteClock
    queue_rules: Callable[[str, str], QueueRules]   # called per fact: make it cheap (cached)
    ticket_rules: TicketRules = DEFAULT_RULES
    rolling_minutes: tuple[int, ...] = (5, 15, 60)


@dataclass
class TooLate:
    event_us: int
    retained_since_us: int


@dataclass
class PartitionState:
    """Records and aggregates of one partition; `apply` events, then `take_dirty` for the changelog."""

    config: PartitionConfig
    records: dict[str, EntityRecord] = field(default_factory=dict)
    watermark_ms: int | None = None
    dirty: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.queues = Windows(QueueCounters, rolling=True)      # (queue, channel)
        self.agent_time = Windows(AgentWindow)                  # (scope kind, scope name)
        self.tickets = Windows(TicketCounters)                  # (queue, priority)
        self.quality = Windows(QualityCounters)                 # (queue or None,)
        self.waiting: dict[str, list[tuple[str, str, int]]] = {}  # contact key -> open segments
        self.agents: dict[str, AgentState] = {}
        self.open_tickets: dict[str, TicketState] = {}
        self._ticket_timers: list[tuple[int, str]] = []
        self._day_starts: dict[int, int] = {}                   # interval start -> day start (cache)
        self._interval = (0, 0)                                 # last interval looked up: [start, end)
        self._retention = (0, -1, 0)                            # watermark in [from, until) -> retained since
        self._pruned_at_ms: int | None = None
        self.counts: Counter[str] = Counter()                  # outcome -> events, since start

    # -- time ------------------------------------------------------------------------------------

    def _day_of_interval(self, interval_ms: int) -> int:
        day = self._day_starts.get(interval_ms)
        if day is None:
            day = self._day_starts[interval_ms] = self.config.clock.day_start(interval_ms)
        return day

    def _interval_start(self, ts_ms: int) -> int:
        """`SiteClock.interval_start`, remembering the last interval (most facts fall in it)."""
        start, end = self._interval
        if start <= ts_ms < end:
            return start
        start, end = self._interval = self.config.clock.interval(ts_ms)
        return start

    def retained_since_ms(self) -> int | None:
        wm = self.watermark_ms
        if wm is None:
            return None
        valid_from, valid_until, since = self._retention
        if not valid_from <= wm < valid_until:  # it only changes when the watermark's day does
            clock = self.config.clock
            since = clock.retained_since(wm)
            self._retention = (clock.day_start(wm), clock.day_end(wm), since)
        return since

    def rolling_since_ms(self) -> int | None:
        wm = self.watermark_ms
        if wm is None:
            return None
        clock = self.config.clock
        longest = max(self.config.rolling_minutes, default=0) * 60_000
        return clock.sub_bucket(wm) + clock.sub_bucket_ms - longest

    # -- events ----------------------------------------------------------------------------------

    def apply(self, event) -> Outcome | TooLate:
        """Apply one decoded `models.events` event to its entity's record and the aggregates."""
        return self.apply_parts(*event_parts(event))

    def apply_parts(self, kind: str, key: str, at_us: int, contact: ContactEvent | None,
                    agent: AgentChange | None, ticket: TicketEvent | None,
                    quality: QualityEvent | None) -> Outcome | TooLate:
        """`apply` on an event's compact parts (`event_parts`), as the engine receives them."""
        at_ms = at_us // 1000
        since = self.retained_since_ms()
        if since is not None and at_ms < since:
            self.counts["too_late"] += 1
            return TooLate(at_us, since * 1000)
        record = self.records.get(key)
        fresh = record is None
        if fresh:
            record = EntityRecord(key)
        outcome = self._apply_to(record, kind, contact, agent, ticket, quality)
        if outcome is Outcome.accepted:
            if fresh:
                self.records[key] = record
            if at_us > record.last_event_us:
                record.last_event_us = at_us
            self.dirty.add(key)
            self.deleted.discard(key)
            if self.watermark_ms is None or at_ms > self.watermark_ms:
                self.watermark_ms = at_ms
        self.counts[outcome.value] += 1
        return outcome

    def _apply_to(self, record: EntityRecord, kind: str, contact: ContactEvent | None, agent: AgentChange | None,
                  ticket: TicketEvent | None, quality_event: QualityEvent | None) -> Outcome:
        applied = None
        if contact is not None:
            if record.contact is None:
                record.contact = ContactState()
            applied = record.contact.apply(contact)
            if applied is not None:
                self._queue_facts(applied)
                self._update_waiting(record)
        elif agent is not None:
            if record.agent is None:
                record.agent = self.agents[record.key] = AgentState()
            applied = record.agent.apply(agent, self.config.clock)
            if applied is not None:
                self._agent_facts(applied)
        elif ticket is not None:
            if record.ticket is None:
                record.ticket = self.open_tickets[record.key] = TicketState()
            applied = record.ticket.apply(ticket, self.config.ticket_rules)
            if applied is not None:
                self._ticket_facts(applied)
                self._arm_ticket_timer(record.key, record.ticket)
        if quality_event is not None:
            if record.quality is None:
                record.quality = QualityState(record.key)
            quality = record.quality.apply(quality_event)
            if quality is not None:
                self._quality_facts(quality)
                if applied is None and kind == "survey.responded":
                    applied = quality
        if applied is None:
            return Outcome.duplicate if kind in _COUNTED_KINDS else Outcome.ignored
        return Outcome.accepted

    # -- facts to aggregates ------------------------------------------------------------------------

    def _queue_facts(self, delta: Iterable[tuple[QueueFact, int]]) -> None:
        clock = self.config.clock
        rules_for = self.config.queue_rules
        rolling_since = self.rolling_since_ms()
        for fact, weight in delta:
            at_ms = fact.at_us // 1000
            interval = self._interval_start(at_ms)
            bucket = clock.sub_bucket(at_ms)
            if rolling_since is not None and bucket < rolling_since:
                bucket = None
            rules = rules_for(fact.queue, fact.channel)
            for counters in self.queues.counters((fact.queue, fact.channel), interval,
                                                 self._day_of_interval(interval), bucket):
                counters.add(fact, weight, rules)

    def _agent_facts(self, delta: Iterable[tuple[AgentFact, int]]) -> None:
        for fact, weight in delta:
            if fact.scope_kind in AGENT_SCOPES:
                for window in self.agent_time.counters((fact.scope_kind, fact.scope_name), fact.interval_ms,
                                                       self._day_of_interval(fact.interval_ms), None):
                    window.add(fact, weight)

    def _ticket_facts(self, delta: Iterable[tuple[TicketFact, int]]) -> None:
        for fact, weight in delta:
            interval = self._interval_start(fact.at_us // 1000)
            for counters in self.tickets.counters((fact.queue, fact.priority), interval,
                                                  self._day_of_interval(interval), None):
                counters.add(fact, weight)

    def _quality_facts(self, delta: Iterable[tuple[QualityFact, int]]) -> None:
        for fact, weight in delta:
            if fact.kind == "start":
                continue  # belongs to the repeat-FCR stage, keyed by customer
            interval = self._interval_start(fact.at_us // 1000)
            for counters in self.quality.counters((fact.queue,), interval, self._day_of_interval(interval), None):
                counters.add(fact, weight)

    def _update_waiting(self, record: EntityRecord) -> None:
        segments = open_segments(record.contact.events)
        if segments:
            self.waiting[record.key] = segments
        else:
            self.waiting.pop(record.key, None)

    # -- timers ----------------------------------------------------------------------------------

    def _arm_ticket_timer(self, key: str, ticket: TicketState) -> None:
        if self.watermark_ms is None:
            due = ticket.next_due_us(0, self.config.ticket_rules)
        else:
            due = ticket.next_due_us(self.watermark_ms * 1000, self.config.ticket_rules)
        if due is not None:
            heapq.heappush(self._ticket_timers, (due, key))

    def advance(self) -> None:
        """Work that depends on the watermark: ticket breaches now due, and retention. Call after a
        batch of events (cheap when nothing is due)."""
        if self.watermark_ms is None:
            return
        now_us = self.watermark_ms * 1000
        timers = self._ticket_timers
        rules = self.config.ticket_rules
        touched = set()
        while timers and timers[0][0] < now_us:
            _, key = heapq.heappop(timers)
            touched.add(key)
        for key in touched:
            ticket = self.open_tickets.get(key)
            if ticket is not None:
                self._ticket_facts(ticket.evaluate(now_us, rules))
                self._arm_ticket_timer(key, ticket)
        for key in list(self.dirty):  # breaches of tickets whose events arrived in this batch
            ticket = self.open_tickets.get(key)
            if ticket is not None and key not in touched:
                self._ticket_facts(ticket.evaluate(now_us, rules))
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        since = self.retained_since_ms()
        rolling_since = self.rolling_since_ms()
        if since is None:
            return
        self.queues.prune(since, rolling_since)
        if self._pruned_at_ms == since:
            return
        self._pruned_at_ms = since
        for table in (self.agent_time, self.tickets, self.quality):
            table.prune(since, rolling_since)
        since_us = since * 1000
        for key in [k for k, r in self.records.items() if r.last_event_us < since_us and self._finished(r)]:
            self._forget(key)
            self.deleted.add(key)
            self.dirty.discard(key)

    def _finished(self, record: EntityRecord) -> bool:
        """Whether a record can go once its events are older than retention: an agent still logged
        in and an unsolved ticket stay (agents now, backlog by age), however long they are quiet."""
        if record.agent is not None and record.agent.changes[-1].state != "offline":
            return False
        if record.ticket is not None and record.ticket.now(self.watermark_ms * 1000, self.config.ticket_rules):
            return False
        return True

    def _forget(self, key: str) -> None:
        self.records.pop(key, None)
        self.waiting.pop(key, None)
        self.agents.pop(key, None)
        self.open_tickets.pop(key, None)

    # -- changelog ---------------------------------------------------------------------------------

    def take_dirty(self) -> tuple[dict[str, bytes], set[str]]:
        """Records changed since the last call (encoded) and records dropped by retention."""
        changed = {key: self.records[key].encode() for key in self.dirty if key in self.records}
        deleted = self.deleted
        self.dirty, self.deleted = set(), set()
        return changed, deleted

    @classmethod
    def rebuild(cls, config: PartitionConfig, values: Iterable[tuple[str, bytes]]) -> PartitionState:
        """The state of a partition from its restored records (the changelog's latest values)."""
        state = cls(config)
        decoded = [(key, EntityRecord.decode_events(value)) for key, value in values]
        # The watermark first: retention and rolling decisions must be those of the original run.
        newest = max((e.at_us for _, parts in decoded for events in parts.values() for e in events), default=None)
        state.watermark_ms = None if newest is None else newest // 1000
        for key, parts in decoded:
            record = state.records[key] = EntityRecord(key)
            for event in parts["c"]:
                record.contact = record.contact or ContactState()
                state._queue_facts(record.contact.apply(event) or ())
            if record.contact is not None:
                state._update_waiting(record)
            for change in parts["a"]:
                if record.agent is None:
                    record.agent = state.agents[key] = AgentState()
                state._agent_facts(record.agent.apply(change, config.clock) or ())
            for event in parts["t"]:
                if record.ticket is None:
                    record.ticket = state.open_tickets[key] = TicketState()
                state._ticket_facts(record.ticket.apply(event, config.ticket_rules) or ())
            if record.ticket is not None:
                state._arm_ticket_timer(key, record.ticket)
            for event in parts["q"]:
                record.quality = record.quality or QualityState(key)
                state._quality_facts(record.quality.apply(event) or ())
            record.last_event_us = max((e.at_us for events in parts.values() for e in events), default=0)
        for key in state.open_tickets:
            state.dirty.add(key)   # evaluate breaches as of the restored watermark
        state.advance()
        state.dirty.clear()
        state.deleted.clear()
        return state


