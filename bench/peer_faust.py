"""Contender B, the peer: a plain faust-streaming app doing a typical small job on the same input.

One agent on the five input topics, the JSON value codec (faust decodes with orjson when it is
installed, as here), and a tumbling windowed table counting events per queue per minute (events
without a queue count under their event_type). In-memory store, changelogged table, at-least-once:
Faust's defaults, the same store and guarantee as the Floorwatch worker.

Configured by environment variables, so it runs both ways:

    BENCH_BOOTSTRAP=127.0.0.1:19192 BENCH_TOPICS=a,b,c BENCH_EXPECT=1000 python -m bench.peer_faust
    BENCH_BOOTSTRAP=... faust -A bench.peer_faust worker -l info

When the agent has counted BENCH_EXPECT events it prints `BENCH-RESULT {json}` (count, wall-clock
first/last event timestamps, own CPU seconds over that span, and the sum over the windowed table,
which must equal the count) and keeps running until stopped.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson

RESULT_MARK = "BENCH-RESULT "

BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:9092")
TOPICS = os.environ.get("BENCH_TOPICS", "cc.telephony.events,cc.chat.events,cc.ticket.events,"
                                        "cc.agent.events,cc.survey.events").split(",")
APP_ID = os.environ.get("BENCH_APP_ID", "bench-peer")
EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "4"))
WEB_PORT = int(os.environ.get("BENCH_WEB_PORT", "6067"))
DATADIR = os.environ.get("BENCH_DATADIR", ".floorwatch/bench/peer")

os.makedirs(DATADIR, exist_ok=True)
app = faust.App(
    APP_ID,
    broker=f"kafka://{BOOTSTRAP}",
    datadir=os.path.join(DATADIR, APP_ID),
    web_port=WEB_PORT,
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
    topic_partitions=PARTITIONS,
    consumer_auto_offset_reset="earliest",
    store="memory://",
    autodiscover=False,
)
inputs = app.topic(*TOPICS, key_type=bytes, key_serializer="raw", value_serializer="json")
per_queue = app.Table("per_queue", default=int, partitions=PARTITIONS).tumbling(60, expires=3600)

_state = {"count": 0, "first": None, "cpu_first": None}


@app.agent(inputs)
async def count(stream: faust.StreamT) -> None:
    state = _state
    async for value in stream:
        per_queue[value.get("queue") or value["event_type"]] += 1
        n = state["count"] = state["count"] + 1
        if n == 1:
            state["first"], state["cpu_first"] = time.time(), time.process_time()
        if n == EXPECT:
            last, cpu_last = time.time(), time.process_time()
            table = per_queue.table
            result = {"count": n, "first": state["first"], "last": last,
                      "cpu_self_s": cpu_last - state["cpu_first"],
                      "keys": len({k for k, _ in table.data}), "counted": sum(table.data.values())}
            sys.stdout.write(RESULT_MARK + orjson.dumps(result).decode() + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    from faust import Worker

    Worker(app, loglevel=os.environ.get("BENCH_LOG_LEVEL", "info").upper(), quiet=True).execute_from_commandline()
