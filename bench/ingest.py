"""Ingest throughput, side by side: the Kafka ceiling, a plain Faust peer, and Floorwatch.

    python -m bench.ingest                       # N = 200 000, own broker on 127.0.0.1:19192
    python -m bench.ingest --events 50000 --only A,C --keep-broker
    python -m bench.ingest --bootstrap 127.0.0.1:19092 --events 3000   # an existing broker
    python -m bench.ingest --profile             # + a profile of the Floorwatch worker (py-spy or yappi)

Pre-fills five fresh input topics (unique prefix) with N valid simulated events, then lets each
contender drain the same topics from the beginning with a fresh consumer group, one after the other:

  A  ceiling    plain aiokafka getmany + orjson.loads + a per-queue dict     (bench/ceiling.py)
  B  peer       plain faust-streaming agent, JSON codec, tumbling windowed
                table counting per queue                                      (bench/peer_faust.py)
  C  floorwatch `python -m streams.cli worker`: validate, hash, re-key, internal topic, dedup table;
                done when its /progress reports N events accepted by the engine

Every contender runs in its own process; the harness samples each one's process tree with psutil
every 0.2 s (CPU user+system, RSS; C's ingest child included), and for C polls /progress (a few
counters as JSON) every 0.2 s. It used to scrape /metrics every 1 s, which builds every KPI on the
engine's loop (~80 ms of its CPU each, 14 % of the engine's time; Prometheus scrapes every 15 s) and
saw the end up to 1 s late. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import psutil

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".floorwatch" / "bench"
RESULTS = REPO / "bench" / "results"
BROKER_PORT = 19192
RESULT_MARK = "BENCH-RESULT "
SAMPLE_EVERY_S = 0.2
# C's /progress: every 0.2 s (a few counters; /metrics would build every KPI). The drain's end is the
# first poll that sees N accepted: up to 0.2 s late.
SCRAPE_IDLE_EVERY_S = 0.2
SCRAPE_EVERY_S = 0.2
ACCEPTED = "floorwatch_ingest_accepted_events_total"
RECEIVED = "floorwatch_ingest_received_records_total"
FORWARDED = "floorwatch_ingest_valid_events_total"
HASH_KEY = "bench-customer-hash-key"


def poll_progress(url: str, timeout: float = 2.0) -> dict[str, int]:
    """A worker's GET /progress: events received, forwarded, accepted and duplicates so far."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return orjson.loads(response.read())
CONTENDERS = {
    "A": "ceiling: aiokafka getmany + orjson",
    "B": "peer: faust agent + windowed table",
    "C": "floorwatch: streams.cli worker",
}
_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a frozen copy of the code ----------------------------------------------------------------------

SNAPSHOT_PACKAGES = ("streams", "models", "bench")


