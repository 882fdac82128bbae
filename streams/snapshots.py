"""Queue snapshots: per-partition partial figures, merged per queue, published with revisions.

Queue figures are spread over the partitions of the internal events topic (contacts are keyed by
contact, agents by agent), so no worker sees a whole queue. Every few seconds each worker sends, per
owned partition and queue, the partition's *absolute* partial figures (`partition_partials`) to the
internal topic `<app_id>-queue-partials`, keyed by queue. One worker owns each queue there; it keeps
the latest partial of every partition in a table record (`merge`: absolute values, so a repeated or
replayed partial changes nothing) and publishes the sum as `models.snapshots.QueueSnapshot` records
(`publish`) whenever a window's figures change: open windows every few seconds while they change,
an interval once more when it closes (`final`), and again with a higher revision when late events
change it afterwards (`correction`).

Queue-level figures that are not sums (service level of the configured formula, estimated wait,
Erlang C required agents, staffing gap) are computed here from the merged figures and exported by
the queue's owner only (`QueueLevelCollector`), so there is one series per queue across workers.

Pure: no Faust, no Kafka.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import fields

import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from models.alerts import AlertEvent, AlertScope
from models.snapshots import QueueKpis, QueueNow, QueueSnapshot, WindowBounds
from streams.alert_rules import AlertKpi, AlertRule
from streams.alerts import Evaluator, Reading, state_key
from streams.config import ServiceLevelFormula
from streams.exposition import BY_NAME, QUEUE_LEVEL_METRICS
from streams.kpi import erlang
from streams.kpi.queues import QueueCounters
from streams.kpi.windows import SiteClock
from streams.partition import PartitionState

# The KPIs the queue owner evaluates (streams.app `_queues`): per queue and channel, and per queue and
# ticket priority; the per-contact and per-ticket ones are the partitions' (streams.partition).
QUEUE_CHANNEL_KPIS = frozenset({AlertKpi.service_level, AlertKpi.abandon_rate, AlertKpi.asa_seconds,
                                AlertKpi.oldest_wait_seconds, AlertKpi.waiting_contacts, AlertKpi.agents_available})
QUEUE_TICKET_KPIS = frozenset({AlertKpi.ticket_first_response_breaches, AlertKpi.ticket_resolution_breaches,
                               AlertKpi.tickets_at_risk})
QUEUE_KPIS = QUEUE_CHANNEL_KPIS | QUEUE_TICKET_KPIS

FIELDS = tuple(f.name for f in fields(QueueCounters))
ROLLING = (15, 60)          # minutes: arrival rate (15) and AHT (60) for the staffing figures
_AGENT_STATES = ("online", "available", "on_contact", "acw", "not_ready", "chat_capacity")


def _values(counters: QueueCounters) -> list[int]:
    return [getattr(counters, name) for name in FIELDS]


def _sum(rows: list[list[int]]) -> QueueCounters:
    return QueueCounters(*(sum(column) for column in zip(*rows, strict=True)))


# -- per partition ---------------------------------------------------------------------------------

def partition_partials(state: PartitionState) -> dict[str, dict]:
    """The partition's partial figures per queue, at its watermark; clears `state.touched_windows`.

    {"wm": ms, "w": {channel: {window key: counters}}, "waiting": {channel: [n, oldest µs]},
    "agents": [online, available, on_contact, acw, not_ready, chat capacity]}. Window keys:
    "interval:<start ms>" (the current and previous interval and any touched since the last call),
    "today:<day start ms>", "rolling_15m", "rolling_60m"."""
    wm = state.watermark_ms
    if wm is None:
        return {}
    clock = state.config.clock
    wanted = {clock.interval_start(wm), clock.previous_interval_start(wm)}
    touched = state.touched_windows
    today = clock.day_start(wm)
    result: dict[str, dict] = defaultdict(lambda: {"wm": wm, "w": defaultdict(dict), "waiting": {}, "agents": None})
    for (queue, channel, start), counters in state.queues.intervals.items():
        if start in wanted or (queue, channel, start) in touched:
            result[queue]["w"][channel][f"interval:{start}"] = _values(counters)
    for (queue, channel, day), counters in state.queues.days.items():
        if day == today:
            result[queue]["w"][channel][f"today:{day}"] = _values(counters)
    for minutes in ROLLING:
        buckets = clock.rolling_window_buckets(wm, minutes)
        summed: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
        for (queue, channel, start), counters in state.queues.buckets.items():
            if start in buckets:
                summed[(queue, channel)].append(_values(counters))
        for (queue, channel), rows in summed.items():
            result[queue]["w"][channel][f"rolling_{minutes}m"] = _values(_sum(rows))
    waiting: dict[tuple[str, str], list[int]] = defaultdict(list)
    for segments in state.waiting.values():
        for queue, channel, enqueued_us in segments:
            waiting[(queue, channel)].append(enqueued_us)
    for (queue, channel), enqueued in waiting.items():
        result[queue]["waiting"][channel] = [len(enqueued), min(enqueued)]
    # The partition's ledger of agents now (O(scopes); equal to `agents_now` over every agent at the
    # watermark, tests/test_partition.py): a walk over all agents here blocked the engine's loop.
    for (kind, name), now in state.open_agents.now.items():
        if kind == "queue" and now.online > 0:
            result[name]["agents"] = [now.online, now.available, now.on_contact, now.acw, now.not_ready,
                                      now.chat_capacity]
    _ticket_partials(state, wm, result)
    touched.clear()
    return {queue: {**part, "w": dict(part["w"])} for queue, part in result.items()}


def _ticket_partials(state: PartitionState, wm: int, result: dict) -> None:
    """Per queue, "t": {priority: {window key: [first-response breaches, resolution breaches],
    "risk": tickets at risk now (first response and resolution counted apart)}}: what the queue
    owner's ticket alert rules read (current interval, today, rolling 15 and 60 min)."""
    clock = state.config.clock
    tickets: dict[tuple[str, str], dict] = defaultdict(dict)
    for label, table, start in (("interval_current", state.tickets.intervals, clock.interval_start(wm)),
                                ("today", state.tickets.days, clock.day_start(wm))):
        for (queue, priority, at), c in table.items():
            if at == start:
                tickets[(queue, priority)][label] = [c.first_response_breached, c.resolution_breached]
    for minutes in ROLLING:
        buckets = clock.rolling_window_buckets(wm, minutes)
        for (queue, priority, start), c in state.tickets.buckets.items():
            if start in buckets:
                row = tickets[(queue, priority)].setdefault(f"rolling_{minutes}m", [0, 0])
                row[0] += c.first_response_breached
                row[1] += c.resolution_breached
    rules, now_us = state.config.ticket_rules, wm * 1000
    for ticket in state.open_tickets.values():
        now = ticket.now(now_us, rules)
        if now is not None and (now.at_risk_first_response or now.at_risk_resolution):
            entry = tickets[(now.queue, now.priority)]
            entry["risk"] = entry.get("risk", 0) + now.at_risk_first_response + now.at_risk_resolution
    for (queue, priority), entry in tickets.items():
        result[queue].setdefault("t", {})[priority] = entry


