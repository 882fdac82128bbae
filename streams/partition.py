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

from models.alerts import AlertEvent, AlertScope
from streams.alert_rules import TICKET_KPIS, AlertKpi, AlertRule
from streams.alerts import FIRING, PENDING, Evaluator, Reading, state_key
from streams.kpi.agents import AgentChange, AgentFact, AgentState, AgentWindow, OpenAgents
from streams.kpi.contacts import RANK as CONTACT_RANK
from streams.kpi.contacts import ContactEvent, ContactState, QueueFact, chat_slots, in_progress, open_segments
from streams.kpi.quality import (DEFAULT_REPEAT_WINDOW_US, CustomerState, QualityCounters, QualityEvent,
                                 QualityFact, QualityState, is_quality_event, routes_to_customer)
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
    # Side parts, sent by other partitions (streams.partition "side entries"): absolute per subject.
    legs: dict[str, int] | None = None                       # agent: contact key -> chat answer µs
    customer: CustomerState | None = None                    # customer: repeat-FCR state ...
    customer_facts: dict[str, list[QualityFact]] | None = None   # ... fed by contact/ticket -> facts
    # Per-contact / per-ticket alert states (streams.alerts), in the value they were decided on.
    alerts: dict[str, list] | None = None

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
        if self.legs:
            value["l"] = self.legs
        if self.customer_facts:
            value["u"] = {subject: [tuple(f) for f in facts] for subject, facts in self.customer_facts.items()}
        if self.alerts:
            value["x"] = self.alerts
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
            "l": raw.get("l", {}),
            "u": {subject: [QualityFact(*f) for f in facts] for subject, facts in raw.get("u", {}).items()},
            "x": raw.get("x"),
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

    def prune_buckets(self, rolling_since_ms: int) -> None:
        if self.buckets:
            for key in [k for k in self.buckets if k[-1] < rolling_since_ms]:
                del self.buckets[key]

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
    repeat_window_us: int = DEFAULT_REPEAT_WINDOW_US
    # Per-contact and per-ticket alert rules (streams.alert_rules.PER_ENTITY) and the site they name.
    entity_alert_rules: dict[str, AlertRule] = field(default_factory=dict)
    site: str = "default"


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
    # The newest internal-topic offset applied to this state (-1: none yet). A message at or below it
    # is a re-delivery and is skipped. The engine writes it to the changelog after each message's
    # records (streams.app, `applied_key`), so a rebuilt state restores it with the records it guards.
    applied_offset: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        self.queues = Windows(QueueCounters, rolling=True)      # (queue, channel)
        self.agent_time = Windows(AgentWindow)                  # (scope kind, scope name)
        self.tickets = Windows(TicketCounters, rolling=True)    # (queue, priority); rolling: breach alerts
        self.quality = Windows(QualityCounters)                 # (queue or None,)
        self.waiting: dict[str, list[tuple[str, str, int]]] = {}  # contact key -> open segments
        self.handling: dict[str, tuple[str, str, int]] = {}     # contact key -> (queue, channel, answered µs)
        self.agents: dict[str, AgentState] = {}
        self.open_agents = OpenAgents(self.config.clock, AGENT_SCOPES)   # agents now, running stretches
        self.open_tickets: dict[str, TicketState] = {}
        self._ticket_timers: list[tuple[int, str]] = []
        self._day_starts: dict[int, int] = {}                   # interval start -> day start (cache)
        self._interval = (0, 0)                                 # last interval looked up: [start, end)
        self._retention = (0, -1, 0)                            # watermark in [from, until) -> retained since
        self._pruned_at_ms: int | None = None
        self._rolling_pruned_at_ms: int | None = None
        self.counts: Counter[str] = Counter()                  # outcome -> events, since start
        # Records held by kind (key prefix: contact, agent, ticket, customer), kept as they come and go:
        # counting hundreds of thousands of keys on every scrape cost the engine a sixth of its time.
        self.record_kinds: Counter[str] = Counter()
        # For the snapshot publisher (streams.snapshots): windows and agents changed since it last ran.
        self.touched_windows: set[tuple[str, str, int]] = set()
        self.touched_agents: set[str] = set()
        self.side_dirty: set[str] = set()       # contact/ticket records whose side entries may have changed
        self.legs: dict[str, dict[str, int]] = {}   # agent key -> open chat legs (contact key -> answer µs)
        self._customer_timers: list[tuple[int, str]] = []
        self._alert_timers: list[tuple[int, str]] = []          # (µs a per-entity rule can raise, key)
        kinds = {rule.kpi for rule in self.config.entity_alert_rules.values()}
        # Record kinds per-entity rules watch ("contact:", "ticket:"): the others skip alert work.
        self._alerted_kinds = tuple([*(["contact:"] if AlertKpi.contact_wait_seconds in kinds else []),
                                     *(["ticket:"] if kinds & TICKET_KPIS else [])])
        self.alert_events: list[AlertEvent] = []               # for the engine to send (take_alerts)

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
                self._hold(key, record)
            if at_us > record.last_event_us:
                record.last_event_us = at_us
            self.dirty.add(key)
            if record.agent is None:
                self.side_dirty.add(key)
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
                self.touched_agents.add(record.key)
                self._agent_facts(applied)
                self.open_agents.set(record.key, record.agent.changes[-1], record.agent.chat_capacity())
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
            self.touched_windows.add((fact.queue, fact.channel, interval))
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
        sub_bucket = self.config.clock.sub_bucket
        rolling_since = self.rolling_since_ms()
        for fact, weight in delta:
            at_ms = fact.at_us // 1000
            interval = self._interval_start(at_ms)
            bucket = sub_bucket(at_ms)
            if rolling_since is not None and bucket < rolling_since:
                bucket = None
            for counters in self.tickets.counters((fact.queue, fact.priority), interval,
                                                  self._day_of_interval(interval), bucket):
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
        leg = in_progress(record.contact.events)
        if leg is not None:
            self.handling[record.key] = leg
        else:
            self.handling.pop(record.key, None)

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
        customers = self._customer_timers
        due_customers = set()
        while customers and customers[0][0] <= now_us:
            due_customers.add(heapq.heappop(customers)[1])
        for key in due_customers:
            record = self.records.get(key)
            if record is not None and record.customer is not None:
                self._quality_facts(record.customer.evaluate(now_us))
                self._arm_customer_timer(key, record.customer)
                self.dirty.add(key)
        for key in list(self.dirty):  # breaches of tickets whose events arrived in this batch
            ticket = self.open_tickets.get(key)
            if ticket is not None and key not in touched:
                self._ticket_facts(ticket.evaluate(now_us, rules))
        if self._alerted_kinds:
            self._evaluate_entity_alerts(now_us)
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        """Drop what retention no longer covers: windows and finished records. Full scans only when
        the retention bound moves (rolling sub-buckets: every sub-bucket; the rest: once a day);
        records changed in this batch are checked every time, so a record revived by a late side
        entry goes exactly as it would in a rebuild."""
        since = self.retained_since_ms()
        if since is None:
            return
        rolling_since = self.rolling_since_ms()
        if self._rolling_pruned_at_ms != rolling_since:
            self._rolling_pruned_at_ms = rolling_since
            self.queues.prune_buckets(rolling_since)
            self.tickets.prune_buckets(rolling_since)
        since_us = since * 1000
        if self._pruned_at_ms != since:
            self._pruned_at_ms = since
            for table in (self.queues, self.agent_time, self.tickets, self.quality):
                table.prune(since, rolling_since)
            candidates = list(self.records)
        else:
            candidates = list(self.dirty)
        records = self.records
        for key in candidates:
            record = records.get(key)
            if record is not None and record.last_event_us < since_us and self._finished(record, since_us):
                if record.alerts:   # a contact that waited beyond retention: its firing alerts end with it
                    evaluator = Evaluator(dict(record.alerts), self.config.site)
                    evaluator.forget_unobserved(set(), self.config.entity_alert_rules, self.watermark_ms)
                    self.alert_events.extend(evaluator.events)
                self._forget(key)
                self.deleted.add(key)
                self.dirty.discard(key)

    def _finished(self, record: EntityRecord, since_us: int) -> bool:
        """Whether a record can go once its events are older than retention: an agent still logged
        in and an unsolved ticket stay (agents now, backlog by age), however long they are quiet."""
        if record.legs and max(record.legs.values()) >= since_us:
            # Chat legs of an agent whose own events have not reached this partition yet (partitions
            # run at their own pace): dropped now, they would be lost, since the contact's partition
            # sends a leg only when it changes.
            return False
        if record.agent is not None and record.agent.changes[-1].state != "offline":
            return False
        if record.ticket is not None and record.ticket.now(self.watermark_ms * 1000, self.config.ticket_rules):
            return False
        if record.customer is not None and record.customer.next_due_us(self.watermark_ms * 1000) is not None:
            return False  # contacts still waiting for their repeat window to end
        return True

    def _hold(self, key: str, record: EntityRecord) -> EntityRecord:
        self.records[key] = record
        self.record_kinds[key[:key.find(":")]] += 1
        return record

    def _forget(self, key: str) -> None:
        if key in self.agents:
            self.open_agents.set(key, None)
        if self.records.pop(key, None) is not None:
            self.record_kinds[key[:key.find(":")]] -= 1
        self.handling.pop(key, None)
        self.touched_agents.discard(key)
        self.legs.pop(key, None)
        self.waiting.pop(key, None)
        self.agents.pop(key, None)
        self.open_tickets.pop(key, None)

    # -- per-contact and per-ticket alerts (streams.alerts) -------------------------------------------

    def _entity_readings(self, key: str, record: EntityRecord, now_us: int) -> list[tuple]:
        """(rule name, rule, scope, reading, condition start ms) of every per-entity rule covering the
        record now: a contact's wait in each queue it waits in, a ticket's time past a due it owes."""
        out = []
        entity_id = key.partition(":")[2]
        rules = self.config.entity_alert_rules
        if record.contact is not None:
            oldest: dict[str, tuple[str, int]] = {}
            for queue, channel, enqueued in self.waiting.get(key, ()):
                if queue not in oldest or enqueued < oldest[queue][1]:
                    oldest[queue] = (channel, enqueued)
            for name, rule in rules.items():
                if rule.kpi is AlertKpi.contact_wait_seconds:
                    raise_, clear = rule.thresholds(None)
                    for queue, (channel, enqueued) in oldest.items():
                        if rule.covers(queue, channel):
                            out.append((name, rule, AlertScope(queue=queue, channel=channel, contact_id=entity_id),
                                        Reading((now_us - enqueued) / 1e6, 1, raise_, clear),
                                        (enqueued + round(raise_ * 1e6)) // 1000))
        if record.ticket is not None:
            owed = record.ticket.owed(self.config.ticket_rules)
            if owed is not None:
                queue, priority, first_response_due, resolution_due = owed
                for name, rule in rules.items():
                    due = {AlertKpi.ticket_first_response_overdue: first_response_due,
                           AlertKpi.ticket_resolution_overdue: resolution_due}.get(rule.kpi)
                    if due is not None and rule.covers_ticket(queue, priority):
                        raise_, clear = rule.thresholds(None)
                        out.append((name, rule, AlertScope(queue=queue, priority=priority, ticket_id=entity_id),
                                    Reading((now_us - due) / 1e6, 1, raise_, clear),
                                    (due + round(raise_ * 1e6)) // 1000))
        return out

    def _arm_alert_timer(self, key: str, states: dict, readings: list[tuple], now_us: int) -> None:
        """A timer at the next instant a per-entity rule can raise for this record (its condition
        starts, plus the rule's raise duration), if that is after `now_us` (the evaluation that
        gave `readings` decided the earlier ones)."""
        dues = [(since_ms + round(rule.for_s * 1000)) * 1000 for name, rule, scope, _, since_ms in readings
                if states.get(state_key(name, scope), (0, PENDING))[1] != FIRING]
        future = [due for due in dues if due >= now_us]
        if future:
            heapq.heappush(self._alert_timers, (min(future), key))

    def _evaluate_entity_alerts(self, now_us: int) -> None:
        """Per-entity rules of the records whose timer is due or whose events changed them (every
        event marks its record dirty; a rebuild marks the waiting contacts and open tickets)."""
        keys = {key for key in self.dirty if key.startswith(self._alerted_kinds)}
        timers = self._alert_timers
        while timers and timers[0][0] < now_us:
            keys.add(heapq.heappop(timers)[1])
        now_ms = now_us // 1000
        rules = self.config.entity_alert_rules
        for key in keys:
            record = self.records.get(key)
            if record is None:
                continue
            states = dict(record.alerts or {})
            evaluator = Evaluator(states, self.config.site)
            observed = set()
            readings = self._entity_readings(key, record, now_us)
            for name, rule, scope, reading, since_ms in readings:
                evaluator.observe(name, rule, scope, reading, now_ms, since_ms=since_ms)
                observed.add(state_key(name, scope))
            evaluator.forget_unobserved(observed, rules, now_ms)
            if states != (record.alerts or {}):
                record.alerts = states or None
                self.dirty.add(key)
            self.alert_events.extend(evaluator.events)
            self._arm_alert_timer(key, states, readings, now_us)

    def take_alerts(self) -> list[AlertEvent]:
        events, self.alert_events = self.alert_events, []
        return events

    # -- side entries: figures that belong to another entity's partition ---------------------------

    def take_side(self) -> list[tuple[str, str, object]]:
        """(target key, subject key, payload) of the contact/ticket records changed since the last call.

        Absolute, so the target replaces what the subject sent before and a repeated entry changes
        nothing: chat legs go to the answering agent (payload: answer µs, or None when the slot is
        free), start/handled facts to the customer (payload: the subject's facts for that customer).
        """
        out: list[tuple[str, str, object]] = []
        for key in self.side_dirty:
            record = self.records.get(key)
            if record is None:
                continue
            if record.contact is not None:
                for agent, answered_us in chat_slots(record.contact.events).items():
                    out.append((f"agent:{agent}", key, answered_us))
            if record.quality is not None:
                by_customer: dict[str, list] = {}
                for fact, n in record.quality.contributed.items():
                    if n > 0 and routes_to_customer(fact):
                        by_customer.setdefault(fact.customer, []).extend([tuple(fact)] * n)
                for customer, facts in by_customer.items():
                    out.append((f"customer:{customer}", key, sorted(facts)))
        self.side_dirty.clear()
        return out

    def apply_side(self, target: str, subject: str, payload) -> None:
        """Apply one side entry sent by another partition to its target record here."""
        record = self.records.get(target)
        if record is None:
            record = self._hold(target, EntityRecord(target))
        if target.startswith("agent:"):
            legs = record.legs if record.legs is not None else {}
            if payload is None:
                legs.pop(subject, None)
            else:
                legs[subject] = payload
            record.legs = legs or None
            if legs:
                self.legs[target] = legs
            else:
                self.legs.pop(target, None)
        elif target.startswith("customer:"):
            facts = [f if isinstance(f, QualityFact) else QualityFact(*f) for f in payload]
            self._replace_customer_facts(record, subject, facts)
        else:
            raise ValueError(f"no side entries for {target!r}")
        self.dirty.add(target)
        self.deleted.discard(target)

    def _replace_customer_facts(self, record: EntityRecord, subject: str, facts: list[QualityFact]) -> None:
        if record.customer is None:
            record.customer = CustomerState(window_us=self.config.repeat_window_us)
            record.customer_facts = {}
        now_us = (self.watermark_ms or 0) * 1000
        for fact in record.customer_facts.get(subject, ()):
            self._quality_facts(record.customer.apply(fact, -1, now_us))
        for fact in facts:
            self._quality_facts(record.customer.apply(fact, 1, now_us))
        if facts:
            record.customer_facts[subject] = facts
        else:
            record.customer_facts.pop(subject, None)
        times = [f.at_us for fs in record.customer_facts.values() for f in fs]
        record.last_event_us = max(times, default=0)
        self._arm_customer_timer(record.key, record.customer)

    def _arm_customer_timer(self, key: str, customer: CustomerState) -> None:
        due = customer.next_due_us((self.watermark_ms or 0) * 1000)
        if due is not None:
            heapq.heappush(self._customer_timers, (due, key))

    def chat_occupied(self, agent_key: str, at_us: int) -> int:
        """Chat slots of an agent occupied at `at_us` (0 when offline; a leg answered before the
        agent's last log-off does not count: its ACW never came)."""
        legs = self.legs.get(agent_key)
        agent = self.agents.get(agent_key)
        if not legs or agent is None:
            return 0
        latest = agent.latest(at_us)
        if latest is None or latest.state == "offline":
            return 0
        offline_at = max((c.at_us for c in agent.changes if c.state == "offline" and c.at_us <= at_us), default=None)
        return sum(1 for answered in legs.values()
                   if answered <= at_us and (offline_at is None or offline_at < answered))

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
        newest = max((e.at_us for _, parts in decoded for name in "catq" for e in parts[name]), default=None)
        state.watermark_ms = None if newest is None else newest // 1000
        for key, parts in decoded:
            record = state._hold(key, EntityRecord(key))
            for event in parts["c"]:
                record.contact = record.contact or ContactState()
                state._queue_facts(record.contact.apply(event) or ())
            if record.contact is not None:
                state._update_waiting(record)
            for change in parts["a"]:
                if record.agent is None:
                    record.agent = state.agents[key] = AgentState()
                state._agent_facts(record.agent.apply(change, config.clock) or ())
            if record.agent is not None:
                state.open_agents.set(key, record.agent.changes[-1], record.agent.chat_capacity())
            for event in parts["t"]:
                if record.ticket is None:
                    record.ticket = state.open_tickets[key] = TicketState()
                state._ticket_facts(record.ticket.apply(event, config.ticket_rules) or ())
            if record.ticket is not None:
                state._arm_ticket_timer(key, record.ticket)
            for event in parts["q"]:
                record.quality = record.quality or QualityState(key)
                state._quality_facts(record.quality.apply(event) or ())
            record.last_event_us = max((e.at_us for name in "catq" for e in parts[name]), default=0)
            if parts["l"]:
                record.legs = dict(parts["l"])
                state.legs[key] = record.legs
            for subject, facts in parts["u"].items():
                state._replace_customer_facts(record, subject, facts)
            if parts["x"]:
                record.alerts = parts["x"]
        for key in state.open_tickets:
            state.dirty.add(key)   # evaluate breaches (and ticket alerts) as of the restored watermark
        if "contact:" in state._alerted_kinds:
            state.dirty.update(state.waiting)   # contact alerts too: their timers are armed there
        state.advance()
        state.dirty.clear()
        state.deleted.clear()
        # Every side entry goes out again: a record can reach the changelog while the side entries it
        # produced died with the worker, and a replay of its events is then a duplicate that
        # produces none. Side entries are absolute, so receivers that had them change nothing.
        state.side_dirty = {key for key, record in state.records.items()
                            if record.contact is not None or record.quality is not None}
        return state


