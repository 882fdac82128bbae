"""streams.transport against a real broker: a consumer that has read past records it then dropped
goes back to its committed offset, or to the start of the partition when it has none (or 0), which
aiokafka's own `seek_to_committed` does not do; changelog partitions are left where they are."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from streams.kafka_io import consumer, ensure_topics, producer
from streams.transport import seek_to_committed_or_reset
from tests.conftest import run, settings_for

pytestmark = pytest.mark.integration

RECORDS = 5


async def _scenario(settings) -> dict[str, dict[int, int]]:
    events, changelog = f"{settings.worker.app_id}-events", f"{settings.worker.app_id}-records-changelog"
    await ensure_topics(settings, [events, changelog])
    async with producer(settings.kafka) as p:
        for topic in (events, changelog):
            for partition in (0, 1):
                for n in range(RECORDS):
                    await p.send_and_wait(topic, b"%d" % n, partition=partition)
    tps = [TopicPartition(events, 0), TopicPartition(events, 1), TopicPartition(changelog, 0)]
    c = consumer(settings.kafka, group_id=f"{settings.worker.app_id}-group")
    await c.start()
    try:
        c.assign(tps)

        async def read_to_end() -> None:   # what Faust's fetcher does before it drops the records
            while [await c.position(tp) for tp in tps] != [RECORDS] * len(tps):
                await c.getmany(timeout_ms=500)

        async def positions() -> dict[int, int]:
            return {i: await c.position(tp) for i, tp in enumerate(tps)}

        seen = {}
        await read_to_end()
        await c.commit({tps[1]: 3})   # events partition 1 committed at 3; partition 0 never committed
        await c.seek_to_committed()
        seen["aiokafka"] = await positions()
        await read_to_end()
        await seek_to_committed_or_reset(c, [changelog])
        seen["ours"] = await positions()
        await read_to_end()
        await c.commit({tps[0]: 0})   # committed at 0: aiokafka does not seek it either
        await c.seek_to_committed()
        seen["aiokafka, 0 committed"] = await positions()
        await seek_to_committed_or_reset(c, [changelog])
        seen["ours, 0 committed"] = await positions()
        await read_to_end()
        await seek_to_committed_or_reset(c, [changelog], auto_offset_reset="latest")
        seen["ours, latest"] = await positions()
        return seen
    finally:
        await c.stop()


def test_partitions_without_a_committed_offset_go_back_to_the_start(kafka_bootstrap):
    settings, _ = settings_for(kafka_bootstrap)
    seen = run(_scenario(settings))
    # positions by (events 0, events 1, changelog 0)
    assert seen["aiokafka"] == {0: RECORDS, 1: 3, 2: RECORDS}   # the bug: events 0 stays past its records
    assert seen["ours"] == {0: 0, 1: 3, 2: RECORDS}
    assert seen["aiokafka, 0 committed"] == {0: RECORDS, 1: 3, 2: RECORDS}
    assert seen["ours, 0 committed"] == {0: 0, 1: 3, 2: RECORDS}
    assert seen["ours, latest"] == {0: RECORDS, 1: 3, 2: RECORDS}
