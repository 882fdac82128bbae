"""Prometheus rules for Floorwatch, generated from the SLA alert rules (`streams.alert_rules`).

    python -m streams.prometheus_rules                      # the committed files (DEFAULT_RULES)
    python -m streams.prometheus_rules --config site.toml --output-dir /etc/prometheus/rules
    python -m streams.prometheus_rules --check              # exit 1 when the committed files are stale

Three files in `deploy/prometheus/rules/`:

- `floorwatch-recording.yml`: per queue and channel (and window) figures over all workers, named
  `level:metric:operations`: service level, abandon rate, ASA, volumes, targets, waiting contacts,
  oldest wait, agents available; ticket counts; the Faust consumer lag.
- `floorwatch-kpi-alerts.yml`: one alert per enabled rule, named `Floorwatch` + the rule name in
  CamelCase (`service_level_below_target` -> `FloorwatchServiceLevelBelowTarget`).
- `floorwatch-pipeline.yml`: the pipeline's health (worker down, watermark stale, consumer lag,
  dead letters).

The stream evaluates the same rules in event time and writes alert events to `cc.sla.alerts`
(`streams.alerts`); these rules give Alertmanager the same alerts per queue in wall-clock time.
Per-contact and per-ticket rules have no per-entity series in Prometheus (no ids in labels), so they
become queue-level alerts here (see `_series`); the alert with the id is on the Kafka topic only.

Hysteresis uses the ALERTS series: a firing alert stays while the value has not reached the clear
threshold. Prometheus' `keep_firing_for` (2.42+) keeps an alert for a time, not up to a threshold,
so it cannot express a clear threshold.

The files are YAML written by a small emitter (`to_yaml`): the project has no YAML library, and the
output is a fixed shape (maps, lists, strings).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from streams.alert_rules import DEFAULT_RULES, PER_ENTITY, TICKET_KPIS, VOLUME_OF, WINDOWED, AlertKpi, AlertRule
from streams.config import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = Path("deploy/prometheus/rules")
RUNBOOK_DIR = "deploy/runbooks"
KPI_ALERTS_FILE = "floorwatch-kpi-alerts.yml"
RECORDING_FILE = "floorwatch-recording.yml"
PIPELINE_FILE = "floorwatch-pipeline.yml"

ALERT_PREFIX = "Floorwatch"
WORKER_JOB = "floorwatch"             # the scrape job of the workers (deploy/prometheus/prometheus.yml)
ALERTS_TOPIC = "cc.sla.alerts"        # where the stream writes its alert events (topics.alerts)
GENERIC_KPI_RUNBOOK = "FloorwatchKpiAlert"   # for configured rules whose KPI no default rule watches
# Per-ticket rules become "tickets of the queue that breached within this many minutes".
RECENT_BREACH_MINUTES = 15
TICKET_WINDOWS = ("interval_current", "interval_previous", "today")   # the ticket families' windows

# Pipeline thresholds (docs/alerts.md, "Pipeline alerts").
WATERMARK_STALE_AFTER = "5m"
WATERMARK_MIN_INPUT_PER_S = 0.5       # below this the site may be quiet enough for a worker's partitions to see nothing
CONSUMER_LAG_MIN_MESSAGES = 100
DEAD_LETTER_MAX_RATIO = 0.01
DEAD_LETTER_MIN_RECORDS = 5           # in 5 minutes: a few bad records of a quiet source are not a trend


# -- names -------------------------------------------------------------------------------------------

def alert_name(rule_name: str) -> str:
    """`service_level_below_target` -> `FloorwatchServiceLevelBelowTarget`."""
    return ALERT_PREFIX + "".join(part[:1].upper() + part[1:] for part in rule_name.split("_"))


def glob_to_regex(pattern: str) -> str:
    """An `fnmatch` pattern (* ? [seq] [!seq]) as an RE2 regex for a PromQL `=~` matcher (anchored
    by Prometheus)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = i
            if end < len(pattern) and pattern[end] == "!":
                end += 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1
            end = pattern.find("]", end)
            if end < 0:           # no closing bracket: fnmatch takes "[" literally
                out.append(re.escape(char))
                continue
            body = pattern[i:end]
            i = end + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[").replace("]", "\\]")
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector(metric: str, **labels: str) -> str:
    """`metric{label="value", ...}`; a value starting with `~` is a regex matcher."""
    if not labels:
        return metric
    parts = [f"{k}=~{_promql_string(v[1:])}" if v.startswith("~") else f"{k}={_promql_string(v)}"
             for k, v in labels.items()]
    return f"{metric}{{{', '.join(parts)}}}"


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: 60 -> 1m, 90 -> 1m30s, 0.5 -> 500ms."""
    ms = round(seconds * 1000)
    out = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out) or "0s"


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# -- KPI -> PromQL ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KpiSeries:
    """How one KPI reads in Prometheus, for the scopes a rule covers."""

    value: str                    # PromQL: the KPI per scope
    on: tuple[str, ...]           # the labels of a scope
    title: str                    # "Service level"
    unit: str                     # ratio | seconds | count
    summary: str                  # str.format template: value, over, side, threshold, where
    target: str | None = None     # PromQL: the per-queue target (threshold "target")
    volume: str | None = None     # PromQL: the rule's volume per scope (min_volume)
    volume_noun: str = ""
    note: str = ""                # what differs from the stream's alert


_QUEUE_WHERE = "{{ $labels.queue }} ({{ $labels.channel }})"
_TICKET_WHERE = "{{ $labels.queue }} (priority {{ $labels.priority }})"
_VOLUME_NOUN = {"offered": "offered contacts in the window", "answered": "answered contacts in the window",
                "waiting": "contacts waiting"}
_BREACH_KIND = {AlertKpi.ticket_first_response_breaches: "first_response_breached",
                AlertKpi.ticket_resolution_breaches: "resolution_breached",
                AlertKpi.ticket_first_response_overdue: "first_response_breached",
                AlertKpi.ticket_resolution_overdue: "resolution_breached"}
_BREACH_WORDS = {"first_response_breached": "first-response", "resolution_breached": "resolution"}
_TICKETS = "queue_priority_window_kind:floorwatch_ticket_window_tickets:sum"


def _scope(rule: AlertRule, ticket: bool) -> dict[str, str]:
    """The rule's scope as label matchers; "*" matches everything and needs none."""
    patterns = {"queue": rule.queue, **({"priority": rule.priority} if ticket else {"channel": rule.channel})}
    return {label: ("~" + glob_to_regex(p)) if any(c in p for c in "*?[") else p
            for label, p in patterns.items() if p != "*"}


