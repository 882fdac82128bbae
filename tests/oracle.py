"""Batch reference implementation of the KPI definitions (docs/kpi-definitions.md).

Deliberately plain: the whole event log in memory, sorted, walked once per contact. It shares
nothing with the streaming engine beyond the event models, so that the comparison between the two
means something. Times are seconds (floats) from aware datetimes; intervals are computed with
zoneinfo directly.

Covered so far: section 3 queue KPIs per interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from models.events import Envelope

# Order of events of one contact that share a timestamp: the lifecycle order.
_RANK = {
    "contact.offered": 0, "contact.enqueued": 1, "contact.answered": 2, "contact.abandoned": 2,
    "contact.flowed_out": 2, "chat.message": 3, "contact.hold_started": 4, "contact.hold_ended": 5,
    "contact.transferred": 6, "contact.ended": 7, "contact.acw_completed": 8,
}
FORMULAS = ("answered_of_offered_excl_short", "answered_of_answered", "met_of_removed", "answered_of_offered")


@dataclass(frozen=True)
class QueueRules:
    threshold_s: float
    short_abandon_s: float = 5.0
    abandon_rate_excludes_short: bool = True


@dataclass
class QueueWindow:
    """Counts and sums of one queue and channel in one interval, and the KPIs derived from them."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    flowed_out: int = 0
    answered_within_sl: int = 0
    abandoned_within_sl: int = 0
    transferred: int = 0
    handled: int = 0
    held: int = 0
    answered_waits: list[float] = field(default_factory=list)
    abandoned_waits: list[float] = field(default_factory=list)
    talk_s: float = 0.0
    hold_s: float = 0.0
    acw_s: float = 0.0

    def service_level(self, formula: str) -> float | None:
        if formula == "answered_of_offered_excl_short":
            return _ratio(self.answered_within_sl, self.answered + self.abandoned - self.short_abandoned)
        if formula == "answered_of_answered":
            return _ratio(self.answered_within_sl, self.answered)
        if formula == "met_of_removed":
            return _ratio(self.answered_within_sl + self.abandoned_within_sl, self.answered + self.abandoned)
        if formula == "answered_of_offered":
            return _ratio(self.answered_within_sl, self.answered + self.abandoned)
        raise ValueError(formula)

    @property
    def asa_s(self) -> float | None:
        return _ratio(sum(self.answered_waits), len(self.answered_waits))

    @property
    def average_abandon_time_s(self) -> float | None:
        return _ratio(sum(self.abandoned_waits), len(self.abandoned_waits))

    def abandon_rate(self, excludes_short: bool = True) -> float | None:
        if excludes_short:
            return _ratio(self.abandoned - self.short_abandoned, self.offered - self.short_abandoned)
        return _ratio(self.abandoned, self.offered)

    @property
    def aht_s(self) -> float | None:
        return _ratio(self.talk_s + self.hold_s + self.acw_s, self.handled)

    @property
    def average_talk_s(self) -> float | None:
        return _ratio(self.talk_s, self.handled)

    @property
    def average_hold_s(self) -> float | None:
        return _ratio(self.hold_s, self.handled)

    @property
    def average_acw_s(self) -> float | None:
        return _ratio(self.acw_s, self.handled)

    @property
    def hold_rate(self) -> float | None:
        return _ratio(self.held, self.handled)

    @property
    def transfer_rate(self) -> float | None:
        return _ratio(self.transferred, self.answered)


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else numerator / denominator


def interval_start(moment: datetime, zone: ZoneInfo, minutes: int) -> datetime:
    """Start (UTC) of the clock-aligned local interval containing `moment`."""
    local = moment.astimezone(zone)
    floored = local.replace(minute=local.minute - local.minute % minutes, second=0, microsecond=0)
    return floored.astimezone(UTC)


