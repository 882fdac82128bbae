"""Smoke test of the ingest benchmark harness (bench/ingest.py) against the session broker.

Numbers are reported, never asserted: this only checks that the harness runs end to end, that
every contender really processed every event, and that the report holds the rows and ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

N = 3000


@pytest.mark.timeout(180)
def test_ingest_bench_smoke(kafka_bootstrap, tmp_path):
    out = tmp_path / "ingest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--bootstrap", kafka_bootstrap, "--events", str(N),
         "--timeout", "60", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, f"harness failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    report = json.loads(out.read_text())
    rows = {row["id"]: row for row in report["rows"]}
    assert set(rows) == {"A", "B", "C"}
    for key, row in rows.items():
        assert "error" not in row, (key, row)
        assert row["count"] == N, (key, row)
        for metric in ("events_per_s", "cpu_s_per_million", "peak_rss_mib", "drain_s", "wall_s"):
            assert isinstance(row[metric], (int, float)), (key, metric, row)
    # A and B count in their own state too (the dict, the windowed table): every event once
    assert rows["A"]["counted_in_state"] == N
    assert rows["B"]["counted_in_state"] == N
    assert set(report["ratios"]) == {"C/A", "C/B"}
    assert all(isinstance(v, float) for v in report["ratios"].values()), report["ratios"]
    assert report["prefill"]["events"] == N and sum(report["prefill"]["by_topic"].values()) == N
    assert report["machine"]["events"] == N and report["machine"]["partitions"] == 4
    # the printed table has the three rows and both ratios
    assert "C/A events/s" in proc.stdout and "C/B events/s" in proc.stdout
    for key in "ABC":
        assert f"\n{key}  " in proc.stdout


@pytest.mark.timeout(180)
def test_latency_bench_smoke(kafka_bootstrap, tmp_path):
    """bench/latency.py end to end at a tiny rate: probes sent, all seen on /metrics, report written."""
    out = tmp_path / "latency.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--bootstrap", kafka_bootstrap, "--rate", "50",
         "--duration", "4", "--warmup", "2", "--settle", "60", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, f"harness failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    report = json.loads(out.read_text())
    assert report["benchmark"] == "latency"
    result = report["result"]
    latency = result["latency_ms"]
    # every measured probe became visible (the worker applied what was sent), none lost
    assert latency["count"] > 0 and latency["unresolved"] == 0, latency
    for key in ("p50", "p90", "p99", "max"):
        assert isinstance(latency[key], (int, float)) and latency[key] >= 0, (key, latency)
    assert result["input"]["send_errors"] == 0
    assert result["input"]["events_acked"] == result["input"]["events_sent"] > 0
    assert result["worker"]["accepted_events"] == result["input"]["events_sent"]
    assert isinstance(result["input"]["achieved_events_per_s"], float)
    assert isinstance(result["worker"]["cpu_cores_busy"], float)
    assert report["command"].startswith("python -m bench.latency ")
    # the printed summary: the percentiles, the command that reproduces it, where the report is
    assert "p99" in proc.stdout and f"report: {out}" in proc.stdout
    assert "reproduce: python -m bench.latency" in proc.stdout


@pytest.mark.timeout(120)
def test_memory_bench_smoke(tmp_path):
    """bench/memory.py at a tiny scale (no Kafka needed): it runs, reports every field after each simulated
    day, and its state holds the configured queues and agents. Figures are reported, never asserted."""
    out = tmp_path / "memory.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--scale", "0.005", "--days", "1.05", "--tracemalloc",
         "--sample", "200", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    report = json.loads(out.read_text())
    assert report["benchmark"] == "memory"
    config, generator = report["config"], report["generator"]
    assert (config["queues"], config["agents"], config["partitions"]) == (10, 50, 4)
    assert (generator["queues"], generator["agents"]) == (config["queues"], config["agents"])
    assert set(generator["queues_by_channel"]) == {"voice", "chat", "email"}
    assert report["feed"]["events"] == generator["events"] > 0
    rows = report["checkpoints"]
    assert [row["label"] for row in rows] == ["end of day 1", "end (1.05 d)"]
    for row in rows:
        assert row["queues_seen"] == config["queues"], row["label"]
        assert row["agents_seen"] == config["agents"] == row["records"]["agent"], row["label"]
        assert set(row["outcomes"]) == {"accepted"}, row["outcomes"]
        assert row["records"]["contact"] > 0 and row["records"]["ticket"] > 0
        for key in ("rss_bytes", "rss_state_bytes", "traced_state_bytes", "traced_peak_bytes", "gc_tracked_objects",
                    "full_gc_s", "records_total", "window_entries_total"):
            assert isinstance(row[key], (int, float)), key
        assert set(row["window_entries"]) == {"queues", "agent_time", "tickets", "quality"}
        assert set(row["window_entries"]["queues"]) == {"intervals", "days", "buckets"}
        assert row["encoded"]["bytes"] == sum(row["encoded"]["by_kind"].values()) > 0
        assert row["estimate"]["total_bytes"] > 0 and "records.contact" in row["estimate"]["by_structure"]
        assert row["scrape"]["series"] > 0 and row["scrape"]["bytes"] > 0
        assert isinstance(row["scrape"]["seconds_median"], float)
    rebuild = rows[0]["rebuild"]   # the short tail after midnight is measured without a rebuild
    assert rebuild["partition"] == 0 and rebuild["records"] > 0 and isinstance(rebuild["seconds"], float)
    assert isinstance(rebuild["traced_bytes"], int) and rebuild["breakdown_bytes"]
    assert set(rebuild["equal_to_live"]) >= {"queues.intervals", "agent_time.intervals", "records"}
    assert set(report["untraced"]) == {"scrape", "rebuild"}
    # the printed table, the command that reproduces it, where the report is
    assert "end of day 1" in proc.stdout and "where the memory is" in proc.stdout
    assert "reproduce: python -m bench.memory" in proc.stdout and f"report: {out}" in proc.stdout
