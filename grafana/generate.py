"""Grafana dashboards of Floorwatch as code (grafana-foundation-sdk, Grafana 11.6).

    python grafana/generate.py            # writes grafana/dashboards/<uid>.json
    python grafana/generate.py --check    # exit 1 when a committed file is stale

Run by path: `grafana/` is a folder of dashboards and provisioning, not a Python package (a top-level
package named `grafana` could shadow, or be shadowed by, an installed distribution of that name; the SDK
itself imports as `grafana_foundation_sdk`).

Queries follow docs/metrics.md: additive gauges are summed over workers, configuration gauges and the
oldest wait take `max`; ratios are computed from summed numerators and denominators. Colours follow the
default alert rules (streams/alert_rules.py DEFAULT_RULES) for a queue with default settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run by path: make the repository importable without an installed floorwatch.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync, DataSourceRef, Threshold, ThresholdsMode, VariableOption, VariableRefresh, VariableSort)
from grafana_foundation_sdk.models.piechart import PieChartLegendValues, PieChartType

from streams.alert_rules import DEFAULT_RULES
from streams.config import QueueSettings

OUTPUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
# deploy/prometheus/prometheus.yml scrapes every 15 s: refreshing faster shows nothing new.
REFRESH = "15s"
SLOW_REFRESH = "1m"   # tickets and quality move in minutes

GREEN, AMBER, RED, BLUE = "green", "orange", "red", "blue"

# Threshold colours of a queue with default settings (voice, 80 % target, ASA target = 20 s threshold):
# a dashboard cannot colour each repeated queue by its own configured target.
_DEFAULT_QUEUE = QueueSettings()
SL_RAISE, SL_CLEAR = DEFAULT_RULES["service_level_below_target"].thresholds(_DEFAULT_QUEUE.sl_target)
SL_GAP_RAISE, SL_GAP_CLEAR = DEFAULT_RULES["service_level_below_target"].thresholds(0.0)
ABANDON_RAISE, ABANDON_CLEAR = DEFAULT_RULES["abandon_rate_high"].thresholds(None)
OLDEST_RAISE, OLDEST_CLEAR = DEFAULT_RULES["oldest_wait_long"].thresholds(None)
ASA_RAISE, ASA_CLEAR = DEFAULT_RULES["asa_above_target"].thresholds(_DEFAULT_QUEUE.asa_target)
AGENTS_RAISE, _ = DEFAULT_RULES["no_agents_available"].thresholds(None)
# No default rule watches these; floor conventions, easy to change here.
WAITING_AMBER, WAITING_RED = 5, 10
OCCUPANCY_AMBER, OCCUPANCY_RED = 0.85, 0.92
WATERMARK_LAG_AMBER, WATERMARK_LAG_RED = 60, 300     # FloorwatchWatermarkStale looks at 5 min

QUEUE_WINDOWS = ["interval_current", "interval_previous", "today", "rolling_5m", "rolling_15m", "rolling_60m"]
DAY_WINDOWS = ["interval_current", "interval_previous", "today"]   # agent, ticket and quality families


# -- building blocks --------------------------------------------------------------------------------------

def steps(*pairs: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: the first pair's value is None (from minus infinity)."""
    # Rounded: 0.8 + 0.02 must read 0.82 in the JSON.
    return (dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None if value is None else round(value, 6), color=color)
                    for value, color in pairs]))


def rising(amber: float, red: float) -> dashboard.ThresholdsConfig:
    """Higher is worse."""
    return steps((None, GREEN), (amber, AMBER), (red, RED))


def falling(red_below: float, green_from: float) -> dashboard.ThresholdsConfig:
    """Lower is worse: red below the raise threshold, amber until the clear threshold, then green."""
    return steps((None, RED), (red_below, AMBER), (green_from, GREEN))


def neutral() -> dashboard.ThresholdsConfig:
    return steps((None, BLUE))


def query(expr: str, legend: str = "", instant: bool = False) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    return target.instant() if instant else target.range()


