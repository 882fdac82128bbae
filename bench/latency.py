"""End-to-end freshness: how long from producing an event until a KPI on /metrics reflects it.

    python -m bench.latency                       # 2 000 events/s, 60 s measured (+10 s warm-up),
                                                  # its own broker on 127.0.0.1:19292
    python -m bench.latency --rate 500 --duration 30
    python -m bench.latency --bootstrap 127.0.0.1:19092 --rate 50 --duration 5 --warmup 3 --settle 60

Runs the real Floorwatch worker (`python -m streams.cli worker`, as contender C of bench.ingest) and
feeds it simulated events at a steady paced rate, with event times (`occurred_at`) at wall-clock
now. About every 100 ms the producer keeps a probe: the send time and event time of the event it
has just sent. A poller reads `/metrics` every 20 ms and notes when
`floorwatch_watermark_timestamp_seconds` (the newest event time the worker has applied) first
reaches each probe's event time. The probe's latency is that moment minus its send time. A tap on the
worker's internal topic splits it in two: producer → ingest (the internal record's CreateTime) and
ingest → visible on /metrics. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import re
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.ingest import (REPO, RESULTS, STATE, Run, _broker_process, _interrupt, _LIVE, create_topics,
                          delete_topics, floorwatch_env, free_port, machine_facts, say, snapshot_code)

BROKER_PORT = 19292          # bench.ingest uses 19192, the tests 19092, the demo 9092
SIM_START = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)   # a Monday at the morning peak (site time UTC)
PILOT_RATE = 600.0           # contacts/min of the calibration run
WATERMARK = "floorwatch_watermark_timestamp_seconds"
_WATERMARK_LINE = re.compile(rb"^floorwatch_watermark_timestamp_seconds (\S+)$", re.M)
_OCCURRED = b'"occurred_at":"'
_OCCURRED_RE = re.compile(rb'"occurred_at":"([^"]+)"')
PROGRESS_EVERY_S = 5.0


# -- the input: a simulated center in its steady state, re-timed to now ------------------------------

@dataclass(slots=True)
class Event:
    topic: str
    key: bytes | None
    head: bytes       # the value up to the occurred_at string
    tail: bytes       # the value after it
    offset_ms: int    # event time relative to the first paced event's slot (the run's start)


def _sim_window(rate: float, seed: int, settle: float, span: float, progress: bool) -> list:
    """The simulator's messages with event time in [settle, settle + span) s after SIM_START."""
    from streams.simulator import SimConfig, generate

    begin, end = SIM_START + timedelta(seconds=settle), SIM_START + timedelta(seconds=settle + span)
    kept: list = []
    last = time.monotonic()
    for i, msg in enumerate(generate(SimConfig(seed=seed, rate=rate, start=SIM_START, duration_s=settle + span + 1))):
        if msg.at >= end:
            break
        if msg.at >= begin:
            kept.append(msg)
        if progress and i & 4095 == 0 and time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            say(f"  ... simulated {(msg.at - SIM_START).total_seconds():.0f} of {settle + span:.0f} s "
                f"({i:,} events so far)")
    return kept


def simulated_input(rate: float, span: float, settle: float, seed: int) -> tuple[list, float]:
    """Valid simulated events at about `rate` per second over `span` seconds; and the simulator's rate.

    The simulator starts with every agent logging in at once, and its event rate then climbs for
    about ten simulated minutes while contacts fill the center. So its first `settle` seconds are
    simulated and dropped; only the steady part after them is sent. The simulator's `rate` is in
    contacts per minute: a short calibration run at a low rate finds how many events per second one
    contact per minute makes in that part of the day, and the real run is sized from it.
    """
    pilot = len(_sim_window(PILOT_RATE, seed, settle, span, progress=False))
    if pilot == 0:
        raise SystemExit("bench: the simulator produced no events in the window; try a larger --span or --settle")
    sim_rate = PILOT_RATE * rate * span / pilot
    return _sim_window(sim_rate, seed, settle, span, progress=True), sim_rate