# -- per queue: merge and publish ------------------------------------------------------------------

def merge(record: dict | None, partition: int, partial: dict, clock: SiteClock) -> dict:
    """The queue's record with one partition's latest partial in it (older intervals pruned)."""
    record = record or {"parts": {}, "rev": {}, "sent": {}, "final": []}
    part = record["parts"].setdefault(str(partition), {"wm": 0, "w": {}, "waiting": {}, "agents": None})
    if partial["wm"] < part["wm"]:
        return record  # an older partial delivered again: keep the newer one
    part["wm"] = partial["wm"]
    for channel, windows in partial["w"].items():
        kept = part["w"].setdefault(channel, {})
        for key in [k for k in kept if not k.startswith("interval:")]:
            del kept[key]  # today / rolling: the partial's value replaces them (or they are gone)
        kept.update(windows)
    for channel in part["w"]:
        if channel not in partial["w"]:
            part["w"][channel] = {k: v for k, v in part["w"][channel].items() if k.startswith("interval:")}
    part["waiting"] = partial["waiting"]
    part["agents"] = partial["agents"]
    part["t"] = partial.get("t", {})
    since = clock.retained_since(max(p["wm"] for p in record["parts"].values()))
    for p in record["parts"].values():
        for windows in p["w"].values():
            for key in [k for k in windows if k.startswith("interval:") and int(k[9:]) < since]:
                del windows[key]
    for table in ("rev", "sent"):
        for key in [k for k in record[table] if "|interval:" in k and int(k.split(":")[1]) < since]:
            del record[table][key]
    record["final"] = [k for k in record["final"] if int(k.split(":")[1]) >= since]
    return record


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else numerator / denominator