def _with_targets(panel, targets: list[prometheus.Dataquery]):
    for ref, target in zip("ABCDEFGH", targets):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def stat_tile(title: str, unit: str, expr: str, thresholds: dashboard.ThresholdsConfig, *, width: int = 4,
              height: int = 6, decimals: int | None = None, description: str = "", big: bool = True):
    """One number, coloured by its thresholds (instant query: the value now); `big`: wallboard-sized text."""
    panel = (stat.Panel().title(title).datasource(DATASOURCE).unit(unit).thresholds(thresholds)
             .span(width).height(height).color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.NONE).text_mode(common.BigValueTextMode.VALUE)
             .justify_mode(common.BigValueJustifyMode.CENTER).no_value("-")
             .reduce_options(last_value()))
    if big:
        panel = panel.text(options.VizTextDisplayOptions().title_size(22).value_size(64))
    if decimals is not None:
        panel = panel.decimals(decimals)
    if description:
        panel = panel.description(description)
    return _with_targets(panel, [query(expr, instant=True)])


def multi_stat(title: str, unit: str, targets: list[prometheus.Dataquery], thresholds=None, *, width: int = 8,
               height: int = 5, description: str = ""):
    """Several numbers side by side (one per series), current values."""
    panel = (stat.Panel().title(title).datasource(DATASOURCE).unit(unit).thresholds(thresholds or neutral())
             .span(width).height(height).graph_mode(common.BigValueGraphMode.NONE)
             .color_mode(common.BigValueColorMode.VALUE if thresholds else common.BigValueColorMode.NONE)
             .text_mode(common.BigValueTextMode.VALUE_AND_NAME).reduce_options(last_value()))
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def trend(title: str, unit: str, targets: list[prometheus.Dataquery], thresholds=None, *, width: int = 12,
          height: int = 8, stacked: bool = False, minimum: float | None = None, maximum: float | None = None,
          description: str = ""):
    """A time series panel; thresholds, when given, are drawn as dashed lines."""
    panel = (timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(height)
             .line_width(2).fill_opacity(10 if not stacked else 40).span_nulls(True)
             .legend(options.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM))
             .tooltip(options.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING))
             .thresholds(thresholds or neutral()))
    if thresholds is not None:
        panel = panel.thresholds_style(
            options.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    if stacked:
        panel = panel.stacking(options.StackingConfig().mode(common.StackingMode.NORMAL))
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def bars(title: str, unit: str, targets: list[prometheus.Dataquery], thresholds=None, *, width: int = 12,
         height: int = 8, description: str = ""):
    """Horizontal bar gauge of the current values, one bar per series."""
    panel = (bargauge.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(height)
             .thresholds(thresholds or neutral()).orientation(common.VizOrientation.HORIZONTAL)
             .display_mode(common.BarGaugeDisplayMode.GRADIENT).show_unfilled(True).min(0)
             .reduce_options(last_value()))
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def pie(title: str, unit: str, targets: list[prometheus.Dataquery], *, width: int = 8, height: int = 8,
        description: str = ""):
    panel = (piechart.Panel().title(title).datasource(DATASOURCE).unit(unit).span(width).height(height)
             .thresholds(neutral()).pie_type(PieChartType.DONUT).reduce_options(last_value())
             .legend(piechart.PieChartLegendOptions().show_legend(True)
                     .display_mode(common.LegendDisplayMode.TABLE).placement(common.LegendPlacement.RIGHT)
                     .values([PieChartLegendValues.VALUE])))
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def last_value() -> options.ReduceDataOptions:
    return options.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def label_variable(name: str, label: str, metric: str, selector: str = ""):
    """A multi-value variable of a label's values, 'All' by default (queries match it with =~)."""
    return (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({metric}{selector}, {name})")
            .multi(True).include_all(True).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .current(VariableOption(selected=True, text=["All"], value=["$__all"])))


def choice_variable(name: str, label: str, values: list[str], default: str):
    return (dashboard.CustomVariable(name).label(label).values(",".join(values))
            .options([VariableOption(selected=value == default, text=value, value=value) for value in values])
            .current(VariableOption(selected=True, text=default, value=default)))


def new_dashboard(uid: str, title: str, description: str, refresh: str, time_from: str):
    return (dashboard.Dashboard(title).uid(uid).description(description).tags(["floorwatch"])
            .refresh(refresh).time(time_from, "now").timezone("browser").editable()
            .tooltip(DashboardCursorSync.CROSSHAIR)
            .timepicker(dashboard.TimePicker().refresh_intervals(["15s", "30s", "1m", "5m", "15m"])))


def ratio(numerator: str, denominator: str, by: str = "queue") -> str:
    """sum(numerator) / sum(denominator): right over workers and queues (docs/metrics.md)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({numerator})\n/\nsum{grouping} ({denominator})"


# -- the dashboards -----------------------------------------------------------------------------------------

def wallboard() -> Builder:
    q = 'queue=~"$queue"'
    w = 'window="rolling_15m"'
    sl = ratio(f"floorwatch_queue_window_service_level_met_contacts{{{q}, {w}}}",
               f"floorwatch_queue_window_service_level_eligible_contacts{{{q}, {w}}}", by="")
    # Target of the queue itself: the gap is coloured right whatever the queue's configured target.
    sl_gap = f"({sl})\n- max(floorwatch_queue_service_level_target_ratio{{{q}}})"
    asa = ratio(f'floorwatch_queue_window_wait_seconds{{{q}, {w}, outcome="answered"}}',
                f'floorwatch_queue_window_timed_contacts{{{q}, {w}, outcome="answered"}}', by="")
    abandon = ratio(f"floorwatch_queue_window_abandon_rate_abandoned_contacts{{{q}, {w}}}",
                    f"floorwatch_queue_window_abandon_rate_offered_contacts{{{q}, {w}}}", by="")
    # An expanded row repeated per selected queue: Grafana repeats the panels that follow it.
    tiles = [
        stat_tile("Service level (15 min)", "percentunit", sl, falling(SL_RAISE, SL_CLEAR), width=4, decimals=1,
                  description="Rolling 15 min, the queue's configured formula. Colours: the default "
                              f"{SL_RAISE:.0%} target (red below it, amber until {SL_CLEAR:.0%})."),
        stat_tile("vs target", "percentunit", sl_gap, falling(SL_GAP_RAISE, SL_GAP_CLEAR), width=3, decimals=1,
                  description="Service level minus the queue's own configured target: red below target "
                              "(FloorwatchServiceLevelBelowTarget), amber until the alert would clear."),
        stat_tile("Waiting", "short", f"sum(floorwatch_queue_waiting_contacts{{{q}}})",
                  rising(WAITING_AMBER, WAITING_RED), width=3, decimals=0),
        stat_tile("Oldest wait", "s", f"max(floorwatch_queue_oldest_wait_seconds{{{q}}})",
                  rising(OLDEST_CLEAR, OLDEST_RAISE), width=4, decimals=0,
                  description=f"Longest wait now (max over workers); red above {OLDEST_RAISE:.0f} s "
                              "(FloorwatchOldestWaitLong)."),
        stat_tile("ASA (15 min)", "s", asa, rising(ASA_CLEAR, ASA_RAISE), width=3, decimals=0,
                  description="Average speed of answer, rolling 15 min. Colours: the default "
                              f"{ASA_RAISE:.0f} s ASA target of a voice queue."),
        stat_tile("Abandoned (15 min)", "percentunit", abandon, rising(ABANDON_CLEAR, ABANDON_RAISE), width=4,
                  decimals=1, description="Abandon rate, rolling 15 min (short abandons as configured); red above "
                                          f"{ABANDON_RAISE:.0%} (FloorwatchAbandonRateHigh)."),
        stat_tile("Agents available", "short",
                  'sum(floorwatch_agents{scope="queue", name=~"$queue", state="available"})',
                  steps((None, RED), (AGENTS_RAISE, GREEN)), width=3, decimals=0,
                  description="Agents of the queue's skill available now; red at none "
                              "(FloorwatchNoAgentsAvailable)."),
    ]
    board = (new_dashboard("floorwatch-wallboard", "Floorwatch wallboard",
                           "The floor at a glance: one row of tiles per queue.", REFRESH, "now-1h")
             .with_variable(label_variable("queue", "Queue", "floorwatch_queue_waiting_contacts"))
             .with_row(dashboard.Row("$queue").repeat("queue")))
    for tile in tiles:
        board = board.with_panel(tile)
    return board


def queue_detail() -> Builder:
    q = 'queue=~"$queue"'
    w = 'window="$window"'
    sl = ratio(f"floorwatch_queue_window_service_level_met_contacts{{{q}, {w}}}",
               f"floorwatch_queue_window_service_level_eligible_contacts{{{q}, {w}}}")
    asa = ratio(f'floorwatch_queue_window_wait_seconds{{{q}, {w}, outcome="answered"}}',
                f'floorwatch_queue_window_timed_contacts{{{q}, {w}, outcome="answered"}}')
    abandon_time = ratio(f'floorwatch_queue_window_wait_seconds{{{q}, {w}, outcome="abandoned"}}',
                         f'floorwatch_queue_window_timed_contacts{{{q}, {w}, outcome="abandoned"}}')
    abandon = ratio(f"floorwatch_queue_window_abandon_rate_abandoned_contacts{{{q}, {w}}}",
                    f"floorwatch_queue_window_abandon_rate_offered_contacts{{{q}, {w}}}")
    # AHT parts: each part's seconds over all handled contacts, so the stack adds up to AHT.
    aht_parts = (f"sum by (part) (floorwatch_queue_window_handle_seconds{{{q}, {w}}})\n"
                 f"/ scalar(sum(floorwatch_queue_window_contacts{{{q}, {w}, kind=\"handled\"}}))")
    sl_by_window = f"queue_channel_window:floorwatch_queue_service_level:ratio{{{q}}}"
    contacts_by_window = (f'sum by (window, kind) (queue_channel_window_kind:floorwatch_queue_window_contacts:sum'
                          f'{{{q}, kind=~"offered|answered|abandoned"}})')
    return (new_dashboard("floorwatch-queue-detail", "Floorwatch queue detail",
                          "Supervisor view of the selected queues in the selected window.", REFRESH, "now-6h")
            .with_variable(label_variable("queue", "Queue", "floorwatch_queue_waiting_contacts"))
            .with_variable(choice_variable("window", "Window", QUEUE_WINDOWS, "interval_current"))
            .with_row(dashboard.Row("Service"))
            .with_panel(trend("Service level ($window)", "percentunit", [
                query(sl, "{{queue}}"),
                query(f"max by (queue) (floorwatch_queue_service_level_target_ratio{{{q}}})", "{{queue}} target")],
                falling(SL_RAISE, SL_CLEAR), width=12, minimum=0, maximum=1))
            .with_panel(trend("ASA and average abandon time ($window)", "s", [
                query(asa, "{{queue}} ASA"), query(abandon_time, "{{queue}} avg abandon time"),
                query(f"max by (queue) (floorwatch_queue_asa_target_seconds{{{q}}})", "{{queue}} ASA target")],
                rising(ASA_CLEAR, ASA_RAISE), width=12, minimum=0))
            .with_panel(trend("Abandon rate ($window)", "percentunit", [query(abandon, "{{queue}}")],
                              rising(ABANDON_CLEAR, ABANDON_RAISE), width=8, minimum=0))
            .with_panel(trend("AHT by part ($window)", "s", [query(aht_parts, "{{part}}")], width=8, stacked=True,
                              minimum=0, description="Talk, hold and ACW per handled contact; the stack is AHT."))
            .with_panel(bars("Service level by window", "percentunit",
                             [query(sl_by_window, "{{queue}} {{window}}", instant=True)],
                             falling(SL_RAISE, SL_CLEAR), width=8))
            .with_row(dashboard.Row("Volume"))
            .with_panel(trend("Offered, answered, abandoned, flowed out ($window)", "short", [
                query(f'sum by (kind) (floorwatch_queue_window_contacts{{{q}, {w}, '
                      f'kind=~"offered|answered|abandoned|flowed_out"}})', "{{kind}}")], width=12, minimum=0))
            .with_panel(bars("Contacts by window", "short",
                             [query(contacts_by_window, "{{window}} {{kind}}", instant=True)], width=12))
            .with_row(dashboard.Row("Now"))
            .with_panel(trend("Waiting and in progress", "short", [
                query(f"sum by (queue) (floorwatch_queue_waiting_contacts{{{q}}})", "{{queue}} waiting"),
                query(f"sum by (queue) (floorwatch_queue_in_progress_contacts{{{q}}})", "{{queue}} in progress")],
                width=8, minimum=0))
            .with_panel(trend("Oldest wait and estimated wait", "s", [
                query(f"max by (queue) (floorwatch_queue_oldest_wait_seconds{{{q}}})", "{{queue}} oldest wait"),
                query(f"max by (queue) (floorwatch_queue_estimated_wait_seconds{{{q}}})", "{{queue}} EWT")],
                rising(OLDEST_CLEAR, OLDEST_RAISE), width=8, minimum=0,
                description="EWT: (waiting + 1) x rolling 60 min AHT / agents serving the queue."))
            .with_panel(trend("Erlang C required agents and staffing gap", "short", [
                query(f"max by (queue) (floorwatch_queue_required_agents{{{q}}})", "{{queue}} required"),
                query(f'sum by (queue) (label_replace(floorwatch_agents{{scope="queue", name=~"$queue", '
                      f'state=~"available|on_contact"}}, "queue", "$1", "name", "(.*)"))', "{{queue}} staffed"),
                query(f"max by (queue) (floorwatch_queue_staffing_gap_agents{{{q}}})", "{{queue}} gap")],
                steps((None, GREEN), (0.5, RED)), width=8,
                description="Required at the rolling 15 min arrival rate and 60 min AHT; staffed = available + "
                            "on contact; a positive gap means short-staffed.")))


def agents() -> Builder:
    s = 'scope="$scope", name=~"$name"'
    w = 'window="$window"'
    occupancy = ratio(f'floorwatch_agent_window_state_seconds{{{s}, {w}, state=~"on_contact|acw"}}',
                      f'floorwatch_agent_window_state_seconds{{{s}, {w}, state=~"on_contact|acw|available"}}',
                      by="name")
    chat_use = ratio(f"floorwatch_agents_chat_occupied_slots{{{s}}}", f"floorwatch_agents_chat_capacity_slots{{{s}}}",
                     by="name")
    return (new_dashboard("floorwatch-agents", "Floorwatch agents",
                          "Agent states, occupancy, not-ready reasons and chat slots per queue, team or the center "
                          "(never per agent).", REFRESH, "now-6h")
            .with_variable(choice_variable("scope", "Scope", ["queue", "team", "center"], "team"))
            .with_variable(label_variable("name", "Name", "floorwatch_agents", selector='{scope="$scope"}'))
            .with_variable(choice_variable("window", "Window", DAY_WINDOWS, "interval_current"))
            .with_panel(multi_stat("Agents now", "short",
                                   [query(f"sum by (state) (floorwatch_agents{{{s}}})", "{{state}}", instant=True)],
                                   width=12))
            .with_panel(multi_stat("Chat slots now", "short", [
                query(f"sum(floorwatch_agents_chat_occupied_slots{{{s}}})", "occupied", instant=True),
                query(f"sum(floorwatch_agents_chat_capacity_slots{{{s}}})", "capacity", instant=True)], width=12))
            .with_panel(trend("Agents by state", "short",
                              [query(f"sum by (state) (floorwatch_agents{{{s}}})", "{{state}}")], width=12,
                              stacked=True, minimum=0))
            .with_panel(trend("Occupancy ($window)", "percentunit", [query(occupancy, "{{name}}")],
                              rising(OCCUPANCY_AMBER, OCCUPANCY_RED), width=12, minimum=0, maximum=1,
                              description="(on contact + ACW) / (on contact + ACW + available) in the window."))
            .with_panel(pie("Not ready by reason", "short",
                            [query(f"sum by (reason) (floorwatch_agents_not_ready{{{s}}})", "{{reason}}",
                                   instant=True)]))
            .with_panel(bars("Agents by state and name", "short",
                             [query(f"sum by (name, state) (floorwatch_agents{{{s}}})", "{{name}} {{state}}",
                                    instant=True)], width=8))
            .with_panel(bars("Time in state ($window)", "s",
                             [query(f"sum by (state) (floorwatch_agent_window_state_seconds{{{s}, {w}}})",
                                    "{{state}}", instant=True)], width=8))
            .with_panel(trend("Chat slot utilization", "percentunit", [query(chat_use, "{{name}}")],
                              rising(OCCUPANCY_AMBER, OCCUPANCY_RED), width=12, minimum=0, maximum=1,
                              description="Occupied / capacity chat slots of the online agents."))
            .with_panel(trend("Not ready by reason", "short",
                              [query(f"sum by (reason) (floorwatch_agents_not_ready{{{s}}})", "{{reason}}")],
                              width=12, stacked=True, minimum=0)))


def tickets() -> Builder:
    f = 'queue=~"$queue", priority=~"$priority"'
    w = 'window="$window"'
    counts = (f'sum by (kind) (floorwatch_ticket_window_tickets{{{f}, {w}, '
              f'kind=~"created|first_responses|solved|reopened"}})')
    breaches = (f'sum by (priority, kind) (floorwatch_ticket_window_tickets{{{f}, {w}, '
                f'kind=~"first_response_breached|resolution_breached"}})')
    frt = ratio(f"floorwatch_ticket_window_first_response_seconds{{{f}, {w}}}",
                f'floorwatch_ticket_window_tickets{{{f}, {w}, kind="first_responses"}}', by="priority")
    resolution = ratio(f"floorwatch_ticket_window_resolution_seconds{{{f}, {w}}}",
                       f'floorwatch_ticket_window_tickets{{{f}, {w}, kind="solved"}}', by="priority")
    per_15m = (f'sum by (kind) (queue_priority_kind:floorwatch_ticket_window_tickets:increase15m'
               f'{{{f}, kind=~"created|solved"}})')
    return (new_dashboard("floorwatch-tickets", "Floorwatch tickets",
                          "Ticket volumes, response and resolution times, SLA breaches and backlog.",
                          SLOW_REFRESH, "now-24h")
            .with_variable(label_variable("queue", "Queue", "floorwatch_ticket_window_tickets"))
            .with_variable(label_variable("priority", "Priority", "floorwatch_ticket_window_tickets"))
            .with_variable(choice_variable("window", "Window", DAY_WINDOWS, "today"))
            .with_panel(multi_stat("Tickets ($window)", "short", [query(counts, "{{kind}}", instant=True)], width=10))
            .with_panel(multi_stat("At risk now", "short",
                                   [query(f"sum by (target) (floorwatch_tickets_at_risk{{{f}}})", "{{target}}",
                                          instant=True)],
                                   steps((None, GREEN), (1, AMBER)), width=6,
                                   description="Unsolved tickets due within the warning lead "
                                               "(FloorwatchTicketsAtRisk)."))
            .with_panel(multi_stat("Breaches ($window)", "short", [query(breaches, "{{priority}} {{kind}}",
                                                                         instant=True)],
                                   steps((None, GREEN), (1, RED)), width=8))
            .with_panel(trend("Created and solved per 15 min", "short", [query(per_15m, "{{kind}}")], width=12,
                              minimum=0, description="Increase of today's counts over the last 15 minutes "
                                                     "(recording rule)."))
            .with_panel(trend("Average first-response and resolution time ($window)", "s", [
                query(frt, "{{priority}} first response"), query(resolution, "{{priority}} resolution")],
                width=12, minimum=0))
            .with_panel(bars("Backlog by age", "short",
                             [query(f"sum by (age) (floorwatch_tickets_open{{{f}}})", "{{age}}", instant=True)],
                             width=8))
            .with_panel(trend("Backlog by priority", "short",
                              [query(f"sum by (priority) (floorwatch_tickets_open{{{f}}})", "{{priority}}")],
                              width=8, stacked=True, minimum=0))
            .with_panel(trend("At risk by priority", "short",
                              [query(f"sum by (priority) (floorwatch_tickets_at_risk{{{f}}})", "{{priority}}")],
                              steps((None, GREEN), (1, AMBER)), width=8, minimum=0)))


def quality() -> Builder:
    q = 'queue=~"$queue"'
    w = 'window="$window"'

    def surveys(kind: str) -> str:
        return f'floorwatch_quality_window_surveys{{{q}, {w}, kind="{kind}"}}'

    def contacts(kind: str) -> str:
        return f'floorwatch_quality_window_contacts{{{q}, {w}, kind="{kind}"}}'

    csat = ratio(surveys("csat_satisfied"), surveys("csat"))
    csat_mean = ratio(f"floorwatch_quality_window_csat_score_points{{{q}, {w}}}", surveys("csat"))
    nps = (f"100 * (sum by (queue) ({surveys('nps_promoter')}) - sum by (queue) ({surveys('nps_detractor')}))\n"
           f"/ sum by (queue) ({surveys('nps')})")
    fcr = ratio(contacts("fcr_resolved"), contacts("fcr_flagged"))
    repeat_fcr = ratio(contacts("repeat_fcr"), contacts("repeat_reported"))
    return (new_dashboard("floorwatch-quality", "Floorwatch quality",
                          "Customer satisfaction, NPS and first-contact resolution.", SLOW_REFRESH, "now-24h")
            .with_variable(label_variable("queue", "Queue", "floorwatch_quality_window_surveys"))
            .with_variable(choice_variable("window", "Window", DAY_WINDOWS, "today"))
            .with_panel(trend("CSAT, satisfied share ($window)", "percentunit", [query(csat, "{{queue}}")],
                              steps((None, RED), (0.7, AMBER), (0.8, GREEN)), width=8, minimum=0, maximum=1,
                              description="Responses scoring 4-5 among CSAT responses."))
            .with_panel(trend("CSAT, mean score ($window)", "short", [query(csat_mean, "{{queue}}")],
                              steps((None, RED), (3.5, AMBER), (4, GREEN)), width=8, minimum=1, maximum=5))
            .with_panel(trend("NPS ($window)", "short", [query(nps, "{{queue}}")],
                              steps((None, RED), (0, AMBER), (30, GREEN)), width=8, minimum=-100, maximum=100))
            .with_panel(trend("FCR by disposition ($window)", "percentunit", [query(fcr, "{{queue}}")],
                              steps((None, RED), (0.6, AMBER), (0.7, GREEN)), width=12, minimum=0, maximum=1,
                              description="Resolved among the handled contacts that carry the resolved flag."))
            .with_panel(trend("Repeat-based FCR ($window)", "percentunit", [query(repeat_fcr, "{{queue}}")],
                              steps((None, RED), (0.6, AMBER), (0.7, GREEN)), width=12, minimum=0, maximum=1,
                              description="No other contact or ticket of the customer within the repeat window, "
                                          "among contacts whose window has elapsed."))
            .with_panel(bars("Survey responses ($window)", "short", [
                query(f"sum by (kind) (floorwatch_quality_window_surveys{{{q}, {w}, kind=~\"csat|nps\"}})",
                      "{{kind}}", instant=True)], width=12))
            .with_panel(bars("FCR contacts ($window)", "short", [
                query(f"sum by (kind) (floorwatch_quality_window_contacts{{{q}, {w}}})", "{{kind}}", instant=True)],
                width=12)))


def pipeline() -> Builder:
    job = 'job="floorwatch"'
    dead_letter_share = ratio("rate(floorwatch_ingest_rejected_records_total[$__rate_interval])",
                              "rate(floorwatch_ingest_received_records_total[$__rate_interval])", by="topic")
    return (new_dashboard("floorwatch-pipeline", "Floorwatch pipeline",
                          "Health of the ingest pipeline and the workers.", REFRESH, "now-3h")
            .with_panel(stat_tile("Workers up", "short", f"sum(up{{{job}}})", steps((None, RED), (1, GREEN)),
                                  width=6, decimals=0, big=False,
                                  description="Targets of job floorwatch answering the scrape."))
            .with_panel(stat_tile("Partitions owned", "short", "sum(floorwatch_partitions_owned)",
                                  steps((None, RED), (1, GREEN)), width=6, decimals=0, big=False))
            .with_panel(stat_tile("Accepted events/s", "ops",
                                  "sum(rate(floorwatch_ingest_accepted_events_total[$__rate_interval]))",
                                  neutral(), width=6, decimals=1, big=False))
            .with_panel(stat_tile("Dead letters/s", "ops",
                                  "sum(rate(floorwatch_ingest_rejected_records_total[$__rate_interval]))",
                                  steps((None, GREEN), (0.01, AMBER), (1, RED)), width=6, decimals=2, big=False))
            .with_panel(trend("Records received by topic", "ops", [
                query("sum by (topic) (rate(floorwatch_ingest_received_records_total[$__rate_interval]))",
                      "{{topic}}")], width=12, stacked=True, minimum=0))
            .with_panel(trend("Events accepted by type", "ops", [
                query("sum by (event_type) (rate(floorwatch_ingest_accepted_events_total[$__rate_interval]))",
                      "{{event_type}}")], width=12, stacked=True, minimum=0))
            .with_panel(trend("Dead letters by reason", "ops", [
                query("sum by (reason) (rate(floorwatch_ingest_rejected_records_total[$__rate_interval]))",
                      "{{reason}}")], width=8, stacked=True, minimum=0))
            .with_panel(trend("Dead-letter share by topic", "percentunit", [query(dead_letter_share, "{{topic}}")],
                              steps((None, GREEN), (0.01, RED)), width=8, minimum=0,
                              description="FloorwatchDeadLetterRateHigh fires above 1 %."))
            .with_panel(trend("Duplicates dropped by type", "ops", [
                query("sum by (event_type) (rate(floorwatch_ingest_duplicate_events_total[$__rate_interval]))",
                      "{{event_type}}")], width=8, stacked=True, minimum=0))
            .with_panel(trend("Watermark lag", "s", [
                query("time() - max by (instance) (floorwatch_watermark_timestamp_seconds)", "{{instance}}")],
                rising(WATERMARK_LAG_AMBER, WATERMARK_LAG_RED), width=8, minimum=0,
                description="Wall clock minus the newest event time a worker applied (large while replaying "
                            "history; growing while events arrive means the worker is stuck)."))
            .with_panel(trend("Consumer lag (internal topics)", "short", [
                query("topic:floorwatch_faust_consumer_lag_messages:sum", "{{topic}}")],
                steps((None, GREEN), (100, AMBER)), width=8, minimum=0,
                description="End offset minus committed offset (Faust); FloorwatchConsumerLagGrowing above 100 "
                            "and growing."))
            .with_panel(trend("Partitions owned and workers up", "short", [
                query("sum by (instance) (floorwatch_partitions_owned)", "{{instance}} partitions"),
                query(f"up{{{job}}}", "{{instance}} up")], width=8, minimum=0))
            .with_panel(trend("State records by kind", "short", [
                query("sum by (kind) (floorwatch_state_records)", "{{kind}}")], width=12, minimum=0))
            .with_panel(trend("Ingest: received, valid, accepted, duplicates", "ops", [
                query("sum(rate(floorwatch_ingest_received_records_total[$__rate_interval]))", "received"),
                query("sum(rate(floorwatch_ingest_valid_events_total[$__rate_interval]))", "valid"),
                query("sum(rate(floorwatch_ingest_accepted_events_total[$__rate_interval]))", "accepted"),
                query("sum(rate(floorwatch_ingest_duplicate_events_total[$__rate_interval]))", "duplicates")],
                width=12, minimum=0)))


DASHBOARDS = (wallboard, queue_detail, agents, tickets, quality, pipeline)


# -- output -------------------------------------------------------------------------------------------------

def _number_panels(model) -> None:
    """Stable panel ids (Grafana needs them unique; generated JSON must not change between runs)."""
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for child in getattr(panel, "panels", None) or []:
            child.id_val = next_id
            next_id += 1


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    files = {}
    for make in DASHBOARDS:
        model = make().build()
        _number_panels(model)
        text = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        files[f"{model.uid}.json"] = text
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed dashboard is stale")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.output_dir / name).exists() or (args.output_dir / name).read_text() != text]
        for name in stale:
            print(f"stale: {args.output_dir / name} (run python grafana/generate.py)", file=sys.stderr)
        return 1 if stale else 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.output_dir / name).write_text(text)
        print(f"wrote {args.output_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
