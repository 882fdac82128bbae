"""Batch reference implementation of the ticket KPIs (docs/kpi-definitions.md, section 5).

Same spirit as `tests/oracle.py`: the whole log in memory, one ticket at a time, walked in event
time up to an evaluation time `at` (events after it are ignored: what a live engine knew then).

- `ticket_kpis`: counts, average times and breaches per (queue, priority, interval).
- `tickets_now`: open backlog by age bucket and tickets at risk per (queue, priority) at `at`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from models.events import Envelope
from tests.oracle import _ratio, interval_start, unique_events

HOUR = 3600.0
DAY = 24 * HOUR
# priority -> (first-response target, resolution target), calendar seconds
DEFAULT_TARGETS: dict[str, tuple[float, float]] = {
    "urgent": (1 * HOUR, 4 * HOUR),
    "high": (4 * HOUR, 1 * DAY),
    "normal": (8 * HOUR, 3 * DAY),
    "low": (24 * HOUR, 5 * DAY),
}
DEFAULT_WARNING_LEAD_S = 30 * 60.0
PAUSED = frozenset({"pending", "on_hold"})
UNSOLVED = frozenset({"new", "open", "pending", "on_hold"})
# (lower bound inclusive, upper bound exclusive) of the ticket's age, seconds
AGE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<1h", 0.0, HOUR), ("1-4h", HOUR, 4 * HOUR), ("4-24h", 4 * HOUR, DAY),
    ("1-3d", DAY, 3 * DAY), (">3d", 3 * DAY, float("inf")),
)
# Order of one ticket's events that share a timestamp (as a helpdesk writes them).
_RANK = {
    "ticket.created": 0, "ticket.assigned": 1, "ticket.customer_replied": 2, "ticket.reopened": 3,
    "ticket.agent_replied": 4, "ticket.status_changed": 5,
}


@dataclass
class TicketWindow:
    created: int = 0
    first_responses: int = 0
    solved: int = 0
    reopened: int = 0
    first_response_breached: int = 0
    resolution_breached: int = 0
    first_response_times: list[float] = field(default_factory=list)
    resolution_times: list[float] = field(default_factory=list)

    @property
    def breached(self) -> int:
        return self.first_response_breached + self.resolution_breached

    @property
    def average_first_response_s(self) -> float | None:
        return _ratio(sum(self.first_response_times), len(self.first_response_times))

    @property
    def average_resolution_s(self) -> float | None:
        return _ratio(sum(self.resolution_times), len(self.resolution_times))


@dataclass
class TicketsNow:
    backlog: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # age bucket -> open tickets
    at_risk_first_response: int = 0
    at_risk_resolution: int = 0
    at_risk: int = 0  # tickets at risk on either target (each ticket once)

    @property
    def open(self) -> int:
        return sum(self.backlog.values())


def age_bucket(age_s: float) -> str:
    for name, low, high in AGE_BUCKETS:
        if low <= age_s < high:
            return name
    raise ValueError(age_s)


@dataclass
class _Ticket:
    """What one walk of a ticket's events up to `at` found."""

    queue: str
    priority: str
    created_at: datetime
    status: str = "new"
    figures: list[tuple[str, datetime, str, float | None]] = field(default_factory=list)  # (name, when, queue, value)
    first_response_stop: datetime | None = None  # first reply, or solve before any reply
    first_replied: bool = False
    clock_s: float = 0.0  # resolution clock at `at`
    clock_running: bool = True
    resolution_breached: bool = False