def prepare(messages: list, topics: dict[str, str], settle: float) -> list[Event]:
    """Split each value around its occurred_at, so that re-timing it at send time is a concatenation."""
    begin = SIM_START + timedelta(seconds=settle)
    events = []
    for m in messages:
        value = m.value
        at = value.find(_OCCURRED) + len(_OCCURRED)
        # the simulator writes UTC event times as 2025-01-06T10:10:00.123Z: 24 characters
        if at < len(_OCCURRED) or value[at + 23:at + 25] != b'Z"':
            raise SystemExit(f"bench: unexpected occurred_at in a simulated event: {value[:200]!r}")
        offset_ms = (m.at - begin) // timedelta(milliseconds=1)
        events.append(Event(topics[m.topic], m.key, value[:at], value[at + 24:], offset_ms))
    return events


class Stamps:
    """Epoch milliseconds -> b'2026-11-24T10:00:00.123Z', caching the part before the fraction."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, ms: int) -> bytes:
        sec, frac = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{frac:03d}Z".encode()


# -- probes and the watchers that resolve them ------------------------------------------------------

@dataclass(slots=True)
class Probe:
    sent: float                       # time.time() just before producer.send()
    occurred_ms: int                  # its event time (epoch ms); strictly increasing along the probes
    measured: bool                    # False during the warm-up
    ingested_ms: int | None = None    # CreateTime of the first internal record with an event as new
    tapped: float | None = None       # when the tap read that record
    visible: float | None = None      # when a /metrics response first showed the watermark >= occurred_ms
    asked: float | None = None        # when that scrape was sent


class Resolver:
    """Marks probes (strictly increasing event times) as reached by a rising event-time mark."""

    def __init__(self, probes: list[Probe]) -> None:
        self.probes = probes
        self.next = 0

    def advance(self, mark_ms: int, mark) -> None:
        probes = self.probes
        while self.next < len(probes) and probes[self.next].occurred_ms <= mark_ms:
            mark(probes[self.next])
            self.next += 1


class Poller(threading.Thread):
    """Scrapes /metrics every `every` seconds on one keep-alive connection; reads only the watermark."""

    def __init__(self, host: str, port: int, every: float, probes: list[Probe]) -> None:
        super().__init__(name="metrics-poller", daemon=True)
        self.host, self.port, self.every = host, port, every
        self.resolver = Resolver(probes)
        self.stop_event = threading.Event()
        self.watermark_ms: int | None = None
        self.durations: list[float] = []    # seconds per scrape
        self.bytes = 0
        self.errors = 0
        self.last_duration: float | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        due = time.monotonic()
        while not self.stop_event.is_set():
            asked = time.time()
            try:
                conn.request("GET", "/metrics")
                body = conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                self.stop_event.wait(self.every)
                continue
            got = time.time()
            self.durations.append(got - asked)
            self.last_duration = got - asked
            self.bytes = len(body)
            found = _WATERMARK_LINE.search(body)
            if found:
                mark = round(float(found.group(1)) * 1000)
                if self.watermark_ms is None or mark > self.watermark_ms:
                    self.watermark_ms = mark

                    def seen(p: Probe, got=got, asked=asked) -> None:
                        p.visible, p.asked = got, asked
                    self.resolver.advance(mark, seen)
            due += self.every
            wait = due - time.monotonic()
            if wait < 0:
                due = time.monotonic()  # a slow scrape: start again from now, do not burst
            else:
                self.stop_event.wait(wait)
        conn.close()


class Tap(threading.Thread):
    """Reads the worker's internal topic (ingest's output): when did ingest write each probe's time?

    Its records carry one event per line ("topic\\tpartition\\toffset\\ttimestamp\\tjson"); the
    record's CreateTime is when ingest handed it to its producer.
    """

    def __init__(self, bootstrap: str, topic: str, probes: list[Probe]) -> None:
        super().__init__(name="internal-tap", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.resolver = Resolver(probes)
        self.stop_event = threading.Event()
        self.mark_ms: int | None = None
        self.records = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # the breakdown is optional; the measurement goes on without it
            self.error = repr(exc)

    async def _run(self) -> None:
        from streams.config import KafkaSettings
        from streams.kafka_io import consumer

        c = consumer(KafkaSettings(bootstrap_servers=self.bootstrap), self.topic, group_id=None)
        await c.start()
        try:
            while not self.stop_event.is_set():
                batches = await c.getmany(timeout_ms=100)
                got = time.time()
                for records in batches.values():
                    for record in records:
                        self.records += 1
                        mark = max(map(_iso_ms, _OCCURRED_RE.findall(record.value)), default=None)
                        if mark is None:
                            continue
                        if self.mark_ms is None or mark > self.mark_ms:
                            self.mark_ms = mark

                            def seen(p: Probe, created=record.timestamp, got=got) -> None:
                                p.ingested_ms, p.tapped = created, got
                            self.resolver.advance(mark, seen)
        finally:
            await c.stop()


def _iso_ms(text: bytes) -> int:
    return round(datetime.fromisoformat(text.decode()).timestamp() * 1000)


# -- the paced producer -----------------------------------------------------------------------------

@dataclass
class Feed:
    """What the producer has done so far (read by the progress reporter)."""
    sent: int = 0
    measured_sent: int = 0
    acked: int = 0
    failed: int = 0
    first_error: str | None = None
    started: float | None = None        # time.time() of the run's event-time origin
    measure_from: float | None = None   # time.time(): end of the warm-up
    last_sent: float | None = None
    behind: list[float] | None = None   # seconds each event was sent after its due time (sampled)
    done: bool = False


async def feed(bootstrap: str, events: list[Event], warmup: float, probe_every: float, probes: list[Probe],
               state: Feed) -> None:
    from streams.config import KafkaSettings
    from streams.kafka_io import producer

    stamp = Stamps()
    state.behind = []

    def delivered(fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            state.failed += 1
            if state.first_error is None:
                state.first_error = "cancelled" if fut.cancelled() else repr(fut.exception())
        else:
            state.acked += 1

    async with producer(KafkaSettings(bootstrap_servers=bootstrap)) as p:
        loop = asyncio.get_running_loop()
        mono0, wall0 = loop.time(), time.time()
        origin_ms = int(wall0 * 1000)
        state.started = origin_ms / 1000
        state.measure_from = state.started + warmup
        warmup_ms = int(warmup * 1000)
        last_probe = -math.inf
        last_probe_ms = -1
        for i, ev in enumerate(events):
            due = mono0 + ev.offset_ms / 1000
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            occurred_ms = origin_ms + ev.offset_ms
            value = ev.head + stamp(occurred_ms) + ev.tail
            now = time.time()
            fut = await p.send(ev.topic, value, key=ev.key)
            fut.add_done_callback(delivered)
            state.sent += 1
            state.last_sent = now
            measured = ev.offset_ms >= warmup_ms
            if measured:
                state.measured_sent += 1
            if i & 15 == 0:
                state.behind.append(max(loop.time() - due, 0.0))
            if now - last_probe >= probe_every and occurred_ms > last_probe_ms:
                probes.append(Probe(now, occurred_ms, measured))
                last_probe, last_probe_ms = now, occurred_ms
        await p.flush()
    state.done = True


# -- the run ----------------------------------------------------------------------------------------

def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: list[float], missing: int = 0) -> dict[str, Any]:
    """count, p50, p90, p99, max (ms) by nearest rank; a missing value counts as larger than all."""
    out: dict[str, Any] = {"count": len(values) + missing, "unresolved": missing}
    if not values:
        return out
    full = values + [math.inf] * missing
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        v = nearest_rank(full, q)
        out[name] = None if math.isinf(v) else round(v, 1)
    out["max"] = None if missing else round(max(values), 1)
    out["min"] = round(min(values), 1)
    out["mean"] = round(sum(values) / len(values), 1)
    return out


def _cpu_between(a, b, attr: str) -> float | None:
    x, y = getattr(a, attr), getattr(b, attr)
    return None if x is None or y is None else y - x


def wait_ready(run: Run, port: int, partitions: int, timeout: float) -> None:
    """Until the worker's /metrics shows it owns every partition of the internal topic."""
    from streams.demo import scrape

    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while True:
        if not run.alive():
            raise SystemExit(f"bench: the worker exited with code {run.proc.returncode}; log {run.log}:\n"
                             f"{run.log_tail()}")
        with contextlib.suppress(OSError, ValueError):
            owned = sum(scrape(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
                        .get("floorwatch_partitions_owned", {}).values())
            if owned >= partitions:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the worker did not own its {partitions} partitions within {timeout:.0f}s; "
                             f"log {run.log}:\n{run.log_tail()}")
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            say("  ... waiting for the worker to own its partitions")
        time.sleep(0.2)


