"""`streams.app.apply_batch`: what the engine does with each line of an internal batch message."""

from __future__ import annotations

import functools

from models.deadletter import RejectReason
from models.events import EVENT_ADAPTER
from streams.app import apply_batch
from streams.config import load_settings
from streams.kpi.queues import QueueRules
from streams.kpi.windows import SiteClock
from streams.metrics import IngestStats
from streams.partition import PartitionConfig, PartitionState, encode_parts, event_parts
from streams.simulator import SimConfig, generate

CONTEXT = {"customer_hash_key": b"k"}


def line(topic: str, offset: int, event) -> bytes:
    return b"%s\t3\t%d\t1700000000000\t%s\t%s" % (topic.encode(), offset, encode_parts(event_parts(event)),
                                                  event.__pydantic_serializer__.to_json(event))


def test_a_line_that_fails_is_dead_lettered_and_the_rest_of_the_batch_applies(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    settings = load_settings()
    state = PartitionState(PartitionConfig(SiteClock("UTC", 15),
                                           functools.cache(lambda q, c: QueueRules.of(settings.queue(q, c)))))
    events = [EVENT_ADAPTER.validate_json(m.value, context=CONTEXT)
              for m in generate(SimConfig(seed=2, duration_s=120)) if m.kind == "valid"][:5]
    good = line("cc.telephony.events", 11, events[1]).split(b"\t")
    broken = b"\t".join([*good[:4], b'["not", "the parts"]', good[5]])   # parts that cannot be applied
    value = b"\n".join([line("cc.agent.events", 10, events[0]), broken, b"garbage",
                        *(line("cc.chat.events", 12 + i, e) for i, e in enumerate(events[2:]))])
    stats = IngestStats()
    rejected = apply_batch(state, value, stats, CONTEXT, where=("fw-events", 1, 99))
    assert sum(stats.accepted.values()) == 4
    assert [(position, r.reason) for position, _, r in rejected] == [
        (("cc.telephony.events", 3, 11, 1700000000000), RejectReason.internal_error),
        (("fw-events", 1, 99, None), RejectReason.internal_error)]
    assert rejected[0][1] == events[1].__pydantic_serializer__.to_json(events[1])   # the event JSON
    assert rejected[1][1] == b"garbage"                                              # the line itself
