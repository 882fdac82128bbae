"""Agent state changes to state-time facts per scope and interval (docs/kpi-definitions.md, section 4).

An agent's `agent.state_changed` events, sorted by (event time, state rank), form its timeline:
each state lasts from its change to the agent's next change (a *stretch*). A stretch between two
known changes is *closed*: it is a pure function of the events, and `AgentState.apply` returns the
signed difference in facts when a new event changes the timeline, exactly like
`streams.kpi.contacts.ContactState`. Inserting a change only touches the stretch that was running
at its time (it now ends earlier) and adds the new one, so the difference is computed locally.

The last stretch is *open*: it lasts until the evaluation time, so its contribution depends on time
passing, not on events. It is never emitted by `apply`; `open_facts(at_us)` computes it and the
engine adds it when it builds metrics or snapshots (`AgentIntervals.windows_at`).

A fact is `AgentFact(scope kind, scope name, interval start ms, state, reason)` with a weight in
signed integer microseconds: stretches are split at the site's interval bounds, one fact per scope
of the change that started the stretch (each queue, the team, the agent, the center). Not-ready facts
carry the reason (None when absent); other states carry None.

Times are integer epoch microseconds (interval starts in ms, as `streams.kpi.windows` gives them).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from streams.kpi.facts import applied_ids
from streams.kpi.windows import SiteClock

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_US = 1_000_000

# Several changes at one instant: the one of highest rank is the state that continues.
STATE_RANK = {"offline": 0, "available": 1, "not_ready": 2, "acw": 3, "on_contact": 4}
CENTER = ("center", "all")


class AgentChange(NamedTuple):
    """The part of an `agent.state_changed` the agent KPIs need; sorts in timeline order."""

    at_us: int
    rank: int
    event_id: str          # source|event_id: what makes an event unique (also a stable tie-break)
    state: str
    reason: str | None
    agent_id: str
    queues: tuple[str, ...] = ()
    team: str | None = None
    chat_capacity: int | None = None   # capacity["chat"] if the change states it

    @classmethod
    def of(cls, event) -> AgentChange:
        """From a decoded `models.events.AgentStateChanged`."""
        state = event.state.value
        chat = event.capacity.get("chat") if event.capacity else None
        return cls((event.occurred_at - _EPOCH) // _MICROSECOND, STATE_RANK[state],
                   f"{event.source}|{event.event_id}", state, event.reason, event.agent_id,
                   tuple(dict.fromkeys(event.queues)), event.team, chat)

    def scopes(self) -> list[tuple[str, str]]:
        """The scopes the agent counts in while this change is its latest."""
        result = [("queue", q) for q in self.queues]
        if self.team is not None:
            result.append(("team", self.team))
        result.append(("agent", self.agent_id))
        result.append(CENTER)
        return result


class AgentFact(NamedTuple):
    """State time of one scope in one interval; its weight is the signed number of microseconds."""

    scope_kind: str
    scope_name: str
    interval_ms: int
    state: str
    reason: str | None = None


def stretch_facts(change: AgentChange, stop_us: int, clock: SiteClock) -> Counter[AgentFact]:
    """Microseconds per fact of the stretch from `change` until `stop_us`, split at interval bounds."""
    facts: Counter[AgentFact] = Counter()
    t = change.at_us
    if t >= stop_us:
        return facts
    scopes = change.scopes()
    reason = change.reason if change.state == "not_ready" else None
    while t < stop_us:
        start_ms, end_ms = clock.interval(t // 1000)   # bounds are whole ms: t lies in [start, end)
        piece_end = min(end_ms * 1000, stop_us)
        for kind, name in scopes:
            facts[AgentFact(kind, name, start_ms, change.state, reason)] += piece_end - t
        t = piece_end
    return facts


def agent_facts(changes: Iterable[AgentChange], clock: SiteClock) -> Counter[AgentFact]:
    """Every closed-stretch fact of one agent, from its changes in any order (the reference for `apply`)."""
    ordered = sorted(changes)
    facts: Counter[AgentFact] = Counter()
    for change, following in zip(ordered, ordered[1:]):
        facts.update(stretch_facts(change, following.at_us, clock))
    return facts


def _signed(before: Counter[AgentFact], after: Counter[AgentFact]) -> list[tuple[AgentFact, int]]:
    keys = dict.fromkeys([*before, *after])
    return [(k, d) for k in keys if (d := after.get(k, 0) - before.get(k, 0))]


@dataclass
class AgentState:
    """One agent: its state changes in timeline order (the ids applied are their event ids)."""

    changes: list[AgentChange] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def _seen(self, event_id: str) -> bool:
        """Whether an event id was applied (a set beside the list: `applied_ids`)."""
        self._ids = ids = applied_ids(self._ids, self.changes)
        return event_id in ids

    def apply(self, change: AgentChange, clock: SiteClock) -> list[tuple[AgentFact, int]] | None:
        """Add a change; return the signed change in closed-stretch facts, or None for a repeat."""
        if self._seen(change.event_id):
            return None
        i = bisect_right(self.changes, change)
        before: Counter[AgentFact] = Counter()
        after: Counter[AgentFact] = Counter()
        following = self.changes[i] if i < len(self.changes) else None
        if i > 0:  # the stretch running at the new change's time now ends there
            previous = self.changes[i - 1]
            if following is not None:
                before = stretch_facts(previous, following.at_us, clock)
            after.update(stretch_facts(previous, change.at_us, clock))
        if following is not None:
            after.update(stretch_facts(change, following.at_us, clock))
        insort(self.changes, change)
        self._ids.add(change.event_id)
        return _signed(before, after)

    @property
    def last_event_us(self) -> int:
        return self.changes[-1].at_us

    def latest(self, at_us: int | None = None) -> AgentChange | None:
        """The agent's latest change at `at_us` (default: its last one); None before its first."""
        if not self.changes:
            return None
        if at_us is None or at_us >= self.changes[-1].at_us:
            return self.changes[-1]
        i = bisect_right([c.at_us for c in self.changes], at_us)
        return self.changes[i - 1] if i else None

    def open_facts(self, at_us: int, clock: SiteClock) -> Counter[AgentFact]:
        """The open last stretch's facts at evaluation time `at_us` (empty if `at_us` <= its start).

        Exact together with the applied deltas when `at_us` is at or after the agent's last change
        (the engine evaluates at its latest event time); changes after `at_us` are not undone here.
        """
        if not self.changes:
            return Counter()
        return stretch_facts(self.changes[-1], at_us, clock)

    def chat_capacity(self, at_us: int | None = None) -> int:
        """The latest stated `capacity["chat"]` up to `at_us` (0 if never stated)."""
        for c in reversed(self.changes):
            if (at_us is None or c.at_us <= at_us) and c.chat_capacity is not None:
                return c.chat_capacity
        return 0


