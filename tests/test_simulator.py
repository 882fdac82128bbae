"""Traffic simulator: determinism, the event contract, bad-input injection and the center's invariants."""

from __future__ import annotations

import asyncio
import collections
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from models.events import EVENT_ADAPTER, EVENT_TYPES
from streams.config import Settings, TopicSettings
from streams.simulator import TOPICS, SimConfig, SimMessage, generate, run, write_jsonl

CTX = {"customer_hash_key": b"test"}
VOICE_QUEUES = ("sales", "support", "billing")
PHONE = re.compile(r"^\+4930\d{7,8}$")
EMAIL = re.compile(r"^[a-z]+\.[a-z]+\d+@[a-z.]+\.(com|org|net)$")
LEGAL_TICKET_TRANSITIONS = {
    ("new", "open"), ("open", "pending"), ("open", "on_hold"), ("open", "solved"), ("pending", "open"),
    ("pending", "solved"), ("on_hold", "open"), ("solved", "open"), ("solved", "closed"),
}


def ts(event: dict) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def expected_outcome(value: bytes) -> tuple[str, str | None] | None:
    """What the worker derives from a record: None if valid, else (reason, field)."""
    try:
        EVENT_ADAPTER.validate_json(value, context=CTX)
    except ValidationError as exc:
        errors = exc.errors()
        types = {e["type"] for e in errors}
        if "json_invalid" in types:
            return "parse_error", None
        if "union_tag_invalid" in types:
            return "unknown_event_type", None
        assert len(errors) == 1, errors        # one fault per injected record: the field is unambiguous
        first = errors[0]
        if first["type"] == "union_tag_not_found":
            return "schema_error", "event_type"
        loc = first["loc"]
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        return "schema_error", ".".join(str(p) for p in loc) or None
    return None


# --- shared runs --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def day() -> list[SimMessage]:
    started = time.process_time()
    messages = list(generate(SimConfig(seed=3, duration_s=86400.0, rate=6.0)))
    cpu = time.process_time() - started
    print(f"\nfull simulated day at rate 6: {len(messages)} events in {cpu:.2f} s CPU "
          f"({len(messages) / cpu:,.0f} events/s, list kept)")
    return messages


@pytest.fixture(scope="module")
def day_events(day) -> list[dict]:
    return [orjson.loads(m.value) for m in day]


@pytest.fixture(scope="module")
def bad_run() -> list[SimMessage]:
    return list(generate(SimConfig(seed=5, duration_s=4 * 3600.0, rate=6.0, bad_ratio=0.1)))


def small(**kw) -> list[SimMessage]:
    return list(generate(SimConfig(**{"duration_s": 2 * 3600.0, **kw})))


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_bytes():
    a = small(seed=7, bad_ratio=0.05)
    b = small(seed=7, bad_ratio=0.05)
    assert a == b
    c = small(seed=8, bad_ratio=0.05)
    assert [m.value for m in a] != [m.value for m in c]


def test_generate_is_lazy_and_a_shorter_run_is_a_prefix():
    gen = generate(SimConfig(duration_s=1e9))
    first = [next(gen) for _ in range(100)]     # returns at once although the horizon is huge
    assert len(first) == 100
    short = small(seed=2, duration_s=1800.0)
    long = small(seed=2, duration_s=3600.0)
    assert short and long[:len(short)] == short
    assert all(m.at <= short[0].at + timedelta(seconds=1800) for m in short)


def test_valid_stream_does_not_depend_on_bad_ratio():
    clean = small(seed=4)
    dirty = small(seed=4, bad_ratio=0.3)
    assert [m for m in dirty if m.kind == "valid"] == clean
    assert len(dirty) > len(clean) * 1.3


def test_ids_differ_between_runs_with_other_parameters():
    a = small(seed=1, duration_s=600.0)
    b = small(seed=1, duration_s=600.0, rate=7.0)
    ids_a = {orjson.loads(m.value)["event_id"] for m in a}
    ids_b = {orjson.loads(m.value)["event_id"] for m in b}
    assert not ids_a & ids_b      # a second run into the same topics is not de-duplicated away