def snapshot_code(prefix: str) -> tuple[Path, dict]:
    """Copy the packages to STATE/src/<prefix>, so one run measures one version of the code.

    Others may edit the working tree while a long run is under way; every contender starts from
    this copy (its cwd, first on sys.path). Returns the copy and what identifies it.
    """
    import hashlib

    target = STATE / "src" / prefix
    digest = hashlib.sha256()
    for package in SNAPSHOT_PACKAGES:
        shutil.copytree(REPO / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__", "results", "*.pyc"))
    for shared in ("deploy", ".cache"):  # the broker's pom and jar cache (streams.broker finds them by path)
        if (REPO / shared).exists():
            (target / shared).symlink_to(REPO / shared, target_is_directory=True)
    for path in sorted(p for package in SNAPSHOT_PACKAGES for p in (target / package).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    code = {"source_sha256": digest.hexdigest()[:16], "snapshot": str(target)}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        code["git_head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", *SNAPSHOT_PACKAGES], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.splitlines()
        code["uncommitted"] = [line[3:] for line in status]
    return target, code


# -- topics and pre-fill ---------------------------------------------------------------------------

async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def simulated(n: int, seed: int) -> list:
    """N valid events from the project's simulator, keyed by entity (a busy center: 600 contacts/min)."""
    from streams.simulator import SimConfig, generate

    messages = list(itertools.islice(generate(SimConfig(seed=seed, duration_s=90 * 86400, rate=600)), n))
    if len(messages) < n:
        raise SystemExit(f"bench: the simulator produced only {len(messages)} events, {n} asked")
    return messages


async def produce(bootstrap: str, topics: dict[str, str], messages: list, partitions: int) -> dict[str, int]:
    from streams.config import KafkaSettings
    from streams.kafka_io import consumer, producer

    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    pending: list[asyncio.Future] = []
    async with producer(kafka) as p:
        for m in messages:
            pending.append(await p.send(topics[m.topic], m.value, key=m.key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await p.flush()
    # what is really there: the end offsets of every partition, per topic
    from aiokafka import TopicPartition

    async with consumer(kafka, group_id=None) as c:
        ends = await c.end_offsets([TopicPartition(t, p) for t in topics.values() for p in range(partitions)])
    stored: dict[str, int] = {}
    for tp, offset in ends.items():
        stored[tp.topic] = stored.get(tp.topic, 0) + offset
    return stored


class EndOffsets:
    """Sum of a topic's end offsets, polled once a second in a thread of its own (C's internal topic:
    how many forwarded events ingest has really written, as opposed to handed to Faust's buffer)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.value: int | None = None
        self._stop = None
        self._thread = None

    def __enter__(self) -> EndOffsets:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._poll()), name="end-offsets", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _poll(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await c.start()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):  # the topic may not exist yet
                    self.value = sum((await asyncio.wait_for(c.end_offsets(tps), 5)).values())
                await asyncio.sleep(1.0)
        finally:
            await c.stop()


# -- running one contender -------------------------------------------------------------------------

@dataclass
class Sample:
    t: float          # time.time()
    cpu: float        # user+system seconds of the contender's process tree
    rss: int          # bytes, process tree
    broker_cpu: float | None = None
    machine_cpu: float | None = None  # busy CPU seconds of the whole machine, all cores
    harness_cpu: float | None = None  # this process (sampling, scraping, the end-offsets poller)
    count: float | None = None  # C only: accepted events (from /metrics)
    received: float | None = None  # C only: records the ingest agent read
    forwarded: float | None = None  # C only: valid events ingest sent to the internal topic
    written: float | None = None  # C only: records in the internal topic (its end offsets)


@dataclass(eq=False)
class Run:
    key: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path = REPO
    proc: subprocess.Popen | None = None
    spawned: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    result: dict | None = None
    max_procs: int = 0
    _log_pos: int = 0
    _log_buf: str = ""

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.spawned = time.time()
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        _LIVE.append(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample(self, broker: psutil.Process | None) -> Sample | None:
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        cpu = 0.0
        rss = 0
        self.max_procs = max(self.max_procs, len(procs))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                cpu += times.user + times.system
                rss += p.memory_info().rss
        broker_cpu = None
        if broker is not None:
            with contextlib.suppress(psutil.Error):
                bt = broker.cpu_times()
                broker_cpu = bt.user + bt.system
        m = psutil.cpu_times()
        machine = m.user + m.nice + m.system + getattr(m, "irq", 0) + getattr(m, "softirq", 0) + getattr(m, "steal", 0)
        s = Sample(time.time(), cpu, rss, broker_cpu, machine, time.process_time())
        self.samples.append(s)
        return s

    def read_result(self) -> dict | None:
        """The contender's `BENCH-RESULT {json}` line, once it has printed it."""
        if self.result is None:
            with contextlib.suppress(OSError), self.log.open("rb") as fh:
                fh.seek(self._log_pos)
                chunk = fh.read()
                self._log_pos += len(chunk)
                self._log_buf += chunk.decode("utf-8", "replace")
                for line in self._log_buf.splitlines():
                    # Faust's worker redirects stdout into its log: the mark may follow a log prefix
                    at = line.find(RESULT_MARK)
                    if at >= 0:
                        self.result = json.loads(line[at + len(RESULT_MARK):].strip())
                        break
                self._log_buf = self._log_buf[self._log_buf.rfind("\n") + 1:]
        return self.result

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the group is its pid
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self in _LIVE:
            _LIVE.remove(self)


_LIVE: list[Run] = []


def _interp(samples: list[Sample], t: float, attr: str) -> float | None:
    points = [(s.t, getattr(s, attr)) for s in samples if getattr(s, attr) is not None]
    if not points:
        return None
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
    return points[-1][1]


def timeline(run: Run, every: float = 1.0) -> list[list[float]]:
    """[seconds since spawn, read, forwarded, in internal topic, accepted, CPU s] about every second."""
    rows: list[list[float]] = []
    for s in run.samples:
        if s.count is not None and (not rows or s.t - run.spawned - rows[-1][0] >= every):
            rows.append([round(s.t - run.spawned, 2), int(s.received or 0), int(s.forwarded or 0),
                         s.written, int(s.count), round(s.cpu, 2)])
    return rows


def measure(run: Run, n: int, timeout: float, broker: psutil.Process | None,
            metrics_url: str | None = None, internal: EndOffsets | None = None) -> dict:
    """Start the contender, sample it until it reports N events, stop it; return its row."""

    run.start()
    deadline = time.monotonic() + timeout
    idle: Sample | None = None      # C: the last poll before ingest had read anything
    marks: dict[str, Sample] = {}   # C: first read, first accepted, all read
    done_at: float | None = None
    last_progress = time.monotonic()
    last_scrape = 0.0
    scraped: Sample | None = None   # C: the latest sample with /metrics figures
    error = None
    while True:
        if time.monotonic() > deadline:
            error = f"timed out after {timeout:.0f}s"
            break
        scrape_every = SCRAPE_IDLE_EVERY_S if scraped is None or not scraped.received else SCRAPE_EVERY_S
        if metrics_url is not None and time.monotonic() - last_scrape < scrape_every - 0.01:
            run.sample(broker)   # CPU and RSS every 0.2 s; /metrics less often
        elif metrics_url is not None:
            last_scrape = time.monotonic()
            with contextlib.suppress(OSError, ValueError):
                progress = poll_progress(metrics_url)
                accepted = progress["accepted"]
                s = run.sample(broker)
                if s is not None:
                    s.count = accepted
                    s.received = progress["received"]
                    s.forwarded = progress["forwarded"]
                    s.written = internal.value if internal is not None else None
                    scraped = s
                    if not s.received:
                        idle = s
                    else:
                        marks.setdefault("first_read", s)
                    if accepted > 0:
                        marks.setdefault("first_accepted", s)
                    if s.received >= n:
                        marks.setdefault("all_read", s)
                    if accepted >= n:
                        done_at = s.t
                        break
        else:
            run.sample(broker)
            if run.read_result() is not None:
                # one more sample past the last event, for the CPU interpolation
                time.sleep(SAMPLE_EVERY_S)
                run.sample(broker)
                break
        if not run.alive():
            if run.read_result() is None:
                error = f"exited with code {run.proc.returncode} before processing {n} events"
            break
        if time.monotonic() - last_progress >= 5:
            last_progress = time.monotonic()
            last = scraped if scraped is not None else (run.samples[-1] if run.samples else None)
            count = last.count if last is not None else None
            say(f"  ... {run.key} running {time.time() - run.spawned:.0f}s"
                + (f": ingest read {int(last.received)}, forwarded {int(last.forwarded)}"
                   + (f" (in internal topic {last.written})" if last.written is not None else "")
                   + f"; engine accepted {int(count)}" if count is not None else ""))
        time.sleep(SAMPLE_EVERY_S)
    run.stop()
    row: dict[str, Any] = {"id": run.key, "name": CONTENDERS[run.key], "log": str(run.log)}
    peak = max((s.rss for s in run.samples), default=0)
    row["peak_rss_mib"] = round(peak / 2**20, 1)
    if error:
        row["error"] = error
        say(f"  {run.key} FAILED: {error}; log {run.log}:\n{run.log_tail()}")
        return row
    if metrics_url is not None:
        # polled: the drain runs from the last poll before ingest had read anything (at most 0.2 s
        # early) to the first poll that saw all N accepted by the engine (at most 0.2 s late)
        t_first = idle.t if idle is not None else run.spawned
        count, t_last, events = n, done_at, n
        row["count"] = int(run.samples[-1].count)
        row["timing"] = (f"polled /progress every {SCRAPE_EVERY_S} s: last poll before the first read .. first "
                         "poll with all N accepted by the engine")
        row["start_resolution_s"], row["end_resolution_s"] = SCRAPE_IDLE_EVERY_S, SCRAPE_EVERY_S
        for name, mark in marks.items():
            row[f"{name}_s"] = round(mark.t - run.spawned, 2)
        if "all_read" in marks:
            row["ingest_only_events_per_s"] = round(n / max(marks["all_read"].t - t_first, 1e-6), 1)
        row["timeline"] = timeline(run)
    else:
        res = run.result
        count, t_first, t_last, events = res["count"], res["first"], res["last"], res["count"]
        row["count"] = count
        row["counted_in_state"] = res.get("counted")
        row["distinct_keys"] = res.get("keys")
        row["timing"] = "first/last event timestamps reported by the contender"
    drain = max(t_last - t_first, 1e-6)
    sampled_cpu = _interp(run.samples, t_last, "cpu") - _interp(run.samples, t_first, "cpu")
    if metrics_url is None and run.max_procs == 1:
        # a single process that timed its own drain: its own user+system CPU over exactly that span
        # (the same figure psutil reads, without the 0.2 s sampling blur)
        cpu = run.result["cpu_self_s"]
        row["cpu_source"] = "in-process (time.process_time at first/last event)"
        row["cpu_s_sampled"] = round(sampled_cpu, 3)
    else:
        cpu = sampled_cpu
        row["cpu_source"] = "psutil process-tree samples every 0.2 s (children included), interpolated"
    row["processes"] = run.max_procs
    row.update({
        "drain_s": round(drain, 3),
        "events_per_s": round(events / drain, 1),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_million": round(cpu / events * 1e6, 2),
        "cpu_cores_busy": round(cpu / drain, 2),
        "startup_s": round(t_first - run.spawned, 2),
        "wall_s": round(t_last - run.spawned, 2),
    })
    b0, b1 = _interp(run.samples, t_first, "broker_cpu"), _interp(run.samples, t_last, "broker_cpu")
    if b0 is not None and b1 is not None:
        row["broker_cpu_s_per_million"] = round((b1 - b0) / events * 1e6, 2)
    # everything else on the machine (other work disturbs a 2-core measurement): busy cores, averaged
    m0, m1 = _interp(run.samples, t_first, "machine_cpu"), _interp(run.samples, t_last, "machine_cpu")
    h0, h1 = _interp(run.samples, t_first, "harness_cpu"), _interp(run.samples, t_last, "harness_cpu")
    if m0 is not None and m1 is not None and t_last - t_first >= 4 * SAMPLE_EVERY_S:
        others = (m1 - m0) - sampled_cpu - ((b1 - b0) if b0 is not None and b1 is not None else 0.0) - (h1 - h0)
        row["other_cores_busy"] = round(max(others, 0.0) / drain, 2)
        row["harness_cores_busy"] = round((h1 - h0) / drain, 2)
    return row


# -- the contenders --------------------------------------------------------------------------------

def base_env(ctx: dict) -> dict[str, str]:
    """The caller's environment without FLOORWATCH_* (a site config must not leak into the bench),
    with the code snapshot first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOORWATCH_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ctx["cwd"]), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def floorwatch_env(ctx: dict, app_id: str, port: int) -> dict[str, str]:
    bootstrap, topics, prefix, partitions = ctx["bootstrap"], ctx["topics"], ctx["prefix"], ctx["partitions"]
    return {
        **base_env(ctx),
        "FLOORWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "FLOORWATCH_KAFKA__PARTITIONS": str(partitions),
        "FLOORWATCH_WORKER__APP_ID": app_id,
        "FLOORWATCH_WORKER__WEB_PORT": str(port),
        "FLOORWATCH_WORKER__DATA_DIR": str(STATE / "workers"),
        "FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY": HASH_KEY,
        **{f"FLOORWATCH_TOPICS__{name.upper()}": topic for name, topic in topics.items()},
        **{f"FLOORWATCH_TOPICS__{name.upper()}": f"{prefix}.{name}" for name in ("snapshots", "alerts", "deadletter")},
    }


def run_contender(key: str, ctx: dict) -> dict:
    n, prefix, bootstrap = ctx["events"], ctx["prefix"], ctx["bootstrap"]
    topics = ctx["topics"]
    logs = STATE / "logs"
    inputs = ",".join(topics.values())
    if key == "A":
        run = Run("A", [sys.executable, "-m", "bench.ceiling", "--bootstrap", bootstrap, "--topics", inputs,
                        "--group", f"{prefix}-A", "--expect", str(n)],
                  base_env(ctx), logs / f"{prefix}-A.log", ctx["cwd"])
        return measure(run, n, ctx["timeout"], ctx["broker_proc"])
    if key == "B":
        env = {**base_env(ctx), "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPICS": inputs, "BENCH_APP_ID": f"{prefix}-B",
               "BENCH_EXPECT": str(n), "BENCH_PARTITIONS": str(ctx["partitions"]),
               "BENCH_WEB_PORT": str(free_port()), "BENCH_DATADIR": str(STATE / "peer")}
        run = Run("B", [sys.executable, "-m", "bench.peer_faust"], env, logs / f"{prefix}-B.log", ctx["cwd"])
        return measure(run, n, ctx["timeout"], ctx["broker_proc"])
    port = free_port()
    env = floorwatch_env(ctx, f"{prefix}-C", port)
    run = Run("C", [sys.executable, "-m", "streams.cli", "worker"], env, logs / f"{prefix}-C.log", ctx["cwd"])
    with EndOffsets(bootstrap, f"{prefix}-C-events", ctx["partitions"]) as internal:
        return measure(run, n, ctx["timeout"], ctx["broker_proc"], metrics_url=f"http://127.0.0.1:{port}/progress",
                       internal=internal)


class YappiWindows:
    """Profile windows inside the worker (bench/profile_worker.py, driven by control files)."""

    name = "yappi"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.profile_worker"]

    def start(self, window: str, pid: int) -> None:
        (self.directory / f"start-{window}").touch()

    def stop(self, window: str) -> None:
        (self.directory / f"stop-{window}").touch()

    def done(self, window: str) -> bool:
        return (self.directory / f"done-{window}").exists()

    def failed(self) -> str | None:
        error = self.directory / "error"
        return error.read_text() if error.exists() else None

    def result(self, window: str) -> dict:
        top = json.loads((self.directory / f"{window}.json").read_text())
        top["profiler"] = "yappi (builtins, all threads; deterministic: inflates functions called often)"
        top["file"] = str(self.directory / f"{window}.pstat")
        return top

    def close(self) -> None:
        pass


class PySpyWindows:
    """Profile windows from outside: `py-spy record -p PID` (sampling, all threads, idle excluded)."""

    name = "py-spy"
    RATE = 100

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}
        self.stopped: dict[str, float] = {}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "streams.cli", "worker"]

    def start(self, window: str, pid: int) -> None:
        out = self.directory / f"{window}.txt"
        self.started[window] = time.monotonic()
        self.procs[window] = subprocess.Popen(
            [shutil.which("py-spy"), "record", "-p", str(pid), "-r", str(self.RATE), "-f", "raw", "-o", str(out),
             "-d", "600", "--threads", "--subprocesses"],  # the worker's ingest child too
            stdout=subprocess.DEVNULL, stderr=(self.directory / f"{window}.py-spy.log").open("wb"),
            stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, window: str) -> None:
        proc = self.procs.get(window)
        self.stopped[window] = time.monotonic()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C

    def done(self, window: str) -> bool:
        proc = self.procs.get(window)
        return proc is not None and proc.poll() is not None

    def failed(self) -> str | None:
        for window, proc in self.procs.items():
            if proc.poll() is not None and not (self.directory / f"{window}.txt").exists():
                return (self.directory / f"{window}.py-spy.log").read_text(errors="replace")[-2000:]
        return None

    def result(self, window: str) -> dict:
        own: dict[str, int] = {}
        total: dict[str, int] = {}
        threads: dict[str, int] = {}
        samples = 0
        for line in (self.directory / f"{window}.txt").read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            samples += n
            raw = stack.split(";")
            if raw[0].startswith("thread ("):  # --threads: the root frame names the thread
                threads[raw[0]] = threads.get(raw[0], 0) + n
                raw = raw[1:] or ["(no python frame)"]
            frames = [_frame(f) for f in raw]
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for f in set(frames):
                total[f] = total.get(f, 0) + n

        def rows(table: dict[str, int]) -> list[dict]:
            return [{"function": f, "samples": c, "share": round(c / max(samples, 1), 4),
                     "own_s" if table is own else "total_s": round(c / self.RATE, 2),
                     **({"total_s": round(total[f] / self.RATE, 2)} if table is own else
                        {"own_s": round(own.get(f, 0) / self.RATE, 2)})}
                    for f, c in sorted(table.items(), key=lambda kv: -kv[1])[:40]]

        return {"profiler": f"py-spy {self.RATE} Hz (sampling, all threads, idle excluded)", "clock": "cpu samples",
                "profiled_s": round(self.stopped.get(window, 0.0) - self.started.get(window, 0.0), 2),
                "by_thread": [{"thread": t, "samples": c, "share": round(c / max(samples, 1), 4)}
                              for t, c in sorted(threads.items(), key=lambda kv: -kv[1])],
                "samples": samples, "by_own_time": rows(own), "by_total_time": rows(total),
                "file": str(self.directory / f"{window}.txt")}

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _frame(frame: str) -> str:
    """py-spy's 'function (path/file.py:123)' as 'package/file.py function' (lines merged)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    ours = None
    for package in ("streams", "models", "bench"):
        marker = f"/{package}/"
        if marker in path and "site-packages" not in path:
            ours = path[path.rindex(marker) + 1:]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif ours:
        path = ours
    elif "/lib/python3" in path:
        path = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"{path} {name}".strip()


def profile_floorwatch(ctx: dict, seconds: float, profiler: str, warmup: float = 2.0) -> dict:
    """Run C again under a profiler, in two windows of `seconds` each.

    "ingest": from `warmup` s after ingest read its first record, while it drains the input topics;
    "engine": from 1 s after ingest has read all N, while the engine drains the internal topic. (In
    this faust version the engine gets almost nothing while ingest has a backlog; see README.)
    """
    from streams.demo import scrape

    n, prefix = ctx["events"], ctx["prefix"]
    port = free_port()
    directory = STATE / "profiles" / prefix
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    prof = PySpyWindows(directory) if profiler == "py-spy" else YappiWindows(directory)
    env = {**floorwatch_env(ctx, f"{prefix}-P", port), "BENCH_PROFILE_DIR": str(directory)}
    run = Run("C", prof.command(), env, STATE / "logs" / f"{prefix}-P.log", ctx["cwd"])
    windows: dict[str, dict[str, Sample]] = {"ingest": {}, "engine": {}}
    marks: dict[str, Sample] = {}

    def control(s: Sample) -> None:
        if s.received:
            marks.setdefault("first_read", s)
        if s.received >= n:
            marks.setdefault("all_read", s)
        ingest, engine = windows["ingest"], windows["engine"]
        if "start" not in ingest and "first_read" in marks and "all_read" not in marks \
                and s.t - marks["first_read"].t >= warmup:
            prof.start("ingest", run.proc.pid)
            ingest["start"] = s
        elif "start" in ingest and "stop" not in ingest and (s.t - ingest["start"].t >= seconds or s.received >= n):
            prof.stop("ingest")
            ingest["stop"] = s
        elif "all_read" in marks and "start" not in engine and s.count < n - 100 and s.t - marks["all_read"].t >= 1 \
                and ("start" not in ingest or prof.done("ingest")):
            prof.start("engine", run.proc.pid)
            engine["start"] = s
        elif "start" in engine and "stop" not in engine and (s.t - engine["start"].t >= seconds or s.count >= n):
            prof.stop("engine")
            engine["stop"] = s

    def finished() -> bool:
        pending = [name for name, w in windows.items() if "start" in w and not prof.done(name)]
        return not pending and (last is not None and last.count >= n or "start" in windows["engine"])

    run.start()
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + ctx["timeout"] * 2
    last: Sample | None = None
    try:
        while time.monotonic() < deadline and run.alive():
            with contextlib.suppress(OSError, ValueError):
                metrics = scrape(url, timeout=2.0)
                s = run.sample(None)
                if s is not None:
                    s.count = sum(metrics.get(ACCEPTED, {}).values())
                    s.received = sum(metrics.get(RECEIVED, {}).values())
                    last = s
                    control(s)
            if finished():
                break
            error = prof.failed()
            if error:
                say(f"  profiler failed:\n{error}")
                break
            unwritten = [w["stop"].t for name, w in windows.items() if "stop" in w and not prof.done(name)]
            if unwritten and time.time() - min(unwritten) > 60:
                break  # a window that never got written: give up, reported below
            time.sleep(SAMPLE_EVERY_S)
    finally:
        prof.close()
        run.stop()
    result: dict[str, Any] = {"profiler": prof.name, "log": str(run.log)}
    for name, w in windows.items():
        if "stop" not in w or not prof.done(name):
            continue
        with contextlib.suppress(OSError, ValueError):
            top = prof.result(name)
            a, b = w["start"], w["stop"]
            events = (b.received - a.received) if name == "ingest" else (b.count - a.count)
            top.update({
                "events": int(events),
                "what": "records read by ingest" if name == "ingest" else "events accepted by engine",
                "events_per_s_under_profiler": round(events / max(b.t - a.t, 1e-6), 1),
                "cpu_s_per_million_under_profiler": round((b.cpu - a.cpu) / max(events, 1) * 1e6, 1)})
            result[name] = top
    if "ingest" not in result and "engine" not in result:
        say(f"  profile FAILED (log {run.log}):\n{run.log_tail()}")
        result["error"] = "no profile written"
    return result


# -- report ----------------------------------------------------------------------------------------

def machine_facts(n: int, partitions: int, bootstrap: str) -> dict:
    from streams.broker import KAFKA_VERSION

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        "faust_streaming": version("faust-streaming"), "aiokafka": version("aiokafka"),
        "pydantic": version("pydantic"), "orjson": version("orjson"), "kafka_broker": KAFKA_VERSION,
        "events": n, "partitions": partitions, "bootstrap": bootstrap,
    }


def ratio(rows: dict[str, dict], top: str, bottom: str, key: str = "events_per_s") -> float | None:
    a, b = rows.get(top, {}).get(key), rows.get(bottom, {}).get(key)
    return float(f"{a / b:.3g}") if a and b else None


def table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cores']} cores ({m['cpu_model'] or 'unknown cpu'}), {m['memory_gib']} GiB; "
        f"python {m['python']}, faust-streaming {m['faust_streaming']}, aiokafka {m['aiokafka']}, "
        f"pydantic {m['pydantic']}, Kafka {m['kafka_broker']} (same machine)",
        f"input: {m['events']} valid simulated events over 5 topics x {m['partitions']} partitions "
        f"({report['prefill']['mean_value_bytes']:.0f} B mean value); "
        f"pre-filled in {report['prefill']['total_s']:.1f}s",
        "",
        f"{'contender':<40} {'events':>8} {'events/s':>9} {'drain s':>8} {'CPU s/Mev':>10} {'cores':>6} "
        f"{'broker CPU s/Mev':>16} {'peak RSS MiB':>12} {'start s':>8} {'wall s':>7} {'other':>6}",
    ]
    for row in report["rows"]:
        label = f"{row['id']}  {row['name']}"
        if "error" in row:
            lines.append(f"{label:<40} FAILED: {row['error']} (log {row['log']})")
            continue
        lines.append(
            f"{label:<40} {row['count']:>8} {row['events_per_s']:>9,.0f} {row['drain_s']:>8.2f} "
            f"{row['cpu_s_per_million']:>10.1f} {row['cpu_cores_busy']:>6.2f} "
            f"{row.get('broker_cpu_s_per_million', float('nan')):>16.1f} {row['peak_rss_mib']:>12.1f} "
            f"{row['startup_s']:>8.1f} {row['wall_s']:>7.1f} {row.get('other_cores_busy', float('nan')):>6.2f}")
    c = next((row for row in report["rows"] if row["id"] == "C" and "error" not in row), None)
    if c is not None and "all_read_s" in c and "first_read_s" in c and "first_accepted_s" in c:
        lines.append(f"   C in detail: ingest read its first record {c['first_read_s']:.1f}s after start and all "
                     f"{c['count']} by {c['all_read_s']:.1f}s ({c.get('ingest_only_events_per_s', 0):,.0f}/s); "
                     f"the engine accepted its first at {c['first_accepted_s']:.1f}s "
                     f"and the last at {c['wall_s']:.1f}s")
    others = [f"{row['id']} {row['other_cores_busy']:.2f}" for row in report["rows"]
              if row.get("other_cores_busy", 0) >= 0.1]
    if others:
        lines.append(f"   WARNING: other processes kept cores busy during the drain ({', '.join(others)} cores): "
                     "figures are disturbed, run again on a quiet machine")
    r = report["ratios"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3g}"  # noqa: E731
    lines += ["", f"C/A events/s: {fmt(r['C/A'])}    C/B events/s: {fmt(r['C/B'])}    "
                  f"(CPU per event: C/A {fmt(report['cpu_ratios']['C/A'])}, C/B {fmt(report['cpu_ratios']['C/B'])})"]
    for name, prof in (report.get("profile") or {}).items():
        if not isinstance(prof, dict) or "by_own_time" not in prof:
            continue
        lines += ["", f"profile of C, {name} phase ({prof['profiler']}, {prof['profiled_s']:.0f}s, "
                      f"{prof['events']} {prof['what']}, {prof['events_per_s_under_profiler']:,.0f}/s under the "
                      f"profiler), top 10 by own time (total = incl. callees):"]
        for e in prof["by_own_time"][:10]:
            extra = f"{e['ncall']:>8} calls  " if "ncall" in e else f"{e['share']:>6.1%}  "
            own, total = e.get("own_s", e.get("tsub_s", 0)), e.get("total_s", e.get("ttot_s", 0))
            lines.append(f"  {own:>7.2f}s own {total:>7.2f}s"
                         f" total {extra}{e['function']}")
        lines.append(f"  full: {prof['file']}")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000, help="events to pre-fill and drain (default 200000)")
    p.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4, as the app)")
    p.add_argument("--only", default="A,B,C", help="contenders to run, e.g. A,C (default A,B,C)")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="use this running broker instead of starting one")
    p.add_argument("--broker-port", type=int, default=BROKER_PORT,
                   help=f"port of the bench's own broker (controller: +1; default {BROKER_PORT})")
    p.add_argument("--keep-broker", action="store_true", help="leave the bench broker running afterwards")
    p.add_argument("--keep-topics", action="store_true", help="do not delete the bench topics afterwards")
    p.add_argument("--timeout", type=float, default=0, help="seconds per contender (default: 120 + N/1000)")
    p.add_argument("--profile", action="store_true", help="then profile the Floorwatch worker with yappi")
    p.add_argument("--profile-seconds", type=float, default=20.0,
                   help="length of each profile window (default 20)")
    p.add_argument("--profiler", choices=["py-spy", "yappi"], default="py-spy" if shutil.which("py-spy") else "yappi",
                   help="py-spy (sampling, from outside; default when installed) or yappi (inside the worker)")
    p.add_argument("--no-snapshot", action="store_true",
                   help="run the working tree itself, not a copy taken at start (edits mid-run then count)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed")
    p.add_argument("--out", metavar="FILE", help="JSON report path (default bench/results/ingest-<time>.json)")
    args = p.parse_args(argv)
    args.only = [k.strip().upper() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in args.only if k not in CONTENDERS]
    if unknown or not args.only:
        p.error(f"--only: unknown contender(s) {', '.join(unknown) or '(none)'}; choose from A,B,C")
    if args.events < 1 or args.partitions < 1:
        p.error("--events and --partitions must be >= 1")
    args.timeout = args.timeout or 120 + args.events / 1000
    return args


