"""`floorwatch demo`: local broker, topics, worker, simulator and live KPIs, in one go.

Every 5 s it scrapes the worker's /metrics and prints the ingest summary line and a table of the
main KPIs per queue (`queue_table`): redrawn in place on a terminal, appended as plain text in a
log or CI (no colour, no cursor movement).

Stops what it started on Ctrl-C or after --duration: the worker always, the broker only if the
demo started it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.broker import LocalBroker
from streams.config import Settings
from streams.kafka_io import ensure_topics


def state_dir() -> Path:
    return Path(os.environ.get("FLOORWATCH_STATE_DIR", Path(__file__).resolve().parent.parent / ".floorwatch"))


def demo_hash_key() -> str:
    """A per-machine secret for the demo, kept so repeat customers still match across demo runs."""
    path = state_dir() / "demo-customer-hash-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def busy_zone(now: datetime | None = None, local_hour: int = 10) -> str:
    """A fixed-offset zone where it is about `local_hour` o'clock now: the demo's center is busy
    whenever you run it (Etc/GMT-N means UTC+N)."""
    now = now or datetime.now(UTC)
    offset = (local_hour - now.hour + 12) % 24 - 12  # -12..+11 hours
    return "Etc/GMT" + ("" if offset == 0 else f"{-offset:+d}")


def scrape(url: str, timeout: float = 2.0) -> dict[str, dict[tuple, float]]:
    """Metric samples by name, each a mapping of label tuples to values."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _total(samples: dict[str, dict[tuple, float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


def summary_line(samples: dict[str, dict[tuple, float]], previous: dict | None, seconds: float) -> str:
    accepted = _total(samples, "floorwatch_ingest_accepted_events_total")
    rejected = _total(samples, "floorwatch_ingest_rejected_records_total")
    duplicates = _total(samples, "floorwatch_ingest_duplicate_events_total")
    rate = ""
    if previous is not None and seconds > 0:
        rate = f" ({(accepted - _total(previous, 'floorwatch_ingest_accepted_events_total')) / seconds:.0f}/s)"
    by_reason: dict[str, float] = defaultdict(float)
    for labels, value in samples.get("floorwatch_ingest_rejected_records_total", {}).items():
        by_reason[dict(labels)["reason"]] += value
    reasons = ", ".join(f"{r} {int(v)}" for r, v in sorted(by_reason.items()) if v)
    return (f"accepted {int(accepted)}{rate} | dead-lettered {int(rejected)}"
            + (f" ({reasons})" if reasons else "") + f" | duplicates dropped {int(duplicates)}")


# -- the live per-queue table -----------------------------------------------------------------

Samples = dict[str, dict[tuple, float]]
DASH = "\u2013"   # shown for a ratio whose denominator is empty
RED, RESET = "\x1b[31m", "\x1b[0m"