async def measure(args: argparse.Namespace, run: Run, events: list[Event], bootstrap: str, port: int,
                  internal_topic: str, broker) -> dict[str, Any]:
    probes: list[Probe] = []
    poller = Poller("127.0.0.1", port, args.poll_every, probes)
    tap = Tap(bootstrap, internal_topic, probes) if not args.no_tap else None
    poller.start()
    if tap is not None:
        tap.start()
    state = Feed()
    sender = asyncio.create_task(feed(bootstrap, events, args.warmup, args.probe_every, probes, state))
    timeline: list[list[Any]] = []
    marks: dict[str, Any] = {}
    last_progress = time.monotonic()
    previous = (time.time(), 0, run.sample(broker))
    drain_until: float | None = None
    try:
        while True:
            await asyncio.sleep(0.25)
            now = time.time()
            if sender.done():
                sender.result()  # raises what the producer raised
                if drain_until is None:
                    drain_until = time.monotonic() + args.drain_timeout
                    marks["end"] = run.sample(broker)
                    say(f"  all {state.sent:,} events sent; waiting for the last probes to show on /metrics ...")
                pending = [p for p in probes if p.visible is None]
                if not pending or time.monotonic() > drain_until:
                    break
            if not run.alive():
                raise SystemExit(f"bench: the worker exited with code {run.proc.returncode} during the run; "
                                 f"log {run.log}:\n{run.log_tail()}")
            if state.measure_from is not None and "start" not in marks and now >= state.measure_from:
                marks["start"] = run.sample(broker)
                say(f"  warm-up over ({args.warmup:g}s): measuring for {args.duration:g}s")
            if state.started is None:
                continue
            sample = run.sample(broker) if not sender.done() else None
            if sample is not None and (not timeline or now - timeline[-1][0] - state.started >= 1.0):
                wm = poller.watermark_ms
                scrape_s = poller.last_duration
                timeline.append([round(now - state.started, 2), state.sent,
                                 None if wm is None else round(now * 1000 - wm), round(sample.cpu, 2),
                                 None if scrape_s is None else round(scrape_s * 1000, 1)])
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S and not sender.done():
                last_progress = time.monotonic()
                t0, sent0, s0 = previous
                previous = (now, state.sent, sample)
                wm = poller.watermark_ms
                done = [(p.visible - p.sent) * 1000 for p in probes if p.measured and p.visible is not None]
                phase = "measuring" if "start" in marks else "warm-up"
                cores = (sample.cpu - s0.cpu) / (sample.t - s0.t) if sample and s0 and sample.t > s0.t else math.nan
                say(f"  ... {phase} {now - state.started:4.0f}s: sent {state.sent:,} "
                    f"({(state.sent - sent0) / max(now - t0, 1e-9):,.0f}/s); watermark "
                    + ("not yet on /metrics" if wm is None else f"{now - wm / 1000:.3f}s behind now")
                    + (f"; p99 so far {nearest_rank(done, 0.99):.0f} ms over {len(done)} probes" if done else "")
                    + f"; worker {cores:.2f} cores"
                    + (f"; last scrape {poller.last_duration * 1000:.0f} ms" if poller.last_duration else ""))
    finally:
        poller.stop_event.set()
        if tap is not None:
            tap.stop_event.set()
        if not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        poller.join(timeout=10)
        if tap is not None:
            tap.join(timeout=10)

    # -- the figures
    measured = [p for p in probes if p.measured]
    seen = [(p.visible - p.sent) * 1000 for p in measured if p.visible is not None]
    result: dict[str, Any] = {"latency_ms": summary(seen, sum(1 for p in measured if p.visible is None))}
    result["latency_ms"]["definition"] = (
        "send of a probe event .. first /metrics response whose floorwatch_watermark_timestamp_seconds "
        "is >= its occurred_at")
    result["warmup_latency_ms"] = summary([(p.visible - p.sent) * 1000 for p in probes
                                              if not p.measured and p.visible is not None],
                                             sum(1 for p in probes if not p.measured and p.visible is None))
    both = [p for p in measured if p.visible is not None and p.ingested_ms is not None]
    if both:
        result["breakdown_ms"] = {
            "to_ingest": summary([p.ingested_ms - p.sent * 1000 for p in both]),
            "ingest_to_visible": summary([p.visible * 1000 - p.ingested_ms for p in both]),
            "tap_read_after_ingest": summary([(p.tapped * 1000 - p.ingested_ms) for p in both]),
            "definition": "to_ingest: send .. CreateTime of the first internal-topic record holding an event "
                          "at least as new (ingest has decoded the poll and hands the batch to its producer); "
                          "ingest_to_visible: that .. visible on /metrics (internal produce, the engine's "
                          "fetch and apply, the scrape)",
        }
    if tap is not None:
        result["tap"] = {"records": tap.records, "error": tap.error}
    # the measured span: end of the warm-up .. the last send; CPU over the samples nearest to it
    start, end = marks.get("start"), marks.get("end")
    span = (state.last_sent - state.measure_from) if start is not None and end is not None else None
    cpu_span = (end.t - start.t) if span else None
    result["input"] = {
        "events_sent": state.sent, "events_measured": state.measured_sent,
        "events_acked": state.acked, "send_errors": state.failed, "first_send_error": state.first_error,
        "achieved_events_per_s": round(state.measured_sent / span, 1) if span else None,
        "measured_s": round(span, 2) if span else None,
        "send_behind_due_ms": summary([b * 1000 for b in state.behind or []]),
        "probes": len(probes), "probes_measured": len(measured),
    }
    worker: dict[str, Any] = {"log": str(run.log),
                              "peak_rss_mib": round(max((s.rss for s in run.samples), default=0) / 2**20, 1)}
    if span and cpu_span and cpu_span > 0:
        cpu = end.cpu - start.cpu
        cores = cpu / cpu_span
        worker.update({"cpu_s": round(cpu, 2), "cpu_cores_busy": round(cores, 3),
                       "cpu_us_per_event": round(cores / max(state.measured_sent / span, 1e-9) * 1e6, 1),
                       "cpu_window_s": round(cpu_span, 2)})
        broker_cpu = _cpu_between(start, end, "broker_cpu")
        harness_cpu = _cpu_between(start, end, "harness_cpu")
        machine_cpu = _cpu_between(start, end, "machine_cpu")
        result["broker_cpu_cores_busy"] = None if broker_cpu is None else round(broker_cpu / cpu_span, 3)
        result["harness_cpu_cores_busy"] = None if harness_cpu is None else round(harness_cpu / cpu_span, 3)
        if machine_cpu is not None:
            other = machine_cpu - cpu - (broker_cpu or 0.0) - (harness_cpu or 0.0)
            result["other_cores_busy"] = round(max(other, 0.0) / cpu_span, 3)
    result["worker"] = worker
    durations = [d * 1000 for d in poller.durations]
    result["scrape"] = {**summary(durations), "every_ms": args.poll_every * 1000, "errors": poller.errors,
                        "response_bytes": poller.bytes,
                        "note": "client-side time per /metrics scrape; the worker builds the KPIs on its event loop"}
    result["timeline"] = timeline
    result["timeline_columns"] = ["s since start", "events sent", "now - watermark ms (poller)", "worker CPU s",
                                  "last scrape ms"]
    result["probes"] = [[round(p.sent - state.started, 3), p.occurred_ms,
                         None if p.visible is None else round((p.visible - p.sent) * 1000, 1),
                         None if p.ingested_ms is None else round(p.ingested_ms - p.sent * 1000, 1),
                         p.measured] for p in probes]
    result["probe_columns"] = ["s since start", "occurred_at ms", "latency ms", "to ingest ms", "measured"]
    return result