def test_config_is_validated():
    with pytest.raises(ValueError):
        SimConfig(bad_ratio=1.0)
    with pytest.raises(ValueError):
        SimConfig(start=datetime(2025, 1, 6, 8))   # naive
    with pytest.raises(ValueError):
        SimConfig(timezone="Mars/Olympus")


# --- the contract -----------------------------------------------------------------------------

def test_every_valid_message_validates_and_is_routed_and_keyed(day, day_events):
    topics = TopicSettings()
    seen_types = set()
    for msg, event in zip(day, day_events):
        assert msg.kind == "valid" and msg.reason is None and msg.field is None
        model = EVENT_ADAPTER.validate_json(msg.value, context=CTX)
        assert b"\n" not in msg.value
        etype = event["event_type"]
        seen_types.add(etype)
        assert model.tenant == "default" and "tenant" not in event
        assert msg.at == model.occurred_at       # emitted at its event time
        family = etype.split(".", 1)[0]
        if family in ("contact", "chat"):
            assert msg.topic == ("chat" if event["channel"] == "chat" else "telephony")
            assert msg.key == event["contact_id"].encode()
        else:
            assert msg.topic == family
            assert getattr(topics, msg.topic) == topics.input_for(etype)
            entity = event.get("agent_id") if family == "agent" else event.get("ticket_id") or event.get("contact_id")
            assert msg.key == entity.encode()
        assert msg.topic in TOPICS
    assert seen_types == set(EVENT_TYPES), set(EVENT_TYPES) - seen_types


def test_event_ids_unique_and_time_non_decreasing(day, day_events):
    ids = [e["event_id"] for e in day_events]
    assert len(set(ids)) == len(ids)
    ats = [m.at for m in day]
    assert ats == sorted(ats)
    times = [ts(e) for e in day_events]
    assert times == sorted(times)
    assert all(e["occurred_at"].endswith("Z") for e in day_events[:100])