def _by_queue(samples: Samples, name: str, agg=sum, **match: str) -> dict[str, float]:
    """`agg by (queue) (name{match})`: the values of matching series, aggregated per queue."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for labels, value in samples.get(name, {}).items():
        labels = dict(labels)
        if all(labels.get(k) == v for k, v in match.items()) and "queue" in labels:
            grouped[labels["queue"]].append(value)
    return {queue: agg(values) for queue, values in grouped.items()}


def _ratio(numerators: dict[str, float], denominators: dict[str, float], queue: str) -> float | None:
    denominator = denominators.get(queue, 0.0)
    return numerators.get(queue, 0.0) / denominator if denominator > 0 else None


def _seconds(value: float | None) -> str:
    if value is None:
        return DASH
    s = round(value)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def queue_table(samples: Samples, *, color: bool = False, tz=UTC) -> str:
    """The main KPIs per queue from one /metrics scrape, as a fixed-width text table.

    Ratios are computed like the PromQL examples in docs/metrics.md: numerators and denominators
    summed over the queue's series (all channels) first, then divided; an empty denominator shows
    "\u2013". Service level, ASA and abandon rate are for the current interval (event time), next to
    the service level of the day; waiting and oldest wait are "now" (sum and max over channels),
    agents are those serving the queue (scope="queue"): available / online. A service level below
    the queue's target (max over its channels, as the targets are configuration) is marked "!", and
    red when `color`.
    """
    window = "interval_current"
    met = {w: _by_queue(samples, "floorwatch_queue_window_service_level_met_contacts", window=w)
           for w in (window, "today")}
    eligible = {w: _by_queue(samples, "floorwatch_queue_window_service_level_eligible_contacts", window=w)
                for w in (window, "today")}
    target = _by_queue(samples, "floorwatch_queue_service_level_target_ratio", agg=max)
    wait_s = _by_queue(samples, "floorwatch_queue_window_wait_seconds", window=window, outcome="answered")
    timed = _by_queue(samples, "floorwatch_queue_window_timed_contacts", window=window, outcome="answered")
    abandoned = _by_queue(samples, "floorwatch_queue_window_abandon_rate_abandoned_contacts", window=window)
    offered = _by_queue(samples, "floorwatch_queue_window_abandon_rate_offered_contacts", window=window)
    waiting = _by_queue(samples, "floorwatch_queue_waiting_contacts")
    oldest = _by_queue(samples, "floorwatch_queue_oldest_wait_seconds", agg=max)
    available: dict[str, float] = defaultdict(float)
    online: dict[str, float] = defaultdict(float)
    for labels, value in samples.get("floorwatch_agents", {}).items():
        labels = dict(labels)
        if labels.get("scope") == "queue":
            online[labels["name"]] += value
            if labels.get("state") == "available":
                available[labels["name"]] += value

    queues: set[str] = set(online)
    for name, series in samples.items():
        if name.startswith("floorwatch_queue_"):
            queues.update(dict(labels)["queue"] for labels in series if "queue" in dict(labels))
    if not queues:
        return "  (no queue figures yet: the worker has not applied any contact or agent event)"

    def sl_cell(queue: str, w: str, width: int) -> str:
        value = _ratio(met[w], eligible[w], queue)
        below = value is not None and queue in target and value < target[queue]
        cell = f"{_percent(value) + (' !' if below else '  '):>{width}}"
        return f"{RED}{cell}{RESET}" if below and color else cell

    agents = {q: f"{int(available[q])} of {int(online[q])}" if q in online else DASH for q in queues}
    qw = max(13, *map(len, queues))              # widths grow with the content, 80 columns usually
    aw = max(10, *map(len, agents.values()))
    lines = [f"  {'queue':<{qw}} {'SL':>6}   {'target':>6} {'SL today':>8} {'waiting':>7} {'oldest':>6}"
             f" {'ASA':>5} {'abandon':>7} {'available':>{aw}}"]
    for queue in sorted(queues):
        lines.append(
            f"  {queue:<{qw}} {sl_cell(queue, window, 8)}"
            f" {DASH if queue not in target else f'{round(100 * target[queue], 1):g}%':>6}"
            f" {sl_cell(queue, 'today', 8)}"
            f" {str(int(waiting[queue])) if queue in waiting else DASH:>7}"
            f" {_seconds(oldest.get(queue)):>6}"
            f" {_seconds(_ratio(wait_s, timed, queue)):>5}"
            f" {_percent(_ratio(abandoned, offered, queue)):>7}"
            f" {agents[queue]:>{aw}}")
    starts = {dict(labels).get("window"): value
              for labels, value in samples.get("floorwatch_window_start_timestamp_seconds", {}).items()}
    since = f" since {datetime.fromtimestamp(starts[window], tz):%H:%M}" if window in starts else ""
    lines.append(f"  SL/ASA/abandon: current interval{since} (event time); ! = below target")
    return "\n".join(lines)


def _interactive(stream) -> bool:
    """Redraw in place and colour only on a real terminal (not in CI or a log file)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return stream.isatty() and not ci and os.environ.get("TERM", "") != "dumb"


