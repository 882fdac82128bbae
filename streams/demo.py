"""`floorwatch demo`: local broker, topics, worker, simulator and a live summary, in one go.

Stops what it started on Ctrl-C or after --duration: the worker always, the broker only if the
demo started it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
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
    print(f"demo: simulating {rate:g} contacts/min at peak, {speed:g}x real time; Ctrl-C to stop")

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
                print(f"demo: [{time.monotonic() - began:4.0f}s] waiting for the worker at {metrics_url} ...")
                continue
            now = time.monotonic()
            print(f"demo: [{now - began:4.0f}s] " + summary_line(samples, previous, now - previous_at), flush=True)
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