def _broker_process(bootstrap: str, local_pid: int | None) -> psutil.Process | None:
    """The broker's JVM, to account its CPU too (if it runs on this machine and we may see it)."""
    if local_pid is not None:
        with contextlib.suppress(psutil.Error):
            return psutil.Process(local_pid)
    port = int(bootstrap.rsplit(":", 1)[1])
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    return None


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "topic not found" until C creates its topic
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = f"bench-{stamp}-{uuid.uuid4().hex[:6]}"
    broker = None
    started_broker = False
    bootstrap = args.bootstrap
    failed = False
    code_dir = REPO
    code: dict[str, Any] = {"snapshot": None}
    try:
        if not args.no_snapshot:
            code_dir, code = snapshot_code(prefix)
            sys.path.insert(0, str(code_dir))  # the harness's own imports of streams.* too
            say(f"code snapshot {code['source_sha256']} in {code_dir}")
        local_pid = None
        if bootstrap is None:
            from streams.broker import LocalBroker

            broker = LocalBroker(state_dir=STATE / "broker", port=args.broker_port,
                                 controller_port=args.broker_port + 1, progress=say)
            status = broker.status()
            started_broker = not status.running
            bootstrap = broker.start()
            local_pid = broker.status().pid
        say(f"broker {bootstrap}; topics {prefix}.* ({args.partitions} partitions)")
        from streams.simulator import TOPICS

        topics = {name: f"{prefix}.{name}" for name in TOPICS}
        asyncio.run(create_topics(bootstrap, list(topics.values()), args.partitions))

        say(f"prefilling {args.events} events...")
        t0 = time.monotonic()
        messages = simulated(args.events, args.seed)
        t1 = time.monotonic()
        stored = asyncio.run(produce(bootstrap, topics, messages, args.partitions))
        t2 = time.monotonic()
        value_bytes = sum(len(m.value) for m in messages)
        if sum(stored.values()) != args.events:
            raise SystemExit(f"bench: expected {args.events} records in the topics, found {stored}")
        prefill = {
            "events": args.events, "by_topic": {name: stored[t] for name, t in topics.items()},
            "generate_s": round(t1 - t0, 2), "produce_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "produce_events_per_s": round(args.events / (t2 - t1), 1),
            "mean_value_bytes": round(value_bytes / args.events, 1), "value_mib": round(value_bytes / 2**20, 1)}
        del messages
        say(f"prefilled in {prefill['total_s']:.1f}s (simulate {prefill['generate_s']:.1f}s, "
            f"produce {prefill['produce_s']:.1f}s = {prefill['produce_events_per_s']:,.0f} events/s); by topic "
            + ", ".join(f"{k} {v}" for k, v in prefill["by_topic"].items()))

        ctx = {"cwd": code_dir, "events": args.events, "prefix": prefix, "bootstrap": bootstrap, "topics": topics,
               "partitions": args.partitions, "timeout": args.timeout,
               "broker_proc": _broker_process(bootstrap, local_pid)}
        rows: dict[str, dict] = {}
        for key in [k for k in CONTENDERS if k in args.only]:
            say(f"running {key} ({CONTENDERS[key]}) ...")
            row = rows[key] = run_contender(key, ctx)
            if "error" in row:
                failed = True
            else:
                say(f"  {key}: {row['count']} events, {row['events_per_s']:,.0f} events/s over {row['drain_s']:.2f}s, "
                    f"{row['cpu_s_per_million']:.1f} CPU s/Mev, peak RSS {row['peak_rss_mib']:.0f} MiB, "
                    f"wall {row['wall_s']:.1f}s")
        report: dict[str, Any] = {
            "benchmark": "ingest", "started": stamp, "prefix": prefix,
            "machine": machine_facts(args.events, args.partitions, bootstrap),
            "code": code,
            "prefill": prefill,
            "rows": list(rows.values()),
            "ratios": {"C/A": ratio(rows, "C", "A"), "C/B": ratio(rows, "C", "B")},
            "cpu_ratios": {"C/A": ratio(rows, "C", "A", "cpu_s_per_million"),
                           "C/B": ratio(rows, "C", "B", "cpu_s_per_million")},
        }
        if args.profile:
            say(f"profiling C with {args.profiler}: {args.profile_seconds:.0f}s while ingest drains, "
                f"{args.profile_seconds:.0f}s while the engine drains ...")
            report["profile"] = profile_floorwatch(ctx, args.profile_seconds, args.profiler)
        out = Path(args.out) if args.out else RESULTS / f"ingest-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print("\n" + table(report) + f"\n\nreport: {out}", flush=True)
    except KeyboardInterrupt:
        say("interrupted")
        failed = True
    finally:
        for run in list(_LIVE):
            run.stop(timeout=10)
        if bootstrap is not None and not args.keep_topics:
            with contextlib.suppress(Exception):
                deleted = asyncio.run(asyncio.wait_for(delete_topics(bootstrap, prefix), 30))
                say(f"deleted {len(deleted)} bench topics")
        for sub in ("workers", "peer"):
            for path in (STATE / sub).glob(f"{prefix}-*"):
                shutil.rmtree(path, ignore_errors=True)
        if code_dir != REPO:
            shutil.rmtree(code_dir, ignore_errors=True)
        if broker is not None and started_broker and not args.keep_broker:
            broker.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