def _recent_increase(series: str, minutes: int) -> str:
    """How much a "today" count grew in the last `minutes` (a series new since then counts from 0;
    across midnight the count restarts, so the growth is clamped at 0)."""
    return f"clamp_min(\n  {series}\n  - ({series} offset {minutes}m\n     or {series} * 0),\n  0\n)"


RECENT_TICKETS = f"queue_priority_kind:floorwatch_ticket_window_tickets:increase{RECENT_BREACH_MINUTES}m"


def _series(rule: AlertRule) -> KpiSeries:
    kpi = rule.kpi
    scope = _scope(rule, ticket=kpi in TICKET_KPIS)
    window = {"window": rule.window} if kpi in WINDOWED else {}
    volume = None
    if kpi in VOLUME_OF:
        kind = VOLUME_OF[kpi]
        volume = (selector("queue_channel:floorwatch_queue_waiting_contacts:sum", **scope) if kind == "waiting" else
                  selector("queue_channel_window_kind:floorwatch_queue_window_contacts:sum", **window, kind=kind,
                           **scope))
    queue = dict(on=("queue", "channel"), volume=volume, volume_noun=_VOLUME_NOUN.get(VOLUME_OF.get(kpi, ""), ""))
    windowed = "{value}{over}, {side} {threshold}"
    if kpi is AlertKpi.service_level:
        return KpiSeries(selector("queue_channel_window:floorwatch_queue_service_level:ratio", **window, **scope),
                         title="Service level", unit="ratio", summary="Service level of {where} is " + windowed,
                         target="queue_channel:floorwatch_queue_service_level_target_ratio:max", **queue)
    if kpi is AlertKpi.abandon_rate:
        return KpiSeries(selector("queue_channel_window:floorwatch_queue_abandon_rate:ratio", **window, **scope),
                         title="Abandon rate", unit="ratio", summary="Abandon rate of {where} is " + windowed, **queue)
    if kpi is AlertKpi.asa_seconds:
        return KpiSeries(selector("queue_channel_window:floorwatch_queue_asa_seconds:mean", **window, **scope),
                         title="ASA", unit="seconds", summary="ASA of {where} is " + windowed,
                         target="queue_channel:floorwatch_queue_asa_target_seconds:max", **queue)
    if kpi is AlertKpi.oldest_wait_seconds:
        return KpiSeries(selector("queue_channel:floorwatch_queue_oldest_wait_seconds:max", **scope),
                         title="Oldest wait", unit="seconds",
                         summary="Oldest wait in {where} is {value}, {side} {threshold}", **queue)
    if kpi is AlertKpi.waiting_contacts:
        return KpiSeries(selector("queue_channel:floorwatch_queue_waiting_contacts:sum", **scope),
                         title="Contacts waiting", unit="count",
                         summary="{value} contacts waiting in {where}, {side} {threshold}", **queue)
    if kpi is AlertKpi.agents_available:
        return KpiSeries(selector("queue_channel:floorwatch_agents_available:sum", **scope),
                         title="Agents available", unit="count",
                         summary="{value} agents available for {{{{ $labels.queue }}}} while {{{{ $labels.channel }}}} "
                                 "contacts wait, {side} {threshold}", **queue)
    if kpi is AlertKpi.contact_wait_seconds:
        # Some contact waits longer than X exactly when the longest wait of its queue does.
        return KpiSeries(selector("queue_channel:floorwatch_queue_oldest_wait_seconds:max", **scope),
                         title="Longest contact wait", unit="seconds",
                         summary="A contact in {where} has waited {value}, {side} {threshold}", **queue,
                         note="Prometheus has no per-contact series: this is the longest wait of the queue; the "
                              "alert per contact, with its id, is on the Kafka topic.")
    tickets = dict(on=("queue", "priority"))
    if kpi is AlertKpi.tickets_at_risk:
        return KpiSeries(selector("queue_priority:floorwatch_tickets_at_risk:sum", **scope),
                         title="Tickets at risk of missing a due time", unit="count",
                         summary="{value} tickets of {where} at risk of missing their due time, {side} {threshold}",
                         **tickets)
    kind = _BREACH_KIND[kpi]
    words = _BREACH_WORDS[kind]
    if kpi in PER_ENTITY:
        return KpiSeries(
            selector(RECENT_TICKETS, kind=kind, **scope), title=f"Tickets past their {words} due time",
            unit="count", summary=f"{{value}} tickets of {{where}} passed their {words} due time in the last "
                                  f"{RECENT_BREACH_MINUTES} minutes", **tickets,
            note=(f"Prometheus has no per-ticket series: this alert counts the tickets of the queue and priority "
                  f"that passed their due time in the last {RECENT_BREACH_MINUTES} minutes and resolves "
                  f"{RECENT_BREACH_MINUTES} minutes after the last one (the rule's threshold applies in the "
                  f"stream only); the alert per ticket, with its id, is on the Kafka topic."))
    summary = f"{{value}} {words} breaches in {{where}}{{over}}, {{side}} {{threshold}}"
    title = f"{words.capitalize()} breaches"
    if rule.window in TICKET_WINDOWS:
        return KpiSeries(selector(_TICKETS, window=rule.window, kind=kind, **scope), title=title, unit="count",
                         summary=summary, **tickets)
    minutes = int(rule.window.removeprefix("rolling_").removesuffix("m"))
    growth = _recent_increase(selector(_TICKETS, window="today", kind=kind, **scope), minutes)
    # The growth carries the label window="today"; the alert's window is the rule's.
    value = f'label_replace(\n{_indent(growth)},\n  "window", "{rule.window}", "window", ".*"\n)'
    return KpiSeries(value, title=title, unit="count", summary=summary, **tickets,
                     note=f"Tickets have no rolling windows on /metrics: {rule.window} is the growth of today's "
                          f"count over {minutes} minutes.")


