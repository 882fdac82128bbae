"""Every exported KPI against the batch oracles, through a real broker and real workers.

A simulated site (Europe/Berlin, > 50,000 events) with late, out-of-order and repeated events is
produced to the input topics; at the end one offline `agent.state_changed` per partition (a
*heartbeat*) brings every partition's watermark to the same instant, so all workers evaluate their
windows at one time, which the oracles use too. The scraped metrics, summed over workers, must equal
the oracles: counts exactly, averages and ratios to 1e-9, each queue with another service-level
formula so all four are checked.

Scenarios: one worker; one worker killed with SIGKILL mid-run and started again; two workers on the
same topics with one stopped mid-run.
"""

from __future__ import annotations

import base64
import functools
import random
import signal
import time
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from models.events import EVENT_ADAPTER
from streams.app import entity_partition
from streams.simulator import SimConfig, SimMessage, generate
from tests import oracle, oracle_agents, oracle_quality, oracle_tickets
from tests.conftest import TEST_HASH_KEY, run, settings_for, total
from tests.oracle_compare import assert_same_ratio
from tests.test_ingest_integration import produce

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"
PARTITIONS = 4
REPEAT_WINDOW_S = 1800   # short, so that repeat-based FCR gets reported within the simulated hours
FORMULAS = {  # queue -> (channel, service-level formula): every formula on some queue
    "sales": ("voice", "answered_of_offered_excl_short"),
    "support": ("voice", "answered_of_answered"),
    "billing": ("voice", "met_of_removed"),
    "chat_support": ("chat", "answered_of_offered"),
}
QUEUE_KINDS = {  # metric kind -> oracle QueueWindow attribute
    "offered": "offered", "answered": "answered", "abandoned": "abandoned", "short_abandoned": "short_abandoned",
    "flowed_out": "flowed_out", "answered_within_threshold": "answered_within_sl",
    "abandoned_within_threshold": "abandoned_within_sl", "transferred": "transferred", "handled": "handled",
    "held": "held",
}


# -- the log -----------------------------------------------------------------------------------------

@functools.cache
def site_log() -> tuple[list[SimMessage], datetime]:
    """Simulated messages in a perturbed arrival order (3 % up to 30 min late, 2 % sent twice), then
    the heartbeats; and the evaluation time (the heartbeats' event time)."""
    rng = random.Random(11)
    messages = [m for m in generate(SimConfig(seed=11, duration_s=3 * 3600 + 7.5 * 60, rate=30, timezone=ZONE))
                if m.kind == "valid"]
    stamped = []
    for m in messages:
        delay = rng.uniform(0, 1800) if rng.random() < 0.03 else rng.expovariate(1 / 5)
        stamped.append((m.at + timedelta(seconds=delay), m))
        if rng.random() < 0.02:
            stamped.append((m.at + timedelta(seconds=rng.uniform(1, 600)), m))
    stamped.sort(key=lambda pair: pair[0])
    log = [m for _, m in stamped]
    at = max(m.at for m in messages) + timedelta(seconds=1)
    for partition in range(PARTITIONS):
        agent = next(f"heartbeat-{partition}-{n}" for n in range(1000)
                     if entity_partition(f"agent:heartbeat-{partition}-{n}", PARTITIONS) == partition)
        value = orjson.dumps({"event_id": f"hb-{partition}", "event_type": "agent.state_changed",
                              "occurred_at": at.isoformat(), "source": "test", "agent_id": agent,
                              "state": "offline"})
        log.append(SimMessage("agent", agent.encode(), value, at, "valid"))
    return log, at


@functools.cache
def decoded_log() -> list:
    log, _ = site_log()
    return [EVENT_ADAPTER.validate_json(m.value, context={"customer_hash_key": TEST_HASH_KEY.encode()})
            for m in log]


def site_settings(kafka_bootstrap, tmp_path, **env):
    config = tmp_path / "floorwatch.toml"
    config.write_text(f'[site]\ntimezone = "{ZONE}"\n[quality]\nrepeat_window_s = {REPEAT_WINDOW_S}\n' + "".join(
        f'[queues.{queue}]\nchannel = "{channel}"\nsl_formula = "{formula}"\n'
        for queue, (channel, formula) in FORMULAS.items()))
    env.setdefault("FLOORWATCH_WORKER__SNAPSHOT_INTERVAL_S", "1")
    env.setdefault("FLOORWATCH_WORKER__SESSION_TIMEOUT_S", "10")   # small test state: short GC pauses
    return settings_for(kafka_bootstrap, FLOORWATCH_CONFIG=str(config), **env)