def unique_events(events: Iterable[Envelope]) -> list[Envelope]:
    """Drop repeats of (tenant, source, event_id), keeping the first occurrence."""
    seen: set[tuple[str, str, str]] = set()
    result = []
    for event in events:
        key = (event.tenant, event.source, event.event_id)
        if key not in seen:
            seen.add(key)
            result.append(event)
    return result


def queue_kpis(
    events: Iterable[Envelope],
    *,
    timezone: str,
    interval_minutes: int,
    rules: Callable[[str, str], QueueRules],
    window_of: Callable[[datetime], datetime | None] | None = None,
) -> dict[tuple[str, str, datetime], QueueWindow]:
    """Queue KPIs keyed by (queue, channel, interval start in UTC).

    `window_of` replaces the intervals by other windows: it maps an attribution time to the key of
    its window, or None for a time outside every window of interest (e.g. a rolling window)."""
    zone = ZoneInfo(timezone)
    windows: dict[tuple[str, str, datetime], QueueWindow] = defaultdict(QueueWindow)
    outside = QueueWindow()

    def window(queue: str, channel: str, at: datetime) -> QueueWindow:
        if window_of is None:
            return windows[(queue, channel, interval_start(at, zone, interval_minutes))]
        key = window_of(at)
        return outside if key is None else windows[(queue, channel, key)]

    by_contact: dict[str, list[Envelope]] = defaultdict(list)
    for event in unique_events(events):
        if event.event_type in _RANK:
            by_contact[event.contact_id].append(event)

    for contact_events in by_contact.values():
        contact_events.sort(key=lambda e: (e.occurred_at, _RANK[e.event_type]))
        open_segments: dict[str, list[datetime]] = defaultdict(list)  # queue -> enqueue times (FIFO)
        answered_at: datetime | None = None
        answered_queue: str | None = None
        ended_at: datetime | None = None
        holds: list[tuple[datetime, datetime | None]] = []
        for event in contact_events:
            kind, at, channel = event.event_type, event.occurred_at, event.channel.value
            if kind == "contact.enqueued":
                open_segments[event.queue].append(at)
                window(event.queue, channel, at).offered += 1
            elif kind in ("contact.answered", "contact.abandoned", "contact.flowed_out"):
                queue = event.queue
                started = open_segments[queue].pop(0) if open_segments[queue] else None
                wait = (at - started).total_seconds() if started is not None else None
                w = window(queue, channel, at)
                rule = rules(queue, channel)
                if kind == "contact.answered":
                    w.answered += 1
                    if wait is not None:
                        w.answered_waits.append(wait)
                        w.answered_within_sl += wait <= rule.threshold_s
                    answered_at, answered_queue, ended_at, holds = at, queue, None, []
                elif kind == "contact.abandoned":
                    w.abandoned += 1
                    if wait is not None:
                        w.abandoned_waits.append(wait)
                        w.abandoned_within_sl += wait <= rule.threshold_s
                        w.short_abandoned += wait < rule.short_abandon_s
                else:
                    w.flowed_out += 1
            elif kind == "contact.hold_started" and answered_at is not None and ended_at is None:
                holds.append((at, None))
            elif kind == "contact.hold_ended" and holds and holds[-1][1] is None and ended_at is None:
                holds[-1] = (holds[-1][0], at)
            elif kind == "contact.transferred":
                queue = event.queue or answered_queue
                if queue is not None:
                    window(queue, channel, at).transferred += 1
            elif kind == "contact.ended" and answered_at is not None and ended_at is None:
                ended_at = at
            elif kind == "contact.acw_completed" and answered_at is not None:
                talk_end = ended_at or at
                hold = sum(((end or talk_end) - start).total_seconds() for start, end in holds)
                w = window(answered_queue, channel, at)
                w.handled += 1
                w.held += bool(holds)
                w.hold_s += hold
                w.talk_s += (talk_end - answered_at).total_seconds() - hold
                w.acw_s += (at - talk_end).total_seconds()
    return dict(windows)