def _threshold(threshold: float | str, series: KpiSeries) -> str:
    """The right-hand side of the comparison: a number, or the queue's target (+/- X)."""
    if isinstance(threshold, float):
        return number(threshold)
    offset = threshold.removeprefix("target")
    # group_left keeps the value's labels (window): a one-to-one match on() would keep only those.
    on = f"on({', '.join(series.on)}) group_left() "
    if not offset:
        return on + str(series.target)
    return f"{on}({series.target} {offset[0]} {offset[1:]})"


def _describe_threshold(threshold: float | str, unit: str) -> str:
    if isinstance(threshold, str):
        return threshold.replace("+", " + ").replace("-", " - ")
    if unit == "ratio":
        return f"{threshold * 100:g}%"
    if unit == "seconds":
        return f"{threshold:g}s"
    return f"{threshold:g}"


_VALUE = {"ratio": "{{ $value | humanizePercentage }}", "seconds": "{{ $value | humanizeDuration }}",
          "count": "{{ $value }}"}


def kpi_alert(name: str, rule: AlertRule, runbook_base: str = RUNBOOK_DIR + "/",
              alerts_topic: str = ALERTS_TOPIC) -> dict:
    """The Prometheus alerting rule of one Floorwatch alert rule."""
    alert = alert_name(name)
    series = _series(rule)
    on = f"on({', '.join(series.on)})"
    cmp, raise_, clear = rule.comparison, rule.raise_threshold, rule.clear_threshold
    if rule.kpi in (AlertKpi.ticket_first_response_overdue, AlertKpi.ticket_resolution_overdue):
        cmp, raise_, clear = ">", 0.0, None   # per ticket "overdue by X": here, any ticket that passed its due time
    hysteresis = clear is not None and clear != raise_
    # The comparison under the value (indented when the value is one line, for reading).
    under = "\n" if "\n" in series.value else "\n  "
    expr = f"{series.value}{under}{cmp} {_threshold(raise_, series)}"
    if hysteresis:
        # Firing, the alert holds until the value reaches the clear threshold (ALERTS: the state of
        # the previous evaluation).
        holds = f"{series.value}{under}{cmp} {_threshold(clear, series)}"
        firing = selector("ALERTS", alertname=alert, alertstate="firing")
        expr = f"(\n{_indent(expr)}\n  or\n  (\n{_indent(holds, 4)}\n  )\n  and {on}\n  {firing}\n)"
    volume_words = ""
    if series.volume is not None and rule.min_volume > 0:
        # Like the stream: no alert below the minimum volume, raised or not.
        expr += f"\nand {on}\n{series.volume} >= {rule.min_volume}"
        volume_words = f" with {rule.min_volume} or more {series.volume_noun}"
    where = _TICKET_WHERE if "priority" in series.on else _QUEUE_WHERE
    over = f" over {rule.window}" if rule.kpi in WINDOWED else ""
    side = "below" if cmp == "<" else "above"
    summary = rule.summary or series.summary.format(
        value=_VALUE[series.unit], where=where, over=over, side=side,
        threshold=_describe_threshold(raise_, series.unit))
    if hysteresis:
        resolves = (f"it resolves when the value {'reaches' if cmp == '<' else 'falls to'} "
                    f"{_describe_threshold(clear, series.unit)}")
    else:
        resolves = "it resolves when the condition no longer holds"
    if volume_words:
        resolves += " or the volume falls below the minimum"
    holds_for = f" for {duration(rule.for_s)}" if rule.for_s else ""
    description = (
        f"{series.title}{over} per {' and '.join(series.on)}, all workers together. Fires when it is {side} "
        f"{_describe_threshold(raise_, series.unit)}{holds_for}{volume_words}; {resolves}. "
        f"Rule {name} (KPI {rule.kpi.value}; [alerts.rules.{name}] in the site configuration). The stream "
        f"evaluates the same rule in event time and writes its alert events to the Kafka topic {alerts_topic}."
        + (f" {series.note}" if series.note else ""))
    result: dict = {"alert": alert, "expr": expr}
    if rule.for_s:
        result["for"] = duration(rule.for_s)
    result["labels"] = {"severity": rule.severity, "rule": name, "category": "kpi"}
    result["annotations"] = {"summary": summary, "description": description,
                             "runbook_url": runbook_base + kpi_runbook(name, rule) + ".md"}
    return result


