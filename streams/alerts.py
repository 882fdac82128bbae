"""SLA alert evaluation: one rule on one scope, step by step in event time. Pure: no Kafka, no Faust.

The queue owner (`streams.app`, `_queues`) evaluates the queue rules on each queue's merged figures
whenever a partition's partial arrives (every `worker.snapshot_interval_s`, with or without new
events); the engine evaluates the per-contact and per-ticket rules at its watermark
(`streams.partition`). The state of each (rule, scope) is a small JSON list kept in the record the
rule reads from (the queue-snapshot record, or the contact's or ticket's entity record), so it
reaches the changelog with the figures it was decided on: a restarted or rebalanced worker neither
loses a firing alert nor fires it twice.

    state None ──condition holds──▶ [since, 0, ..] pending ──held for `for_s`──▶ [since, 1, ..] firing
        ▲                               │ condition gone                         │ cleared (hysteresis),
        └───────────────────────────────┴────────────────────────────────────────┘ no volume, no value

The condition is `value <comparison> raise_threshold` with at least `min_volume`; a firing alert
resolves when the value reaches the clear threshold, when the volume falls below the minimum (no
alerts from two calls at night, and none left standing by them) or when the KPI has no value.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.alerts import AlertEvent, AlertScope
from streams.alert_rules import RATIOS, WINDOWED, AlertKpi, AlertRule

PENDING, FIRING = 0, 1


@dataclass(frozen=True, slots=True)
class Reading:
    """A rule's KPI on one scope at one evaluation time."""

    value: float | None
    volume: int
    raise_threshold: float
    clear_threshold: float


def step(state: list | None, rule: AlertRule, reading: Reading, at_ms: int,
         since_ms: int | None = None) -> tuple[list | None, str | None]:
    """The next state of one (rule, scope), and "firing" / "resolved" when it changes. `since_ms`: when
    the condition began, where the caller knows it exactly (a contact's enqueue time plus the
    threshold); otherwise the first evaluation that saw it."""
    value = reading.value
    if state is not None and state[1] == FIRING:
        if value is None or reading.volume < rule.min_volume or rule.cleared(value, reading.clear_threshold):
            return None, "resolved"
        return state, None
    holds = value is not None and reading.volume >= rule.min_volume and rule.breached(value, reading.raise_threshold)
    if not holds:
        return None, None
    since = state[0] if state is not None else at_ms if since_ms is None else min(since_ms, at_ms)
    thresholds = [reading.raise_threshold, reading.clear_threshold]   # for a resolve without a reading
    if at_ms - since >= rule.for_s * 1000:
        return [since, FIRING, *thresholds], "firing"
    return [since, PENDING, *thresholds], None


def scope_key(scope: AlertScope) -> str:
    return "|".join(v or "" for v in (scope.queue, scope.channel, scope.priority, scope.contact_id, scope.ticket_id))


def state_key(name: str, scope: AlertScope) -> str:
    """Where one (rule, scope) keeps its state in an `Evaluator`'s dict."""
    return f"{name}|{scope_key(scope)}"


def alert_event(status: str, name: str, rule: AlertRule, scope: AlertScope, reading: Reading, started_at_ms: int,
                at_ms: int, site: str) -> AlertEvent:
    return AlertEvent(
        status=status, key=f"{state_key(name, scope)}|{started_at_ms}", rule=name, kpi=rule.kpi.value,
        severity=rule.severity, site=site, scope=scope, window=rule.window if _windowed(rule) else None,
        value=reading.value, volume=reading.volume, comparison=rule.comparison,
        raise_threshold=reading.raise_threshold, clear_threshold=reading.clear_threshold,
        started_at_ms=started_at_ms, at_ms=at_ms, summary=summary(status, name, rule, scope, reading))


class Evaluator:
    """Steps many (rule, scope) states kept in one dict (`states`: key -> state, JSON-ready) and
    collects the events."""

    def __init__(self, states: dict, site: str) -> None:
        self.states = states
        self.site = site
        self.events: list[AlertEvent] = []

    def observe(self, name: str, rule: AlertRule, scope: AlertScope, reading: Reading, at_ms: int,
                since_ms: int | None = None) -> None:
        key = state_key(name, scope)
        before = self.states.get(key)
        after, change = step(before, rule, reading, at_ms, since_ms)
        if after is None:
            self.states.pop(key, None)
        else:
            self.states[key] = after
        if change is not None:
            since = (after or before)[0]
            self.events.append(alert_event(change, name, rule, scope, reading, since, at_ms, self.site))

    def forget_unobserved(self, observed: set[str], rules: dict[str, AlertRule], at_ms: int) -> None:
        """States of scopes that no longer exist (a queue's channel gone from its record, a rule
        removed from the configuration): firing ones resolve, pending ones go."""
        for key in [k for k in self.states if k not in observed]:
            state = self.states.pop(key)
            name, _, rest = key.partition("|")
            rule = rules.get(name)
            if state[1] == FIRING and rule is not None:
                queue, channel, priority, contact, ticket = rest.split("|")
                scope = AlertScope(queue=queue or None, channel=channel or None, priority=priority or None,
                                   contact_id=contact or None, ticket_id=ticket or None)
                reading = Reading(None, 0, state[2], state[3])
                self.events.append(alert_event("resolved", name, rule, scope, reading, state[0], at_ms, self.site))


def _windowed(rule: AlertRule) -> bool:
    return rule.kpi in WINDOWED


_LABELS = {
    AlertKpi.service_level: "Service level", AlertKpi.abandon_rate: "Abandon rate", AlertKpi.asa_seconds: "ASA",
    AlertKpi.oldest_wait_seconds: "Oldest wait", AlertKpi.waiting_contacts: "Contacts waiting",
    AlertKpi.agents_available: "Agents available", AlertKpi.ticket_first_response_breaches: "First-response breaches",
    AlertKpi.ticket_resolution_breaches: "Resolution breaches", AlertKpi.tickets_at_risk: "Tickets at risk",
    AlertKpi.contact_wait_seconds: "Wait", AlertKpi.ticket_first_response_overdue: "First response overdue by",
    AlertKpi.ticket_resolution_overdue: "Resolution overdue by",
}


def _fmt(kpi: AlertKpi, value: float | None) -> str:
    if value is None:
        return "n/a"
    if kpi in RATIOS:
        return f"{value * 100:.1f} %"
    if kpi.value.endswith(("_seconds", "_overdue")):
        return f"{value:.0f} s"
    return f"{value:g}"


def summary(status: str, name: str, rule: AlertRule, scope: AlertScope, reading: Reading) -> str:
    if rule.summary:   # the site's own words
        return rule.summary if status == "firing" else f"Resolved: {rule.summary}"
    where = scope.queue or "?"
    if scope.channel:
        where += f" ({scope.channel})"
    if scope.priority:
        where += f", priority {scope.priority}"
    if scope.contact_id:
        where = f"contact {scope.contact_id} in {where}"
    if scope.ticket_id:
        where = f"ticket {scope.ticket_id} in {where}"
    label = _LABELS[rule.kpi]
    over = f" over {rule.window}" if _windowed(rule) else ""
    side = "below" if rule.comparison == "<" else "above"
    if status == "firing":
        return (f"{label} of {where} is {_fmt(rule.kpi, reading.value)}{over}, {side} "
                f"{_fmt(rule.kpi, reading.raise_threshold)} [{name}, {rule.severity}]")
    return (f"Resolved: {label} of {where} is {_fmt(rule.kpi, reading.value)}{over} "
            f"(clears at {_fmt(rule.kpi, reading.clear_threshold)}) [{name}]")
