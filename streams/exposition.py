"""KPI metrics built at scrape time from the partitions this worker actively owns.

Every windowed value and every "now" count is additive over partitions (counts, sums of seconds,
agents), so a partition counts in exactly one worker and `sum by (queue)` over all workers is right,
also after a rebalance: a revoked partition's state is dropped before the new owner exports it. The
exceptions say so in their HELP: configuration gauges (target, threshold) and the oldest wait are
repeated per worker (take `max`), its start time takes `min`. Ratios are left to PromQL
(`sum(met) / sum(eligible)`); the service-level numerator and denominator are exported for each
queue's configured formula, because PromQL cannot know which formula a queue uses.

Windows are evaluated at the worker's watermark (the newest event time it has applied), so they are
event-time windows: `interval_current` / `interval_previous` are the site-clock intervals containing
and preceding it, `today` starts at local midnight, `rolling_<m>m` are trailing windows of event-time
sub-buckets.

`METRICS` is the single source of names, types, labels and help: `docs/metrics.md` is generated
from it (`python -m streams.docs`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from operator import attrgetter

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from streams.kpi.agents import AgentWindow
from streams.kpi.queues import QueueCounters
from streams.kpi.quality import QualityCounters
from streams.kpi.tickets import TicketCounters
from streams.partition import AGENT_SCOPES, PartitionState

WINDOW_HELP = ("window: interval_current / interval_previous (site-clock intervals at the watermark), "
               "today (since local midnight), rolling_<m>m (trailing, event time)")


@dataclass(frozen=True)
class Metric:
    name: str
    labels: tuple[str, ...]
    help: str
    kind: str = "gauge"


def _m(name: str, labels: str, help_text: str) -> Metric:
    return Metric(name, tuple(labels.split()), help_text)


QUEUE_KINDS = ("offered", "answered", "abandoned", "short_abandoned", "flowed_out", "answered_within_threshold",
               "abandoned_within_threshold", "transferred", "handled", "held")
METRICS: tuple[Metric, ...] = (
    _m("floorwatch_queue_window_contacts", "queue channel window kind",
       "Contacts per queue segment in the window, by kind: offered (at enqueue), answered/abandoned/flowed_out "
       "(at that time), short_abandoned (wait below the queue's short-abandon time), answered_within_threshold / "
       "abandoned_within_threshold (wait <= the queue's service-level threshold), transferred, handled and held "
       "(at ACW completion)."),
    _m("floorwatch_queue_window_wait_seconds", "queue channel window outcome",
       "Sum of waits (enqueue to answer or abandon) in the window, in seconds; ASA = this / timed_contacts."),
    _m("floorwatch_queue_window_timed_contacts", "queue channel window outcome",
       "Answered or abandoned contacts whose enqueue time is known (the denominator of ASA and average abandon time)."),
    _m("floorwatch_queue_window_handle_seconds", "queue channel window part",
       "Handle time of the contacts handled in the window, by part (talk, hold, acw), in seconds; "
       "AHT = sum of parts / handled contacts."),
    _m("floorwatch_queue_window_service_level_met_contacts", "queue channel window",
       "Numerator of the queue's configured service-level formula in the window."),
    _m("floorwatch_queue_window_service_level_eligible_contacts", "queue channel window",
       "Denominator of the queue's configured service-level formula in the window; "
       "service level = sum(met) / sum(eligible)."),
    _m("floorwatch_queue_window_abandon_rate_abandoned_contacts", "queue channel window",
       "Numerator of the abandon rate as configured for the queue (short abandons left out unless configured)."),
    _m("floorwatch_queue_window_abandon_rate_offered_contacts", "queue channel window",
       "Denominator of the abandon rate as configured for the queue."),
    _m("floorwatch_queue_service_level_target_ratio", "queue channel",
       "Configured service-level target (0..1) of the queues seen (the same on every worker: take max, not sum)."),
    _m("floorwatch_queue_service_level_threshold_seconds", "queue channel",
       "Configured service-level threshold T of the queues seen, in seconds (the same on every worker: take max)."),
    _m("floorwatch_queue_asa_target_seconds", "queue channel",
       "Configured ASA target of the queues seen, in seconds (asa_target_s, by default the service-level "
       "threshold; the same on every worker: take max)."),
    _m("floorwatch_queue_waiting_contacts", "queue channel",
       "Contacts waiting in the queue now (enqueued, not yet answered, abandoned or flowed out). "
       "channel=\"callback\": callbacks pending."),
    _m("floorwatch_queue_in_progress_contacts", "queue channel",
       "Contacts being handled now: from their last answer (in this queue) until the ACW that follows completes."),
    _m("floorwatch_queue_oldest_wait_seconds", "queue channel",
       "Wait of the longest-waiting contact at the watermark, in seconds (take max over workers)."),
    _m("floorwatch_queue_oldest_wait_start_timestamp_seconds", "queue channel",
       "Enqueue time of the longest-waiting contact (Unix seconds; take min over workers; time() - this is its "
       "wait in wall-clock time)."),
    _m("floorwatch_agents", "scope name state",
       "Agents by current state (available, not_ready, on_contact, acw; offline agents are left out), per scope: "
       "queue (each skill), team, center."),
    _m("floorwatch_agents_not_ready", "scope name reason",
       "Agents in not_ready now, by reason (\"none\" when the source gives none)."),
    _m("floorwatch_agents_chat_capacity_slots", "scope name",
       "Sum of the chat capacity of the agents online now."),
    _m("floorwatch_agents_chat_occupied_slots", "scope name",
       "Chat slots occupied now by the online agents of the scope (a chat holds a slot of its agent from the answer "
       "until ACW completes or it is transferred); chat utilization = occupied / capacity."),
    _m("floorwatch_agent_window_state_seconds", "scope name window state",
       "Agent time per state in the window, in seconds, the running stretch included up to the watermark; "
       "occupancy = (on_contact + acw) / (on_contact + acw + available). window: interval_current, "
       "interval_previous, today."),
    _m("floorwatch_ticket_window_tickets", "queue priority window kind",
       "Tickets in the window by kind: created, first_responses (at the reply), solved, reopened, "
       "first_response_breached / resolution_breached (at the due time, once passed)."),
    _m("floorwatch_ticket_window_first_response_seconds", "queue priority window",
       "Sum of first-response times of the first responses in the window, in seconds."),
    _m("floorwatch_ticket_window_resolution_seconds", "queue priority window",
       "Sum of resolution times (pauses excluded as configured) of the tickets solved in the window, in seconds."),
    _m("floorwatch_tickets_open", "queue priority age",
       "Unsolved tickets now (backlog) by age since creation: <1h, 1-4h, 4-24h, 1-3d, >3d."),
    _m("floorwatch_tickets_at_risk", "queue priority target",
       "Unsolved tickets whose first_response or resolution target falls due within the warning lead."),
    _m("floorwatch_quality_window_surveys", "queue window kind",
       "Survey responses in the window (at response time), by kind: csat, csat_satisfied (4-5), nps, "
       "nps_promoter (9-10), nps_detractor (0-6). CSAT = csat_satisfied / csat; NPS = 100 * (promoter - "
       "detractor) / nps. queue \"none\" when the survey has no queue."),
    _m("floorwatch_quality_window_csat_score_points", "queue window",
       "Sum of CSAT scores (1-5) in the window; mean CSAT = this / csat responses."),
    _m("floorwatch_quality_window_contacts", "queue window kind",
       "Handled contacts at ACW completion, by kind: fcr_resolved, fcr_flagged (resolved flag set, true or false), "
       "fcr_unflagged (disposition FCR = fcr_resolved / fcr_flagged); repeat_reported (the customer's repeat window "
       "has elapsed), repeat_fcr (no other contact or ticket of the customer started in it), repeat_pending "
       "(window still open), repeat_unknown_customer. Repeat FCR = repeat_fcr / repeat_reported."),
    _m("floorwatch_queue_window_service_level_ratio", "queue channel window",
       "Service level (0..1) of the queue's configured formula in the window, over all partitions; exported "
       "by the worker owning the queue's snapshots (one series per queue), absent while the denominator is empty. "
       "window: interval_current, interval_previous, today, rolling_15m, rolling_60m."),
    _m("floorwatch_queue_estimated_wait_seconds", "queue channel",
       "Estimated wait of a contact arriving now: (waiting + 1) x rolling 60 min AHT / agents serving the queue "
       "(available + on contact + ACW). Exported by the queue's owner."),
    _m("floorwatch_queue_required_agents", "queue channel",
       "Erlang C agents needed to meet the SL target at the rolling 15 min arrival rate and rolling 60 min AHT "
       "(chat: AHT / average chat capacity). Exported by the queue's owner."),
    _m("floorwatch_queue_staffing_gap_agents", "queue channel",
       "Required agents - (available + on contact); positive means short-staffed. Exported by the queue's owner."),
    _m("floorwatch_window_start_timestamp_seconds", "window",
       "Start of each window at the watermark (Unix seconds). " + WINDOW_HELP),
    _m("floorwatch_watermark_timestamp_seconds", "",
       "Newest event time applied by this worker (Unix seconds); alert when it stops moving."),
    _m("floorwatch_partitions_owned", "",
       "Partitions of the internal events topic this worker actively owns (its KPI state)."),
    _m("floorwatch_state_records", "kind",
       "Entity records held in the owned partitions, by kind (contact, agent, ticket, customer)."),
)
BY_NAME = {m.name: m for m in METRICS}
# Not sums over partitions: built from the merged queue snapshots by the queue's owner
# (streams.snapshots.QueueLevelCollector), never by KpiCollector.
QUEUE_LEVEL_METRICS = ("floorwatch_queue_window_service_level_ratio", "floorwatch_queue_estimated_wait_seconds",
                       "floorwatch_queue_required_agents", "floorwatch_queue_staffing_gap_agents")


def _values_of(cls) -> Callable:
    """A fast getter of all fields of a flat dataclass, as a tuple (in field order)."""
    return attrgetter(*(f.name for f in fields(cls)))


def _add_agent(total: AgentWindow, part: AgentWindow) -> None:
    for state, us in part.state_us.items():
        total.state_us[state] += us
    for reason, us in part.not_ready_reason_us.items():
        total.not_ready_reason_us[reason] += us


class KpiCollector(Collector):
    """Prometheus collector over the owned partitions' state (see module doc)."""

    def __init__(self, owned: Callable[[], list[PartitionState]], settings) -> None:
        self.owned = owned
        self.settings = settings

    def describe(self) -> Iterator:
        return iter(())  # built at scrape time; nothing to describe up front

    def collect(self) -> Iterator:
        states = self.owned()
        families = {m.name: GaugeMetricFamily(m.name, m.help, labels=m.labels) for m in METRICS
                    if m.name not in QUEUE_LEVEL_METRICS}
        families["floorwatch_partitions_owned"].add_metric([], len(states))
        records: Counter[str] = Counter()
        for state in states:
            records.update(state.record_kinds)
        for kind in ("contact", "agent", "ticket", "customer"):
            families["floorwatch_state_records"].add_metric([kind], records.get(kind, 0))
        marks = [s.watermark_ms for s in states if s.watermark_ms is not None]
        if marks:
            now_ms = max(marks)
            families["floorwatch_watermark_timestamp_seconds"].add_metric([], now_ms / 1000)
            self._windows(states, now_ms, families)
        yield from families.values()

    # -- windows ----------------------------------------------------------------------------------

    def _windows(self, states: list[PartitionState], now_ms: int, families) -> None:
        clock = states[0].config.clock
        current = clock.interval_start(now_ms)
        previous = clock.previous_interval_start(now_ms)
        today = clock.day_start(now_ms)
        by_interval = {current: "interval_current", previous: "interval_previous"}
        rolling = {f"rolling_{m}m": clock.rolling_window_buckets(now_ms, m)
                   for m in self.settings.site.rolling_windows_minutes}
        starts = families["floorwatch_window_start_timestamp_seconds"]
        for name, start in (("interval_current", current), ("interval_previous", previous), ("today", today)):
            starts.add_metric([name], start / 1000)
        for name, buckets in rolling.items():
            starts.add_metric([name], buckets.start / 1000)

        def windowed(windows, factory, add=None, with_rolling=False) -> dict:
            """Counters per (labels..., window name), summed over partitions (and sub-buckets)."""
            parts: dict = defaultdict(list)
            for state in states:
                w = getattr(state, windows)
                for key, counters in w.intervals.items():
                    name = by_interval.get(key[-1])
                    if name is not None:
                        parts[(*key[:-1], name)].append(counters)
                for key, counters in w.days.items():
                    if key[-1] == today:
                        parts[(*key[:-1], "today")].append(counters)
                if with_rolling:
                    for key, counters in w.buckets.items():
                        for name, buckets in rolling.items():
                            if key[-1] in buckets:
                                parts[(*key[:-1], name)].append(counters)
            if add is not None:   # counters that are not flat dataclasses
                result: dict = defaultdict(factory)
                for key, rows in parts.items():
                    for counters in rows:
                        add(result[key], counters)
                return result
            values = _values_of(factory)   # flat dataclasses of ints: sum the columns in C
            return defaultdict(factory, {key: factory(*map(sum, zip(*map(values, rows))))
                                         for key, rows in parts.items()})

        self._queues(windowed("queues", QueueCounters, with_rolling=True), states, now_ms, families)
        agent_windows = windowed("agent_time", AgentWindow, add=_add_agent)
        self._agents(agent_windows, states, now_ms, by_interval, today, families)
        self._tickets(windowed("tickets", TicketCounters), states, now_ms, families)
        self._quality(windowed("quality", QualityCounters), families)

    def _queues(self, windows: dict, states, now_ms: int, families) -> None:
        contacts = families["floorwatch_queue_window_contacts"]
        waits = families["floorwatch_queue_window_wait_seconds"]
        timed = families["floorwatch_queue_window_timed_contacts"]
        handle = families["floorwatch_queue_window_handle_seconds"]
        met = families["floorwatch_queue_window_service_level_met_contacts"]
        eligible = families["floorwatch_queue_window_service_level_eligible_contacts"]
        ab_num = families["floorwatch_queue_window_abandon_rate_abandoned_contacts"]
        ab_den = families["floorwatch_queue_window_abandon_rate_offered_contacts"]
        seen_queues = set()
        for (queue, channel, window), c in sorted(windows.items()):
            seen_queues.add((queue, channel))
            labels = [queue, channel, window]
            values = (c.offered, c.answered, c.abandoned, c.short_abandoned, c.flowed_out, c.answered_within_sl,
                      c.abandoned_within_sl, c.transferred, c.handled, c.held)
            for kind, value in zip(QUEUE_KINDS, values, strict=True):
                contacts.add_metric([*labels, kind], value)
            waits.add_metric([*labels, "answered"], c.answered_wait_us / 1e6)
            waits.add_metric([*labels, "abandoned"], c.abandoned_wait_us / 1e6)
            timed.add_metric([*labels, "answered"], c.answered_with_wait)
            timed.add_metric([*labels, "abandoned"], c.abandoned_with_wait)
            for part, us in (("talk", c.talk_us), ("hold", c.hold_us), ("acw", c.acw_us)):
                handle.add_metric([*labels, part], us / 1e6)
            rules = self.settings.queue(queue, channel)
            numerator, denominator = c.service_level_terms(rules.sl_formula)
            met.add_metric(labels, numerator)
            eligible.add_metric(labels, denominator)
            if rules.abandon_rate_excludes_short:
                ab_num.add_metric(labels, c.abandoned - c.short_abandoned)
                ab_den.add_metric(labels, c.offered - c.short_abandoned)
            else:
                ab_num.add_metric(labels, c.abandoned)
                ab_den.add_metric(labels, c.offered)
        waiting: dict[tuple[str, str], list[int]] = defaultdict(list)
        for state in states:
            for segments in state.waiting.values():
                for queue, channel, enqueued_us in segments:
                    waiting[(queue, channel)].append(enqueued_us)
        now_us = now_ms * 1000
        handling: dict[tuple[str, str], int] = defaultdict(int)
        for state in states:
            for queue, channel, _ in state.handling.values():
                handling[(queue, channel)] += 1
        seen_queues.update(handling)
        for (queue, channel), n in sorted(handling.items()):
            families["floorwatch_queue_in_progress_contacts"].add_metric([queue, channel], n)
        for (queue, channel), enqueued in sorted(waiting.items()):
            seen_queues.add((queue, channel))
            oldest = min(enqueued)
            families["floorwatch_queue_waiting_contacts"].add_metric([queue, channel], len(enqueued))
            families["floorwatch_queue_oldest_wait_seconds"].add_metric(
                [queue, channel], max(0, now_us - oldest) / 1e6)
            families["floorwatch_queue_oldest_wait_start_timestamp_seconds"].add_metric([queue, channel], oldest / 1e6)
        for queue, channel in sorted(seen_queues):
            if (queue, channel) not in handling:
                families["floorwatch_queue_in_progress_contacts"].add_metric([queue, channel], 0)
            if (queue, channel) not in waiting:
                families["floorwatch_queue_waiting_contacts"].add_metric([queue, channel], 0)
                families["floorwatch_queue_oldest_wait_seconds"].add_metric([queue, channel], 0)
            rules = self.settings.queue(queue, channel)
            families["floorwatch_queue_service_level_target_ratio"].add_metric([queue, channel], rules.sl_target)
            families["floorwatch_queue_service_level_threshold_seconds"].add_metric([queue, channel], rules.threshold_s)
            families["floorwatch_queue_asa_target_seconds"].add_metric([queue, channel], rules.asa_target)

    def _agents(self, windows: dict, states, now_ms: int, by_interval, today: int, families) -> None:
        """Agent time (closed stretches from the windows, running ones from `OpenAgents` buckets) and
        agents now: O(scopes) per partition, whatever the number of agents."""
        now_us = now_ms * 1000
        clock = states[0].config.clock
        spans = [(name, start, clock.interval_end(start)) for start, name in by_interval.items()]
        spans.append(("today", today, clock.day_end(today)))
        for state in states:
            running = state.open_agents
            for group in running.starts:
                kind, name, state_name = group
                for window, start, end in spans:
                    us = running.running_us(group, start, end, now_us)
                    if us:
                        windows[(kind, name, window)].state_us[state_name] += us
        time_family = families["floorwatch_agent_window_state_seconds"]
        for (kind, name, window), w in sorted(windows.items()):
            if w.is_empty():
                continue
            for state_name in ("available", "not_ready", "on_contact", "acw", "offline"):
                time_family.add_metric([kind, name, window, state_name], w.state_us.get(state_name, 0) / 1e6)
        now: dict = defaultdict(lambda: [defaultdict(int), defaultdict(int), 0, 0])
        for state in states:
            for agent_key in state.legs:
                occupied = state.chat_occupied(agent_key, now_us)
                if occupied:
                    for kind, name in state.agents[agent_key].latest(now_us).scopes():
                        if kind in AGENT_SCOPES:
                            now[(kind, name)][3] += occupied
            for (kind, name), counts in state.open_agents.now.items():
                if counts.online <= 0:
                    continue
                row = now[(kind, name)]
                for state_name in ("available", "not_ready", "on_contact", "acw"):
                    row[0][state_name] += getattr(counts, state_name)
                for reason, n in counts.not_ready_by_reason.items():
                    if n:
                        row[1][reason or "none"] += n
                row[2] += counts.chat_capacity
        for (kind, name), (by_state, by_reason, capacity, occupied) in sorted(now.items()):
            for state_name in ("available", "not_ready", "on_contact", "acw"):
                families["floorwatch_agents"].add_metric([kind, name, state_name], by_state[state_name])
            for reason, n in sorted(by_reason.items()):
                families["floorwatch_agents_not_ready"].add_metric([kind, name, reason], n)
            families["floorwatch_agents_chat_capacity_slots"].add_metric([kind, name], capacity)
            families["floorwatch_agents_chat_occupied_slots"].add_metric([kind, name], occupied)

    def _tickets(self, windows: dict, states, now_ms: int, families) -> None:
        tickets = families["floorwatch_ticket_window_tickets"]
        for (queue, priority, window), c in sorted(windows.items()):
            labels = [queue, priority, window]
            for kind, value in (("created", c.created), ("first_responses", c.first_responses),
                                ("solved", c.solved), ("reopened", c.reopened),
                                ("first_response_breached", c.first_response_breached),
                                ("resolution_breached", c.resolution_breached)):
                tickets.add_metric([*labels, kind], value)
            families["floorwatch_ticket_window_first_response_seconds"].add_metric(labels, c.first_response_us / 1e6)
            families["floorwatch_ticket_window_resolution_seconds"].add_metric(labels, c.resolution_us / 1e6)
        now_us = now_ms * 1000
        backlog: dict = defaultdict(int)
        at_risk: dict = defaultdict(int)
        for state in states:
            rules = state.config.ticket_rules
            for ticket in state.open_tickets.values():
                now = ticket.now(now_us, rules)
                if now is None:
                    continue
                backlog[(now.queue, now.priority, now.age_bucket)] += 1
                at_risk[(now.queue, now.priority, "first_response")] += now.at_risk_first_response
                at_risk[(now.queue, now.priority, "resolution")] += now.at_risk_resolution
        for labels, n in sorted(backlog.items()):
            families["floorwatch_tickets_open"].add_metric(list(labels), n)
        for labels, n in sorted(at_risk.items()):
            families["floorwatch_tickets_at_risk"].add_metric(list(labels), n)

    def _quality(self, windows: dict, families) -> None:
        surveys = families["floorwatch_quality_window_surveys"]
        handled = families["floorwatch_quality_window_contacts"]
        for (queue, window), c in sorted(windows.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            labels = [queue or "none", window]
            for kind, value in (("csat", c.csat_responses), ("csat_satisfied", c.csat_satisfied),
                                ("nps", c.nps_responses), ("nps_promoter", c.nps_promoters),
                                ("nps_detractor", c.nps_detractors)):
                surveys.add_metric([*labels, kind], value)
            families["floorwatch_quality_window_csat_score_points"].add_metric(labels, c.csat_score_sum)
            for kind, value in (("fcr_resolved", c.fcr_resolved), ("fcr_flagged", c.fcr_flagged),
                                ("fcr_unflagged", c.fcr_unflagged), ("repeat_reported", c.repeat_reported),
                                ("repeat_fcr", c.repeat_fcr), ("repeat_pending", c.repeat_pending),
                                ("repeat_unknown_customer", c.repeat_unknown_customer)):
                handled.add_metric([*labels, kind], value)


class _Only:
    """One metric family as a collector (for prometheus_client's own renderer)."""

    def __init__(self, family) -> None:
        self.family = family

    def collect(self):
        return [self.family]


def registry_text(registry) -> bytes:
    """`prometheus_client.generate_latest(registry)`, byte for byte, at about half its cost for gauges.

    Its sample formatting validates and escapes every label name of every sample (a third of a KPI
    rebuild); our label names are fixed identifiers, so only values are escaped here, as it does.
    Other families (counters, histograms) and samples with timestamps go through its renderer."""
    out: list[str] = []
    for family in registry.collect():
        if family.type != "gauge" or any(sample.timestamp is not None for sample in family.samples):
            out.append(generate_latest(_Only(family)).decode())
            continue
        name = family.name
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        for sample in family.samples:
            labels = sample.labels
            if labels:
                text = ",".join([f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items())])
                out.append(f"{sample.name}{{{text}}} {floatToGoString(sample.value)}\n")
            else:
                out.append(f"{sample.name} {floatToGoString(sample.value)}\n")
    return "".join(out).encode()


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


