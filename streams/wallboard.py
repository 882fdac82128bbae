"""The built-in wallboard: `GET /wallboard` (one self-contained HTML page, `wallboard.html`) polls
`GET /wallboard.json` (`wallboard_data`) every few seconds and shows one tile per queue and channel.

The colours come from the SLA alert rules (`streams.alert_rules`), so that the board turns red when
the alert would: each KPI is read from the window its rule evaluates (rolling 15 min by default) and
is red past the rule's raise threshold, amber within `AMBER_MARGIN` of it, green otherwise, and
neutral below the rule's minimum volume (two calls at night colour nothing, as they raise nothing).

Data source: the worker's own latest queue snapshots (`Floorwatch._owned_latest`), i.e. the queues
whose snapshots this worker owns. One worker (the demo, a small floor) shows every queue; with several
workers each shows its own share, the same split as the queue-level gauges on /metrics. Reading the
whole snapshots topic in every worker would cost a consumer per worker and a replay of the topic at
start for a page that Grafana covers on larger floors.

Pure: no Faust, no Kafka. Nothing per agent or per customer reaches the page, only queue figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path

from models.snapshots import QueueNow, QueueSnapshot
from streams.alert_rules import DEFAULT_RULES, AlertKpi, AlertRule

PAGE_PATH = Path(__file__).with_name("wallboard.html")
POLL_S = 3             # the page asks for new figures this often
STALE_AFTER_S = 10     # no successful poll for this long: the page says its figures are stale


class Status(StrEnum):
    """A figure's colour on the board, worst last (a tile takes its worst figure's status)."""

    none = "none"      # no figure (empty window) or not graded (contacts waiting)
    quiet = "quiet"    # below the rule's minimum volume: too few contacts to judge
    green = "green"
    amber = "amber"
    red = "red"


_SEVERITY = {status: rank for rank, status in enumerate(Status)}

# Every tile figure with a colour: the alert rule (by name in DEFAULT_RULES or the configuration) whose
# thresholds colour it, and how close to the red threshold it turns amber, in the KPI's unit. The only
# thresholds of the board live here and in the rules.
GRADED = {
    "service_level": ("service_level_below_target", 0.05),   # amber within 5 points above the target
    "asa": ("asa_above_target", 5.0),                          # amber from 5 s below the ASA target
    "abandon_rate": ("abandon_rate_high", 0.03),               # amber from 7 % (red over 10 %)
    "oldest_wait": ("oldest_wait_long", 30.0),                 # amber over 90 s (red over 2 min)
    "agents_available": ("no_agents_available", 1.0),          # red at 0 while contacts wait, amber at 1
}
AMBER_MARGIN = {name: margin for name, (_, margin) in GRADED.items()}
WINDOW_TEXT = {"rolling_15m": "last 15 min", "rolling_60m": "last 60 min", "interval_current": "this interval",
               "today": "today"}
DASH = "\u2013"


def grade(rule: AlertRule, value: float | None, volume: int, target: float | None, margin: float) -> Status:
    """The colour of one figure under `rule` (its raise threshold resolved with the queue's `target`)."""
    if value is None:
        return Status.none
    if volume < rule.min_volume:
        return Status.quiet
    red = rule.thresholds(target)[0]
    if rule.breached(value, red):
        return Status.red
    # rounded: 0.8 + 0.05 is 0.8500000000000001 in floats, which made exactly 85 % amber
    amber = round(red + margin if rule.comparison == "<" else red - margin, 9)
    return Status.amber if rule.breached(value, amber) else Status.green


def worst(statuses) -> Status:
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.none)


