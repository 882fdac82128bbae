"""Shared fixtures: a real local Kafka for the session, isolated topics per test, real workers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings, load_settings
from streams.demo import scrape

REPO = Path(__file__).resolve().parent.parent
TEST_STATE = REPO / ".floorwatch" / "test"
TEST_HASH_KEY = "integration-test-key"
BROKER_PORT = int(os.environ.get("FLOORWATCH_TEST_BROKER_PORT", "19092"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real single-node Kafka (KRaft) on 127.0.0.1, started once for the test session."""
    from streams.broker import LocalBroker

    # One state folder per port: two test sessions on one machine (FLOORWATCH_TEST_BROKER_PORT) must not
    # take each other's broker for their own (its pid file) or wipe each other's data.
    state = TEST_STATE / f"broker-{BROKER_PORT}"
    broker = LocalBroker(state_dir=state, port=BROKER_PORT, controller_port=BROKER_PORT + 1)
    if not broker.status().running:
        shutil.rmtree(state, ignore_errors=True)  # a fresh broker for each session
    bootstrap = broker.start()
    yield bootstrap
    if not os.environ.get("FLOORWATCH_TEST_KEEP_BROKER"):
        broker.stop()


def settings_for(bootstrap: str, tag: str | None = None, **env: str) -> tuple[Settings, dict[str, str]]:
    """Settings with topics, app id and port of their own, and the environment that selects them."""
    tag = tag or uuid.uuid4().hex[:8]
    variables = {
        "FLOORWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "FLOORWATCH_KAFKA__PARTITIONS": "4",
        "FLOORWATCH_WORKER__APP_ID": f"fw-test-{tag}",
        "FLOORWATCH_WORKER__WEB_PORT": str(free_port()),
        "FLOORWATCH_WORKER__DATA_DIR": str(TEST_STATE / "workers"),
        "FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY": TEST_HASH_KEY,
        **{f"FLOORWATCH_TOPICS__{name.upper()}": f"t-{tag}.{name}" for name in
           ("telephony", "chat", "ticket", "agent", "survey", "snapshots", "alerts", "deadletter")},
        **env,
    }
    old = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        settings = load_settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return settings, variables


class WorkerProcess:
    """`floorwatch worker` as a real subprocess, with its log kept for failure reports."""

    def __init__(self, env: dict[str, str], settings: Settings, log_path: Path) -> None:
        self.env = env
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        w = settings.worker
        self.metrics_url = f"http://{w.web_host}:{w.web_port}/metrics"

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"], cwd=REPO,
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def metrics(self) -> dict:
        return scrape(self.metrics_url)

    def wait_for(self, predicate, timeout: float = 90.0, what: str = "condition") -> dict:
        """Poll /metrics until predicate(samples) holds; fail with the worker's log otherwise."""
        deadline = time.monotonic() + timeout
        samples: dict = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                samples = self.metrics()
                if predicate(samples):
                    return samples
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; last metrics: "
                    f"{ {k: v for k, v in samples.items() if k.startswith('floorwatch_ingest')} }\n"
                    f"worker log:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def make_worker(request, tmp_path):
    started: list[WorkerProcess] = []

    def make(settings: Settings, env: dict[str, str], name: str = "worker") -> WorkerProcess:
        log = REPO / "test-output" / "logs" / f"{request.node.name}-{name}-{len(started)}.log"
        worker = WorkerProcess(env, settings, log)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for k, v in samples.get(name, {}).items()
               if all(dict(k).get(lk) == lv for lk, lv in labels.items()))


def run(coro):
    return asyncio.run(coro)