def test_site_offset_and_dst_change():
    # Europe/Berlin switches to summer time on 2025-03-30 at 02:00 local
    start = datetime(2025, 3, 29, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    msgs = list(generate(SimConfig(seed=9, rate=2.0, duration_s=30 * 3600.0, start=start,
                                   timezone="Europe/Berlin")))
    stamps = [orjson.loads(m.value)["occurred_at"] for m in msgs]
    assert {s[-6:] for s in stamps} == {"+01:00", "+02:00"}
    times = [datetime.fromisoformat(s) for s in stamps]
    assert times == sorted(times) and times == [m.at for m in msgs]
    for m in msgs[::50]:
        EVENT_ADAPTER.validate_json(m.value, context=CTX)


# --- bad input --------------------------------------------------------------------------------

def test_invalid_messages_fail_with_the_declared_reason_and_field(bad_run):
    invalid = [m for m in bad_run if m.kind == "invalid"]
    kinds = collections.Counter(m.kind for m in bad_run)
    bad_share = (kinds["invalid"] + kinds["duplicate"]) / len(bad_run)
    assert 0.08 < bad_share < 0.12, kinds
    outcomes = collections.Counter()
    for m in invalid:
        outcome = expected_outcome(m.value)
        assert outcome == (m.reason, m.field), (m, outcome)
        assert m.topic in TOPICS
        assert b"\n" not in m.value
        outcomes[outcome] += 1
    reasons = {r for r, _ in outcomes}
    fields = {f for _, f in outcomes}
    assert reasons == {"parse_error", "schema_error", "unknown_event_type"}
    assert {"event_type", "event_id", "occurred_at", None} <= fields
    assert fields & {"channel", "state", "priority", "status", "author", "kind"}
    assert fields & {"score", "queue", "agent_id", "resolved", "contact_id", "ticket_id", "source", "queues"}
    print(f"\nbad mix over {len(bad_run)} messages: {dict(kinds)}; outcomes {dict(outcomes)}")


def test_duplicates_are_byte_copies_of_earlier_valid_messages(bad_run):
    seen: dict[bytes, SimMessage] = {}
    dups = 0
    for m in bad_run:
        if m.kind == "valid":
            seen[m.value] = m
        elif m.kind == "duplicate":
            dups += 1
            original = seen[m.value]          # KeyError: not a copy of an earlier valid message
            assert (original.topic, original.key) == (m.topic, m.key)
            assert original.at <= m.at and m.reason is None and m.field is None
    assert dups > 50
    ats = [m.at for m in bad_run]
    assert ats == sorted(ats)


# --- the center's invariants --------------------------------------------------------------------

def test_contact_lifecycles(day_events):
    open_segment: dict[str, tuple[str, datetime]] = {}      # contact -> (queue, enqueued at)
    handling: dict[str, str] = {}                          # contact -> agent talking to it
    channel: dict[str, str] = {}
    ended: dict[str, tuple[datetime, str | None]] = {}
    acw_done: set[str] = set()
    answered_agent: dict[str, str] = {}
    on_hold: dict[str, bool] = {}
    enqueued_queues = collections.defaultdict(list)
    for e in day_events:
        et = e["event_type"]
        if not (et.startswith("contact.") or et == "chat.message"):
            continue
        cid = e["contact_id"]
        t = ts(e)
        if et == "contact.offered":
            assert cid not in channel
            channel[cid] = e["channel"]
            continue
        assert cid in channel, f"{et} before contact.offered"
        assert e["channel"] == channel[cid]
        assert cid not in acw_done
        if et == "contact.enqueued":
            assert cid not in open_segment and cid not in handling and cid not in ended
            open_segment[cid] = (e["queue"], t)
            enqueued_queues[cid].append(e["queue"])
        elif et in ("contact.answered", "contact.abandoned", "contact.flowed_out"):
            queue, since = open_segment.pop(cid)       # KeyError: not enqueued first
            assert e["queue"] == queue and t >= since
            if et == "contact.answered":
                handling[cid] = answered_agent[cid] = e["agent_id"]
        elif et in ("contact.hold_started", "contact.hold_ended"):
            assert handling[cid] == e["agent_id"]
            assert on_hold.get(cid, False) == (et == "contact.hold_ended")
            on_hold[cid] = et == "contact.hold_started"
        elif et == "contact.transferred":
            assert handling.pop(cid) == e["agent_id"] and not on_hold.get(cid)
            assert e["to_queue"] and e["to_queue"] != e["queue"]
        elif et == "chat.message":
            assert channel[cid] == "chat" and cid not in ended
            if e["author"] == "agent":
                assert handling[cid] == e["agent_id"]
        elif et == "contact.ended":
            assert cid not in ended, "ended twice"
            assert cid not in open_segment and not on_hold.get(cid)
            ended[cid] = (t, e.get("agent_id"))
            assert e.get("agent_id") == handling.pop(cid, None)
        elif et == "contact.acw_completed":
            end_t, end_agent = ended[cid]              # KeyError: ACW completed before the end
            assert t >= end_t and end_agent == e["agent_id"] == answered_agent[cid]
            assert isinstance(e["resolved"], bool) and e["disposition"]
            acw_done.add(cid)
    assert len(ended) > 3000
    assert sum(1 for qs in enqueued_queues.values() if len(qs) > 1) > 20     # transfers and overflows


def test_agents_capacity_skills_and_states(day_events):
    state: dict[str, str] = {}
    skills: dict[str, tuple[list[str], dict[str, int]]] = {}
    busy: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: {"voice": set(), "chat": set()})
    contact_channel: dict[str, str] = {}
    contact_agent: dict[str, str] = {}
    reasons = collections.Counter()
    for e in day_events:
        et = e["event_type"]
        if et == "agent.state_changed":
            aid = e["agent_id"]
            assert e["queues"] and e["capacity"] and e.get("team")
            assert state.get(aid) != e["state"] or e["state"] == "not_ready"
            state[aid] = e["state"]
            skills[aid] = (e["queues"], e["capacity"])
            if e["state"] == "not_ready":
                reasons[e["reason"]] += 1
            elif "reason" in e:
                pytest.fail(f"reason on a {e['state']} state")
            if e["state"] in ("offline", "not_ready", "available"):
                assert not busy[aid]["voice"] and not busy[aid]["chat"], e
        elif et == "contact.offered":
            contact_channel[e["contact_id"]] = "chat" if e["channel"] == "chat" else "voice"
        elif et == "contact.answered":
            aid, cid = e["agent_id"], e["contact_id"]
            queues, capacity = skills[aid]
            assert e["queue"] in queues
            assert state[aid] in ("available", "on_contact", "acw")
            kind = contact_channel[cid]
            slots = busy[aid]
            slots[kind].add(cid)
            assert len(slots[kind]) <= capacity.get(kind, 0)
            assert not slots["chat" if kind == "voice" else "voice"], "voice and chat at once"
            contact_agent[cid] = aid
        elif et in ("contact.acw_completed", "contact.transferred"):
            cid = e["contact_id"]
            busy[contact_agent.pop(cid)][contact_channel[cid]].discard(cid)
    assert {"break", "lunch"} <= set(reasons)
    assert "offline" in state.values() and len(state) > 50
    chat_peak = max(len(b["chat"]) for b in busy.values())
    assert chat_peak <= 3


