"""The wallboard's JSON and colours (streams.wallboard), with explicit figures against the default
alert rules: SL below target red, within 5 points amber; oldest wait over 2 min red; no agent
available while contacts wait red; below a rule's minimum volume no colour."""

from __future__ import annotations

import pytest

from models.snapshots import QueueKpis, QueueNow, QueueSnapshot, WindowBounds
from streams import wallboard
from streams.alert_rules import DEFAULT_RULES, AlertRule
from streams.wallboard import Status, duration, grade, tile, wallboard_data

WM = 1_736_154_000_000   # 2025-01-06 09:00 UTC


def kpis(*, offered: int = 40, answered: int = 38, abandoned: int = 2, sl: float | None = 0.9,
         asa: float | None = 12.0, abandon_rate: float | None = 0.05, target: float = 0.8,
         threshold_s: float = 20.0) -> QueueKpis:
    return QueueKpis(offered=offered, answered=answered, abandoned=abandoned, short_abandoned=0, flowed_out=0,
                     answered_within_threshold=answered, abandoned_within_threshold=0, transferred=0, handled=answered,
                     held=0, service_level=sl, service_level_formula="answered_of_offered_excl_short",
                     service_level_target=target, service_level_threshold_s=threshold_s,
                     service_level_by_formula={}, asa_s=asa, average_abandon_time_s=None, abandon_rate=abandon_rate,
                     aht_s=None, average_talk_s=None, average_hold_s=None, average_acw_s=None, hold_rate=None,
                     transfer_rate=None)


def now(*, waiting: int = 0, oldest: float | None = None, available: int = 3, online: int = 8) -> QueueNow:
    return QueueNow(waiting=waiting, oldest_wait_s=oldest, agents_online=online, agents_available=available,
                    agents_on_contact=online - available, agents_acw=0, agents_not_ready=0, estimated_wait_s=None,
                    required_agents=None, staffing_gap=None)


def snapshot(kind: str = "rolling_15m", queue: str = "sales", channel: str = "voice", wm: int = WM,
             queue_now: QueueNow | None = None, **figures) -> QueueSnapshot:
    return QueueSnapshot(site="default", queue=queue, channel=channel,
                         window=WindowBounds(kind=kind, start_ms=wm - 900_000, end_ms=wm), revision=1, final=False,
                         correction=False, watermark_ms=wm, kpis=kpis(**figures),
                         now=queue_now if queue_now is not None else now())


def board_tile(**figures) -> dict:
    queue_now = figures.pop("queue_now", None)
    return tile("sales", "voice", {"rolling_15m": snapshot(queue_now=queue_now, **figures)}, DEFAULT_RULES)


def statuses(t: dict) -> dict[str, str]:
    return {name: m["status"] for name, m in t["metrics"].items()}


SL_RULE = DEFAULT_RULES["service_level_below_target"]


@pytest.mark.parametrize(("value", "offered", "expected"), [
    (0.90, 40, Status.green), (0.85, 40, Status.green),    # 5 points over the 80 % target: green
    (0.849, 40, Status.amber), (0.80, 40, Status.amber),   # within 5 points: amber; at target: not below it
    (0.799, 40, Status.red), (0.20, 40, Status.red),
    (0.20, 9, Status.quiet),                                # 9 offered: under the rule's minimum volume (10)
    (None, 0, Status.none),
])
def test_service_level_against_the_target(value, offered, expected):
    assert grade(SL_RULE, value, offered, 0.8, wallboard.AMBER_MARGIN["service_level"]) is expected


def test_tile_colours_with_explicit_figures():
    good = board_tile(sl=0.92, asa=9.0, abandon_rate=0.02, queue_now=now(waiting=1, oldest=15.0, available=3))
    assert statuses(good) == {"service_level": "green", "asa": "green", "abandon_rate": "green", "waiting": "none",
                              "oldest_wait": "green", "agents_available": "green"}
    assert good["status"] == "green"
    assert good["metrics"]["service_level"] | {} == {
        "value": 0.92, "text": "92.0%", "status": "green", "window": "last 15 min", "target": 0.8,
        "target_text": "80.0%"}
    assert good["metrics"]["agents_available"]["text"] == "3 of 8"

    # ASA target = the voice SL threshold (20 s): 16 s is within 5 s of it, 21 s over it
    assert statuses(board_tile(asa=16.0))["asa"] == "amber"
    assert statuses(board_tile(asa=21.0))["asa"] == "red"
    # abandon: red over 10 %, amber from 7 %
    assert statuses(board_tile(abandon_rate=0.08))["abandon_rate"] == "amber"
    assert statuses(board_tile(abandon_rate=0.11))["abandon_rate"] == "red"
    # oldest wait: red over 2 min, amber over 90 s
    assert statuses(board_tile(queue_now=now(waiting=2, oldest=100.0)))["oldest_wait"] == "amber"
    late = board_tile(queue_now=now(waiting=2, oldest=121.0))
    assert statuses(late)["oldest_wait"] == "red" and late["metrics"]["oldest_wait"]["text"] == "2:01"
    assert late["status"] == "red"   # one red figure makes the tile red


