"""The demo's live per-queue table (`streams.demo.queue_table`) from hand-built scrapes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from streams.demo import DASH, RED, RESET, _Display, queue_table, summary_line

Q = "floorwatch_queue_window_"


def lab(**labels: str) -> tuple:
    """Labels as `streams.demo.scrape` keys them: sorted (name, value) pairs."""
    return tuple(sorted(labels.items()))


def put(samples: dict, metric: str, value: float, /, **labels: str) -> None:
    samples.setdefault(metric, {})[lab(**labels)] = value


def queue_series(samples: dict, queue: str, channel: str, window: str, *, met: float, eligible: float,
                 wait: float, answered: float, abandoned: float, offered: float) -> None:
    put(samples, Q + "service_level_met_contacts", met, queue=queue, channel=channel, window=window)
    put(samples, Q + "service_level_eligible_contacts", eligible, queue=queue, channel=channel, window=window)
    put(samples, Q + "wait_seconds", wait, queue=queue, channel=channel, window=window, outcome="answered")
    put(samples, Q + "wait_seconds", 999.0, queue=queue, channel=channel, window=window, outcome="abandoned")
    put(samples, Q + "timed_contacts", answered, queue=queue, channel=channel, window=window, outcome="answered")
    put(samples, Q + "timed_contacts", 7.0, queue=queue, channel=channel, window=window, outcome="abandoned")
    put(samples, Q + "abandon_rate_abandoned_contacts", abandoned, queue=queue, channel=channel, window=window)
    put(samples, Q + "abandon_rate_offered_contacts", offered, queue=queue, channel=channel, window=window)


def agents(samples: dict, name: str, scope: str = "queue", **by_state: float) -> None:
    for state in ("available", "not_ready", "on_contact", "acw"):
        put(samples, "floorwatch_agents", by_state.get(state, 0.0), scope=scope, name=name, state=state)


def rows(table: str) -> dict[str, list[str]]:
    """Data rows by queue, cells split on whitespace (the "!" mark becomes a cell of its own)."""
    lines = table.splitlines()
    assert lines[0].split() == ["queue", "SL", "target", "SL", "today", "waiting", "oldest", "ASA", "abandon",
                                "available"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:-1]}


def center() -> dict:
    s: dict = {}
    # billing (voice): 45 of 50 within threshold (90%) against 80%; today 160/200 = 80% (met, equal)
    queue_series(s, "billing", "voice", "interval_current", met=45, eligible=50, wait=600, answered=40,
                 abandoned=3, offered=60)
    queue_series(s, "billing", "voice", "today", met=160, eligible=200, wait=0, answered=0, abandoned=0, offered=0)
    queue_series(s, "billing", "voice", "interval_previous", met=0, eligible=10, wait=1, answered=1,
                 abandoned=9, offered=9)   # other windows must not leak in
    put(s, "floorwatch_queue_service_level_target_ratio", 0.8, queue="billing", channel="voice")
    put(s, "floorwatch_queue_waiting_contacts", 2, queue="billing", channel="voice")
    put(s, "floorwatch_queue_oldest_wait_seconds", 75.4, queue="billing", channel="voice")
    # support: voice + callback, summed before dividing (not an average of the two ratios)
    #   SL (30 + 3) / (50 + 10) = 55% against max(0.8, 0.7) = 80% -> below
    #   ASA (1000 + 500) / (40 + 10) = 30 s; abandon (5 + 1) / (80 + 20) = 6%
    #   today (100 + 50) / (160 + 40) = 75% -> below
    queue_series(s, "support", "voice", "interval_current", met=30, eligible=50, wait=1000, answered=40,
                 abandoned=5, offered=80)
    queue_series(s, "support", "callback", "interval_current", met=3, eligible=10, wait=500, answered=10,
                 abandoned=1, offered=20)
    queue_series(s, "support", "voice", "today", met=100, eligible=160, wait=0, answered=0, abandoned=0, offered=0)
    queue_series(s, "support", "callback", "today", met=50, eligible=40, wait=0, answered=0, abandoned=0, offered=0)
    put(s, "floorwatch_queue_service_level_target_ratio", 0.8, queue="support", channel="voice")
    put(s, "floorwatch_queue_service_level_target_ratio", 0.7, queue="support", channel="callback")
    put(s, "floorwatch_queue_waiting_contacts", 4, queue="support", channel="voice")
    put(s, "floorwatch_queue_waiting_contacts", 3, queue="support", channel="callback")
    put(s, "floorwatch_queue_oldest_wait_seconds", 61, queue="support", channel="voice")     # max, not sum
    put(s, "floorwatch_queue_oldest_wait_seconds", 125, queue="support", channel="callback")
    # chat_support: nothing in the current interval yet -> every ratio is "–", not 0
    queue_series(s, "chat_support", "chat", "interval_current", met=0, eligible=0, wait=0, answered=0,
                 abandoned=0, offered=0)
    put(s, "floorwatch_queue_service_level_target_ratio", 0.85, queue="chat_support", channel="chat")
    put(s, "floorwatch_queue_waiting_contacts", 0, queue="chat_support", channel="chat")
    put(s, "floorwatch_queue_oldest_wait_seconds", 0, queue="chat_support", channel="chat")
    agents(s, "billing", available=2, on_contact=5, acw=1, not_ready=1)
    agents(s, "support", available=0, on_contact=6)
    agents(s, "sales", available=116, on_contact=0)  # the widest cell still fits
    agents(s, "chat_support", available=3, not_ready=1)
    agents(s, "email_support", available=1)                  # agents only, no contacts yet
    agents(s, "Team North", scope="team", available=40)       # other scopes are not queues
    agents(s, "all", scope="center", available=99)
    put(s, "floorwatch_window_start_timestamp_seconds", datetime(2026, 11, 23, 9, 15, tzinfo=UTC).timestamp(),
        window="interval_current")
    put(s, "floorwatch_ticket_window_tickets", 5, queue="email_support", priority="high", window="today",
        kind="created")
    put(s, "floorwatch_ingest_accepted_events_total", 1234, event_type="contact.offered")
    return s


def test_hand_computed_kpis_per_queue():
    table = queue_table(center())
    r = rows(table)
    assert list(r) == ["billing", "chat_support", "email_support", "sales", "support"]
    #                    SL       target today   waiting oldest ASA    abandon agents
    assert r["billing"] == ["90.0%", "80%", "80.0%", "2", "1m15s", "15s", "5.0%", "2", "of", "9"]
    assert r["support"] == ["55.0%", "!", "80%", "75.0%", "!", "7", "2m05s", "30s", "6.0%", "0", "of", "6"]
    assert r["chat_support"] == [DASH, "85%", DASH, "0", "0s", DASH, DASH, "3", "of", "4"]
    assert r["email_support"] == [DASH, DASH, DASH, DASH, DASH, DASH, DASH, "1", "of", "1"]
    assert r["sales"] == [DASH, DASH, DASH, DASH, DASH, DASH, DASH, "116", "of", "116"]
    assert "Team" not in table and "all" not in r
    assert table.splitlines()[-1].startswith("  SL/ASA/abandon: current interval since 09:15 (event time)")
    assert RED not in table    # no colour unless asked for


def test_columns_line_up_and_fit_80():
    lines = queue_table(center()).splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert len({len(line) for line in lines[:-1]}) == 1   # fixed width, the "!" included
    s = center()
    agents(s, "a_rather_long_queue_name", available=1234, on_contact=10000)
    lines = queue_table(s).splitlines()
    assert len({len(line) for line in lines[:-1]}) == 1   # still aligned when a cell is wider
    assert rows("\n".join(lines))["a_rather_long_queue_name"][-3:] == ["1234", "of", "11234"]


def test_below_target_is_marked_and_coloured_on_request():
    s: dict = {}
    queue_series(s, "sales", "voice", "interval_current", met=79, eligible=100, wait=10, answered=1,
                 abandoned=0, offered=100)
    put(s, "floorwatch_queue_service_level_target_ratio", 0.8, queue="sales", channel="voice")
    assert rows(queue_table(s))["sales"][:3] == ["79.0%", "!", "80%"]
    coloured = queue_table(s, color=True)
    assert f"{RED} 79.0% !{RESET}" in coloured
    # exactly on target is met: no mark; no target known: no mark either
    s[Q + "service_level_met_contacts"][lab(queue="sales", channel="voice", window="interval_current")] = 80
    assert rows(queue_table(s, color=True))["sales"][:2] == ["80.0%", "80%"]
    del s["floorwatch_queue_service_level_target_ratio"]
    s[Q + "service_level_met_contacts"][lab(queue="sales", channel="voice", window="interval_current")] = 1
    assert rows(queue_table(s))["sales"][:2] == ["1.0%", DASH]


def test_nothing_yet():
    assert "no queue figures yet" in queue_table({})
    assert "no queue figures yet" in queue_table({"floorwatch_ingest_accepted_events_total": {(): 3.0}})


def test_long_waits_format():
    s: dict = {}
    put(s, "floorwatch_queue_oldest_wait_seconds", 3725, queue="q", channel="voice")
    put(s, "floorwatch_queue_waiting_contacts", 1, queue="q", channel="voice")
    assert rows(queue_table(s))["q"][4] == "1h02m"


class _Stream(io.StringIO):
    def __init__(self, tty: bool, encoding: str = "utf-8") -> None:
        super().__init__()
        self._tty, self._encoding = tty, encoding

    def isatty(self) -> bool:
        return self._tty

    @property
    def encoding(self) -> str:
        return self._encoding


def test_plain_log_has_no_escape_codes(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    out = _Stream(tty=False)
    display = _Display(out)
    assert not display.interactive and not display.color
    for _ in range(2):
        display.show("demo: [ 5s] " + summary_line(center(), None, 5) + "\n"
                     + queue_table(center(), color=display.color))
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("demo: [ 5s] accepted 1234 | dead-lettered 0 | duplicates dropped 0\n") == 2


def test_ci_is_never_interactive(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("TERM", "xterm")
    assert not _Display(_Stream(tty=True)).interactive


def test_terminal_redraws_in_place(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")
    out = _Stream(tty=True)
    display = _Display(out)
    assert display.interactive and display.color
    display.show("a\nb\nc")
    display.show("d\ne")
    assert out.getvalue() == "a\nb\nc\n\x1b[3F\x1b[Jd\ne\n"
    display.say("message")        # kept on screen: the next block goes below it
    display.show("f")
    assert out.getvalue().endswith("message\nf\n")


def test_ascii_terminal_gets_a_plain_dash(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    out = _Stream(tty=False, encoding="ascii")
    _Display(out).show(queue_table(center()))
    out.getvalue().encode("ascii")