def kpi_runbook(name: str, rule: AlertRule) -> str:
    """The runbook of a rule's alert: its own for a default rule, else that of the default rule
    watching the same KPI, else the generic KPI runbook."""
    default = DEFAULT_RULES.get(name)
    if default is not None and default.kpi is rule.kpi:
        return alert_name(name)
    for default_name, default in DEFAULT_RULES.items():
        if default.kpi is rule.kpi:
            return alert_name(default_name)
    return GENERIC_KPI_RUNBOOK


def _indent(text: str, spaces: int = 2) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.split("\n"))


# -- the three files ---------------------------------------------------------------------------------

def recording_groups() -> list[dict]:
    def rule(record: str, expr: str) -> dict:
        return {"record": record, "expr": expr}

    def ratio(record: str, numerator: str, denominator: str, by: str = "queue, channel, window") -> dict:
        return rule(record, f"sum by ({by}) ({numerator})\n/\nsum by ({by}) ({denominator})")

    queue_rules = [
        # Windowed queue KPIs: the ratio of the sums over all workers (a ratio per worker would be wrong).
        ratio("queue_channel_window:floorwatch_queue_service_level:ratio",
              "floorwatch_queue_window_service_level_met_contacts",
              "floorwatch_queue_window_service_level_eligible_contacts"),
        ratio("queue_channel_window:floorwatch_queue_abandon_rate:ratio",
              "floorwatch_queue_window_abandon_rate_abandoned_contacts",
              "floorwatch_queue_window_abandon_rate_offered_contacts"),
        ratio("queue_channel_window:floorwatch_queue_asa_seconds:mean",
              'floorwatch_queue_window_wait_seconds{outcome="answered"}',
              'floorwatch_queue_window_timed_contacts{outcome="answered"}'),
        rule("queue_channel_window_kind:floorwatch_queue_window_contacts:sum",
             "sum by (queue, channel, window, kind) (floorwatch_queue_window_contacts)"),
        # Configuration: the same value on every worker, so max, not sum.
        rule("queue_channel:floorwatch_queue_service_level_target_ratio:max",
             "max by (queue, channel) (floorwatch_queue_service_level_target_ratio)"),
        rule("queue_channel:floorwatch_queue_asa_target_seconds:max",
             "max by (queue, channel) (floorwatch_queue_asa_target_seconds)"),
        # Now.
        rule("queue_channel:floorwatch_queue_waiting_contacts:sum",
             "sum by (queue, channel) (floorwatch_queue_waiting_contacts)"),
        rule("queue_channel:floorwatch_queue_oldest_wait_seconds:max",
             "max by (queue, channel) (floorwatch_queue_oldest_wait_seconds)"),
        # Agents per queue skill (label name = the queue). A queue with no agent online has no
        # floorwatch_agents series at all: it counts 0 for every queue that has a waiting series.
        rule("queue:floorwatch_agents_available:sum",
             'sum by (queue) (\n  label_replace(floorwatch_agents{scope="queue", state="available"},'
             ' "queue", "$1", "name", "(.*)")\n)\nor on(queue)\n'
             "0 * sum by (queue) (floorwatch_queue_waiting_contacts)"),
        # The same per channel the queue has contacts in (the scope of the stream's alert); rules of a
        # group run in order on the same evaluation time, so the rule above is current here.
        rule("queue_channel:floorwatch_agents_available:sum",
             "0 * queue_channel:floorwatch_queue_waiting_contacts:sum\n"
             "+ on(queue) group_left()\nqueue:floorwatch_agents_available:sum"),
    ]
    today = 'sum by (queue, priority, kind) (floorwatch_ticket_window_tickets{window="today"})'
    today_before = (f'sum by (queue, priority, kind) (floorwatch_ticket_window_tickets{{window="today"}} '
                    f'offset {RECENT_BREACH_MINUTES}m)')
    ticket_rules = [
        rule("queue_priority_window_kind:floorwatch_ticket_window_tickets:sum",
             "sum by (queue, priority, window, kind) (floorwatch_ticket_window_tickets)"),
        rule("queue_priority:floorwatch_tickets_at_risk:sum",
             "sum by (queue, priority) (floorwatch_tickets_at_risk)"),
        # What the per-ticket rules become: tickets per kind (breaches among them) of the last
        # minutes, from today's counts (those restart at midnight: nothing is new for a while then).
        rule(RECENT_TICKETS,
             f"clamp_min(\n  {today}\n  - ({today_before}\n     or {today} * 0),\n  0\n)"),
    ]
    pipeline_rules = [
        # Faust's sensor: the high-water mark seen when fetching minus the committed offset, per
        # partition of the internal topics a worker consumes (the same worker exports both).
        rule("topic:floorwatch_faust_consumer_lag_messages:sum",
             "sum by (topic) (\n  floorwatch_faust_topic_partition_end_offset\n"
             "  - floorwatch_faust_topic_partition_offset_commited\n)"),
        # Ingest's own consumer of the input topics (its own group, not seen by Faust's sensor).
        rule("topic:floorwatch_ingest_consumer_lag_records:sum",
             "sum by (topic) (floorwatch_ingest_consumer_lag_records)"),
    ]
    return [{"name": "floorwatch-queue-recording", "rules": queue_rules},
            {"name": "floorwatch-ticket-recording", "rules": ticket_rules},
            {"name": "floorwatch-pipeline-recording", "rules": pipeline_rules}]