def test_customers_and_repeats(day_events):
    offered = [e for e in day_events if e["event_type"] == "contact.offered"]
    for e in offered:
        pattern = EMAIL if e["channel"] == "chat" else PHONE
        assert pattern.match(e["customer_ref"]), e
    for e in day_events:
        if e["event_type"] == "ticket.created":
            assert EMAIL.match(e["customer_ref"])
    first_seen: dict[str, datetime] = {}
    repeats = 0
    for e in offered:
        ref, t = e["customer_ref"], ts(e)
        if ref in first_seen and e["channel"] != "callback" and t - first_seen[ref] <= timedelta(hours=72):
            repeats += 1
        first_seen.setdefault(ref, t)
    assert repeats > 100, repeats
    assert {e["channel"] for e in offered} == {"voice", "chat", "callback"}


def service_level(events: list[dict], queues, threshold: float) -> tuple[float, int, int]:
    """answered <= T / (answered + abandoned - short abandoned), the default formula."""
    enq: dict[str, datetime] = {}
    answered = within = abandoned = short = 0
    for e in events:
        et = e["event_type"]
        if et == "contact.enqueued":
            enq[e["contact_id"]] = ts(e)
        elif et in ("contact.answered", "contact.abandoned") and e["queue"] in queues:
            wait = (ts(e) - enq[e["contact_id"]]).total_seconds()
            if et == "contact.answered":
                answered += 1
                within += wait <= threshold
            else:
                abandoned += 1
                short += wait < 5
    return within / (answered + abandoned - short), answered, abandoned


def test_service_level_is_plausible(day_events):
    sl, answered, abandoned = service_level(day_events, VOICE_QUEUES, 20.0)
    chat_sl, _, _ = service_level(day_events, ("chat_support",), 60.0)
    print(f"\nday SL voice {sl:.1%} ({answered} answered, {abandoned} abandoned), chat {chat_sl:.1%}")
    assert 0.5 <= sl <= 0.98
    assert 0.5 <= chat_sl <= 0.995
    assert 0.005 < abandoned / (answered + abandoned) < 0.2


def test_staffing_drop_hurts_service_level():
    config = dict(seed=11, duration_s=5 * 3600.0, rate=6.0)
    normal = [orjson.loads(m.value) for m in generate(SimConfig(**config))]
    short = [orjson.loads(m.value) for m in generate(SimConfig(**config, staffing_factor=0.6))]
    sl_normal = service_level(normal, VOICE_QUEUES, 20.0)[0]
    sl_short = service_level(short, VOICE_QUEUES, 20.0)[0]
    assert sl_short < sl_normal - 0.15, (sl_normal, sl_short)


def test_tickets_follow_legal_transitions(day_events):
    status: dict[str, str] = {}
    counts = collections.Counter()
    for e in day_events:
        et = e["event_type"]
        if not et.startswith("ticket."):
            continue
        tid = e["ticket_id"]
        counts[et] += 1
        if et == "ticket.created":
            assert tid not in status and e["priority"] in ("low", "normal", "high", "urgent")
            assert e["queue"] == "email_support"
            status[tid] = "new"
            continue
        assert tid in status and status[tid] != "closed"
        if et == "ticket.status_changed":
            assert e["previous_status"] == status[tid]
            assert (status[tid], e["status"]) in LEGAL_TICKET_TRANSITIONS, e
            status[tid] = e["status"]
        elif et == "ticket.reopened":
            assert status[tid] == "solved"
        elif et == "ticket.agent_replied":
            assert status[tid] == "open"
    assert {"solved", "pending"} <= set(status.values())
    assert counts["ticket.agent_replied"] > 100