def _walk(events: list[Envelope], at: datetime, targets, pause: bool) -> _Ticket | None:
    events = sorted((e for e in events if e.occurred_at <= at), key=lambda e: (e.occurred_at, _RANK[e.event_type]))
    created = next((e for e in events if e.event_type == "ticket.created"), None)
    if created is None:
        return None  # a ticket whose creation never arrived is not counted
    t = _Ticket(created.queue, created.priority.value, created.occurred_at)
    queue_changes = [(created.occurred_at, created.queue)]
    fr_target, res_target = targets[t.priority]
    t.figures.append(("created", created.occurred_at, t.queue, None))
    last = created.occurred_at

    def running() -> bool:
        return t.status in UNSOLVED and not (pause and t.status in PAUSED)

    def advance(to: datetime) -> None:
        nonlocal last
        if running():
            before = t.clock_s
            t.clock_s += (to - last).total_seconds()
            if not t.resolution_breached and before <= res_target < t.clock_s:
                t.resolution_breached = True
                due = last + timedelta(seconds=res_target - before)
                t.figures.append(("resolution_breached", due, t.queue, None))
        last = to

    def leave_solved(when: datetime) -> None:
        t.status = "open"
        t.figures.append(("reopened", when, t.queue, None))

    for event in events:
        if event.occurred_at < created.occurred_at or event is created:
            continue
        advance(event.occurred_at)
        kind, when = event.event_type, event.occurred_at
        if kind == "ticket.assigned" and event.queue is not None:
            t.queue = event.queue
            queue_changes.append((event.occurred_at, event.queue))
        elif kind == "ticket.agent_replied" and not t.first_replied:
            t.first_replied = True
            if t.first_response_stop is None:
                t.first_response_stop = when
                t.figures.append(("first_response", when, t.queue, (when - t.created_at).total_seconds()))
        elif kind == "ticket.reopened" and t.status not in UNSOLVED:
            leave_solved(when)
        elif kind == "ticket.status_changed":
            new = event.status.value
            if new in UNSOLVED and t.status not in UNSOLVED:
                leave_solved(when)
            elif new not in UNSOLVED and t.status in UNSOLVED:
                t.figures.append(("solved", when, t.queue, t.clock_s))
                if t.first_response_stop is None:
                    t.first_response_stop = when
            t.status = new
    advance(at)
    t.clock_running = running()
    fr_due = t.created_at + timedelta(seconds=fr_target)
    stop = t.first_response_stop
    if (stop is None and at > fr_due) or (stop is not None and stop > fr_due):
        queue = [q for when, q in queue_changes if when <= fr_due][-1]  # the queue at the due instant
        t.figures.append(("first_response_breached", fr_due, queue, None))
    return t


def _tickets(events: Iterable[Envelope], at: datetime | None, targets, pause: bool) -> list[_Ticket]:
    log = unique_events(events)
    if not log:
        return []
    at = max(e.occurred_at for e in log) if at is None else at
    by_ticket: dict[str, list[Envelope]] = defaultdict(list)
    for event in log:
        if event.event_type in _RANK:
            by_ticket[event.ticket_id].append(event)
    walked = (_walk(ticket_events, at, targets, pause) for ticket_events in by_ticket.values())
    return [t for t in walked if t is not None]


def ticket_kpis(
    events: Iterable[Envelope],
    *,
    timezone: str,
    interval_minutes: int,
    at: datetime | None = None,
    targets: dict[str, tuple[float, float]] = DEFAULT_TARGETS,
    pause_resolution: bool = True,
) -> dict[tuple[str, str, datetime], TicketWindow]:
    """Ticket KPIs keyed by (queue, priority, interval start in UTC), as known at `at` (default:
    the time of the log's last event). Breaches count once `at` is past their due time."""
    zone = ZoneInfo(timezone)
    windows: dict[tuple[str, str, datetime], TicketWindow] = defaultdict(TicketWindow)
    for t in _tickets(events, at, targets, pause_resolution):
        for name, when, queue, value in t.figures:
            w = windows[(queue, t.priority, interval_start(when, zone, interval_minutes))]
            if name == "created":
                w.created += 1
            elif name == "first_response":
                w.first_responses += 1
                w.first_response_times.append(value)
            elif name == "solved":
                w.solved += 1
                w.resolution_times.append(value)
            elif name == "reopened":
                w.reopened += 1
            elif name == "first_response_breached":
                w.first_response_breached += 1
            elif name == "resolution_breached":
                w.resolution_breached += 1
    return dict(windows)


def tickets_now(
    events: Iterable[Envelope],
    *,
    at: datetime,
    targets: dict[str, tuple[float, float]] = DEFAULT_TARGETS,
    pause_resolution: bool = True,
    warning_lead_s: float = DEFAULT_WARNING_LEAD_S,
) -> dict[tuple[str, str], TicketsNow]:
    """Open backlog and tickets at risk keyed by (queue, priority) at `at`."""
    result: dict[tuple[str, str], TicketsNow] = defaultdict(TicketsNow)
    for t in _tickets(events, at, targets, pause_resolution):
        if t.status not in UNSOLVED:
            continue
        fr_target, res_target = targets[t.priority]
        now = result[(t.queue, t.priority)]
        now.backlog[age_bucket((at - t.created_at).total_seconds())] += 1
        fr_left = (t.created_at + timedelta(seconds=fr_target) - at).total_seconds()
        fr_risk = t.first_response_stop is None and 0 <= fr_left <= warning_lead_s
        res_left = res_target - t.clock_s
        res_risk = t.clock_running and 0 <= res_left <= warning_lead_s
        now.at_risk_first_response += fr_risk
        now.at_risk_resolution += res_risk
        now.at_risk += fr_risk or res_risk
    return dict(result)