# -- expected values -----------------------------------------------------------------------------------

def windows_at(at: datetime) -> dict[str, tuple[datetime, datetime]]:
    """[start, end) of each exported window at evaluation time `at` (definitions: docs/kpi-definitions.md)."""
    zone = ZoneInfo(ZONE)
    local = at.astimezone(zone)
    current = oracle.interval_start(at, zone, 15)
    previous = oracle.interval_start(current - timedelta(microseconds=1), zone, 15)
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    result = {"interval_current": (current, current + timedelta(minutes=15)),
              "interval_previous": (previous, current),
              "today": (today, today + timedelta(days=1))}
    epoch_s = int(at.timestamp())
    bucket_end = datetime.fromtimestamp(epoch_s - epoch_s % 10 + 10, tz=at.tzinfo)
    for minutes in (5, 15, 60):
        result[f"rolling_{minutes}m"] = (bucket_end - timedelta(minutes=minutes), bucket_end)
    return result


def merged(*scrapes: dict) -> dict:
    """Samples of several workers, summed per series (what `sum` over instances gives)."""
    result: dict = defaultdict(lambda: defaultdict(float))
    for samples in scrapes:
        for name, series in samples.items():
            for labels, value in series.items():
                result[name][labels] += value
    return result


def value(samples: dict, metric: str, /, **labels) -> float:
    series = samples.get(metric, {})
    return sum(v for k, v in series.items() if all(dict(k).get(lk) == lv for lk, lv in labels.items()))


def check_queues(samples: dict, events: list, at: datetime, settings) -> int:
    checked = 0
    rules = functools.cache(lambda q, c: oracle.QueueRules(
        settings.queue(q, c).threshold_s, settings.queue(q, c).short_abandon_s))
    for window, (start, end) in windows_at(at).items():
        expected = oracle.queue_kpis(events, timezone=ZONE, interval_minutes=15, rules=rules,
                                     window_of=lambda t, s=start, e=end: s if s <= t < e else None)
        exported = {(dict(k)["queue"], dict(k)["channel"])
                    for k in samples["floorwatch_queue_window_contacts"] if dict(k)["window"] == window}
        assert exported == {(q, c) for q, c, _ in expected}, window
        for (queue, channel, _), want in expected.items():
            labels = {"queue": queue, "channel": channel, "window": window}
            where = (window, queue, channel)
            for kind, attribute in QUEUE_KINDS.items():
                assert value(samples, "floorwatch_queue_window_contacts", kind=kind, **labels) == \
                    getattr(want, attribute), (where, kind)
            for outcome, waits, average in (("answered", want.answered_waits, want.asa_s),
                                            ("abandoned", want.abandoned_waits, want.average_abandon_time_s)):
                timed = value(samples, "floorwatch_queue_window_timed_contacts", outcome=outcome, **labels)
                assert timed == len(waits), (where, outcome)
                got = value(samples, "floorwatch_queue_window_wait_seconds", outcome=outcome, **labels) / timed \
                    if timed else None
                assert_same_ratio(got, average, (where, outcome))
            handled = want.handled
            for part, average in (("talk", want.average_talk_s), ("hold", want.average_hold_s),
                                  ("acw", want.average_acw_s)):
                seconds = value(samples, "floorwatch_queue_window_handle_seconds", part=part, **labels)
                assert_same_ratio(seconds / handled if handled else None, average, (where, part))
            q = settings.queue(queue, channel)
            met = value(samples, "floorwatch_queue_window_service_level_met_contacts", **labels)
            eligible = value(samples, "floorwatch_queue_window_service_level_eligible_contacts", **labels)
            assert_same_ratio(met / eligible if eligible else None, want.service_level(q.sl_formula.value),
                              (where, q.sl_formula))
            if window in ("interval_current", "interval_previous", "today", "rolling_15m", "rolling_60m"):
                # the owner's precomputed ratio (one series per queue over all workers)
                ratio = samples.get("floorwatch_queue_window_service_level_ratio", {})
                series = [v for k, v in ratio.items() if dict(k) == labels]
                expected_sl = want.service_level(q.sl_formula.value)
                assert len(series) == (expected_sl is not None), (where, "service level ratio series", series)
                if series:
                    assert_same_ratio(series[0], expected_sl, (where, "service level ratio"))
            abandoned = value(samples, "floorwatch_queue_window_abandon_rate_abandoned_contacts", **labels)
            offered = value(samples, "floorwatch_queue_window_abandon_rate_offered_contacts", **labels)
            assert_same_ratio(abandoned / offered if offered else None,
                              want.abandon_rate(q.abandon_rate_excludes_short), (where, "abandon rate"))
            checked += 1
    return checked


