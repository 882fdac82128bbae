"""Simulated traffic with injected garbage through a real broker and a running worker."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections import Counter

import orjson
import pytest

from models.deadletter import DeadLetter
from streams.kafka_io import consumer, ensure_topics, producer
from streams.simulator import SimConfig, generate
from tests.conftest import REPO, TEST_HASH_KEY, run, settings_for, total

pytestmark = pytest.mark.integration

ACCEPTED = "floorwatch_ingest_accepted_events_total"
DUPLICATES = "floorwatch_ingest_duplicate_events_total"
REJECTED = "floorwatch_ingest_rejected_records_total"
RECEIVED = "floorwatch_ingest_received_records_total"


async def produce(settings, messages) -> list[tuple[str, int, int]]:
    """Send the simulator's messages; return each one's (topic, partition, offset)."""
    await ensure_topics(settings)
    positions = []
    async with producer(settings.kafka) as p:
        futures = [await p.send(getattr(settings.topics, m.topic), m.value, key=m.key) for m in messages]
        for meta in await asyncio.gather(*futures):
            positions.append((meta.topic, meta.partition, meta.offset))
    return positions


async def read_all(settings, topic: str, expected: int, timeout: float = 60.0) -> list[bytes]:
    values: list[bytes] = []
    async with consumer(settings.kafka, topic, group_id=None) as c:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(values) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await c.getmany(timeout_ms=1000)
            values.extend(r.value for records in batch.values() for r in records)
        # anything beyond what we expect would be a bug too: drain a little longer
        batch = await c.getmany(timeout_ms=2000)
        values.extend(r.value for records in batch.values() for r in records)
    return values


def test_bad_and_duplicate_events_are_handled_exactly(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap)
    messages = list(generate(SimConfig(seed=11, duration_s=1800, rate=8, bad_ratio=0.05)))
    kinds = Counter(m.kind for m in messages)
    assert kinds["invalid"] > 20 and kinds["duplicate"] > 10, kinds

    worker = make_worker(settings, env).start()
    positions = run(produce(settings, messages))
    valid_by_type = Counter(orjson.loads(m.value)["event_type"] for m in messages if m.kind == "valid")

    samples = worker.wait_for(
        lambda s: total(s, RECEIVED) >= len(messages)
        and total(s, ACCEPTED) + total(s, DUPLICATES) + total(s, REJECTED) >= len(messages),
        what=f"{len(messages)} records to be processed")

    # /metrics: every valid event accepted once, every duplicate counted, every bad one rejected.
    assert total(samples, RECEIVED) == len(messages)
    for event_type, n in valid_by_type.items():
        assert total(samples, ACCEPTED, event_type=event_type) == n, event_type
    assert total(samples, ACCEPTED) == kinds["valid"]
    assert total(samples, DUPLICATES) == kinds["duplicate"]
    # /progress: the same totals, without building every KPI (what bench.ingest polls)
    import json
    import urllib.request
    with urllib.request.urlopen(worker.metrics_url.replace("/metrics", "/progress"), timeout=5) as response:
        progress = json.loads(response.read())
    assert progress == {"received": len(messages), "forwarded": total(samples, "floorwatch_ingest_valid_events_total"),
                        "accepted": kinds["valid"], "duplicates": kinds["duplicate"]}
    expected_reasons = Counter(m.reason for m in messages if m.kind == "invalid")
    for reason, n in expected_reasons.items():
        assert total(samples, REJECTED, reason=reason) == n, reason
    assert total(samples, REJECTED) == kinds["invalid"]

    # The dead-letter topic holds exactly the injected bad records, each with its reason, field,
    # source position and bytes; nothing personal.
    records = [DeadLetter.model_validate_json(v)
               for v in run(read_all(settings, settings.topics.deadletter, kinds["invalid"]))]
    assert len(records) == kinds["invalid"]
    by_position = {(r.source_topic, r.source_partition, r.source_offset): r for r in records}
    assert len(by_position) == len(records), "each bad record dead-lettered once"
    for message, position in zip(messages, positions):
        if message.kind != "invalid":
            assert position not in by_position
            continue
        record = by_position[position]
        assert record.reason.value == message.reason, (message.value, record)
        assert record.field == message.field, (message.value, record)
        stored = base64.b64decode(record.raw_b64)
        if not record.redacted:
            assert stored == message.value
        assert b"@example" not in stored and b"+49" not in stored


async def engine_lag(settings) -> int:
    """Internal events the engine's consumer group has not committed yet (all of them if it never did)."""
    from aiokafka import TopicPartition

    from streams.kafka_io import internal_events_topic

    topic = internal_events_topic(settings)
    tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
    async with consumer(settings.kafka, group_id=settings.worker.app_id) as c:   # reads, never joins
        ends = await c.end_offsets(tps)
        return sum([ends[tp] - (await c.committed(tp) or 0) for tp in tps])


