"""The agent, ticket and quality oracles on hand-built logs with hand-computed answers (explicit
timestamps), and one plausibility run of each over a simulated day."""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.events import EVENT_ADAPTER
from tests.oracle_agents import agent_time, agents_now
from tests.oracle_quality import quality_kpis
from tests.oracle_tickets import DEFAULT_TARGETS, age_bucket, ticket_kpis, tickets_now

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MIN = 60
HOUR = 3600
_counter = iter(range(10**9))


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def ev(event_type, seconds, **fields):
    payload = {"event_id": f"m{next(_counter)}", "event_type": event_type, "source": "test",
               "occurred_at": at(seconds).isoformat(), **fields}
    return EVENT_ADAPTER.validate_json(orjson.dumps(payload), context={"customer_hash_key": b"k"})


def state(seconds, state, agent="a1", queues=("billing",), team="care", **fields):
    return ev("agent.state_changed", seconds, agent_id=agent, state=state, queues=list(queues), team=team, **fields)


def contact(event_type, seconds, cid, channel="chat", **fields):
    return ev(event_type, seconds, contact_id=cid, channel=channel, **fields)


def ticket(event_type, seconds, tid="t1", **fields):
    return ev(event_type, seconds, ticket_id=tid, **fields)


def survey(seconds, kind, score, **fields):
    return ev("survey.responded", seconds, kind=kind, score=score, **fields)


def interval(seconds):
    return at(seconds - seconds % (15 * MIN))


# --- agents -----------------------------------------------------------------------------------

def agents(events, **kw):
    return agent_time(events, timezone="UTC", interval_minutes=15, **kw)


def test_state_time_is_split_at_interval_bounds_and_counts_in_every_queue_and_the_team():
    log = [state(10 * MIN, "available", queues=("billing", "sales")),
           state(14 * MIN, "on_contact", queues=("billing", "sales")),
           state(20 * MIN, "acw", queues=("billing", "sales")),
           state(22 * MIN, "available", queues=("billing", "sales")),
           state(25 * MIN, "not_ready", reason="break", queues=("billing", "sales"))]
    result = agents(log, until=at(30 * MIN))
    for scope in (("queue", "billing"), ("queue", "sales"), ("team", "care"), ("agent", "a1"), ("center", "all")):
        first, second = result[(*scope, interval(0))], result[(*scope, interval(15 * MIN))]
        assert dict(first.state_s) == {"available": 4 * MIN, "on_contact": 1 * MIN}
        assert dict(second.state_s) == {"on_contact": 5 * MIN, "acw": 2 * MIN, "available": 3 * MIN,
                                        "not_ready": 5 * MIN}
        assert dict(second.not_ready_reason_s) == {"break": 5 * MIN}
        assert first.occupancy == 60 / (60 + 240)
        assert second.occupancy == (300 + 120) / (300 + 120 + 180)


def test_occupancy_pools_the_agents_time_rather_than_averaging_their_ratios():
    log = [state(0, "on_contact", "a1"), state(10 * MIN, "available", "a1"),
           state(0, "available", "a2", team="sales")]
    result = agents(log, until=at(15 * MIN))
    billing = result[("queue", "billing", interval(0))]
    assert billing.occupancy == 600 / (600 + 300 + 900)
    assert result[("team", "care", interval(0))].occupancy == 600 / (600 + 300)
    assert result[("team", "sales", interval(0))].occupancy == 0 / 900


def test_change_exactly_at_an_interval_bound_and_last_state_until_end_of_log():
    log = [state(5 * MIN, "available"), state(15 * MIN, "on_contact"),
           contact("contact.offered", 40 * MIN, "x", channel="voice")]   # the log's last event
    result = agents(log)
    first = result[("agent", "a1", interval(0))]
    assert dict(first.state_s) == {"available": 10 * MIN}                 # nothing of on_contact
    assert dict(result[("agent", "a1", interval(15 * MIN))].state_s) == {"on_contact": 15 * MIN}
    assert dict(result[("agent", "a1", interval(30 * MIN))].state_s) == {"on_contact": 10 * MIN}
    assert result[("agent", "a1", interval(0))].occupancy == 0.0
    assert result[("agent", "a1", interval(30 * MIN))].occupancy == 1.0


