"""Running the simulator: the pure generator, the JSONL event log and the Kafka producer loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from streams.simulator.base import TOPICS, SimConfig, SimMessage, SimStats
from streams.simulator.engine import Simulation
from streams.simulator.inject import Injector

SEND_BATCH = 2000            # sends in flight before their delivery futures are awaited
PROGRESS_EVERY_S = 5.0


def generate(config: SimConfig) -> Iterator[SimMessage]:
    """The simulated stream, lazily, in emission order. Pure: same config, same bytes."""
    sim = Simulation(config)
    if config.bad_ratio <= 0:
        yield from sim.messages()
        return
    injector = Injector(config.seed, config.bad_ratio, sim.tag)
    after = injector.after
    for msg in sim.messages():
        yield msg
        bad = after(msg)
        if bad:
            yield from bad


def write_jsonl(messages: Iterable[SimMessage], path: Path) -> int:
    """Write each message's value as one line; return how many. The file is the event log."""
    count = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=1 << 20) as fh:
        write = fh.write
        for msg in messages:
            write(msg.value + b"\n")
            count += 1
    return count


def _count(stats: SimStats, msg: SimMessage) -> None:
    stats.sent += 1
    if msg.kind == "valid":
        stats.valid += 1
        # the event type sits at a fixed place in our own compact JSON: avoid a full parse
        value = msg.value
        start = value.find(b'"event_type":"') + 14
        etype = value[start:value.find(b'"', start)].decode()
        stats.by_event_type[etype] = stats.by_event_type.get(etype, 0) + 1
    elif msg.kind == "duplicate":
        stats.duplicate += 1
    else:
        stats.invalid += 1
    if stats.first_at is None:
        stats.first_at = msg.at
    stats.last_at = msg.at


async def run(settings, config: SimConfig, *, speed: float, produce: bool = True, out: Path | None = None,
              progress: Callable[[str], None] | None = print, stop: asyncio.Event | None = None) -> SimStats:
    """Produce the simulated stream to the input topics (and/or the JSONL file `out`).

    speed: simulated seconds per wall second (1.0 = real time; 0 = as fast as possible). With
    speed > 0 and no configured start, the simulation starts now, so event times are live.
    """
    if speed < 0:
        raise ValueError(f"speed must be >= 0, not {speed}")
    if speed > 0 and config.start is None:
        config = dataclasses.replace(config, start=datetime.now(ZoneInfo(config.timezone)))
    topics = {name: getattr(settings.topics, name) for name in TOPICS}
    stats = SimStats()
    loop = asyncio.get_running_loop()
    producer = None
    if produce:
        from streams import kafka_io   # aiokafka only when producing

        producer = kafka_io.producer(settings.kafka)
        await producer.start()
    fh = None
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = out.open("wb", buffering=1 << 20)
    pending: list[asyncio.Future] = []

    async def drain() -> None:
        if pending:
            await asyncio.gather(*pending)
            pending.clear()

    wall0 = loop.time()
    last_report = wall0
    sim0: datetime | None = None
    stopped = False
    try:
        for msg in generate(config):
            if stop is not None and stop.is_set():
                stopped = True
                break
            if sim0 is None:
                sim0 = msg.at
            if speed > 0:
                delay = wall0 + (msg.at - sim0).total_seconds() / speed - loop.time()
                if delay > 0:
                    await drain()
                    if fh is not None:
                        fh.flush()
                    if stop is not None:
                        try:
                            await asyncio.wait_for(stop.wait(), delay)
                            stopped = True
                            break
                        except TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(delay)
            if producer is not None:
                pending.append(await producer.send(topics[msg.topic], msg.value, key=msg.key))
                if len(pending) >= SEND_BATCH:
                    await drain()
            if fh is not None:
                fh.write(msg.value + b"\n")
            _count(stats, msg)
            if stats.sent & 1023 == 0:
                now = loop.time()
                if producer is None and speed == 0:
                    await asyncio.sleep(0)      # let Ctrl-C handling and others run
                if progress is not None and now - last_report >= PROGRESS_EVERY_S:
                    last_report = now
                    progress(f"simulator: sim time {msg.at.astimezone(ZoneInfo(config.timezone)):%Y-%m-%d %H:%M:%S}"
                             f"  sent {stats.sent}  ({stats.sent / max(now - wall0, 1e-9):,.0f} msg/s)")
        await drain()
        if producer is not None:
            await producer.flush()
    finally:
        if producer is not None:
            await producer.stop()
        if fh is not None:
            fh.close()
    if progress is not None:
        wall = loop.time() - wall0
        span = (stats.last_at - stats.first_at).total_seconds() if stats.first_at and stats.last_at else 0.0
        where = []
        if producer is not None:
            where.append(f"Kafka {settings.kafka.bootstrap_servers}")
        if out is not None:
            where.append(f"event log {out}")
        progress(f"simulator: {'stopped' if stopped else 'done'}: {stats.sent} messages "
                 f"({stats.valid} valid, {stats.invalid} invalid, {stats.duplicate} duplicate) "
                 f"covering {span / 3600:.2f} simulated h in {wall:.1f} s wall"
                 f" -> {', '.join(where) if where else 'nowhere (dry run)'}")
    return stats