def pipeline_groups(runbook_base: str = RUNBOOK_DIR + "/") -> list[dict]:
    def alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict:
        return {"alert": name, "expr": expr, "for": for_,
                "labels": {"severity": severity, "category": "pipeline"},
                "annotations": {"summary": summary, "description": description,
                                "runbook_url": f"{runbook_base}{name}.md"}}

    up = selector("up", job=WORKER_JOB)
    rules = [
        alert("FloorwatchWorkerDown", f"{up} == 0", "1m", "critical",
              "Floorwatch worker {{ $labels.instance }} is down",
              "Prometheus cannot scrape the worker's /metrics for 1 minute. Its partitions move to the other "
              "workers after the session timeout; with no other worker the KPIs stop. KPI alerts are inhibited "
              "while it lasts."),
        alert("FloorwatchNoWorkers", f"absent({up})", "1m", "critical",
              "No Floorwatch worker is known to Prometheus",
              f"Service discovery finds no target of job {WORKER_JOB}: no KPIs, no KPI alerts."),
        alert("FloorwatchWatermarkStale",
              f"changes(floorwatch_watermark_timestamp_seconds[{WATERMARK_STALE_AFTER}]) == 0\n"
              "and floorwatch_partitions_owned > 0\n"
              f"and on() sum(rate(floorwatch_ingest_valid_events_total[{WATERMARK_STALE_AFTER}]))"
              f" > {number(WATERMARK_MIN_INPUT_PER_S)}",
              "2m", "critical",
              "Floorwatch worker {{ $labels.instance }} applies no new events",
              f"The worker owns partitions but its watermark (newest event time applied) has not moved for "
              f"{WATERMARK_STALE_AFTER} while valid events still arrive (more than "
              f"{number(WATERMARK_MIN_INPUT_PER_S)}/s over all workers): its KPIs are frozen. KPI alerts are "
              f"inhibited while it lasts."),
        alert("FloorwatchConsumerLagGrowing",
              f"(\n  topic:floorwatch_faust_consumer_lag_messages:sum > {CONSUMER_LAG_MIN_MESSAGES}\n"
              "  and deriv(topic:floorwatch_faust_consumer_lag_messages:sum[10m]) > 0\n)\nor\n(\n"
              f"  topic:floorwatch_ingest_consumer_lag_records:sum > {CONSUMER_LAG_MIN_MESSAGES}\n"
              "  and deriv(topic:floorwatch_ingest_consumer_lag_records:sum[10m]) > 0\n)",
              "10m", "warning",
              "Floorwatch falls behind on {{ $labels.topic }}: {{ $value }} messages not processed",
              f"The messages not yet processed on the topic (an input topic: not yet read by ingest; an "
              f"internal one: not yet committed by the engine) have been growing for 10 minutes and exceed "
              f"{CONSUMER_LAG_MIN_MESSAGES}: the workers process less than arrives, and the KPIs lag behind."),
        alert("FloorwatchDeadLetterRateHigh",
              "sum by (topic) (rate(floorwatch_ingest_rejected_records_total[5m]))\n"
              "/\nsum by (topic) (rate(floorwatch_ingest_received_records_total[5m]))\n"
              f"> {number(DEAD_LETTER_MAX_RATIO)}\n"
              f"and sum by (topic) (increase(floorwatch_ingest_rejected_records_total[5m]))"
              f" >= {DEAD_LETTER_MIN_RECORDS}",
              "5m", "warning",
              "{{ $value | humanizePercentage }} of the records on {{ $labels.topic }} go to the dead-letter topic",
              f"More than {DEAD_LETTER_MAX_RATIO:.0%} of the input records of the topic (and at least "
              f"{DEAD_LETTER_MIN_RECORDS} in 5 minutes) are rejected (cc.deadletter): the KPIs miss those "
              f"events."),
    ]
    return [{"name": "floorwatch-pipeline", "rules": rules}]