def test_simultaneous_changes_keep_the_busier_state_whatever_the_arrival_order():
    log = [state(0, "offline"), state(60, "available"), state(60, "on_contact"), state(120, "acw")]
    expected = {"offline": 60, "on_contact": 60, "acw": 180}
    for order in (log, log[::-1]):
        assert dict(agents(order, until=at(300))[("agent", "a1", interval(0))].state_s) == expected


def test_agents_by_state_now_per_queue_and_team():
    log = [state(0, "available", "a1", queues=("billing", "sales")),
           state(0, "not_ready", "a2", reason="lunch"),
           state(0, "available", "a3"), state(100, "on_contact", "a3"),
           state(0, "available", "a4"), state(100, "offline", "a4"),
           state(0, "acw", "a5", team="sales", queues=("sales",)),
           state(500, "on_contact", "a1", queues=("billing", "sales"))]       # after the evaluation time
    now = agents_now(log, at=at(200))
    billing, sales, care = now[("queue", "billing")], now[("queue", "sales")], now[("team", "care")]
    assert (billing.online, billing.available, billing.on_contact, billing.acw, billing.not_ready) == (3, 1, 1, 0, 1)
    assert dict(billing.not_ready_by_reason) == {"lunch": 1}
    assert (sales.online, sales.available, sales.acw) == (2, 1, 1)
    assert (care.online, now[("center", "all")].online) == (3, 4)
    assert ("agent", "a4") not in now


def test_chat_slots_from_answer_to_acw_completion_over_online_capacity():
    cap = {"capacity": {"chat": 3}}
    log = [state(0, "available", "a1", **cap), state(0, "available", "a2", capacity={"chat": 2}),
           state(10, "offline", "a2"),
           state(0, "available", "a3", capacity={"chat": 2}), state(20, "not_ready", "a3", reason="break"),
           contact("contact.answered", 60, "x", queue="chat_support", agent_id="a1"),
           contact("contact.ended", 300, "x", agent_id="a1"),
           contact("contact.acw_completed", 360, "x", agent_id="a1", disposition="ok"),
           contact("contact.answered", 120, "y", queue="chat_support", agent_id="a1"),
           contact("contact.ended", 420, "y", agent_id="a1"),                      # ACW not yet done
           contact("contact.answered", 480, "z", queue="chat_support", agent_id="a1"),
           contact("contact.answered", 5, "w", queue="chat_support", agent_id="a2"),  # agent went offline
           contact("contact.answered", 30, "v", channel="voice", queue="billing", agent_id="a3")]
    late = agents_now(log, at=at(540))[("queue", "billing")]
    # capacity: a1 3 + a3 2 (a3's later change carried no capacity: it keeps 2); a2 is offline
    assert (late.chat_occupied, late.chat_capacity, late.chat_utilization) == (2, 3 + 2, 2 / (3 + 2))  # y, z
    no_acw = agents_now(log, at=at(540), chat_acw_holds_slot=False)[("queue", "billing")]
    assert no_acw.chat_utilization == 1 / (3 + 2)                                              # z only
    middle = agents_now(log, at=at(330))[("agent", "a1")]
    assert middle.chat_utilization == 2 / 3                                                    # x in ACW, y
    assert agents_now(log, at=at(330), chat_acw_holds_slot=False)[("agent", "a1")].chat_utilization == 1 / 3


def test_no_chat_capacity_gives_no_utilization():
    assert agents_now([state(0, "available")], at=at(10))[("queue", "billing")].chat_utilization is None


# --- tickets ----------------------------------------------------------------------------------

TARGETS = {p: (15 * MIN, 25 * MIN) for p in ("low", "normal", "high", "urgent")}


def tickets(events, **kw):
    return ticket_kpis(events, timezone="UTC", interval_minutes=15, targets=kw.pop("targets", TARGETS), **kw)