def queue_now(record: dict, queue: str, channel: str, windows: dict[str, QueueCounters], settings,
              wm: int) -> QueueNow:
    parts = record["parts"].values()
    waiting = [p["waiting"][channel] for p in parts if channel in p["waiting"]]
    count = sum(n for n, _ in waiting)
    oldest = min((o for _, o in waiting), default=None)
    agents = [sum(column) for column in zip(*(p["agents"] for p in parts if p["agents"]), strict=True)] \
        or [0] * len(_AGENT_STATES)
    online, available, on_contact, acw, not_ready, chat_capacity = agents
    rules = settings.queue(queue, channel)
    recent = windows.get("rolling_60m")
    aht = recent.aht_s if recent is not None else None
    serving = available + on_contact + acw
    ewt = None if aht is None or serving <= 0 else (count + 1) * aht / serving
    required = gap = None
    arrivals = windows.get("rolling_15m")
    if aht and arrivals is not None and arrivals.offered > 0:
        concurrency = chat_capacity / online if channel == "chat" and online and chat_capacity else 1.0
        required = erlang.required_agents(arrivals.offered / (15 * 60), aht, rules.threshold_s, rules.sl_target,
                                          concurrency=max(1.0, concurrency))
        gap = erlang.staffing_gap(required, available, on_contact)
    return QueueNow(waiting=count, oldest_wait_s=None if oldest is None else max(0, wm * 1000 - oldest) / 1e6,
                    agents_online=online, agents_available=available, agents_on_contact=on_contact,
                    agents_acw=acw, agents_not_ready=not_ready, estimated_wait_s=ewt,
                    required_agents=required, staffing_gap=gap)


def kpis(c: QueueCounters, rules) -> QueueKpis:
    formula = ServiceLevelFormula(rules.sl_formula)
    return QueueKpis(
        offered=c.offered, answered=c.answered, abandoned=c.abandoned, short_abandoned=c.short_abandoned,
        flowed_out=c.flowed_out, answered_within_threshold=c.answered_within_sl,
        abandoned_within_threshold=c.abandoned_within_sl, transferred=c.transferred, handled=c.handled,
        held=c.held, service_level=c.service_level(formula), service_level_formula=formula.value,
        service_level_target=rules.sl_target, service_level_threshold_s=rules.threshold_s,
        service_level_by_formula={f.value: c.service_level(f) for f in ServiceLevelFormula},
        asa_s=c.asa_s, average_abandon_time_s=c.average_abandon_time_s,
        abandon_rate=c.abandon_rate(rules.abandon_rate_excludes_short), aht_s=c.aht_s,
        average_talk_s=c.average_talk_s, average_hold_s=c.average_hold_s, average_acw_s=c.average_acw_s,
        hold_rate=c.hold_rate, transfer_rate=c.transfer_rate)


def merged_channels(record: dict) -> Iterator[tuple[str, dict[str, QueueCounters]]]:
    """(channel, window key -> counters summed over the partitions) of every channel in the record."""
    parts = list(record["parts"].values())
    channels = sorted({c for p in parts for c in p["w"]} | {c for p in parts for c in p["waiting"]})
    for channel in channels:
        rows: dict[str, list[list[int]]] = defaultdict(list)
        for p in parts:
            for key, values in p["w"].get(channel, {}).items():
                rows[key].append(values)
        yield channel, {key: _sum(values) for key, values in rows.items()}


def watermark(record: dict) -> int | None:
    """The newest watermark of the record's partitions (its evaluation time)."""
    return max((p["wm"] for p in record["parts"].values()), default=None)


def _windows(record: dict, queue: str, settings, clock: SiteClock) -> Iterator[tuple]:
    """(slot, digest, final, snapshot fields) of every window in the record, at its newest watermark."""
    wm = watermark(record)
    if wm is None:
        return
    site = settings.site.name
    for channel, merged in merged_channels(record):
        rules = settings.queue(queue, channel)
        now = queue_now(record, queue, channel, merged, settings, wm)
        for key, counters in sorted(merged.items()):
            kind, _, start = key.partition(":")
            if kind == "interval":
                start_ms = int(start)
                bounds = WindowBounds(kind="interval", start_ms=start_ms, end_ms=clock.interval_end(start_ms))
            elif kind == "today":
                start_ms = int(start)
                bounds = WindowBounds(kind="today", start_ms=start_ms, end_ms=clock.day_end(start_ms))
            else:
                end = clock.sub_bucket(wm) + clock.sub_bucket_ms
                bounds = WindowBounds(kind=kind, start_ms=end - int(kind[8:-1]) * 60_000, end_ms=end)
            final = not kind.startswith("rolling") and wm >= bounds.end_ms
            body = (kpis(counters, rules), None if final else now)
            digest = hashlib.blake2b(orjson.dumps([_values(counters), final, body[1].model_dump() if body[1] else None]),
                                     digest_size=8).hexdigest()
            yield (f"{channel}|{key}", digest, final,
                   dict(site=site, queue=queue, channel=channel, window=bounds, final=final, watermark_ms=wm,
                        kpis=body[0], now=body[1]))