def final_counts(port: int, sent: int, timeout: float) -> dict[str, int]:
    """The worker's ingest counters once it has accepted everything sent (or after `timeout` s)."""
    from streams.demo import scrape

    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while True:
        with contextlib.suppress(OSError, ValueError):
            final = scrape(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
            counts = {name: int(sum(final.get(f"floorwatch_ingest_{name}_total", {}).values()))
                      for name in ("accepted_events", "rejected_records", "duplicate_events")}
        if counts.get("accepted_events", 0) >= sent or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


# -- report -----------------------------------------------------------------------------------------

def text_report(report: dict) -> str:
    m, c, r = report["machine"], report["config"], report["result"]
    lat, inp, w = r["latency_ms"], r["input"], r["worker"]

    def ms(v: Any) -> str:
        return "n/a" if v is None else f"{v:,.0f}"

    lines = [
        f"machine: {m['cores']} cores ({m['cpu_model'] or 'unknown cpu'}), {m['memory_gib']} GiB; "
        f"python {m['python']}, "
        f"faust-streaming {m['faust_streaming']}, aiokafka {m['aiokafka']}, Kafka {m['kafka_broker']} (same machine)",
        f"input: {c['rate']:g} events/s asked, {ms(inp['achieved_events_per_s'])}/s achieved over "
        f"{inp['measured_s']}s ({inp['events_measured']:,} events; {c['warmup']:g}s warm-up before, not counted); "
        f"simulated center at {c['sim_rate']:,.0f} contacts/min, steady part after {c['settle']:g} simulated s",
        f"sends behind their due time: p99 {inp['send_behind_due_ms'].get('p99', 'n/a')} ms; send errors "
        f"{inp['send_errors']}",
        "",
        f"produce -> KPI visible on /metrics (watermark), {lat['count']} probes every "
        f"{c['probe_every'] * 1000:.0f} ms, "
        f"/metrics polled every {c['poll_every'] * 1000:.0f} ms:",
        f"  p50 {ms(lat.get('p50'))} ms   p90 {ms(lat.get('p90'))} ms   p99 {ms(lat.get('p99'))} ms   "
        f"max {ms(lat.get('max'))} ms" + (f"   ({lat['unresolved']} never seen)" if lat["unresolved"] else ""),
    ]
    if lat["unresolved"]:
        lines.append(f"  WARNING: {lat['unresolved']} of {lat['count']} probes never showed on /metrics within "
                     f"{c['drain_timeout']:g}s of the last send: the worker fell behind the input; the "
                     "percentiles above count them as infinitely late (n/a)")
    b = r.get("breakdown_ms")
    if b:
        ti, iv = b["to_ingest"], b["ingest_to_visible"]
        lines.append(f"  split: send -> ingest wrote it: p50 {ms(ti.get('p50'))} / p99 {ms(ti.get('p99'))} ms; "
                     f"ingest -> visible: p50 {ms(iv.get('p50'))} / p99 {ms(iv.get('p99'))} ms")
    s = r["scrape"]
    lines.append(f"  a scrape took p50 {s.get('p50', 'n/a')} / p99 {s.get('p99', 'n/a')} ms "
                 f"({s['response_bytes']:,} B)")
    cpu = (f"worker CPU {w['cpu_cores_busy']:.2f} cores ({w['cpu_us_per_event']:.0f} µs per event, scrapes included), "
           if "cpu_cores_busy" in w else "worker CPU n/a, ")
    if "accepted_events" in w:
        lines.append(f"worker accepted {w['accepted_events']:,} of {inp['events_sent']:,} events sent "
                     f"(dead-lettered {w.get('rejected_records', 0)}, duplicates {w.get('duplicate_events', 0)})")
    lines.append(cpu + f"peak RSS {w['peak_rss_mib']:.0f} MiB; broker {r.get('broker_cpu_cores_busy') or 0:.2f} "
                 f"cores, harness {r.get('harness_cpu_cores_busy') or 0:.2f}, "
                 f"other {r.get('other_cores_busy') or 0:.2f}")
    if (r.get("other_cores_busy") or 0) >= 0.1:
        lines.append("  WARNING: other processes kept cores busy during the run: figures are disturbed")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=2000.0, help="input events per second (default 2000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds sent before measuring, not counted (default 10)")
    p.add_argument("--settle", type=float, default=600.0,
                   help="simulated seconds dropped from the simulator's start before its steady part (default 600)")
    p.add_argument("--probe-every", type=float, default=0.1, help="seconds between probes (default 0.1)")
    p.add_argument("--poll-every", type=float, default=0.02, help="seconds between /metrics scrapes (default 0.02)")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds to wait after the last send for the last probes to show (default 60)")
    p.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4, as the app)")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="use this running broker instead of starting one")
    p.add_argument("--broker-port", type=int, default=BROKER_PORT,
                   help=f"port of the bench's own broker (controller: +1; default {BROKER_PORT})")
    p.add_argument("--keep-broker", action="store_true", help="leave the bench broker running afterwards")
    p.add_argument("--keep-topics", action="store_true", help="do not delete the bench topics afterwards")
    p.add_argument("--no-tap", action="store_true", help="no breakdown (no reader on the internal topic)")
    p.add_argument("--no-snapshot", action="store_true", help="run the working tree itself, not a copy taken at start")
    p.add_argument("--seed", type=int, default=7, help="simulator seed")
    p.add_argument("--out", metavar="FILE", help="JSON report path (default bench/results/latency-<time>.json)")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.settle < 0 or args.partitions < 1:
        p.error("--rate, --duration and --partitions must be > 0; --warmup and --settle >= 0")
    if args.probe_every <= 0 or args.poll_every <= 0:
        p.error("--probe-every and --poll-every must be > 0")
    return args