class CachedExposition:
    """The `/metrics` body: `live` collectors rendered on every scrape, `cached` ones (the KPIs, built
    from the whole state, tens of ms at a large site) rebuilt only when they can have changed.

    The scrape runs on the engine's event loop, so a probe polling every 20 ms that rebuilt every KPI
    each time starved the engine (bench.latency). The cached part is rebuilt when `version()` (bumped
    by the owner on every state change) moved and the body is at least `max_age_s` old, and at least
    every `refresh_s` anyway (Faust's own sensor metrics change without a state change). So a KPI is
    at most `max_age_s` older on `/metrics` than in the state."""

    def __init__(self, live, cached, version: Callable[[], int], max_age_s: float, refresh_s: float = 1.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.live, self.cached, self.version = live, cached, version
        self.max_age_s, self.refresh_s = max_age_s, refresh_s
        self.clock = clock or time.monotonic
        self._body: bytes | None = None
        self._built_version: int | None = None
        self._built_at = 0.0
        self.builds = 0

    def render(self) -> bytes:
        now, version = self.clock(), self.version()
        age = now - self._built_at
        if self._body is None or age >= self.refresh_s or (version != self._built_version and age >= self.max_age_s):
            self._body = registry_text(self.cached)
            self._built_version, self._built_at = version, now
            self.builds += 1
        return generate_latest(self.live) + self._body