def publish(record: dict, queue: str, settings, clock: SiteClock) -> list[QueueSnapshot]:
    """Snapshots of the windows whose figures changed since last published; updates the record's
    revisions (write the record back with them)."""
    out: list[QueueSnapshot] = []
    for slot, digest, final, fields_ in _windows(record, queue, settings, clock):
        if record["sent"].get(slot) == digest:
            continue
        was_final = slot in record["final"]
        record["sent"][slot] = digest
        record["rev"][slot] = revision = record["rev"].get(slot, 0) + 1
        if final and not was_final:
            record["final"].append(slot)
        out.append(QueueSnapshot(revision=revision, correction=final and was_final, **fields_))
    return out


def published(record: dict, queue: str, settings, clock: SiteClock) -> list[QueueSnapshot]:
    """The latest published snapshot of every window of a restored record, as `publish` last sent it
    (figures and revision): what a worker that takes over the queue exports until the figures change,
    since `publish` sends nothing for windows whose figures the record says were already sent.
    Windows never published (no revision yet) are left to the next `publish`."""
    out = []
    for slot, digest, final, fields_ in _windows(record, queue, settings, clock):
        revision = record["rev"].get(slot)
        if revision is not None and record["sent"].get(slot) == digest:
            out.append(QueueSnapshot(revision=revision, correction=False, **fields_))   # the flag is not kept
    return out


# -- Prometheus: queue-level figures, from the queues this worker owns ------------------------------

class LatestSnapshots:
    """The latest snapshot per (queue, channel, window) this worker published, labelled for metrics."""

    def __init__(self, clock: SiteClock) -> None:
        self.clock = clock
        self.by_window: dict[tuple[str, str, str], QueueSnapshot] = {}

    def remember(self, snap: QueueSnapshot) -> None:
        key = f"interval:{snap.window.start_ms}" if snap.window.kind == "interval" else snap.window.kind
        self.by_window[(snap.queue, snap.channel, key)] = snap
        if snap.window.kind == "interval":  # keep the current and the previous interval only
            keep_from = self.clock.previous_interval_start(snap.watermark_ms)
            for k in [k for k, v in self.by_window.items() if k[:2] == (snap.queue, snap.channel)
                      and v.window.kind == "interval" and v.window.start_ms < keep_from]:
                del self.by_window[k]

    def labelled(self, owns: Callable[[str], bool] = lambda queue: True) -> dict[tuple[str, str, str], QueueSnapshot]:
        """By (queue, channel, window label) for the queues `owns` accepts; intervals are labelled
        interval_current / interval_previous relative to the queue's newest watermark."""
        newest: dict[tuple[str, str], int] = defaultdict(int)
        for (queue, channel, _), snap in self.by_window.items():
            newest[(queue, channel)] = max(newest[(queue, channel)], snap.watermark_ms)
        result = {}
        for (queue, channel, key), snap in self.by_window.items():
            if not owns(queue):
                continue
            if snap.window.kind == "interval":
                wm = newest[(queue, channel)]
                key = {self.clock.interval_start(wm): "interval_current",
                       self.clock.previous_interval_start(wm): "interval_previous"}.get(snap.window.start_ms)
                if key is None:
                    continue
            result[(queue, channel, key)] = snap
        return result


