"""Batch reference implementation of the quality KPIs (docs/kpi-definitions.md, section 6).

Same spirit as `tests/oracle.py`: the whole log in memory, one contact at a time.

`quality_kpis` gives, per (queue, interval start in UTC): CSAT and NPS at survey response time,
and first-contact resolution, disposition-based and repeat-based, at ACW completion time. Figures
without a queue (a survey whose subject is unknown) are keyed by queue None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from models.events import Envelope
from tests.oracle import _RANK, _ratio, interval_start, unique_events

DEFAULT_REPEAT_WINDOW_S = 72 * 3600.0


@dataclass
class QualityWindow:
    csat_responses: int = 0
    csat_satisfied: int = 0  # score >= 4
    csat_score_sum: int = 0
    nps_responses: int = 0
    nps_promoters: int = 0  # 9..10
    nps_detractors: int = 0  # 0..6
    fcr_flagged: int = 0  # acw completions whose `resolved` is True or False
    fcr_resolved: int = 0  # ... of which True
    fcr_unflagged: int = 0  # acw completions without the flag (in neither of the above)
    repeat_reported: int = 0  # handled contacts of a known customer whose repeat window has elapsed
    repeat_fcr: int = 0  # ... of which no other contact of the customer started in the window
    repeat_pending: int = 0  # handled contacts of a known customer, window not yet elapsed
    repeat_unknown_customer: int = 0  # handled contacts without a customer_ref: never in the ratio

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


@dataclass
class _Contact:
    start: datetime | None = None  # first offered/enqueued
    customer: str | None = None
    handled: list[tuple[datetime, str, bool | None]] | None = None  # (acw completed, queue, resolved)
    answers: list[tuple[datetime, str]] | None = None  # (answered at, queue)


def _contacts(log: list[Envelope]) -> dict[str, _Contact]:
    by_contact: dict[str, list[Envelope]] = defaultdict(list)
    for event in log:
        if event.event_type in _RANK:
            by_contact[event.contact_id].append(event)
    contacts = {}
    for contact_id, contact_events in by_contact.items():
        contact_events.sort(key=lambda e: (e.occurred_at, _RANK[e.event_type]))
        c = _Contact(handled=[], answers=[])
        answered_queue = None
        for event in contact_events:
            kind = event.event_type
            if kind in ("contact.offered", "contact.enqueued"):
                if c.start is None:
                    c.start = event.occurred_at
                if c.customer is None and event.customer_ref is not None:
                    c.customer = event.customer_ref
            elif kind == "contact.answered":
                answered_queue = event.queue
                c.answers.append((event.occurred_at, event.queue))
            elif kind == "contact.acw_completed" and answered_queue is not None:
                c.handled.append((event.occurred_at, answered_queue, event.resolved))
        contacts[contact_id] = c
    return contacts


def _ticket_queues(log: list[Envelope]) -> dict[str, list[tuple[datetime, str]]]:
    queues: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in log:
        if event.event_type == "ticket.created" or (event.event_type == "ticket.assigned" and event.queue):
            queues[event.ticket_id].append((event.occurred_at, event.event_type != "ticket.created", event.queue))
    return {tid: [(at, q) for at, _, q in sorted(changes)] for tid, changes in queues.items()}


def _queue_at(changes: list[tuple[datetime, str]] | None, at: datetime) -> str | None:
    """The last queue set at or before `at`; the first one if all are later."""
    if not changes:
        return None
    before = [q for when, q in changes if when <= at]
    return before[-1] if before else changes[0][1]


def quality_kpis(
    events: Iterable[Envelope],
    *,
    timezone: str,
    interval_minutes: int,
    at: datetime | None = None,
    repeat_window_s: float = DEFAULT_REPEAT_WINDOW_S,
    tickets_are_repeats: bool = True,
) -> dict[tuple[str | None, datetime], QualityWindow]:
    """Quality KPIs keyed by (queue, interval start in UTC), as known at `at` (default: the time of
    the log's last event; events after `at` are ignored)."""
    zone = ZoneInfo(timezone)
    log = unique_events(events)
    if not log:
        return {}
    at = max(e.occurred_at for e in log) if at is None else at
    log = [e for e in log if e.occurred_at <= at]
    windows: dict[tuple[str | None, datetime], QualityWindow] = defaultdict(QualityWindow)

    def window(queue: str | None, when: datetime) -> QualityWindow:
        return windows[(queue, interval_start(when, zone, interval_minutes))]

    contacts = _contacts(log)
    ticket_queues = _ticket_queues(log)

    # surveys, at response time
    for event in log:
        if event.event_type != "survey.responded":
            continue
        queue = event.queue
        if queue is None and event.contact_id is not None:
            contact = contacts.get(event.contact_id)
            queue = _queue_at(contact.answers if contact else None, event.occurred_at)
        elif queue is None:
            queue = _queue_at(ticket_queues.get(event.ticket_id), event.occurred_at)
        w = window(queue, event.occurred_at)
        if event.kind.value == "csat":
            w.csat_responses += 1
            w.csat_satisfied += event.score >= 4
            w.csat_score_sum += event.score
        else:
            w.nps_responses += 1
            w.nps_promoters += event.score >= 9
            w.nps_detractors += event.score <= 6

    # starts of contacts (and tickets) per customer, for the repeat-based FCR
    starts: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for contact_id, c in contacts.items():
        if c.customer is not None and c.start is not None:
            starts[c.customer].append((c.start, f"contact:{contact_id}"))
    if tickets_are_repeats:
        for event in log:
            if event.event_type == "ticket.created" and event.customer_ref is not None:
                starts[event.customer_ref].append((event.occurred_at, f"ticket:{event.ticket_id}"))

    window_len = timedelta(seconds=repeat_window_s)
    for contact_id, c in contacts.items():
        for done_at, queue, resolved in c.handled:
            w = window(queue, done_at)
            if resolved is None:
                w.fcr_unflagged += 1
            else:
                w.fcr_flagged += 1
                w.fcr_resolved += resolved
            if c.customer is None or c.start is None:
                w.repeat_unknown_customer += 1
                continue
            window_end = done_at + window_len
            if at < window_end:
                w.repeat_pending += 1
                continue
            w.repeat_reported += 1
            me = f"contact:{contact_id}"
            w.repeat_fcr += not any(
                c.start < started <= window_end and key != me for started, key in starts[c.customer]
            )
    return dict(windows)
