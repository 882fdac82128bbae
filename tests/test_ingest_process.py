"""The ingest child process: started, restarted and stopped with the worker; the in-process option."""

from __future__ import annotations

import signal
import time
from collections import Counter

import psutil
import pytest

from streams.simulator import SimConfig, generate
from tests.conftest import run, settings_for, total
from tests.test_ingest_integration import ACCEPTED, DUPLICATES, RECEIVED, REJECTED, produce

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _ingest_child(worker) -> psutil.Process:
    for proc in _descendants(worker.proc.pid):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmdline and proc.ppid() == worker.proc.pid:
            return proc
    pytest.fail(f"no ingest child process under worker {worker.proc.pid}:\n{worker.log_tail()}")


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in procs if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.2)
    return [p for p in procs if not _gone(p)]


def _small_log(seed: int) -> tuple[list, Counter]:
    messages = list(generate(SimConfig(seed=seed, duration_s=600, rate=6)))
    return messages, Counter(m.kind for m in messages)


def _processed_exactly(worker, settings, messages, kinds) -> dict:
    run(produce(settings, messages))
    samples = worker.wait_for(
        lambda s: total(s, RECEIVED) >= len(messages) and total(s, ACCEPTED) >= kinds["valid"],
        what=f"{len(messages)} records to be accepted")
    assert total(samples, RECEIVED) == len(messages)
    assert total(samples, ACCEPTED) == kinds["valid"] == len(messages)
    assert total(samples, DUPLICATES) == 0 and total(samples, REJECTED) == 0
    return samples


def test_ingest_child_lives_and_dies_with_the_worker(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap)
    messages, kinds = _small_log(seed=21)
    worker = make_worker(settings, env).start()
    worker.wait_for(lambda s: "floorwatch_build_info" in s, what="/metrics")
    child = _ingest_child(worker)
    samples = _processed_exactly(worker, settings, messages, kinds)

    # A child that dies is restarted; the counters it reported are kept (they never go back).
    child.kill()
    worker.wait_for(lambda s: True, what="metrics")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = [p for p in _descendants(worker.proc.pid) if p.pid != child.pid and "spawn_main" in " ".join(
            p.cmdline())]
        if children:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the ingest child was not restarted:\n{worker.log_tail()}")
    assert "died unexpectedly" in worker.log_path.read_text()
    assert total(worker.metrics(), RECEIVED) >= total(samples, RECEIVED)

    # SIGTERM: the worker stops and takes every process it started with it.
    family = _descendants(worker.proc.pid)
    assert worker.stop(signal.SIGTERM) is not None
    assert not _wait_gone(family, 10), [(p.pid, p.cmdline()) for p in family if not _gone(p)]


def test_ingest_child_exits_when_the_worker_is_killed(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap)
    worker = make_worker(settings, env).start()
    worker.wait_for(lambda s: "floorwatch_build_info" in s, what="/metrics")
    child = _ingest_child(worker)
    family = _descendants(worker.proc.pid)
    worker.proc.kill()   # SIGKILL: no chance to stop the child; it must notice by itself
    worker.proc.wait()
    alive = _wait_gone(family, 8)
    for p in alive:      # do not leave them behind for the next test
        p.kill()
    assert not alive, [(p.pid, p.name()) for p in alive]
    assert _gone(child)


def test_ingest_in_process_still_works(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap, FLOORWATCH_WORKER__INGEST_IN_PROCESS="true")
    assert settings.worker.ingest_in_process
    messages, kinds = _small_log(seed=22)
    worker = make_worker(settings, env).start()
    worker.wait_for(lambda s: "floorwatch_build_info" in s, what="/metrics")
    assert not [p for p in _descendants(worker.proc.pid) if "spawn_main" in " ".join(p.cmdline())]
    _processed_exactly(worker, settings, messages, kinds)
    family = _descendants(worker.proc.pid)
    worker.stop(signal.SIGTERM)
    assert not _wait_gone(family, 10)


def test_the_lag_is_a_gauge_of_the_running_loop_and_counters_add_up():
    from streams.metrics import IngestStats, merged

    ended, running = IngestStats(), IngestStats()
    ended.received["t"] = 5
    ended.lag = {"t": 99}                      # an ended child's last look: meaningless now
    finished = IngestStats()
    finished.add(ended)
    running.received["t"] = 2
    running.lag = {"t": 7}
    again = IngestStats.of_tallies(running.tallies())   # through the pipe
    total = merged([finished, again])
    assert total.received["t"] == 7 and total.lag == {"t": 7}