def waiting_now(events: list, at: datetime) -> dict[tuple[str, str], list[datetime]]:
    """Enqueue times of the contacts waiting at `at`: segments not closed by an answer, abandon or
    flow-out (first in, first out per contact and queue)."""
    by_contact: dict[str, list] = defaultdict(list)
    for e in oracle.unique_events(events):
        if e.event_type in ("contact.enqueued", "contact.answered", "contact.abandoned", "contact.flowed_out") \
                and e.occurred_at <= at:
            by_contact[e.contact_id].append(e)
    waiting: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for contact_events in by_contact.values():
        contact_events.sort(key=lambda e: (e.occurred_at, e.event_type != "contact.enqueued"))
        open_: dict[str, list] = defaultdict(list)
        for e in contact_events:
            if e.event_type == "contact.enqueued":
                open_[e.queue].append(e)
            elif open_[e.queue]:
                open_[e.queue].pop(0)
        for segments in open_.values():
            for e in segments:
                waiting[(e.queue, e.channel.value)].append(e.occurred_at)
    return waiting


def in_progress_now(events: list, at: datetime) -> dict[tuple[str, str], int]:
    """Contacts answered and whose following ACW has not completed at `at`, by the answer's queue."""
    by_contact: dict[str, list] = defaultdict(list)
    for e in oracle.unique_events(events):
        if e.event_type in ("contact.answered", "contact.acw_completed") and e.occurred_at <= at:
            by_contact[e.contact_id].append(e)
    result: dict[tuple[str, str], int] = defaultdict(int)
    for contact_events in by_contact.values():
        last = max(contact_events, key=lambda e: (e.occurred_at, e.event_type == "contact.acw_completed"))
        if last.event_type == "contact.answered":
            result[(last.queue, last.channel.value)] += 1
    return result


def check_waiting(samples: dict, events: list, at: datetime) -> None:
    for (queue, channel), n in in_progress_now(events, at).items():
        assert value(samples, "floorwatch_queue_in_progress_contacts", queue=queue, channel=channel) == n, \
            (queue, channel, "in progress")
    assert sum(samples.get("floorwatch_queue_in_progress_contacts", {}).values()) == \
        sum(in_progress_now(events, at).values())
    expected = waiting_now(events, at)
    for (queue, channel), enqueued in expected.items():
        labels = {"queue": queue, "channel": channel}
        assert value(samples, "floorwatch_queue_waiting_contacts", **labels) == len(enqueued), labels
        oldest = value(samples, "floorwatch_queue_oldest_wait_seconds", **labels)
        # one worker's series per queue here; the sum over workers of a max is only right for one
        assert oldest == pytest.approx((at - min(enqueued)).total_seconds(), abs=1e-6) or len(
            samples.get("floorwatch_partitions_owned", {})) > 1, labels
    total_waiting = sum(samples.get("floorwatch_queue_waiting_contacts", {}).values())
    assert total_waiting == sum(len(v) for v in expected.values())


