"""Batch reference implementation of the agent KPIs (docs/kpi-definitions.md, section 4).

Same spirit as `tests/oracle.py`: the whole log in memory, one agent (or contact) at a time, no
shared code with the streaming engine beyond the event models.

- `agent_time`: seconds in each state per scope and interval, and occupancy from them.
- `agents_now`: agents by state and chat utilization at one evaluation time.

Scopes are keys `(kind, name)`: ("queue", q) for every queue of the agent's skills (an agent
serving several queues counts in each), ("team", t), ("agent", id) for the supervisor detail and
("center", "all") once per agent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from models.events import AgentStateChanged, Envelope
from tests.oracle import _RANK, _ratio, interval_start, unique_events

# Several changes of one agent at the same instant: the one with the higher rank is the state that
# continues (an agent logging in and taking a waiting contact in the same millisecond is on contact).
STATE_RANK = {"offline": 0, "available": 1, "not_ready": 2, "acw": 3, "on_contact": 4}
CENTER = ("center", "all")


@dataclass
class AgentWindow:
    """Seconds spent in each state by the agents of one scope in one interval."""

    state_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    not_ready_reason_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def busy_s(self) -> float:
        return self.state_s.get("on_contact", 0.0) + self.state_s.get("acw", 0.0)

    @property
    def occupancy(self) -> float | None:
        return _ratio(self.busy_s, self.busy_s + self.state_s.get("available", 0.0))


@dataclass
class AgentsNow:
    """Agents of one scope by state at an evaluation time, and their chat slots."""

    online: int = 0
    available: int = 0
    on_contact: int = 0
    acw: int = 0
    not_ready: int = 0
    not_ready_by_reason: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))
    chat_capacity: int = 0
    chat_occupied: int = 0

    @property
    def chat_utilization(self) -> float | None:
        return _ratio(self.chat_occupied, self.chat_capacity)


def scopes(change: AgentStateChanged) -> list[tuple[str, str]]:
    """The scopes an agent counts in while this state change is its latest."""
    result = [("queue", q) for q in dict.fromkeys(change.queues)]
    if change.team is not None:
        result.append(("team", change.team))
    result.append(("agent", change.agent_id))
    result.append(CENTER)
    return result


def _by_agent(events: list[Envelope], until: datetime) -> dict[str, list[AgentStateChanged]]:
    by_agent: dict[str, list[AgentStateChanged]] = defaultdict(list)
    for event in events:
        if event.event_type == "agent.state_changed" and event.occurred_at <= until:
            by_agent[event.agent_id].append(event)
    for changes in by_agent.values():
        changes.sort(key=lambda e: (e.occurred_at, STATE_RANK[e.state.value]))
    return by_agent


def interval_end(start: datetime, zone: ZoneInfo, minutes: int) -> datetime:
    """End (UTC) of the interval starting at `start`: where the next one starts."""
    following = start + timedelta(minutes=minutes)
    nxt = interval_start(following, zone, minutes)
    return nxt if nxt > start else following


def agent_time(
    events: Iterable[Envelope],
    *,
    timezone: str,
    interval_minutes: int,
    until: datetime | None = None,
) -> dict[tuple[str, str, datetime], AgentWindow]:
    """State seconds keyed by (scope kind, scope name, interval start in UTC).

    Each state lasts from its change to the agent's next change; the last one lasts until `until`
    (default: the time of the log's last event of any kind). Changes after `until` are ignored.
    """
    zone = ZoneInfo(timezone)
    log = unique_events(events)
    if not log:
        return {}
    end_of_log = max(e.occurred_at for e in log) if until is None else until
    windows: dict[tuple[str, str, datetime], AgentWindow] = defaultdict(AgentWindow)
    for changes in _by_agent(log, end_of_log).values():
        for change, following in zip(changes, [*changes[1:], None]):
            start = change.occurred_at
            stop = following.occurred_at if following is not None else end_of_log
            state, reason = change.state.value, change.reason
            t = start
            while t < stop:
                bucket = interval_start(t, zone, interval_minutes)
                piece_end = min(interval_end(bucket, zone, interval_minutes), stop)
                seconds = (piece_end - t).total_seconds()
                for kind, name in scopes(change):
                    w = windows[(kind, name, bucket)]
                    w.state_s[state] += seconds
                    if state == "not_ready":
                        w.not_ready_reason_s[reason] += seconds
                t = piece_end
    return dict(windows)


def agents_now(
    events: Iterable[Envelope],
    *,
    at: datetime,
    chat_acw_holds_slot: bool = True,
) -> dict[tuple[str, str], AgentsNow]:
    """Agents by state and chat slots at `at`, from the events with occurred_at <= at.

    A chat occupies a slot of the agent who answered it from `contact.answered` until the
    `contact.acw_completed` of that leg (with `chat_acw_holds_slot=False`, until `contact.ended`
    already), or until the contact is transferred or answered again, or the agent goes offline.
    Capacity is the latest `capacity["chat"]` the agent's state changes carried (0 if never).
    Only online agents count, in capacity and in occupied slots.
    """
    log = [e for e in unique_events(events) if e.occurred_at <= at]
    latest: dict[str, AgentStateChanged] = {}
    chat_capacity: dict[str, int] = {}
    went_offline: dict[str, datetime] = {}
    for agent_id, changes in _by_agent(log, at).items():
        latest[agent_id] = changes[-1]
        for change in changes:
            if "chat" in change.capacity:
                chat_capacity[agent_id] = change.capacity["chat"]
            if change.state.value == "offline":
                went_offline[agent_id] = change.occurred_at

    occupied: dict[str, int] = defaultdict(int)
    by_contact: dict[str, list[Envelope]] = defaultdict(list)
    for event in log:
        if event.event_type in _RANK and event.channel.value == "chat":
            by_contact[event.contact_id].append(event)
    for contact_events in by_contact.values():
        contact_events.sort(key=lambda e: (e.occurred_at, _RANK[e.event_type]))
        leg: tuple[str, datetime] | None = None  # (agent, answered at)
        for event in contact_events:
            kind = event.event_type
            if kind == "contact.answered":
                leg = (event.agent_id, event.occurred_at)
            elif kind in ("contact.acw_completed", "contact.transferred"):
                leg = None
            elif kind == "contact.ended" and not chat_acw_holds_slot:
                leg = None
        if leg is not None:
            agent_id, answered_at = leg
            offline_at = went_offline.get(agent_id)
            if offline_at is None or offline_at < answered_at:
                occupied[agent_id] += 1

    result: dict[tuple[str, str], AgentsNow] = defaultdict(AgentsNow)
    for agent_id, change in latest.items():
        state = change.state.value
        if state == "offline":
            continue
        for scope in scopes(change):
            now = result[scope]
            now.online += 1
            setattr(now, state, getattr(now, state) + 1)
            if state == "not_ready":
                now.not_ready_by_reason[change.reason] += 1
            now.chat_capacity += chat_capacity.get(agent_id, 0)
            now.chat_occupied += occupied.get(agent_id, 0)
    return dict(result)
