"""SLA alert rules: what the configuration says, the defaults a contact center starts with, and the
thresholds a rule has for a queue. Pure: the stream evaluates them (`streams.alerts`), and the
Prometheus alerting rules are generated from the same definitions (`deploy/prometheus/`).

A rule names a KPI, a scope (queue, channel, priority; `fnmatch` wildcards), a comparison, a raise
threshold and a clear threshold (hysteresis: a rule raised below 0.8 clears only at 0.85), a raise
duration (the condition holds that long in event time before the alert fires), a minimum volume in
the window (no alerts from two calls at night) and a severity. Thresholds are numbers, or
`target` / `target+X` / `target-X` for the KPIs that have a per-queue target (service level:
`sl_target`; ASA: the queue's `asa_target_s`, by default its service-level threshold).
"""

from __future__ import annotations

import re
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AlertKpi(StrEnum):
    """KPIs an alert rule can watch. Queue KPIs are evaluated on the merged figures of a queue and
    channel; ticket KPIs per queue and priority; `contact_wait_seconds` and the ticket `*_overdue`
    KPIs per contact or ticket (the alert carries its id)."""

    service_level = "service_level"                       # ratio of the queue's configured formula, windowed
    abandon_rate = "abandon_rate"                         # ratio, windowed
    asa_seconds = "asa_seconds"                           # average speed of answer, windowed
    oldest_wait_seconds = "oldest_wait_seconds"           # now
    waiting_contacts = "waiting_contacts"                 # now
    agents_available = "agents_available"                 # now
    ticket_first_response_breaches = "ticket_first_response_breaches"   # count, windowed
    ticket_resolution_breaches = "ticket_resolution_breaches"           # count, windowed
    tickets_at_risk = "tickets_at_risk"                   # now
    contact_wait_seconds = "contact_wait_seconds"         # per contact, now
    ticket_first_response_overdue = "ticket_first_response_overdue"     # per ticket: seconds past due
    ticket_resolution_overdue = "ticket_resolution_overdue"             # per ticket: seconds past due


WINDOWED = frozenset({AlertKpi.service_level, AlertKpi.abandon_rate, AlertKpi.asa_seconds,
                      AlertKpi.ticket_first_response_breaches, AlertKpi.ticket_resolution_breaches})
TICKET_KPIS = frozenset({AlertKpi.ticket_first_response_breaches, AlertKpi.ticket_resolution_breaches,
                         AlertKpi.tickets_at_risk, AlertKpi.ticket_first_response_overdue,
                         AlertKpi.ticket_resolution_overdue})
PER_ENTITY = frozenset({AlertKpi.contact_wait_seconds, AlertKpi.ticket_first_response_overdue,
                        AlertKpi.ticket_resolution_overdue})
WITH_TARGET = frozenset({AlertKpi.service_level, AlertKpi.asa_seconds})
RATIOS = frozenset({AlertKpi.service_level, AlertKpi.abandon_rate})
# What "minimum volume" counts for each KPI: the window's offered contacts (answered ones for ASA),
# the contacts waiting now, or nothing (ticket KPIs, per-entity KPIs).
VOLUME_OF = {AlertKpi.service_level: "offered", AlertKpi.abandon_rate: "offered", AlertKpi.asa_seconds: "answered",
             AlertKpi.oldest_wait_seconds: "waiting", AlertKpi.waiting_contacts: "waiting",
             AlertKpi.agents_available: "waiting"}