def lifecycle(tid="t1", priority="normal"):
    return [ticket("ticket.created", 0, tid, priority=priority, queue="email_support"),
            ticket("ticket.assigned", 0, tid, agent_id="a1"),
            ticket("ticket.status_changed", 0, tid, status="open"),
            ticket("ticket.agent_replied", 10 * MIN, tid, agent_id="a1"),
            ticket("ticket.status_changed", 10 * MIN, tid, status="pending"),
            ticket("ticket.customer_replied", 40 * MIN, tid),
            ticket("ticket.status_changed", 40 * MIN, tid, status="open"),
            ticket("ticket.agent_replied", 50 * MIN, tid, agent_id="a1"),
            ticket("ticket.status_changed", 50 * MIN, tid, status="solved")]


def test_counts_times_and_attribution_with_the_pending_pause():
    result = tickets(lifecycle())
    first, solved_in = result[("email_support", "normal", interval(0))], result[("email_support", "normal", interval(45 * MIN))]
    assert (first.created, first.first_responses, first.average_first_response_s) == (1, 1, 600)
    assert (solved_in.solved, solved_in.average_resolution_s) == (1, 10 * MIN + 10 * MIN)   # 30 min pending paused
    assert sum(w.breached for w in result.values()) == 0


def test_without_the_pause_the_resolution_clock_breaches_at_its_due_time():
    result = tickets(lifecycle(), pause_resolution=False)
    breach_in = result[("email_support", "normal", interval(25 * MIN))]          # due at 09:25, while pending
    assert (breach_in.resolution_breached, breach_in.first_response_breached) == (1, 0)
    assert result[("email_support", "normal", interval(45 * MIN))].average_resolution_s == 50 * MIN


def test_a_pause_spanning_the_due_time_moves_it():
    log = [ticket("ticket.created", 0, priority="high", queue="q"),
           ticket("ticket.agent_replied", 10 * MIN, agent_id="a1"),
           ticket("ticket.status_changed", 10 * MIN, status="pending"),   # nominal due 09:25 falls inside
           ticket("ticket.status_changed", 60 * MIN, status="open")]      # clock at 10 min: due 10:15
    due = 60 * MIN + 15 * MIN
    for seconds, breached in ((due - 1, 0), (due, 0), (due + 1, 1)):
        result = tickets(log, at=at(seconds))
        assert sum(w.resolution_breached for w in result.values()) == breached
    assert tickets(log, at=at(due + 1))[("q", "high", interval(due))].resolution_breached == 1
    assert tickets_now(log, at=at(due - 1), targets=TARGETS)[("q", "high")].at_risk_resolution == 1
    assert tickets_now(log, at=at(due + 1), targets=TARGETS)[("q", "high")].at_risk_resolution == 0
    paused = tickets_now(log, at=at(30 * MIN), targets=TARGETS)[("q", "high")]    # paused: not at risk
    assert (paused.at_risk_resolution, paused.at_risk_first_response, paused.at_risk) == (0, 0, 0)


def test_first_response_breach_when_time_passes_and_on_a_late_reply():
    created = [ticket("ticket.created", 0, "a", priority="urgent", queue="q"),
               ticket("ticket.created", 0, "b", priority="urgent", queue="q"),
               ticket("ticket.created", 0, "c", priority="urgent", queue="q")]
    replies = [ticket("ticket.agent_replied", 15 * MIN, "b", agent_id="a1"),      # exactly at due: met
               ticket("ticket.agent_replied", 20 * MIN, "c", agent_id="a1")]      # late
    assert sum(w.first_response_breached for w in tickets(created + replies, at=at(15 * MIN)).values()) == 0
    result = tickets(created + replies, at=at(20 * MIN))
    w = result[("q", "urgent", interval(15 * MIN))]
    assert (w.first_response_breached, w.first_responses) == (2, 2)                 # a and c, at their due time
    assert w.average_first_response_s == (15 * MIN + 20 * MIN) / 2