def kpi_alert_groups(rules: dict[str, AlertRule], runbook_base: str = RUNBOOK_DIR + "/",
                     alerts_topic: str = ALERTS_TOPIC) -> list[dict]:
    taken = {r["alert"]: "the pipeline alert" for g in pipeline_groups() for r in g["rules"]}
    alerts = []
    for name, rule in rules.items():
        if not rule.enabled:
            continue
        alert = alert_name(name)
        if alert in taken:
            raise ValueError(f"alert rule {name!r}: its alert name {alert} is already {taken[alert]}; rename the rule")
        taken[alert] = f"that of rule {name!r}"
        alerts.append(kpi_alert(name, rule, runbook_base, alerts_topic))
    return [{"name": "floorwatch-kpi-alerts", "rules": alerts}]


def rule_files(rules: dict[str, AlertRule] | None = None, runbook_base: str = RUNBOOK_DIR + "/",
               alerts_topic: str = ALERTS_TOPIC, source: str = "DEFAULT_RULES in streams/alert_rules.py"
               ) -> dict[str, str]:
    """File name -> YAML text of the three rule files."""
    rules = DEFAULT_RULES if rules is None else rules
    command = "python -m streams.prometheus_rules"
    return {
        RECORDING_FILE: render(recording_groups(), f"Recording rules of Floorwatch; generated by `{command}`."),
        KPI_ALERTS_FILE: render(kpi_alert_groups(rules, runbook_base, alerts_topic),
                                f"SLA alerts from {source}; generated by `{command}`."),
        PIPELINE_FILE: render(pipeline_groups(runbook_base),
                              f"Pipeline-health alerts of Floorwatch; generated by `{command}`."),
    }


