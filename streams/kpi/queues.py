"""Queue counters per interval, fed by signed facts, and the KPIs derived from them (section 3).

Counters only add and subtract integers, so a retraction (a late event changing a contact's
facts) undoes exactly what the fact added. Which figures a fact moves depends on the queue's
rules (service-level threshold, short-abandon threshold), applied here, not in the facts, so a
contact's facts do not depend on configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from streams.config import ServiceLevelFormula
from streams.kpi.contacts import QueueFact
from streams.kpi.windows import SiteClock

_US = 1_000_000


@dataclass(frozen=True, slots=True)
class QueueRules:
    threshold_us: int
    short_abandon_us: int
    abandon_rate_excludes_short: bool = True
    formula: ServiceLevelFormula = ServiceLevelFormula.answered_of_offered_excl_short

    @classmethod
    def of(cls, settings) -> QueueRules:
        """From `streams.config.QueueSettings`."""
        return cls(round(settings.threshold_s * _US), round(settings.short_abandon_s * _US),
                   settings.abandon_rate_excludes_short, settings.sl_formula)


@dataclass(slots=True)
class QueueCounters:
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
    answered_with_wait: int = 0
    answered_wait_us: int = 0
    abandoned_with_wait: int = 0
    abandoned_wait_us: int = 0
    talk_us: int = 0
    hold_us: int = 0
    acw_us: int = 0

    def add(self, fact: QueueFact, weight: int, rules: QueueRules) -> None:
        kind, wait = fact.kind, fact.wait_us
        if kind == "offered":
            self.offered += weight
        elif kind == "answered":
            self.answered += weight
            if wait is not None:
                self.answered_with_wait += weight
                self.answered_wait_us += weight * wait
                if wait <= rules.threshold_us:
                    self.answered_within_sl += weight
        elif kind == "abandoned":
            self.abandoned += weight
            if wait is not None:
                self.abandoned_with_wait += weight
                self.abandoned_wait_us += weight * wait
                if wait <= rules.threshold_us:
                    self.abandoned_within_sl += weight
                if wait < rules.short_abandon_us:
                    self.short_abandoned += weight
        elif kind == "flowed_out":
            self.flowed_out += weight
        elif kind == "transferred":
            self.transferred += weight
        elif kind == "handled":
            self.handled += weight
            self.held += weight * fact.held
            self.talk_us += weight * fact.talk_us
            self.hold_us += weight * fact.hold_us
            self.acw_us += weight * fact.acw_us
        else:
            raise ValueError(f"unknown fact kind {kind!r}")

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    # -- KPIs (None when the denominator is empty) ----------------------------------------------

    def service_level_terms(self, formula: ServiceLevelFormula | str) -> tuple[int, int]:
        """(numerator, denominator) of a service-level formula (docs/kpi-definitions.md)."""
        formula = ServiceLevelFormula(formula)
        if formula is ServiceLevelFormula.answered_of_offered_excl_short:
            return self.answered_within_sl, self.answered + self.abandoned - self.short_abandoned
        if formula is ServiceLevelFormula.answered_of_answered:
            return self.answered_within_sl, self.answered
        if formula is ServiceLevelFormula.met_of_removed:
            return self.answered_within_sl + self.abandoned_within_sl, self.answered + self.abandoned
        return self.answered_within_sl, self.answered + self.abandoned

    def service_level(self, formula: ServiceLevelFormula | str) -> float | None:
        return _ratio(*self.service_level_terms(formula))

    @property
    def asa_s(self) -> float | None:
        return _ratio(self.answered_wait_us / _US, self.answered_with_wait)

    @property
    def average_abandon_time_s(self) -> float | None:
        return _ratio(self.abandoned_wait_us / _US, self.abandoned_with_wait)

    def abandon_rate(self, excludes_short: bool = True) -> float | None:
        if excludes_short:
            return _ratio(self.abandoned - self.short_abandoned, self.offered - self.short_abandoned)
        return _ratio(self.abandoned, self.offered)

    @property
    def aht_s(self) -> float | None:
        return _ratio((self.talk_us + self.hold_us + self.acw_us) / _US, self.handled)

    @property
    def average_talk_s(self) -> float | None:
        return _ratio(self.talk_us / _US, self.handled)

    @property
    def average_hold_s(self) -> float | None:
        return _ratio(self.hold_us / _US, self.handled)

    @property
    def average_acw_s(self) -> float | None:
        return _ratio(self.acw_us / _US, self.handled)

    @property
    def hold_rate(self) -> float | None:
        return _ratio(self.held, self.handled)

    @property
    def transfer_rate(self) -> float | None:
        return _ratio(self.transferred, self.answered)


def _ratio(numerator: float, denominator: int) -> float | None:
    return None if denominator <= 0 else numerator / denominator


class QueueIntervals:
    """Counters per (queue, channel, interval start ms) for one site."""

    def __init__(self, clock: SiteClock, rules_for) -> None:
        self.clock = clock
        self.rules_for = rules_for  # (queue, channel) -> QueueRules
        self.windows: dict[tuple[str, str, int], QueueCounters] = {}

    def apply(self, fact: QueueFact, weight: int) -> tuple[str, str, int]:
        key = (fact.queue, fact.channel, self.clock.interval_start(fact.at_us // 1000))
        counters = self.windows.get(key)
        if counters is None:
            counters = self.windows[key] = QueueCounters()
        counters.add(fact, weight, self.rules_for(fact.queue, fact.channel))
        return key