def test_figures_count_in_the_queue_the_ticket_is_in_at_attribution_time():
    log = [ticket("ticket.created", 0, "a", priority="normal", queue="q1"),
           ticket("ticket.assigned", 5 * MIN, "a", agent_id="a1", queue="q2"),      # moved before the due time
           ticket("ticket.created", 0, "b", priority="normal", queue="q1"),
           ticket("ticket.assigned", 20 * MIN, "b", agent_id="a1", queue="q2"),     # moved after it
           ticket("ticket.agent_replied", 21 * MIN, "b", agent_id="a1")]
    result = tickets(log)
    assert result[("q1", "normal", interval(0))].created == 2
    assert result[("q2", "normal", interval(15 * MIN))].first_response_breached == 1   # a
    assert result[("q1", "normal", interval(15 * MIN))].first_response_breached == 1   # b
    assert result[("q2", "normal", interval(15 * MIN))].first_responses == 1           # b, replied in q2


def test_solving_without_a_reply_stops_the_first_response_clock():
    log = [ticket("ticket.created", 0, priority="low", queue="q"),
           ticket("ticket.status_changed", 5 * MIN, status="solved"),
           ticket("ticket.agent_replied", 30 * MIN, agent_id="a1")]
    result = tickets(log)
    assert sum(w.first_responses for w in result.values()) == 0
    assert sum(w.breached for w in result.values()) == 0


def test_reopen_counts_once_and_the_next_solve_reports_the_cumulative_clock():
    log = [ticket("ticket.created", 0, priority="normal", queue="q"),
           ticket("ticket.status_changed", 4 * MIN, status="solved"),
           ticket("ticket.customer_replied", 30 * MIN), ticket("ticket.reopened", 30 * MIN),
           ticket("ticket.status_changed", 30 * MIN, status="open"),
           ticket("ticket.status_changed", 35 * MIN, status="solved"),
           ticket("ticket.status_changed", 36 * MIN, status="open")]           # reopened by status alone
    result = tickets(log)
    assert result[("q", "normal", interval(30 * MIN))].reopened == 2
    assert result[("q", "normal", interval(30 * MIN))].resolution_times == [4 * MIN + 5 * MIN]
    assert result[("q", "normal", interval(0))].solved == 1


def test_backlog_by_age_bucket_and_first_response_at_risk():
    now_s = 5 * 24 * HOUR
    log = [ticket("ticket.created", now_s - ages, f"t{i}", priority="normal", queue="q")
           for i, ages in enumerate((0, 59 * MIN, HOUR, 4 * HOUR - 1, 4 * HOUR, 24 * HOUR, 3 * 24 * HOUR + HOUR))]
    log += [ticket("ticket.created", now_s - 10 * MIN, "solved", priority="normal", queue="q"),
            ticket("ticket.status_changed", now_s - 5 * MIN, "solved", status="solved"),
            ticket("ticket.created", now_s - (8 * HOUR - 30 * MIN), "r", priority="urgent", queue="q"),
            ticket("ticket.status_changed", now_s - 7 * HOUR, "r", status="on_hold")]
    now = tickets_now(log, at=at(now_s))          # default targets: normal first response 8 h
    normal = now[("q", "normal")]
    assert dict(normal.backlog) == {"<1h": 2, "1-4h": 2, "4-24h": 1, "1-3d": 1, ">3d": 1}
    assert normal.open == 7 and normal.at_risk == 0
    urgent = now[("q", "urgent")]                 # first response due in 1 h on created: long breached
    assert (urgent.open, urgent.at_risk) == (1, 0)
    assert DEFAULT_TARGETS["normal"] == (8 * HOUR, 3 * 24 * HOUR)
    # normal ticket 7 h 30 min old: first response due in exactly 30 min = the warning lead
    risky = [ticket("ticket.created", now_s - (8 * HOUR - 30 * MIN), "n", priority="normal", queue="q")]
    assert tickets_now(risky, at=at(now_s))[("q", "normal")].at_risk_first_response == 1
    assert tickets_now(risky, at=at(now_s - 1))[("q", "normal")].at_risk_first_response == 0
    assert age_bucket(HOUR) == "1-4h" and age_bucket(HOUR - 0.001) == "<1h"


# --- quality ----------------------------------------------------------------------------------

def quality(events, **kw):
    return quality_kpis(events, timezone="UTC", interval_minutes=15, **kw)