# -- YAML ---------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*|[0-9]+(?:ms|s|m|h)(?:[0-9]+(?:ms|s|m|h))*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    if "'" not in text and text.isprintable():
        return f"'{text}'"                          # PromQL's double quotes stay readable
    return json.dumps(text, ensure_ascii=False)   # a JSON string is a YAML double-quoted scalar


def to_yaml(node, indent: int = 0) -> list[str]:
    """Lines of YAML for maps, lists of maps and strings (multi-line strings as literal blocks)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                lines.append(f"{pad}{key}:")
                lines += to_yaml(value, indent + 2)
            elif "\n" in value:
                lines.append(f"{pad}{key}: |-")
                lines += [f"{pad}  {line}" if line else "" for line in value.split("\n")]
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    else:
        for item in node:
            inner = to_yaml(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2:]}")
            lines += inner[1:]
    return lines


def render(groups: list[dict], header: str) -> str:
    return f"# {header} Do not edit.\n" + "\n".join(to_yaml({"groups": groups})) + "\n"


# -- CLI ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.prometheus_rules", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="site TOML: its [alerts.rules] on top of the defaults (default: the "
                                         "defaults only, as committed)")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / RULES_DIR,
                        help=f"where the rule files go (default: {RULES_DIR})")
    parser.add_argument("--runbook-base-url", default=RUNBOOK_DIR + "/",
                        help=f"prefix of the runbook_url annotations (default: the repository path {RUNBOOK_DIR}/; "
                             "e.g. https://git.example.com/floorwatch/blob/main/deploy/runbooks/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs")
    args = parser.parse_args(argv)
    rules, topic, source = None, ALERTS_TOPIC, "DEFAULT_RULES in streams/alert_rules.py"
    if args.config:
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        rules, topic, source = settings.alerts.active(), settings.topics.alerts, f"the alert rules of {args.config}"
    base = args.runbook_base_url if args.runbook_base_url.endswith("/") else args.runbook_base_url + "/"
    try:
        files = rule_files(rules, base, topic, source)
    except ValueError as exc:
        print(f"prometheus_rules: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, text in files.items():
        path = args.output_dir / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print("stale (run python -m streams.prometheus_rules): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