def test_no_agent_available_is_red_only_while_contacts_wait():
    nobody_waits = board_tile(queue_now=now(waiting=0, available=0))
    assert statuses(nobody_waits)["agents_available"] == "quiet"
    assert statuses(board_tile(queue_now=now(waiting=0, available=2)))["agents_available"] == "green"
    assert nobody_waits["metrics"]["oldest_wait"]["text"] == wallboard.DASH
    short = board_tile(queue_now=now(waiting=3, oldest=20.0, available=0))
    assert statuses(short)["agents_available"] == "red" and short["status"] == "red"
    assert statuses(board_tile(queue_now=now(waiting=3, oldest=20.0, available=1)))["agents_available"] == "amber"
    assert statuses(board_tile(queue_now=now(waiting=3, oldest=20.0, available=2)))["agents_available"] == "green"


def test_a_configured_rule_moves_the_colours_as_it_moves_the_alert():
    rules = {**DEFAULT_RULES, "service_level_below_target": AlertRule(
        kpi="service_level", comparison="<", raise_threshold="target-0.1", window="interval_current",
        min_volume=5)}
    windows = {"rolling_15m": snapshot(sl=0.95), "interval_current": snapshot("interval", sl=0.72)}
    t = tile("sales", "voice", windows, rules)
    # read from the rule's window (the current interval), red below 80 % - 10 points, amber up to 75 %
    assert t["metrics"]["service_level"]["window"] == "this interval"
    assert t["metrics"]["service_level"]["value"] == 0.72
    assert t["metrics"]["service_level"]["status"] == "amber"
    # a configured rule narrowed to another queue leaves this one the default rule
    narrowed = {**DEFAULT_RULES, "service_level_below_target": AlertRule(
        kpi="service_level", comparison="<", raise_threshold=0.99, queue="billing")}
    assert tile("sales", "voice", windows, narrowed)["metrics"]["service_level"]["status"] == "green"


def test_wallboard_json_has_one_sorted_tile_per_queue_and_channel():
    latest = {("sales", "voice", "rolling_15m"): snapshot(sl=0.5),
              ("sales", "voice", "interval_current"): snapshot("interval", sl=0.6),
              ("billing", "voice", "rolling_15m"): snapshot(queue="billing"),
              ("billing", "chat", "rolling_15m"): snapshot(queue="billing", channel="chat", threshold_s=60.0,
                                                          asa=50.0)}
    data = wallboard_data(latest, DEFAULT_RULES, generated_ms=123,
                          asa_target=lambda queue, channel: 30.0 if channel == "voice" else 45.0)
    assert [(t["queue"], t["channel"], t["status"]) for t in data["tiles"]] == [
        ("billing", "chat", "red"), ("billing", "voice", "green"), ("sales", "voice", "red")]
    chat = data["tiles"][0]["metrics"]["asa"]
    assert (chat["target"], chat["status"], chat["text"]) == (45.0, "red", "50s")   # the queue's ASA target
    assert data["generated_ms"] == 123 and data["poll_s"] <= 5 and data["service_level_window"] == "last 15 min"
    assert wallboard_data({}, DEFAULT_RULES, 0)["tiles"] == []


def test_the_page_is_self_contained():
    html = wallboard.page()
    assert "wallboard.json" in html
    for external in ("http://", "https://", "<link", "@import", "@font-face", "src="):
        assert external not in html, external


def test_durations_read_like_a_wallboard():
    assert [duration(v) for v in (None, 4.4, 59.6, 125, 3725)] == [wallboard.DASH, "4s", "1:00", "2:05", "1h02"]