def test_csat_and_nps_with_boundaries():
    log = [survey(60, "csat", s, contact_id="c", queue="q") for s in (5, 4, 3, 1)]
    log += [survey(60, "nps", s, contact_id="c", queue="q") for s in (10, 9, 9, 8, 7, 6, 0)]
    w = quality(log)[("q", interval(0))]
    assert (w.csat, w.csat_mean) == ((1 + 1) / 4, (5 + 4 + 3 + 1) / 4)
    assert w.nps == 100 * (3 - 2) / 7
    only_csat = quality([survey(60, "csat", 4, contact_id="c", queue="q")])[("q", interval(0))]
    assert (only_csat.csat, only_csat.nps) == (1.0, None)


def test_survey_queue_from_the_contact_or_the_ticket():
    log = [contact("contact.enqueued", 0, "c", channel="voice", queue="billing"),
           contact("contact.answered", 10, "c", channel="voice", queue="billing", agent_id="a1"),
           contact("contact.enqueued", 60, "c", channel="voice", queue="sales"),
           contact("contact.answered", 70, "c", channel="voice", queue="sales", agent_id="a2"),
           ticket("ticket.created", 0, "t", priority="low", queue="email_support"),
           survey(16 * MIN, "csat", 2, contact_id="c"),
           survey(16 * MIN, "nps", 10, ticket_id="t"),
           survey(16 * MIN, "csat", 5, contact_id="unknown")]
    result = quality(log)
    assert result[("sales", interval(15 * MIN))].csat == 0 / 1
    assert result[("email_support", interval(15 * MIN))].nps == 100.0
    assert result[(None, interval(15 * MIN))].csat_responses == 1


def handled(cid, answered_s, done_s, customer=None, resolved=True, queue="billing"):
    first = [contact("contact.offered", answered_s - 30, cid, channel="voice",
                     **({"customer_ref": customer} if customer else {}))]
    return first + [contact("contact.enqueued", answered_s - 20, cid, channel="voice", queue=queue),
                    contact("contact.answered", answered_s, cid, channel="voice", queue=queue, agent_id="a1"),
                    contact("contact.ended", done_s - 10, cid, channel="voice"),
                    contact("contact.acw_completed", done_s, cid, channel="voice", agent_id="a1",
                            disposition="done", **({} if resolved is None else {"resolved": resolved}))]


def test_fcr_disposition_ignores_completions_without_the_flag():
    log = handled("a", 60, 300, resolved=True) + handled("b", 60, 300, resolved=False) + \
        handled("c", 60, 300, resolved=None)
    w = quality(log)[("billing", interval(0))]
    assert (w.fcr_flagged, w.fcr_resolved, w.fcr_unflagged, w.fcr_disposition) == (2, 1, 1, 1 / 2)


def test_fcr_repeat_window_and_reporting_after_it_elapses():
    W = 72 * HOUR
    log = (handled("x1", 60, 300, "+49301") + handled("x2", 300 + W, 400 + W, "+49301")   # offered at 300 + W - 30
           + handled("y1", 60, 300, "y@example.com")
           + [ticket("ticket.created", 300 + W + 1, "ty", priority="low", queue="email_support",
                     customer_ref="y@example.com")]                                        # 1 s after y1's window
           + handled("z1", 60, 300, "z@example.com")
           + [ticket("ticket.created", 300 + W, "tz", priority="low", queue="email_support",
                     customer_ref="z@example.com")]                                        # exactly at window end
           + handled("n", 60, 300))                                                        # no customer
    # x1's window is (its start, 300 + W]: x2 (offered at 300 + W - 30) and tz (at 300 + W) are repeats
    early = quality(log, at=at(300 + W - 1))[("billing", interval(300))]
    assert (early.repeat_reported, early.repeat_pending, early.repeat_unknown_customer) == (0, 3, 1)
    w = quality(log, at=at(300 + W))[("billing", interval(300))]
    assert (w.repeat_reported, w.repeat_fcr, w.fcr_repeat) == (3, 1, 1 / 3)                   # only y1
    no_tickets = quality(log, at=at(300 + W), tickets_are_repeats=False)[("billing", interval(300))]
    assert no_tickets.fcr_repeat == 2 / 3                                                      # y1 and z1
    late = quality(log, at=at(400 + 2 * W))
    assert late[("billing", interval(400 + W))].fcr_repeat == 1.0                              # x2: no later contact


