"""Local Kafka broker tooling (streams/broker.py, deploy/kafka/pom.xml).

The unit tests here need nothing. The integration test starts its OWN broker on 19392/19393 (or free
ports if those are taken) with a temporary state dir, so it never clashes with the suite's shared broker
on 9092; it shares the jar cache in <repo>/.cache/kafka.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid

import pytest

from streams import broker as broker_mod
from streams.broker import (
    KAFKA_VERSION,
    POM_PATH,
    REPO_ROOT,
    BrokerStatus,
    LocalBroker,
    ToolMissingError,
    ensure_mvn_available,
    jar_cache_dir,
    pom_dependency_plugin_version,
    pom_kafka_version,
)

# --------------------------------------------------------------------------- unit


def test_pom_states_the_same_kafka_version():
    assert pom_kafka_version() == KAFKA_VERSION
    assert POM_PATH == REPO_ROOT / "deploy" / "kafka" / "pom.xml"


def test_pom_pins_the_dependency_plugin():
    version = pom_dependency_plugin_version()
    assert version is not None, "maven-dependency-plugin must have a pinned <version> in the pom"
    parts = version.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts), version


def test_jar_cache_is_per_version_under_ignored_cache():
    assert jar_cache_dir() == REPO_ROOT / ".cache" / "kafka" / KAFKA_VERSION / "libs"
    assert ".cache/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_default_state_dir_and_env_override(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOORWATCH_STATE_DIR", raising=False)
    assert LocalBroker().state_dir == REPO_ROOT / ".floorwatch" / "broker"
    monkeypatch.setenv("FLOORWATCH_STATE_DIR", str(tmp_path / "fw"))
    assert LocalBroker().state_dir == tmp_path / "fw" / "broker"


def test_server_properties_single_node_on_loopback(tmp_path):
    b = LocalBroker(state_dir=tmp_path, port=19500, controller_port=19501, progress=lambda _: None)
    assert b.bootstrap == "127.0.0.1:19500"
    props = b._server_properties()
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19500,CONTROLLER://127.0.0.1:19501"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19500"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19501"
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):  # fmt: skip
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_id_is_a_kafka_uuid():
    ids = {broker_mod._new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert set(cid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_missing_tools_say_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ToolMissingError, match="apt-get install maven openjdk-17-jre-headless"):
        ensure_mvn_available()


def test_status_and_stop_without_a_broker(tmp_path):
    b = LocalBroker(state_dir=tmp_path / "none", port=19502, controller_port=19503, progress=lambda _: None)
    st = b.status()
    assert st == BrokerStatus(running=False, pid=None, bootstrap="127.0.0.1:19502",
                              data_dir=tmp_path / "none" / "data", log_file=tmp_path / "none" / "logs" / "server.log")  # fmt: skip
    assert b.stop() is False


def test_stale_pid_file_is_not_trusted(tmp_path):
    b = LocalBroker(state_dir=tmp_path, port=19504, controller_port=19505, progress=lambda _: None)
    b.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a kafka.Kafka JVM of this state dir
    assert b.status().pid is None
    assert b.stop() is False
    assert not b.pid_file.exists()


# --------------------------------------------------------------------------- integration


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _test_ports() -> tuple[int, int]:
    if _ports_free(19392, 19393):
        return 19392, 19393
    socks = [socket.socket() for _ in range(2)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return socks[0].getsockname()[1], socks[1].getsockname()[1]
    finally:
        for s in socks:
            s.close()


async def _round_trip(bootstrap: str) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"broker-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        assert topic in await admin.list_topics()
    finally:
        await admin.close()

    sent = [f"call-{i}".encode() for i in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(sent):
            await producer.send_and_wait(topic, value, key=f"agent-{i % 3}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(got) < len(sent):
                for msgs in (await consumer.getmany(timeout_ms=2000)).values():
                    got.extend(m.value for m in msgs)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_start_round_trip_idempotent_stop_from_another_process(tmp_path):
    port, controller_port = _test_ports()
    lines: list[str] = []
    state_dir = tmp_path / "broker"
    b = LocalBroker(state_dir=state_dir, port=port, controller_port=controller_port, progress=lines.append)
    try:
        bootstrap = b.start(timeout=180)
        assert bootstrap == f"127.0.0.1:{port}" == b.bootstrap
        assert any(line.startswith(f"Kafka {KAFKA_VERSION} broker ready at {bootstrap}") for line in lines), lines

        st = b.status()
        assert st.running and st.pid is not None
        assert st.data_dir == state_dir / "data" and (st.data_dir / "meta.properties").exists()
        assert st.log_file.exists() and "Kafka Server started" in st.log_file.read_text()
        assert (state_dir / "cluster.id").read_text().strip()

        got = asyncio.run(_round_trip(bootstrap))
        assert sorted(got) == sorted(f"call-{i}".encode() for i in range(20))

        # second start: a no-op that finds the same process
        lines.clear()
        assert b.start() == bootstrap
        assert b.status().pid == st.pid
        assert any("already running" in line for line in lines), lines

        # stop from a different Python process, through the pid file
        code = (
            "import sys; from pathlib import Path; from streams.broker import LocalBroker; "
            f"sys.exit(0 if LocalBroker(state_dir=Path({str(state_dir)!r}), port={port}, "
            f"controller_port={controller_port}).stop() else 3)"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        st = b.status()
        assert not st.running and st.pid is None
        assert not b.pid_file.exists()
        assert b.stop() is False

        # restart keeps the formatted storage and the same cluster id
        cluster_id = (state_dir / "cluster.id").read_text()
        lines.clear()
        assert b.start(timeout=180) == bootstrap
        assert not any(line.startswith("formatting") for line in lines), lines
        assert (state_dir / "cluster.id").read_text() == cluster_id
        assert b.status().running
    finally:
        b.stop()
    assert not b.status().running
