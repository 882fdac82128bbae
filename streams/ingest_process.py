"""The ingest loop, and the child process the worker runs it in.

    input topics ──Ingest.run (aiokafka loop)──▶ {app_id}-events   (one message per (partition, batch))
          └── rejected ──▶ cc.deadletter

`Ingest` validates, dead-letters what is bad, hashes personal data away and routes each valid event
to the partition of the entity it belongs to (see `streams.app`). It needs nothing of Faust: the
worker runs it in a child process of its own (`IngestSupervisor`), so ingest and the engine each get
a core instead of sharing one under the GIL. `worker.ingest_in_process = true` runs it as a task of
the worker's event loop instead (debugging).

The child builds its own Settings (pickled: secrets included), Decoder and aiokafka clients, and every
`REPORT_EVERY_S` writes its absolute tallies (received, forwarded, rejected) to a pipe; the worker keeps
the latest and merges them into /metrics (`streams.metrics.IngestCollector`). The child ignores SIGINT
(Ctrl-C reaches the whole process group; the worker decides), stops cleanly on SIGTERM, and exits by
itself when the worker goes away (its parent pid changes or the pipe breaks), e.g. after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import select
import signal
import socket
import time
import zlib
from collections import defaultdict
from typing import Any

from mode import Service

from models.deadletter import RejectReason
from streams import kafka_io
from streams.config import Settings
from streams.ingest import Decoder, Rejection, dead_letter
from streams.kafka_io import internal_events_topic
from streams.metrics import IngestStats
from streams.partition import encode_parts, event_parts

log = logging.getLogger("floorwatch")

_MAX_BATCH_LINES = 1000   # keeps a batch message well under the broker's 1 MB default
REPORT_EVERY_S = 0.25     # the child's tallies to the worker
LAG_EVERY_S = 1.0         # how often ingest looks at its input lag (a position look-up per partition)
STOP_TIMEOUT_S = 10.0     # SIGTERM, then this long to exit, then SIGKILL
RESTART_DELAY_S = 1.0


def entity_partition(entity_key: str, partitions: int) -> int:
    """The internal topic's partition of an entity: stable across processes and restarts."""
    return zlib.crc32(entity_key.encode()) % partitions


def worker_name(settings: Settings) -> str:
    return f"{socket.gethostname()}:{settings.worker.web_port}"


_MAX_POLL = 20_000
# At a steady trickle every poll returned a few events, and each became its own internal message: a
# produce request, a commit and a pass through Faust's consumer for about five events (~400 messages/s
# at 2,000 events/s). Waiting 20 ms after a small poll makes them ~125/s; the freshness budget
# (bench.latency, p99 < 250 ms) has room for it.
_SMALL_POLL = 1_000
_LINGER_S = 0.02