# --- a simulated day --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def day():
    from streams.simulator import SimConfig, generate

    return [EVENT_ADAPTER.validate_json(m.value, context={"customer_hash_key": b"k"})
            for m in generate(SimConfig(seed=3, duration_s=86400, rate=6)) if m.kind == "valid"]


def test_simulated_day_agents(day):
    result = agent_time(day, timezone="UTC", interval_minutes=15)
    pooled = defaultdict(lambda: [0.0, 0.0])
    for (kind, name, _), w in result.items():
        if kind in ("queue", "center"):
            pooled[name][0] += w.busy_s
            pooled[name][1] += w.busy_s + w.state_s.get("available", 0.0)
    occupancy = {name: busy / total for name, (busy, total) in pooled.items() if total}
    print("occupancy", occupancy)
    for name in ("all", "billing", "sales", "support", "chat_support"):
        assert 0.3 <= occupancy[name] <= 0.98
    noon = min(e.occurred_at for e in day) + timedelta(hours=4)
    now = agents_now(day, at=noon)
    center, chat = now[("center", "all")], now[("queue", "chat_support")]
    print("now", center.online, center.available, center.on_contact, center.acw, center.not_ready,
          dict(center.not_ready_by_reason), "chat", chat.chat_occupied, chat.chat_capacity, chat.chat_utilization)
    assert 20 <= center.online <= 200
    assert center.online == center.available + center.on_contact + center.acw + center.not_ready
    assert 0 < chat.chat_utilization <= 1


def test_simulated_day_tickets(day):
    result = ticket_kpis(day, timezone="UTC", interval_minutes=15)
    totals = Counter()
    frt, rt = [], []
    for w in result.values():
        totals.update(created=w.created, first_responses=w.first_responses, solved=w.solved, reopened=w.reopened,
                      fr_breached=w.first_response_breached, res_breached=w.resolution_breached)
        frt += w.first_response_times
        rt += w.resolution_times
    print("tickets", dict(totals), "avg first response h", sum(frt) / len(frt) / 3600,
          "avg resolution h", sum(rt) / len(rt) / 3600)
    assert 200 <= totals["created"] <= 1000
    assert 0.5 <= totals["first_responses"] / totals["created"] <= 1
    assert 0.2 <= totals["solved"] / totals["created"] <= 0.9
    assert totals["fr_breached"] < totals["created"] * 0.3
    now = tickets_now(day, at=max(e.occurred_at for e in day))
    backlog = Counter()
    for v in now.values():
        backlog.update(v.backlog)
    print("backlog", dict(backlog), "at risk", sum(v.at_risk for v in now.values()))
    assert 0 < sum(backlog.values()) <= totals["created"]


def test_simulated_day_quality(day):
    end = max(e.occurred_at for e in day)
    totals = Counter()
    for at_time in (end, end + timedelta(hours=72)):
        for w in quality_kpis(day, timezone="UTC", interval_minutes=15, at=at_time).values():
            totals.update({f"{k}@{'end' if at_time == end else 'end+72h'}": v for k, v in w.__dict__.items()})
    t = {k: v for k, v in totals.items()}
    csat = t["csat_satisfied@end"] / t["csat_responses@end"]
    nps = 100 * (t["nps_promoters@end"] - t["nps_detractors@end"]) / t["nps_responses@end"]
    fcr_d = t["fcr_resolved@end"] / t["fcr_flagged@end"]
    fcr_r = t["repeat_fcr@end+72h"] / t["repeat_reported@end+72h"]
    print("quality csat", csat, "csat mean", t["csat_score_sum@end"] / t["csat_responses@end"], "nps", nps,
          "fcr disposition", fcr_d, "fcr repeat", fcr_r, "pending at end", t["repeat_pending@end"])
    assert 0.3 <= csat <= 1 and -100 <= nps <= 100 and 0.5 <= fcr_d <= 0.95 and 0.5 <= fcr_r <= 0.98
    assert t["repeat_reported@end"] == 0 and t["repeat_pending@end"] == t["fcr_flagged@end"]   # a 1-day log: 72 h not elapsed