def test_surveys(day_events):
    contacts = set()
    tickets = set()
    kinds = collections.Counter()
    for e in day_events:
        et = e["event_type"]
        if et == "contact.acw_completed":
            contacts.add(e["contact_id"])
        elif et == "ticket.created":
            tickets.add(e["ticket_id"])
        elif et == "survey.responded":
            assert ("contact_id" in e) != ("ticket_id" in e)
            assert e["contact_id"] in contacts if "contact_id" in e else e["ticket_id"] in tickets
            low, high = (1, 5) if e["kind"] == "csat" else (0, 10)
            assert low <= e["score"] <= high
            kinds[(e["kind"], "ticket" if "ticket_id" in e else "contact")] += 1
    assert kinds[("csat", "contact")] > 100 and kinds[("nps", "contact")] > 10 and kinds[("csat", "ticket")] > 5


def test_long_waits_lower_satisfaction():
    events = [orjson.loads(m.value) for m in generate(SimConfig(seed=2, duration_s=8 * 3600.0, rate=10.0,
                                                                 staffing_factor=0.6))]
    wait: dict[str, float] = collections.defaultdict(float)
    enq: dict[str, datetime] = {}
    short, long = [], []
    for e in events:
        et = e["event_type"]
        if et == "contact.enqueued":
            enq[e["contact_id"]] = ts(e)
        elif et == "contact.answered":
            wait[e["contact_id"]] += (ts(e) - enq[e["contact_id"]]).total_seconds()
        elif et == "survey.responded" and e["kind"] == "csat" and "contact_id" in e:
            (long if wait[e["contact_id"]] > 120 else short if wait[e["contact_id"]] < 20 else []).append(e["score"])
    assert len(short) > 30 and len(long) > 30
    assert sum(long) / len(long) < sum(short) / len(short) - 0.5


# --- volume and speed ---------------------------------------------------------------------------

def test_ten_minutes_at_default_rate():
    msgs = list(generate(SimConfig(duration_s=600.0)))
    by_type = collections.Counter(orjson.loads(m.value)["event_type"] for m in msgs)
    print(f"\n600 s at the default rate from Monday 08:00: {len(msgs)} events: {dict(by_type)}")
    assert 150 <= len(msgs) <= 3000     # a cold start: the center fills up during these minutes
    assert by_type["contact.offered"] >= 20 and by_type["agent.state_changed"] >= 50


# --- file and runner ----------------------------------------------------------------------------

def test_write_jsonl(tmp_path: Path):
    msgs = small(seed=6, duration_s=900.0, bad_ratio=0.05)
    path = tmp_path / "sub" / "events.jsonl"
    assert write_jsonl(iter(msgs), path) == len(msgs)
    assert path.read_bytes().split(b"\n") == [m.value for m in msgs] + [b""]


def test_run_dry_writes_the_log_and_counts(tmp_path: Path):
    config = SimConfig(seed=6, duration_s=900.0, bad_ratio=0.05)
    lines: list[str] = []
    out = tmp_path / "run.jsonl"
    stats = asyncio.run(run(Settings(), config, speed=0, produce=False, out=out, progress=lines.append))
    msgs = list(generate(config))
    assert stats.sent == len(msgs) == stats.valid + stats.invalid + stats.duplicate
    assert stats.invalid == sum(m.kind == "invalid" for m in msgs)
    assert stats.by_event_type == dict(collections.Counter(
        orjson.loads(m.value)["event_type"] for m in msgs if m.kind == "valid"))
    assert stats.first_at == msgs[0].at and stats.last_at == msgs[-1].at
    assert out.read_bytes() == b"".join(m.value + b"\n" for m in msgs)
    assert "done" in lines[-1] and str(out) in lines[-1]


def test_run_paced_starts_now_and_honours_stop():
    async def go():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        started = datetime.now(timezone.utc)
        stats = await run(Settings(), SimConfig(duration_s=3600.0), speed=60.0, produce=False, progress=None,
                          stop=stop)
        return started, stats

    started, stats = asyncio.run(go())
    assert stats.sent > 0
    assert abs((stats.first_at - started).total_seconds()) < 5      # live event times
    assert stats.last_at - stats.first_at < timedelta(seconds=60)   # stopped after ~0.3 s x 60
