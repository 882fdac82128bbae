"""The engine's pure path in-process: ingest's line encoding, then `streams.app.apply_batch` per batch
message, `advance` and `take_dirty` (no Kafka, no Faust), and one scrape of the KPI collector.

    python -m bench.engine                   # N = 100 000 simulated events (the ingest bench's seed)
    python -m bench.engine --profile         # + cProfile of the engine part, top functions by own time

Prints CPU µs per event per stage and digests of the resulting state, changelog values and exposition
text: an optimisation must leave the digests unchanged.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import hashlib
import pstats
import time
import zlib
from collections import defaultdict

from prometheus_client import CollectorRegistry

from streams.app import _MAX_BATCH_LINES, apply_batch
from streams.alert_rules import PER_ENTITY
from streams.config import load_settings
from streams.exposition import KpiCollector, registry_text
from streams.ingest import Decoder
from streams.kpi.agents import AgentWindow
from streams.kpi.queues import QueueRules
from streams.kpi.windows import SiteClock
from streams.metrics import IngestStats
from streams.partition import PartitionConfig, PartitionState, encode_parts, event_parts


def _plain(v):
    if isinstance(v, AgentWindow):
        return (sorted((k, x) for k, x in v.state_us.items() if x),
                sorted(((str(k), x) for k, x in v.not_ready_reason_us.items() if x), key=str))
    return dataclasses.astuple(v) if dataclasses.is_dataclass(v) else v


def state_digest(states: dict[int, PartitionState], table: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for p in sorted(states):
        st = states[p]
        for w in (st.queues, st.agent_time, st.tickets, st.quality):
            for t in (w.intervals, w.days, w.buckets or {}):
                h.update(repr(sorted((repr(k), repr(_plain(v))) for k, v in t.items())).encode())
        h.update(repr(sorted(st.waiting.items())).encode())
        h.update(repr((st.watermark_ms, sorted(st.counts.items()))).encode())
        h.update(repr(sorted(st.records)).encode())
    for k in sorted(table):
        h.update(k.encode())
        h.update(table[k])
    return h.hexdigest()[:16]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    from bench.ingest import simulated

    n = args.events
    messages = simulated(n, args.seed)
    settings = load_settings()
    decode = Decoder(b"bench-key").decode
    t0 = time.process_time()
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for offset, m in enumerate(messages):   # as Floorwatch.ingest_batch
        decoded = decode(m.value)
        parts = event_parts(decoded)
        line = b"%s%d\t%d\t%s\t%s" % (b"topic\t0\t", offset, 0, encode_parts(parts),
                                       decoded.__pydantic_serializer__.to_json(decoded))
        by_partition[zlib.crc32(parts[1].encode()) % args.partitions].append(line)
    ingest_s = time.process_time() - t0
    batches = [(partition, b"\n".join(lines[i:i + _MAX_BATCH_LINES]))
               for partition, lines in by_partition.items() for i in range(0, len(lines), _MAX_BATCH_LINES)]
    config = PartitionConfig(SiteClock.from_settings(settings.site),
                             functools.cache(lambda q, c: QueueRules.of(settings.queue(q, c))),
                             rolling_minutes=tuple(settings.site.rolling_windows_minutes),
                             entity_alert_rules={name: rule for name, rule in settings.alerts.active().items()
                                                 if rule.kpi in PER_ENTITY})   # as streams.app
    states: dict[int, PartitionState] = {}
    table: dict[str, bytes] = {}
    stats = IngestStats()
    context = {"customer_hash_key": b"bench-key"}
    profiler = cProfile.Profile() if args.profile else None
    late = 0
    t0 = time.process_time()
    if profiler:
        profiler.enable()
    for partition, value in batches:   # as Floorwatch._engine
        state = states.get(partition) or states.setdefault(partition, PartitionState(config))
        late += sum(r.reason.value == "too_late" for _, _, r in apply_batch(state, value, stats, context))
        state.advance()
        changed, deleted = state.take_dirty()
        table.update(changed)
        for key in deleted:
            table.pop(key, None)
    if profiler:
        profiler.disable()
    engine_s = time.process_time() - t0
    registry = CollectorRegistry(auto_describe=True)
    registry.register(KpiCollector(lambda: list(states.values()), settings))
    registry_text(registry)   # the first scrape pays one-off costs; the bench polls many times
    t0 = time.process_time()
    text = registry_text(registry)   # what the worker renders (streams.exposition.CachedExposition)
    scrape_s = time.process_time() - t0
    print(f"{n} events, {len(batches)} batch messages: ingest encode {ingest_s / n * 1e6:.1f} µs/event, "
          f"engine {engine_s / n * 1e6:.1f} µs/event ({n / engine_s:,.0f} events/s), "
          f"scrape {scrape_s * 1000:.1f} ms")
    print(f"accepted {sum(stats.accepted.values())}, duplicates {sum(stats.duplicates.values())}, too late {late}, "
          f"records {len(table)}")
    print(f"digests: state+changelog {state_digest(states, table)}, "
          f"exposition {hashlib.sha256(text).hexdigest()[:16]}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