class Ingest:
    """The batched ingest loop: input topics → validated, compact batches on the internal topic."""

    def __init__(self, settings: Settings, stats: IngestStats | None = None, decoder: Decoder | None = None) -> None:
        self.settings = settings
        self.decoder = decoder or Decoder(settings.require_hash_key())
        self.stats = stats if stats is not None else IngestStats()
        self.worker_name = worker_name(settings)
        self.events_topic_name = internal_events_topic(settings)

    async def run(self) -> None:
        s = self.settings
        consumer = kafka_io.consumer(s.kafka, *s.topics.inputs, group_id=f"{s.worker.app_id}-ingest",
                                     max_partition_fetch_bytes=4 * 1024 * 1024,
                                     session_timeout_ms=int(s.worker.session_timeout_s * 1000))
        producer = kafka_io.producer(s.kafka)
        await producer.start()
        try:
            await consumer.start()
            log.info("ingest: reading %s", ", ".join(s.topics.inputs))
            next_lag_at = 0.0
            try:
                while True:
                    batches = await consumer.getmany(timeout_ms=100, max_records=_MAX_POLL)
                    if not batches:
                        if time.monotonic() >= next_lag_at:   # idle: the lag is (about) zero now
                            next_lag_at = time.monotonic() + LAG_EVERY_S
                            self.stats.lag = await input_lag(consumer)
                        continue
                    polled = sum(map(len, batches.values()))
                    if polled < _SMALL_POLL:   # a trickle: wait a little for more, then send it all at once
                        await asyncio.sleep(_LINGER_S)
                        for tp, records in (await consumer.getmany(timeout_ms=0, max_records=_MAX_POLL - polled)).items():
                            batches[tp] = batches.get(tp, []) + records
                    sends = self.ingest_batch(batches, producer)
                    await asyncio.gather(*sends)
                    await consumer.commit()
                    if time.monotonic() >= next_lag_at:
                        next_lag_at = time.monotonic() + LAG_EVERY_S
                        self.stats.lag = await input_lag(consumer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    def ingest_batch(self, batches, producer) -> list:
        """Validate a poll's records; return the pending sends (batched events, dead letters)."""
        decode = self.decoder.decode
        stats = self.stats
        partitions = self.settings.kafka.partitions
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        sends = []
        for tp, records in batches.items():
            topic = tp.topic
            prefix = f"{topic}\t{tp.partition}\t".encode()
            for record in records:
                stats.received[topic] += 1
                try:
                    decoded = decode(record.value)
                    if isinstance(decoded, Rejection):
                        sends.append(self._dead_letter(producer, record, decoded))
                        continue
                    parts = event_parts(decoded)
                    stats.forwarded[parts[0]] += 1
                    line = b"%s%d\t%d\t%s\t%s" % (prefix, record.offset, record.timestamp or 0, encode_parts(parts),
                                                   decoded.__pydantic_serializer__.to_json(decoded))
                    by_partition[entity_partition(parts[1], partitions)].append(line)
                except Exception as exc:  # a bad event never stops ingest
                    log.exception("ingest: unexpected error on %s[%s]@%s", topic, tp.partition, record.offset)
                    sends.append(self._dead_letter(producer, record, Rejection(
                        RejectReason.internal_error, f"internal error: {type(exc).__name__}")))
        target = self.events_topic_name
        for partition, lines in by_partition.items():
            for i in range(0, len(lines), _MAX_BATCH_LINES):
                sends.append(producer.send(target, b"\n".join(lines[i:i + _MAX_BATCH_LINES]),
                                           partition=partition))
        return [_sent(send) for send in sends]

    def _dead_letter(self, producer, record, rejection: Rejection):
        entry = dead_letter(
            record.value, rejection, topic=record.topic, partition=record.partition, offset=record.offset,
            timestamp_ms=record.timestamp, key=record.key, hash_key=self.decoder.hash_key,
            worker=self.worker_name)
        self.stats.rejected[(rejection.reason.value, record.topic)] += 1
        return producer.send(self.settings.topics.deadletter, entry.model_dump_json().encode(), key=record.key)


async def input_lag(consumer) -> dict[str, int]:
    """Records not yet read per input topic: high watermark minus position over the assigned
    partitions (a partition whose high watermark the consumer has not seen yet counts 0)."""
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        behind = 0
        if highwater is not None:
            behind = max(0, highwater - await consumer.position(tp))
        lag[tp.topic] = lag.get(tp.topic, 0) + behind
    return lag


async def _sent(send):
    """producer.send() returns a future once queued; wait for the broker's acknowledgement."""
    return await (await send)


# -- the child process ---------------------------------------------------------------------------

def child_main(settings: Settings, conn, parent_pid: int) -> None:
    """Entry point of the ingest child (multiprocessing, spawn): run the loop until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C: the worker stops us with SIGTERM
    logging.basicConfig(level=settings.worker.log_level.upper(),
                        format="[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s")
    try:
        asyncio.run(_child(settings, conn, parent_pid))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(Exception):
            conn.close()


async def _child(settings: Settings, conn, parent_pid: int) -> None:
    loop = asyncio.get_running_loop()
    ingest = Ingest(settings)
    main = asyncio.ensure_future(ingest.run())
    reason: list[str] = []

    def stop(why: str) -> None:
        if not reason:
            reason.append(why)
            main.cancel()
            # stopping the clients is bounded: never linger as an orphan
            loop.call_later(STOP_TIMEOUT_S / 2, lambda: os._exit(0 if why == "SIGTERM" else 1))

    loop.add_signal_handler(signal.SIGTERM, stop, "SIGTERM")
    log.info("ingest: child process %d of worker %d", os.getpid(), parent_pid)

    async def report() -> None:
        fd = conn.fileno()
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            if os.getppid() != parent_pid:
                log.warning("ingest: the worker (pid %d) is gone; stopping", parent_pid)
                stop("orphaned")
                return
            try:
                # absolute values: if the pipe is full (the worker is busy), skip; the next one catches up
                if select.select([], [fd], [], 0)[1]:
                    conn.send(ingest.stats.tallies())
            except (BrokenPipeError, OSError, ValueError):
                log.warning("ingest: the pipe to the worker is closed; stopping")
                stop("orphaned")
                return

    reporter = asyncio.ensure_future(report())
    try:
        await main
    except asyncio.CancelledError:
        pass
    finally:
        reporter.cancel()
        with contextlib.suppress(Exception):
            conn.send(ingest.stats.tallies())
    if not reason:  # the loop ended by itself: an error, logged by asyncio.run's caller
        raise SystemExit(1)


class IngestSupervisor(Service):
    """Starts the ingest child with the worker, restarts it if it dies, stops it with the worker.

    `stats()` returns the tallies to add to the worker's own: those of children that have died (their
    last report) and the latest report of the running one, so /metrics counters never go back.
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self.process = None
        self._conn = None
        self._finished = IngestStats()     # tallies of children that have ended
        self._latest = IngestStats()       # the running child's last report
        self._stopping = False
        self.restarts = 0

    def stats(self) -> list[IngestStats]:
        return [self._finished, self._latest]

    def _spawn(self) -> None:
        receive, send = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=child_main, args=(self.settings, send, os.getpid()),
                                    name="floorwatch-ingest", daemon=True)
        process.start()
        send.close()   # only the child writes: its end closing is the child's EOF
        self.process, self._conn = process, receive
        log.info("ingest: started child process %d", process.pid)

    def _drain(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._latest = IngestStats.of_tallies(conn.recv())
        except (EOFError, OSError):
            pass

    def _retire(self) -> None:
        """The child has ended: keep its last tallies, close its pipe."""
        self._drain()
        self._finished.add(self._latest)
        self._latest = IngestStats()
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    async def on_start(self) -> None:
        self._spawn()

    @Service.task
    async def _watch(self) -> None:
        while not self.should_stop and not self._stopping:
            self._drain()
            process = self.process
            if process is not None and process.exitcode is not None:
                code = process.exitcode
                self._retire()
                self.process = None
                await asyncio.sleep(RESTART_DELAY_S)   # a SIGTERM to the whole group: let shutdown begin
                if self.should_stop or self._stopping:
                    return
                self.restarts += 1
                log.error("ingest: child process %d died unexpectedly (exit code %s); restarting it (restart %d)",
                          process.pid, code, self.restarts)
                self._spawn()
            await asyncio.sleep(REPORT_EVERY_S)

    async def on_stop(self) -> None:
        self._stopping = True
        await self.stop_child()

    async def stop_child(self) -> None:
        process = self.process
        if process is None:
            return
        if process.exitcode is None:
            with contextlib.suppress(OSError):
                process.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while process.exitcode is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.exitcode is None:
                log.warning("ingest: child process %d did not stop in %.0fs; killing it", process.pid, STOP_TIMEOUT_S)
                process.kill()
                process.join(5)
        log.info("ingest: child process %d stopped (exit code %s)", process.pid, process.exitcode)
        self._retire()
        self.process = None