_TARGET = re.compile(r"^target(?:([+-])(\d+(?:\.\d+)?))?$")
# The windows the queue owner has merged figures of (streams.snapshots: partials carry rolling 15 and 60 min).
Window = Literal["rolling_15m", "rolling_60m", "interval_current", "today"]
Threshold = float | Annotated[str, Field(pattern=_TARGET.pattern)]


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kpi: AlertKpi = Field(description="The KPI the rule watches.")
    comparison: Literal["<", ">"] = Field(description="Raise when the value is below (<) or above (>) the raise threshold.")
    raise_threshold: Threshold = Field(description="Threshold that raises the alert (a number, or target, target+X, target-X).")
    clear_threshold: Threshold | None = Field(
        default=None, description="Threshold at which a firing alert resolves (hysteresis); default: the raise threshold.")
    for_s: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=60.0, description="Raise duration: how long (event time) the condition holds before the alert fires.")
    min_volume: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Minimum volume in the window (offered contacts; answered for ASA; contacts waiting for "
                               "queue-now KPIs) for the rule to raise.")
    window: Window = Field(default="rolling_15m", description="Window of a windowed KPI (ignored by the others).")
    queue: str = Field(default="*", description="Queues the rule covers (wildcards * ? [..]).")
    channel: str = Field(default="*", description="Channels the rule covers (wildcards).")
    priority: str = Field(default="*", description="Ticket priorities the rule covers (wildcards; ticket KPIs only).")
    severity: Literal["info", "warning", "critical"] = Field(default="warning", description="Severity of the alert.")
    enabled: bool = Field(default=True, description="false switches a rule (a default one too) off.")
    summary: str | None = Field(default=None, description="One line for people; default: made from the rule.")

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        for name in ("raise_threshold", "clear_threshold"):
            value = getattr(self, name)
            if isinstance(value, str) and self.kpi not in WITH_TARGET:
                raise ValueError(f"{name}: {value!r}: {self.kpi.value} has no per-queue target; give a number")
        raise_, clear = self.raise_threshold, self.clear_threshold
        if isinstance(raise_, float) and isinstance(clear, float):
            wrong = clear < raise_ if self.comparison == "<" else clear > raise_
            if wrong:
                raise ValueError(f"clear_threshold: {clear} would clear before the alert raises "
                                 f"(raise {self.comparison} {raise_}); hysteresis goes the other way")
        return self

    @field_validator("raise_threshold", "clear_threshold", mode="before")
    @classmethod
    def _number_or_target(cls, value):
        if isinstance(value, bool):
            raise ValueError("a number or target[+-X]")
        if isinstance(value, int):
            return float(value)
        return value

    def covers(self, queue: str, channel: str, priority: str | None = None) -> bool:
        if not (fnmatchcase(queue, self.queue) and fnmatchcase(channel, self.channel)):
            return False
        return priority is None or fnmatchcase(priority, self.priority)

    def covers_ticket(self, queue: str, priority: str) -> bool:
        """Tickets have no channel: the rule's queue and priority patterns decide."""
        return fnmatchcase(queue, self.queue) and fnmatchcase(priority, self.priority)

    def thresholds(self, target: float | None) -> tuple[float, float]:
        """(raise, clear) for a queue whose target for this KPI is `target`."""
        raise_ = resolve(self.raise_threshold, target)
        clear = raise_ if self.clear_threshold is None else resolve(self.clear_threshold, target)
        return raise_, clear

    def breached(self, value: float, threshold: float) -> bool:
        return value < threshold if self.comparison == "<" else value > threshold

    def cleared(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.comparison == "<" else value <= threshold


def resolve(threshold: float | str, target: float | None) -> float:
    if isinstance(threshold, float):
        return threshold
    match = _TARGET.match(threshold)
    if match is None or target is None:
        raise ValueError(f"threshold {threshold!r} needs the queue's target")
    sign, offset = match.groups()
    return target + (float(offset) if sign == "+" else -float(offset) if sign == "-" else 0.0)


# The rules a contact center starts with (docs/alerts.md). A configured rule of the same name
# replaces one; `enabled = false` switches it off.
DEFAULT_RULES: dict[str, AlertRule] = {
    "service_level_below_target": AlertRule(
        kpi=AlertKpi.service_level, comparison="<", raise_threshold="target", clear_threshold="target+0.02",
        window="rolling_15m", for_s=60, min_volume=10, severity="critical"),
    "abandon_rate_high": AlertRule(
        kpi=AlertKpi.abandon_rate, comparison=">", raise_threshold=0.10, clear_threshold=0.08,
        window="rolling_15m", for_s=60, min_volume=10, severity="warning"),
    "oldest_wait_long": AlertRule(
        kpi=AlertKpi.oldest_wait_seconds, comparison=">", raise_threshold=120, clear_threshold=90,
        for_s=0, min_volume=1, severity="warning"),
    "asa_above_target": AlertRule(
        kpi=AlertKpi.asa_seconds, comparison=">", raise_threshold="target", clear_threshold="target-2",
        window="rolling_15m", for_s=60, min_volume=10, severity="warning"),
    "no_agents_available": AlertRule(
        kpi=AlertKpi.agents_available, comparison="<", raise_threshold=1, clear_threshold=1,
        for_s=30, min_volume=1, severity="critical"),
    "ticket_first_response_breached": AlertRule(
        kpi=AlertKpi.ticket_first_response_overdue, comparison=">", raise_threshold=0, for_s=0, severity="warning"),
    "ticket_resolution_breached": AlertRule(
        kpi=AlertKpi.ticket_resolution_overdue, comparison=">", raise_threshold=0, for_s=0, severity="warning"),
    "tickets_at_risk": AlertRule(
        kpi=AlertKpi.tickets_at_risk, comparison=">", raise_threshold=0, clear_threshold=0, for_s=0,
        severity="info"),
}


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: dict[str, AlertRule] = Field(
        default_factory=dict, description="Alert rules by name, on top of the defaults (same name: replaces it).")

    @field_validator("rules")
    @classmethod
    def _names(cls, rules: dict[str, AlertRule]) -> dict[str, AlertRule]:
        for name in rules:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
                raise ValueError(f"{name!r}: a rule name is lower case letters, digits and _ (it names the alert)")
        return rules

    def active(self) -> dict[str, AlertRule]:
        """The rules in force: the defaults, replaced or switched off by the configured ones."""
        merged = {**DEFAULT_RULES, **self.rules}
        return {name: rule for name, rule in merged.items() if rule.enabled}