def percent(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def duration(value: float | None) -> str:
    """Seconds as a wallboard reads them: 42s, 3:07, 1h05."""
    if value is None:
        return DASH
    s = round(value)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}h{s % 3600 // 60:02d}"


def _rule(rules: Mapping[str, AlertRule], name: str, queue: str, channel: str) -> AlertRule:
    """The configured rule of that name if it covers the queue, else the default one: a rule narrowed
    to other queues still leaves this queue a colour."""
    rule = rules.get(name)
    return rule if rule is not None and rule.covers(queue, channel) else DEFAULT_RULES[name]


def tile(queue: str, channel: str, windows: Mapping[str, QueueSnapshot], rules: Mapping[str, AlertRule],
         asa_target_s: float | None = None) -> dict:
    """One queue and channel's tile: every figure with its text, colour and window.

    `windows`: the queue and channel's latest snapshots by window label (interval_current, rolling_15m,
    ...). `asa_target_s`: the queue's ASA target (default: its service-level threshold, as in
    `QueueSettings.asa_target`)."""
    rule_of = {name: _rule(rules, rule_name, queue, channel) for name, (rule_name, _) in GRADED.items()}
    # "now" (waiting, agents) from the newest open window: closed intervals carry none
    open_windows = [s for s in windows.values() if s.now is not None]
    now: QueueNow | None = max(open_windows, key=lambda s: s.watermark_ms).now if open_windows else None
    metrics: dict[str, dict] = {}

    def windowed(name: str, kpi: AlertKpi, pick, text, volume_of) -> None:
        rule = rule_of[name]
        snap = windows.get(rule.window)
        value = volume = target = None
        if snap is not None:
            k = snap.kpis
            value, volume = pick(k), volume_of(k)
            target = k.service_level_target if kpi is AlertKpi.service_level else \
                (asa_target_s if asa_target_s is not None else k.service_level_threshold_s)
        status = grade(rule, value, volume or 0, target, AMBER_MARGIN[name])
        metrics[name] = {"value": value, "text": text(value), "status": status.value,
                         "window": WINDOW_TEXT.get(rule.window, rule.window)}
        if kpi in (AlertKpi.service_level, AlertKpi.asa_seconds) and target is not None:
            metrics[name]["target"] = target
            metrics[name]["target_text"] = percent(target) if kpi is AlertKpi.service_level else duration(target)

    windowed("service_level", AlertKpi.service_level, lambda k: k.service_level, percent, lambda k: k.offered)
    windowed("asa", AlertKpi.asa_seconds, lambda k: k.asa_s, duration, lambda k: k.answered)
    windowed("abandon_rate", AlertKpi.abandon_rate, lambda k: k.abandon_rate, percent, lambda k: k.offered)

    waiting = now.waiting if now is not None else None
    metrics["waiting"] = {"value": waiting, "text": DASH if waiting is None else str(waiting),
                          "status": Status.none.value}
    oldest = None if now is None else (now.oldest_wait_s or 0.0) if now.waiting else None
    metrics["oldest_wait"] = {"value": oldest, "text": duration(oldest), "status": grade(
        rule_of["oldest_wait"], oldest, waiting or 0, None, AMBER_MARGIN["oldest_wait"]).value}
    available = None if now is None else now.agents_available
    agents_status = grade(rule_of["agents_available"], None if available is None else float(available), waiting or 0,
                          None, AMBER_MARGIN["agents_available"])
    if agents_status is Status.quiet and available:   # agents free and nobody waiting: the good case
        agents_status = Status.green
    metrics["agents_available"] = {
        "value": available, "online": None if now is None else now.agents_online,
        "text": DASH if now is None else f"{now.agents_available} of {now.agents_online}",
        "status": agents_status.value}
    return {"queue": queue, "channel": channel,
            "status": worst(Status(m["status"]) for m in metrics.values()).value,
            "watermark_ms": max((s.watermark_ms for s in windows.values()), default=None),
            "metrics": metrics}


def wallboard_data(latest: Mapping[tuple[str, str, str], QueueSnapshot], rules: Mapping[str, AlertRule],
                   generated_ms: int, asa_target: Callable[[str, str], float] | None = None) -> dict:
    """What `GET /wallboard.json` returns: one tile per queue and channel, sorted, from the latest
    snapshots by (queue, channel, window label) (`LatestSnapshots.labelled`)."""
    by_scope: dict[tuple[str, str], dict[str, QueueSnapshot]] = {}
    for (queue, channel, label), snap in latest.items():
        by_scope.setdefault((queue, channel), {})[label] = snap
    tiles = [tile(queue, channel, windows, rules, asa_target(queue, channel) if asa_target else None)
             for (queue, channel), windows in sorted(by_scope.items())]
    service_level_window = _rule(rules, "service_level_below_target", "*", "*").window
    return {"generated_ms": generated_ms, "poll_s": POLL_S, "stale_after_s": STALE_AFTER_S,
            "service_level_window": WINDOW_TEXT.get(service_level_window, service_level_window),
            "tiles": tiles}


def page() -> str:
    """The wallboard page (read per request: small, and edits show without a restart)."""
    return PAGE_PATH.read_text(encoding="utf-8")