def check_agents(samples: dict, events: list, at: datetime) -> int:
    expected_now = oracle_agents.agents_now(events, at=at)
    checked = 0
    for (kind, name), want in expected_now.items():
        if kind == "agent":
            continue
        for state in ("available", "not_ready", "on_contact", "acw"):
            assert value(samples, "floorwatch_agents", scope=kind, name=name, state=state) == \
                getattr(want, state), (kind, name, state)
        for reason, n in want.not_ready_by_reason.items():
            assert value(samples, "floorwatch_agents_not_ready", scope=kind, name=name,
                         reason=reason or "none") == n, (kind, name, reason)
        assert value(samples, "floorwatch_agents_chat_capacity_slots", scope=kind, name=name) == want.chat_capacity
        assert value(samples, "floorwatch_agents_chat_occupied_slots", scope=kind, name=name) == want.chat_occupied, \
            (kind, name, "chat occupied")
        checked += 1
    intervals = oracle_agents.agent_time(events, timezone=ZONE, interval_minutes=15, until=at)
    for window, (start, end) in list(windows_at(at).items())[:3]:
        summed: dict = defaultdict(lambda: defaultdict(float))
        for (kind, name, interval), w in intervals.items():
            if kind != "agent" and start <= interval < end:
                for state, seconds in w.state_s.items():
                    summed[(kind, name)][state] += seconds
        for (kind, name), states in summed.items():
            for state, seconds in states.items():
                got = value(samples, "floorwatch_agent_window_state_seconds", scope=kind, name=name,
                            window=window, state=state)
                assert got == pytest.approx(seconds, rel=1e-9, abs=1e-6), (window, kind, name, state)
                checked += 1
    return checked


def check_tickets(samples: dict, events: list, at: datetime) -> int:
    intervals = oracle_tickets.ticket_kpis(events, timezone=ZONE, interval_minutes=15, at=at)
    checked = 0
    for window, (start, end) in list(windows_at(at).items())[:3]:
        summed: dict = defaultdict(lambda: defaultdict(float))
        for (queue, priority, interval), w in intervals.items():
            if start <= interval < end:
                row = summed[(queue, priority)]
                for kind in ("created", "first_responses", "solved", "reopened", "first_response_breached",
                             "resolution_breached"):
                    row[kind] += getattr(w, kind)
                row["first_response_s"] += sum(w.first_response_times)
                row["resolution_s"] += sum(w.resolution_times)
        for (queue, priority), row in summed.items():
            labels = {"queue": queue, "priority": priority, "window": window}
            for kind in ("created", "first_responses", "solved", "reopened", "first_response_breached",
                         "resolution_breached"):
                assert value(samples, "floorwatch_ticket_window_tickets", kind=kind, **labels) == row[kind], \
                    (labels, kind)
            for metric, key in (("floorwatch_ticket_window_first_response_seconds", "first_response_s"),
                                ("floorwatch_ticket_window_resolution_seconds", "resolution_s")):
                assert value(samples, metric, **labels) == pytest.approx(row[key], rel=1e-9, abs=1e-6), (labels, key)
            checked += 1
    for (queue, priority), want in oracle_tickets.tickets_now(events, at=at).items():
        for age, n in want.backlog.items():
            assert value(samples, "floorwatch_tickets_open", queue=queue, priority=priority, age=age) == n
        assert value(samples, "floorwatch_tickets_at_risk", queue=queue, priority=priority,
                     target="first_response") == want.at_risk_first_response
        assert value(samples, "floorwatch_tickets_at_risk", queue=queue, priority=priority,
                     target="resolution") == want.at_risk_resolution
        checked += 1
    return checked


def check_quality(samples: dict, events: list, at: datetime) -> int:
    intervals = oracle_quality.quality_kpis(events, timezone=ZONE, interval_minutes=15, at=at,
                                            repeat_window_s=REPEAT_WINDOW_S)
    checked = 0
    for window, (start, end) in list(windows_at(at).items())[:3]:
        summed: dict = defaultdict(lambda: defaultdict(int))
        for (queue, interval), w in intervals.items():
            if start <= interval < end:
                row = summed[queue or "none"]
                for name in ("csat_responses", "csat_satisfied", "csat_score_sum", "nps_responses", "nps_promoters",
                             "nps_detractors", "fcr_flagged", "fcr_resolved", "fcr_unflagged", "repeat_reported",
                             "repeat_fcr", "repeat_pending", "repeat_unknown_customer"):
                    row[name] += getattr(w, name)
        for queue, row in summed.items():
            labels = {"queue": queue, "window": window}
            for kind, name in (("csat", "csat_responses"), ("csat_satisfied", "csat_satisfied"),
                               ("nps", "nps_responses"), ("nps_promoter", "nps_promoters"),
                               ("nps_detractor", "nps_detractors")):
                assert value(samples, "floorwatch_quality_window_surveys", kind=kind, **labels) == row[name], \
                    (labels, kind)
            assert value(samples, "floorwatch_quality_window_csat_score_points", **labels) == row["csat_score_sum"]
            for kind in ("fcr_flagged", "fcr_resolved", "fcr_unflagged", "repeat_reported", "repeat_fcr",
                         "repeat_pending", "repeat_unknown_customer"):
                assert value(samples, "floorwatch_quality_window_contacts", kind=kind, **labels) == row[kind], \
                    (labels, kind)
            checked += 1
    return checked