@dataclass(slots=True)
class AgentWindow:
    """Microseconds spent in each state by the agents of one scope in one interval."""

    state_us: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    not_ready_reason_us: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, fact: AgentFact, weight: int) -> None:
        self.state_us[fact.state] += weight
        if fact.state == "not_ready":
            self.not_ready_reason_us[fact.reason] += weight

    def copy(self) -> AgentWindow:
        w = AgentWindow()
        w.state_us.update(self.state_us)
        w.not_ready_reason_us.update(self.not_ready_reason_us)
        return w

    def is_empty(self) -> bool:
        return not any(self.state_us.values()) and not any(self.not_ready_reason_us.values())

    def state_s(self, state: str) -> float:
        return self.state_us.get(state, 0) / _US

    @property
    def busy_us(self) -> int:
        return self.state_us.get("on_contact", 0) + self.state_us.get("acw", 0)

    @property
    def occupancy(self) -> float | None:
        """(on_contact + acw) / (on_contact + acw + available); None when the denominator is 0."""
        denominator = self.busy_us + self.state_us.get("available", 0)
        return None if denominator <= 0 else self.busy_us / denominator


class AgentIntervals:
    """Closed-stretch state time per (scope kind, scope name, interval start ms) for one site."""

    def __init__(self, clock: SiteClock) -> None:
        self.clock = clock
        self.windows: dict[tuple[str, str, int], AgentWindow] = {}

    def apply(self, fact: AgentFact, weight: int) -> tuple[str, str, int]:
        key = (fact.scope_kind, fact.scope_name, fact.interval_ms)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = AgentWindow()
        window.add(fact, weight)
        return key

    def windows_at(self, agents: Iterable[AgentState], at_us: int) -> dict[tuple[str, str, int], AgentWindow]:
        """The windows at evaluation time `at_us`: closed stretches plus every agent's open one.

        Leaves the stored windows untouched; empty windows are left out.
        """
        result = {key: w.copy() for key, w in self.windows.items()}
        for agent in agents:
            for fact, us in agent.open_facts(at_us, self.clock).items():
                key = (fact.scope_kind, fact.scope_name, fact.interval_ms)
                window = result.get(key)
                if window is None:
                    window = result[key] = AgentWindow()
                window.add(fact, us)
        return {key: w for key, w in result.items() if not w.is_empty()}