class _Display:
    """Prints the live block: redrawn in place on a terminal, appended (plain text) otherwise."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.interactive = _interactive(stream)
        self.color = self.interactive and not os.environ.get("NO_COLOR")
        self.drawn = 0   # terminal rows of the block on screen, to redraw over it
        try:
            DASH.encode(getattr(stream, "encoding", None) or "ascii")
            self.dash = DASH
        except (UnicodeEncodeError, LookupError):
            self.dash = "-"

    def show(self, block: str) -> None:
        block = block.replace(DASH, self.dash)
        if not self.interactive:
            self.stream.write(block + "\n\n")
        else:
            columns = max(1, shutil.get_terminal_size().columns)
            up = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
            self.stream.write(up + block + "\n")
            plain = block.replace(RED, "").replace(RESET, "")
            self.drawn = sum(max(1, -(-len(line) // columns)) for line in plain.split("\n"))
        self.stream.flush()

    def say(self, line: str) -> None:
        self.drawn = 0   # keep the message: draw the next block below it
        print(line, file=self.stream, flush=True)


def run_demo(settings: Settings, *, duration: float, rate: float, speed: float,
             config_path: str | None) -> int:
    from streams.simulator import SimConfig, run

    broker = LocalBroker()
    started_broker = not broker.status().running
    bootstrap = broker.start()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})})
    hash_key = (settings.privacy.customer_hash_key.get_secret_value()
                if settings.privacy.customer_hash_key else demo_hash_key())
    if "timezone" not in settings.site.model_fields_set and not os.environ.get("FLOORWATCH_SITE__TIMEZONE"):
        zone = busy_zone()
        settings = settings.model_copy(update={"site": settings.site.model_copy(update={"timezone": zone})})
        print(f"demo: no site time zone configured; simulating a site in {zone}, where it is "
              f"{datetime.now(settings.site.tz):%H:%M} (business hours)")
    created = asyncio.run(ensure_topics(settings))
    if created:
        print(f"demo: created topics {', '.join(created)}")

    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker_log = logs / "demo-worker.log"
    env = dict(os.environ, FLOORWATCH_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
               FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY=hash_key,
               FLOORWATCH_SITE__TIMEZONE=settings.site.timezone)
    command = [sys.executable, "-m", "streams.cli", "worker"] + (["--config", config_path] if config_path else [])
    with worker_log.open("ab") as log_file:
        worker = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    w = settings.worker
    metrics_url = f"http://{w.web_host}:{w.web_port}/metrics"
    print(f"demo: worker starting (pid {worker.pid}, log {worker_log})")
    print(f"demo: metrics at {metrics_url}")
    print(f"demo: wallboard at http://{w.web_host}:{w.web_port}/wallboard (open it in a browser)")
    print(f"demo: simulating {rate:g} contacts/min at peak, {speed:g}x real time; Ctrl-C to stop")

    display = _Display(sys.stdout)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sim = asyncio.create_task(run(settings, SimConfig(
            seed=int(time.time()), duration_s=duration * speed if duration else 10 * 365 * 86400.0,
            rate=rate, timezone=settings.site.timezone, bad_ratio=0.005), speed=speed, progress=None, stop=stop))
        began = time.monotonic()
        previous, previous_at = None, began
        status = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=5.0)
            except TimeoutError:
                pass
            if worker.poll() is not None:
                print(f"demo: the worker exited with code {worker.returncode}; see {worker_log}", file=sys.stderr)
                status = 1
                break
            if sim.done() and sim.exception() is not None:
                print(f"demo: the simulator failed: {sim.exception()!r}", file=sys.stderr)
                status = 1
                break
            try:
                samples = await asyncio.to_thread(scrape, metrics_url)
            except OSError:
                display.say(f"demo: [{time.monotonic() - began:4.0f}s] waiting for the worker at {metrics_url} ...")
                continue
            now = time.monotonic()
            display.show(f"demo: [{now - began:4.0f}s] " + summary_line(samples, previous, now - previous_at)
                         + "\n" + queue_table(samples, color=display.color, tz=settings.site.tz))
            previous, previous_at = samples, now
            if duration and now - began >= duration:
                break
        stop.set()
        await asyncio.gather(sim, return_exceptions=True)
        return status

    try:
        status = asyncio.run(main())
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        print("demo: worker stopped")
        if started_broker:
            broker.stop()
            print("demo: broker stopped (it was started by the demo)")
        else:
            print("demo: broker left running (it was running before the demo)")
    print(f"demo: logs in {logs}; run the tests with the README's test command")
    return status
