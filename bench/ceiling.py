"""Contender A, the ceiling: a plain aiokafka consume-and-decode loop, nothing else.

    python -m bench.ceiling --bootstrap HOST:PORT --topics t1,t2 --group G --expect N

Reads the topics from the beginning with a fresh consumer group (getmany, no commits), decodes
each value with orjson and counts events per queue in a dict (events without a queue under their
event_type), so that it does the least work any consumer of these topics must do. When it has
seen N events it prints one line `BENCH-RESULT {json}` (count, wall-clock first/last event
timestamps, its own CPU seconds over that span) and then idles until the harness stops it, so the
harness can take a last CPU/RSS sample of a live process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from streams.config import KafkaSettings
from streams.kafka_io import consumer

RESULT_MARK = "BENCH-RESULT "


async def drain(bootstrap: str, topics: list[str], group: str, expect: int) -> dict:
    c = consumer(KafkaSettings(bootstrap_servers=bootstrap), *topics, group_id=group)
    await c.start()
    try:
        per_queue: dict[str, int] = {}
        loads = orjson.loads
        n = 0
        first = cpu_first = None
        while n < expect:
            batches = await c.getmany(timeout_ms=500)
            for records in batches.values():
                if first is None:
                    first, cpu_first = time.time(), time.process_time()
                for record in records:
                    value = loads(record.value)
                    key = value.get("queue") or value["event_type"]
                    per_queue[key] = per_queue.get(key, 0) + 1
                n += len(records)
        last, cpu_last = time.time(), time.process_time()
    finally:
        await c.stop()
    return {"count": n, "first": first, "last": last, "cpu_self_s": cpu_last - cpu_first,
            "keys": len(per_queue), "counted": sum(per_queue.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ceiling")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topics", required=True, help="comma-separated")
    p.add_argument("--group", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--linger", type=float, default=60.0, help="seconds to stay alive after the result")
    args = p.parse_args(argv)
    result = asyncio.run(drain(args.bootstrap, args.topics.split(","), args.group, args.expect))
    sys.stdout.write(RESULT_MARK + orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    time.sleep(args.linger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