class QueueLevelCollector(Collector):
    """Gauges that are not sums over partitions, one series per queue (exported by its owner)."""

    def __init__(self, latest: Callable[[], dict[tuple[str, str, str], QueueSnapshot]]) -> None:
        self.latest = latest   # (queue, channel, window label) -> latest snapshot

    def describe(self) -> Iterator:
        return iter(())

    def collect(self) -> Iterator:
        families = {name: GaugeMetricFamily(name, BY_NAME[name].help, labels=BY_NAME[name].labels)
                    for name in QUEUE_LEVEL_METRICS}
        for (queue, channel, window), snap in sorted(self.latest().items()):
            sl = snap.kpis.service_level
            if sl is not None:
                families["floorwatch_queue_window_service_level_ratio"].add_metric([queue, channel, window], sl)
            if window == "interval_current" and snap.now is not None:
                now = snap.now
                for name, value in (("floorwatch_queue_estimated_wait_seconds", now.estimated_wait_s),
                                    ("floorwatch_queue_required_agents", now.required_agents),
                                    ("floorwatch_queue_staffing_gap_agents", now.staffing_gap)):
                    if value is not None:
                        families[name].add_metric([queue, channel], value)
        yield from families.values()



# -- alerts: the queue rules on the merged figures --------------------------------------------------

def _window_key(window: str, wm: int, clock: SiteClock) -> str:
    if window == "interval_current":
        return f"interval:{clock.interval_start(wm)}"
    if window == "today":
        return f"today:{clock.day_start(wm)}"
    return window   # rolling_15m, rolling_60m


def queue_readings(kpi: AlertKpi, counters: QueueCounters | None, now: QueueNow,
                   rules) -> tuple[float | None, int, float]:
    """(value, volume, the queue's target for the KPI) of a queue KPI (`QUEUE_KPIS`) from the merged
    window (`counters`) and the queue now."""
    c = counters or QueueCounters()
    target = rules.sl_target if kpi is AlertKpi.service_level else rules.asa_target
    if kpi is AlertKpi.service_level:
        value, volume = c.service_level(rules.sl_formula), c.offered
    elif kpi is AlertKpi.abandon_rate:
        value, volume = c.abandon_rate(rules.abandon_rate_excludes_short), c.offered
    elif kpi is AlertKpi.asa_seconds:
        value, volume = c.asa_s, c.answered
    elif kpi is AlertKpi.oldest_wait_seconds:
        value, volume = now.oldest_wait_s or 0.0, now.waiting
    elif kpi is AlertKpi.waiting_contacts:
        value, volume = float(now.waiting), now.waiting
    elif kpi is AlertKpi.agents_available:
        value, volume = float(now.agents_available), now.waiting
    else:
        raise ValueError(f"{kpi.value} is not a queue KPI")
    return value, volume, target


def queue_alerts(record: dict, queue: str, settings, clock: SiteClock, rules: dict[str, AlertRule]) -> list[AlertEvent]:
    """Evaluate the queue rules on the record's merged figures at its watermark; the rules' states
    live in `record["alerts"]` (written back with the record). Returns the alert events."""
    wm = watermark(record)
    if wm is None:
        return []
    evaluator = Evaluator(record.setdefault("alerts", {}), settings.site.name)
    observed: set[str] = set()
    for channel, merged in merged_channels(record):
        queue_rules = settings.queue(queue, channel)
        now = queue_now(record, queue, channel, merged, settings, wm)
        for name, rule in rules.items():
            if rule.kpi not in QUEUE_CHANNEL_KPIS or not rule.covers(queue, channel):
                continue
            value, volume, target = queue_readings(rule.kpi, merged.get(_window_key(rule.window, wm, clock)), now,
                                                   queue_rules)
            scope = AlertScope(queue=queue, channel=channel)
            evaluator.observe(name, rule, scope, Reading(value, volume, *rule.thresholds(target)), wm)
            observed.add(state_key(name, scope))
    # per priority: window label -> [first-response breaches, resolution breaches], "risk" -> [at risk]
    tickets: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for part in record["parts"].values():
        for priority, entry in part.get("t", {}).items():
            for key, value in entry.items():
                row = tickets[priority][key]
                for i, n in enumerate(value if isinstance(value, list) else [value]):
                    row[i] += n
    for priority, entry in sorted(tickets.items()):
        for name, rule in rules.items():
            if rule.kpi not in QUEUE_TICKET_KPIS or not rule.covers_ticket(queue, priority):
                continue
            if rule.kpi is AlertKpi.tickets_at_risk:
                value = entry["risk"][0]
            else:
                value = entry[rule.window][rule.kpi is AlertKpi.ticket_resolution_breaches]
            scope = AlertScope(queue=queue, priority=priority)
            evaluator.observe(name, rule, scope, Reading(float(value), 0, *rule.thresholds(None)), wm)
            observed.add(state_key(name, scope))
    evaluator.forget_unobserved(observed, rules, wm)
    return evaluator.events