def check_all(samples: dict, settings) -> dict[str, int]:
    _, at = site_log()
    events = decoded_log()
    assert value(samples, "floorwatch_watermark_timestamp_seconds") > 0
    checked = {"queues": check_queues(samples, events, at, settings)}
    check_waiting(samples, events, at)
    checked["agents"] = check_agents(samples, events, at)
    checked["tickets"] = check_tickets(samples, events, at)
    checked["quality"] = check_quality(samples, events, at)
    return checked


def wait_until_oracle_matches(workers, settings, timeout: float = 240.0) -> dict[str, int]:
    """Scrape the live workers until the summed metrics equal the oracles; fail with the last mismatch."""
    _, at = site_log()
    deadline = time.monotonic() + timeout
    last_error: AssertionError | None = None
    while time.monotonic() < deadline:
        scrapes = []
        for worker in workers:
            try:
                scrapes.append(worker.metrics())
            except OSError:
                pass
        samples = merged(*scrapes)
        marks = [v for s in scrapes for v in s.get("floorwatch_watermark_timestamp_seconds", {}).values()]
        owned = sum(value(s, "floorwatch_partitions_owned") for s in scrapes)
        if marks and min(marks) == at.timestamp() and owned == PARTITIONS:
            try:
                return check_all(samples, settings)
            except AssertionError as error:
                last_error = error
        else:
            last_error = AssertionError(f"not caught up: watermarks {marks} (want {at.timestamp()}), "
                                        f"{owned} of {PARTITIONS} partitions owned, accepted "
                                        f"{total(samples, 'floorwatch_ingest_accepted_events_total')}")
        time.sleep(1.0)
    logs = "\n\n".join(w.log_tail(15) for w in workers)
    raise AssertionError(f"metrics never matched the oracle: {last_error}\n{logs}")


# -- scenarios ---------------------------------------------------------------------------------------

def test_every_exported_kpi_matches_the_oracle(kafka_bootstrap, make_worker, tmp_path):
    settings, env = site_settings(kafka_bootstrap, tmp_path)
    log, _ = site_log()
    assert len(log) >= 50_000
    worker = make_worker(settings, env).start()
    run(produce(settings, log))
    checked = wait_until_oracle_matches([worker], settings)
    assert checked["queues"] >= 24 and checked["agents"] > 20 and checked["tickets"] > 10 \
        and checked["quality"] > 5, checked
    check_snapshots(settings)


def check_snapshots(settings) -> None:
    """The snapshot topic: the latest revision of each queue's today window equals the oracle, for
    every SL formula; closed intervals are final; revisions grow; agents are published."""
    from models.snapshots import AgentSnapshot, QueueSnapshot
    from tests.test_ingest_integration import read_all

    values = run(read_all(settings, settings.topics.snapshots, expected=10**9, timeout=8.0))
    queues: dict[tuple, list[QueueSnapshot]] = defaultdict(list)
    agents = []
    for raw in values:
        body = orjson.loads(raw)
        if body["type"] == "queue":
            snap = QueueSnapshot.model_validate(body)
            queues[(snap.queue, snap.channel, snap.window.kind, snap.window.start_ms)].append(snap)
        else:
            agents.append(AgentSnapshot.model_validate(body))
    assert agents and all(a.agent_id for a in agents)
    events = decoded_log()
    _, at = site_log()
    start, end = windows_at(at)["today"]
    rules = functools.cache(lambda q, c: oracle.QueueRules(
        settings.queue(q, c).threshold_s, settings.queue(q, c).short_abandon_s))
    expected = oracle.queue_kpis(events, timezone=ZONE, interval_minutes=15, rules=rules,
                                 window_of=lambda t: start if start <= t < end else None)
    for (queue, channel, _), want in expected.items():
        published = queues[(queue, channel, "today", int(start.timestamp() * 1000))]
        assert published, (queue, channel)
        revisions = [s.revision for s in published]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions), revisions
        latest = published[-1]
        assert latest.watermark_ms == int(at.timestamp() * 1000)
        for kind, attribute in QUEUE_KINDS.items():
            assert getattr(latest.kpis, kind) == getattr(want, attribute), (queue, kind)
        for formula, value_ in latest.kpis.service_level_by_formula.items():
            assert_same_ratio(value_, want.service_level(formula), (queue, formula))
        assert_same_ratio(latest.kpis.asa_s, want.asa_s, (queue, "asa"))
        assert_same_ratio(latest.kpis.aht_s, want.aht_s, (queue, "aht"))
        assert latest.now is not None and latest.now.waiting >= 0
    closed = [s[-1] for key, s in queues.items() if key[2] == "interval" and key[3] + 15 * 60_000 <= at.timestamp() * 1000]
    assert closed and all(s.final for s in closed)