def reproduce(args: argparse.Namespace) -> str:
    parts = ["python", "-m", "bench.latency", "--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}",
             "--warmup", f"{args.warmup:g}", "--settle", f"{args.settle:g}", "--seed", str(args.seed),
             "--partitions", str(args.partitions), "--probe-every", f"{args.probe_every:g}",
             "--poll-every", f"{args.poll_every:g}"]
    parts += ["--bootstrap", args.bootstrap] if args.bootstrap else ["--broker-port", str(args.broker_port)]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = f"latency-{stamp}-{uuid.uuid4().hex[:6]}"
    app_id = f"{prefix}-W"
    broker = None
    started_broker = False
    bootstrap = args.bootstrap
    failed = False
    code_dir = REPO
    code: dict[str, Any] = {"snapshot": None}
    command = reproduce(args)
    say(f"reproduce with: {command}")
    try:
        if not args.no_snapshot:
            code_dir, code = snapshot_code(prefix)
            sys.path.insert(0, str(code_dir))
            say(f"code snapshot {code['source_sha256']} in {code_dir}")
        from streams.simulator import TOPICS

        topics = {name: f"{prefix}.{name}" for name in TOPICS}
        span = args.warmup + args.duration
        say(f"simulating {span:g}s of input at about {args.rate:g} events/s "
            f"(the simulator's first {args.settle:g} simulated seconds are dropped) ...")
        t0 = time.monotonic()
        messages, sim_rate = simulated_input(args.rate, span, args.settle, args.seed)
        events = prepare(messages, topics, args.settle)
        del messages
        say(f"  {len(events):,} events ({len(events) / span:,.0f}/s) from a center at {sim_rate:,.0f} contacts/min, "
            f"in {time.monotonic() - t0:.1f}s")

        local_pid = None
        if bootstrap is None:
            from streams.broker import LocalBroker

            broker = LocalBroker(state_dir=STATE / "latency-broker", port=args.broker_port,
                                 controller_port=args.broker_port + 1, progress=say)
            started_broker = not broker.status().running
            bootstrap = broker.start()
            local_pid = broker.status().pid
        internal_topic = f"{app_id}-events"
        say(f"broker {bootstrap}; topics {prefix}.* and {internal_topic} ({args.partitions} partitions)")
        asyncio.run(create_topics(bootstrap, [*topics.values(), *(f"{prefix}.{n}" for n in
                                                                  ("snapshots", "alerts", "deadletter")),
                                              internal_topic], args.partitions))

        ctx = {"cwd": code_dir, "prefix": prefix, "bootstrap": bootstrap, "topics": topics,
               "partitions": args.partitions}
        port = free_port()
        run = Run("W", [sys.executable, "-m", "streams.cli", "worker"], floorwatch_env(ctx, app_id, port),
                  STATE / "logs" / f"{prefix}-worker.log", code_dir)
        run.start()
        say(f"worker started (pid {run.proc.pid}, log {run.log}); waiting until it owns its partitions ...")
        wait_ready(run, port, args.partitions, timeout=120)
        say(f"worker ready after {time.time() - run.spawned:.1f}s; sending {args.rate:g} events/s for "
            f"{args.warmup:g}s warm-up + {args.duration:g}s measured")
        result = asyncio.run(measure(args, run, events, bootstrap, port, internal_topic,
                                     _broker_process(bootstrap, local_pid)))
        behind = result["latency_ms"]["unresolved"] > 0   # then do not wait for it to catch up
        result["worker"].update(final_counts(port, result["input"]["events_sent"],
                                             0.0 if behind else args.drain_timeout))
        run.stop()
        report: dict[str, Any] = {
            "benchmark": "latency", "started": stamp, "prefix": prefix, "command": command,
            "machine": machine_facts(result["input"]["events_sent"], args.partitions, bootstrap),
            "code": code,
            "config": {"rate": args.rate, "duration": args.duration, "warmup": args.warmup, "settle": args.settle,
                       "probe_every": args.probe_every, "poll_every": args.poll_every, "seed": args.seed,
                       "drain_timeout": args.drain_timeout,
                       "sim_rate": round(sim_rate, 1), "partitions": args.partitions,
                       "producer": "streams.kafka_io.producer (acks=all, idempotent, linger 5 ms)"},
            "result": result,
        }
        failed = result["latency_ms"]["count"] == 0
        out = Path(args.out) if args.out else RESULTS / f"latency-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print("\n" + text_report(report) + f"\n\nreproduce: {command}\nreport: {out} (every probe in "
              f"result.probes, a per-second timeline in result.timeline)\nworker log: {run.log}", flush=True)
    except KeyboardInterrupt:
        say("interrupted")
        failed = True
    finally:
        for run_ in list(_LIVE):
            run_.stop(timeout=10)
        if bootstrap is not None and not args.keep_topics:
            with contextlib.suppress(Exception):
                deleted = asyncio.run(asyncio.wait_for(delete_topics(bootstrap, prefix), 30))
                say(f"deleted {len(deleted)} bench topics")
        for path in (STATE / "workers").glob(f"{prefix}-*"):
            shutil.rmtree(path, ignore_errors=True)
        if code_dir != REPO:
            shutil.rmtree(code_dir, ignore_errors=True)
        if broker is not None and started_broker and not args.keep_broker:
            broker.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