def test_dedup_memory_survives_a_restart(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap)
    messages = [m for m in generate(SimConfig(seed=5, duration_s=900, rate=6)) if m.kind == "valid"]
    worker = make_worker(settings, env).start()
    run(produce(settings, messages))
    worker.wait_for(lambda s: total(s, ACCEPTED) >= len(messages), what="first pass")
    assert worker.stop() == 0, worker.log_tail()

    # The same events again (a source re-delivering everything): all recognised as duplicates.
    again = make_worker(settings, env, name="restarted").start()
    run(produce(settings, messages))
    # Caught up: ingest read everything again, and the engine committed to the end of its topic.
    samples = again.wait_for(
        lambda s: total(s, RECEIVED) >= len(messages)
        and total(s, DUPLICATES) + total(s, ACCEPTED) >= total(s, "floorwatch_ingest_valid_events_total")
        and run(engine_lag(settings)) == 0,
        what="second pass, engine caught up with ingest")
    # Nothing is applied twice. Duplicates can exceed the re-sent count: internal records the first
    # worker processed but had not committed yet are delivered again (at least once) and dropped too.
    assert total(samples, ACCEPTED) == 0
    assert total(samples, DUPLICATES) >= len(messages)


async def forward_and_commit_unapplied(settings, messages) -> None:
    """Write `messages` to the internal topic as ingest does, then commit the engine's group past them
    though no engine applied them: what a Faust commit did to one internal message in the two-worker
    test (streams.transport, "Known loss")."""
    from types import SimpleNamespace

    from aiokafka import TopicPartition

    from streams.ingest_process import Ingest
    from streams.kafka_io import internal_events_topic

    batches: dict = {}
    for n, m in enumerate(messages):
        topic = getattr(settings.topics, m.topic)
        batches.setdefault(TopicPartition(topic, 0), []).append(SimpleNamespace(
            topic=topic, partition=0, offset=1_000_000 + n, timestamp=None, key=m.key, value=m.value))
    async with producer(settings.kafka) as p:
        await asyncio.gather(*Ingest(settings).ingest_batch(batches, p))
    events = internal_events_topic(settings)
    tps = [TopicPartition(events, partition) for partition in range(settings.kafka.partitions)]
    async with consumer(settings.kafka, group_id=settings.worker.app_id) as c:
        c.assign(tps)
        await c.commit(await c.end_offsets(tps))


def test_a_commit_past_unapplied_messages_is_undone_by_the_restored_state(kafka_bootstrap, make_worker):
    """The engine resumes each partition right after the newest internal message its restored records
    applied, even when the group committed further: no event is lost to a commit that ran ahead."""
    settings, env = settings_for(kafka_bootstrap)
    messages = [m for m in generate(SimConfig(seed=5, duration_s=900, rate=6)) if m.kind == "valid"]
    first, later = messages[:len(messages) // 2], messages[len(messages) // 2:]
    worker = make_worker(settings, env).start()
    run(produce(settings, first))
    worker.wait_for(lambda s: total(s, ACCEPTED) >= len(first) and run(engine_lag(settings)) == 0,
                    what="the first half, committed")
    assert worker.stop() == 0, worker.log_tail()

    run(forward_and_commit_unapplied(settings, later))
    assert run(engine_lag(settings)) == 0
    again = make_worker(settings, env, name="restarted").start()
    samples = again.wait_for(lambda s: total(s, ACCEPTED) >= len(later), timeout=60,
                             what="the events behind the committed offset")
    assert total(samples, ACCEPTED) == len(later)
    assert total(samples, DUPLICATES) == 0   # and nothing of the first half again
    assert "past what the restored state applied" in again.log_tail(400)


def test_simulated_log_is_reproducible_and_replays_to_the_same_counts(kafka_bootstrap, make_worker, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--seed", "7", "--duration", "600",
                        "--speed", "0", "--out", str(path), "--no-produce"], cwd=REPO, check=True,
                       env={**os.environ, "FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY": TEST_HASH_KEY})
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_bytes().splitlines()
    in_log = Counter(orjson.loads(line)["event_type"] for line in lines)

    settings, env = settings_for(kafka_bootstrap)
    worker = make_worker(settings, env).start()
    replay = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(a)], cwd=REPO,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert f"sent {len(lines)} records" in replay.stdout
    samples = worker.wait_for(lambda s: total(s, ACCEPTED) >= len(lines), what="the replayed log")
    for event_type, n in in_log.items():
        assert total(samples, ACCEPTED, event_type=event_type) == n, event_type
    assert total(samples, ACCEPTED) == len(lines)


def test_input_lag_is_what_the_consumer_has_not_read_yet(kafka_bootstrap):
    """`floorwatch_ingest_consumer_lag_records` comes from `input_lag`: high watermark minus position
    over the assigned partitions, per topic, against a real broker."""
    from aiokafka import TopicPartition

    from streams.ingest_process import input_lag

    settings, _ = settings_for(kafka_bootstrap)
    topic = settings.topics.chat

    async def scenario() -> list[dict[str, int]]:
        await ensure_topics(settings, [topic])
        async with producer(settings.kafka) as p:
            for n in range(10):
                await p.send_and_wait(topic, b"%d" % n, partition=1)
        c = consumer(settings.kafka, group_id=None)
        await c.start()
        try:
            c.assign([TopicPartition(topic, p) for p in range(4)])
            seen, read = [], 0
            while read < 3:
                batch = await c.getmany(timeout_ms=1000, max_records=3 - read)
                read += sum(map(len, batch.values()))
            seen.append(await input_lag(c))
            while read < 10:
                read += sum(map(len, (await c.getmany(timeout_ms=1000)).values()))
            seen.append(await input_lag(c))
            return seen
        finally:
            await c.stop()

    assert run(scenario()) == [{topic: 7}, {topic: 0}]