@dataclass(slots=True)
class AgentsNowCounts:
    """Agents of one scope by state at an evaluation time (offline agents appear nowhere)."""

    online: int = 0
    available: int = 0
    on_contact: int = 0
    acw: int = 0
    not_ready: int = 0
    not_ready_by_reason: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))
    chat_capacity: int = 0


def agents_now(agents: Iterable[AgentState], at_us: int) -> dict[tuple[str, str], AgentsNowCounts]:
    """Agents by state per scope from each agent's latest change at or before `at_us`.

    Also sums the chat capacity of the online agents; occupied chat slots (and so chat utilization)
    need the contact events and are not computed here.
    """
    result: dict[tuple[str, str], AgentsNowCounts] = defaultdict(AgentsNowCounts)
    for agent in agents:
        change = agent.latest(at_us)
        if change is None or change.state == "offline":
            continue
        capacity = agent.chat_capacity(at_us)
        for scope in change.scopes():
            now = result[scope]
            now.online += 1
            setattr(now, change.state, getattr(now, change.state) + 1)
            if change.state == "not_ready":
                now.not_ready_by_reason[change.reason] += 1
            now.chat_capacity += capacity
    return dict(result)


class OpenAgents:
    """Each agent's latest change, kept incrementally so that a scrape costs O(scopes), not O(agents).

    `now` holds, per scope, the agents by state, not-ready reason and chat capacity (offline agents
    appear nowhere), as `agents_now` computes them at an evaluation time at or after every change.
    `starts` holds, per (scope, state), the start times of the running (open) stretches bucketed by
    the interval they start in: the running stretches' time inside an interval-aligned window is then
    a sum over buckets (`running_us`), equal to adding every agent's `open_facts`.
    """

    def __init__(self, clock: SiteClock, scope_kinds: frozenset[str]) -> None:
        self.clock = clock
        self.scope_kinds = scope_kinds
        self.latest: dict[str, tuple[AgentChange, int]] = {}
        self.now: dict[tuple[str, str], AgentsNowCounts] = defaultdict(AgentsNowCounts)
        self.starts: dict[tuple[str, str, str], dict[int, list[int]]] = defaultdict(dict)

    def set(self, key: str, change: AgentChange | None, chat_capacity: int = 0) -> None:
        """The agent's latest change is now `change` (None: forget the agent)."""
        old = self.latest.pop(key, None)
        if old is not None:
            self._count(*old, -1)
        if change is not None:
            self.latest[key] = (change, chat_capacity)
            self._count(change, chat_capacity, 1)

    def _count(self, change: AgentChange, capacity: int, sign: int) -> None:
        scopes = [s for s in change.scopes() if s[0] in self.scope_kinds]
        interval = self.clock.interval_start(change.at_us // 1000)
        for scope in scopes:
            bucket = self.starts[(*scope, change.state)].setdefault(interval, [0, 0])
            bucket[0] += sign
            bucket[1] += sign * change.at_us
            if change.state == "offline":
                continue
            now = self.now[scope]
            now.online += sign
            setattr(now, change.state, getattr(now, change.state) + sign)
            if change.state == "not_ready":
                now.not_ready_by_reason[change.reason] += sign
            now.chat_capacity += sign * capacity

    def running_us(self, group: tuple[str, str, str], start_ms: int, end_ms: int, now_us: int) -> int:
        """Microseconds the running stretches of (scope kind, scope name, state) spend in the
        interval-aligned window [start_ms, end_ms), evaluated at `now_us` (>= every start)."""
        end_us = min(end_ms * 1000, now_us)
        start_us = start_ms * 1000
        total = 0
        for interval, (count, sum_us) in self.starts.get(group, {}).items():
            if count == 0 or interval >= end_ms:
                continue
            if interval < start_ms:
                total += count * (end_us - start_us)
            else:
                total += count * end_us - sum_us
        return max(total, 0)