def test_sigkill_mid_replay_then_restart_ends_with_the_oracle_numbers(kafka_bootstrap, make_worker, tmp_path):
    settings, env = site_settings(kafka_bootstrap, tmp_path)
    log, _ = site_log()
    run(produce(settings, log))
    worker = make_worker(settings, env).start()
    # Late in the run: most state is written, the ingest child outlives the worker for a moment, and
    # the worker usually dies before its first offset commit (streams.transport: a restarted worker
    # then skipped events for good; this test failed about one run in three).
    worker.wait_for(lambda s: value(s, "floorwatch_ingest_accepted_events_total") >= len(log) * 0.9,
                    what="90 % of the log applied")
    worker.stop(signal.SIGKILL)
    again = make_worker(settings, env, name="restarted").start()
    wait_until_oracle_matches([again], settings)


def test_two_workers_one_stopped_mid_run_sum_to_the_oracle(kafka_bootstrap, make_worker, tmp_path):
    settings, env = site_settings(kafka_bootstrap, tmp_path)
    other_settings, other_env = site_settings(
        kafka_bootstrap, tmp_path, FLOORWATCH_WORKER__APP_ID=settings.worker.app_id,
        **{k: v for k, v in env.items() if k.startswith("FLOORWATCH_TOPICS__")})
    log, _ = site_log()
    first = make_worker(settings, env, name="first").start()
    second = make_worker(other_settings, other_env, name="second").start()
    first.wait_for(lambda s: value(s, "floorwatch_partitions_owned") >= 1, what="first worker owns partitions")
    second.wait_for(lambda s: value(s, "floorwatch_partitions_owned") >= 1, what="second worker owns partitions")
    run(produce(settings, log[: len(log) // 2]))
    second.wait_for(lambda s: value(s, "floorwatch_ingest_accepted_events_total") > 0, what="second worker busy")
    assert second.stop() == 0, second.log_tail()
    run(produce(settings, log[len(log) // 2:]))
    wait_until_oracle_matches([first, second], settings)


def test_events_older_than_retention_go_to_the_dead_letter_topic_as_too_late(kafka_bootstrap, make_worker):
    from models.deadletter import DeadLetter
    from tests.test_ingest_integration import read_all

    settings, env = settings_for(kafka_bootstrap)
    messages = [m for m in generate(SimConfig(seed=3, duration_s=900, rate=6)) if m.kind == "valid"]
    agent_event = next(orjson.loads(m.value) for m in messages if m.topic == "agent")
    old = {**agent_event, "event_id": "from-last-week", "occurred_at": "2024-12-30T09:00:00+00:00"}
    worker = make_worker(settings, env).start()
    run(produce(settings, messages))
    worker.wait_for(lambda s: value(s, "floorwatch_ingest_accepted_events_total") >= len(messages),
                    what="the log applied")
    positions = run(produce(settings, [SimMessage("agent", agent_event["agent_id"].encode(), orjson.dumps(old),
                                                  messages[-1].at, "valid")]))
    samples = worker.wait_for(
        lambda s: value(s, "floorwatch_ingest_rejected_records_total", reason="too_late") == 1, what="too late")
    assert value(samples, "floorwatch_ingest_accepted_events_total") == len(messages)
    (record,) = [DeadLetter.model_validate_json(v) for v in
                 run(read_all(settings, settings.topics.deadletter, expected=1))]
    assert record.reason.value == "too_late" and record.field == "occurred_at"
    assert (record.source_topic, record.source_partition, record.source_offset) == positions[0]
    assert b"from-last-week" in base64.b64decode(record.raw_b64)
