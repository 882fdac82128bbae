"""Local single-node Apache Kafka broker for development and tests.

Kafka runs in KRaft mode (one JVM that is both broker and controller) on 127.0.0.1 only. The jars
come from Maven Central through ``deploy/kafka/pom.xml`` (fetched once into
``<repo>/.cache/kafka/<version>/libs``), or from an unpacked Kafka distribution when ``kafka_home``
/ ``$KAFKA_HOME`` is given. State (data, logs, pid file, cluster id) lives under
``<repo>/.floorwatch/broker`` (``$FLOORWATCH_STATE_DIR/broker`` when that variable is set).

The broker is a detached daemon: ``start()`` in one process and ``stop()`` in another works, the pid
file is the link between them.

    broker = LocalBroker()
    broker.start()            # -> "127.0.0.1:9092"; fetches jars on first use, formats storage on first start
    broker.status().running   # -> True
    broker.stop()             # -> True (False if nothing was running)
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "SCALA_VERSION",
    "BrokerError",
    "BrokerStatus",
    "LocalBroker",
    "ToolMissingError",
    "default_state_dir",
    "ensure_java_available",
    "ensure_mvn_available",
    "jar_cache_dir",
    "pom_kafka_version",
]

#: The one Kafka version of the project. deploy/kafka/pom.xml states it too (tests check they agree);
#: a docker-compose setup uses the image ``apache/kafka:<KAFKA_VERSION>``.
KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
POM_PATH = KAFKA_DEPLOY_DIR / "pom.xml"
LOG4J_PATH = KAFKA_DEPLOY_DIR / "log4j.properties"

INSTALL_HINT = "apt-get install maven openjdk-17-jre-headless"

_MARKER = ".complete"
_NODE_ID = 1
# what must be in libs/ for kafka.Kafka and kafka.tools.StorageTool to run with file logging
_REQUIRED_JAR_PREFIXES = (
    f"kafka_{SCALA_VERSION}-",
    "kafka-clients-",
    "kafka-server-",
    "kafka-raft-",
    "kafka-metadata-",
    "kafka-storage-",
    "scala-library-",
    "slf4j-api-",
    "slf4j-reload4j-",
    "reload4j-",
)
_JVM_OPTS = (
    "-Xms256m",
    "-Xmx1G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# used when deploy/kafka/log4j.properties is not around (e.g. installed from a wheel)
_FALLBACK_LOG4J = """\
log4j.rootLogger=INFO, serverAppender
log4j.appender.serverAppender=org.apache.log4j.RollingFileAppender
log4j.appender.serverAppender.File=${kafka.logs.dir}/server.log
log4j.appender.serverAppender.MaxFileSize=20MB
log4j.appender.serverAppender.MaxBackupIndex=3
log4j.appender.serverAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.serverAppender.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, or stopped."""


class ToolMissingError(BrokerError):
    """java or mvn is not installed."""


@dataclass
class BrokerStatus:
    #: our broker process is alive AND answers a Kafka metadata request
    running: bool
    #: pid of our broker process if it is alive (it may be alive but not answering yet: starting up)
    pid: int | None
    bootstrap: str
    data_dir: Path
    log_file: Path


# --------------------------------------------------------------------------- paths & tools


def default_state_dir() -> Path:
    """``$FLOORWATCH_STATE_DIR/broker`` or ``<repo>/.floorwatch/broker``."""
    parent = os.environ.get("FLOORWATCH_STATE_DIR")
    base = Path(parent).expanduser() if parent else REPO_ROOT / ".floorwatch"
    return base / "broker"


def jar_cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the Maven-fetched jars of ``version`` live: ``<repo>/.cache/kafka/<version>/libs``."""
    return REPO_ROOT / ".cache" / "kafka" / version / "libs"


def _pom_ns(root: ET.Element) -> dict[str, str]:
    m = re.match(r"\{(.*)\}", root.tag)
    return {"m": m.group(1)} if m else {"m": ""}


def _pom_properties(pom: Path) -> dict[str, str]:
    root = ET.parse(pom).getroot()
    ns = _pom_ns(root)
    props = root.find("m:properties", ns)
    out: dict[str, str] = {}
    if props is not None:
        for el in props:
            out[el.tag.split("}", 1)[-1]] = (el.text or "").strip()
    return out


def _resolve(value: str, props: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: props.get(m.group(1), m.group(0)), value)


def pom_kafka_version(pom: Path = POM_PATH) -> str:
    """The version of the ``org.apache.kafka:kafka_<scala>`` dependency declared in the pom."""
    root = ET.parse(pom).getroot()
    ns = _pom_ns(root)
    props = _pom_properties(pom)
    for dep in root.iterfind("m:dependencies/m:dependency", ns):
        group = _resolve(dep.findtext("m:groupId", "", ns).strip(), props)
        artifact = _resolve(dep.findtext("m:artifactId", "", ns).strip(), props)
        if group == "org.apache.kafka" and re.fullmatch(r"kafka_\d+\.\d+", artifact):
            return _resolve(dep.findtext("m:version", "", ns).strip(), props)
    raise BrokerError(f"{pom}: no org.apache.kafka:kafka_<scala> dependency found")


def pom_dependency_plugin_version(pom: Path = POM_PATH) -> str | None:
    """The pinned maven-dependency-plugin version (build/plugins or build/pluginManagement)."""
    root = ET.parse(pom).getroot()
    ns = _pom_ns(root)
    props = _pom_properties(pom)
    for path in ("m:build/m:pluginManagement/m:plugins/m:plugin", "m:build/m:plugins/m:plugin"):
        for plugin in root.iterfind(path, ns):
            if plugin.findtext("m:artifactId", "", ns).strip() == "maven-dependency-plugin":
                version = _resolve(plugin.findtext("m:version", "", ns).strip(), props)
                return version or None
    return None


def ensure_java_available() -> str:
    """Path of the ``java`` binary (``$JAVA_HOME/bin/java`` first), or ToolMissingError."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
        return str(Path(java_home, "bin", "java"))
    java = shutil.which("java")
    if not java:
        raise ToolMissingError(
            f"`java` not found: the local Kafka broker needs a Java runtime (17 works). "
            f"Install: {INSTALL_HINT}"
        )
    return java


def ensure_mvn_available() -> str:
    """Path of ``mvn`` (after checking java too), or ToolMissingError naming what to install."""
    missing = []
    try:
        ensure_java_available()
    except ToolMissingError:
        missing.append("java")
    mvn = shutil.which("mvn")
    if not mvn:
        missing.append("mvn")
    if missing:
        raise ToolMissingError(
            f"{' and '.join(missing)} not found: fetching and running the local Kafka broker needs Maven and "
            f"a Java runtime. Install: {INSTALL_HINT} (or point KAFKA_HOME at an unpacked Kafka "
            f"{KAFKA_VERSION} distribution to skip Maven)"
        )
    assert mvn is not None
    return mvn


# --------------------------------------------------------------------------- small helpers


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (processes and threads alike) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _first_error(path: Path, offset: int = 0, context: int = 12) -> str:
    """The first ERROR/FATAL log record written after byte ``offset``, with its stack-trace lines."""
    try:
        with open(path, "rb") as fh:
            if offset <= fh.seek(0, os.SEEK_END):
                fh.seek(offset)
            else:  # rotated meanwhile
                fh.seek(0)
            lines = fh.read(4 * 1024 * 1024).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if re.match(r"\[[^\]]+\] (ERROR|FATAL) ", line):
            block = [line]
            for follow in lines[i + 1 : i + 1 + context]:
                if follow.startswith("["):
                    break
                block.append(follow)
            return "\n".join(block)
    return ""


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _new_cluster_id() -> str:
    """A Kafka ``Uuid`` string (22 chars, url-safe base64), as ``kafka-storage random-uuid`` prints."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids these too (they look like CLI flags)
            return text


def _process_cmdline(pid: int) -> str | None:
    """The command line of a live (non-zombie) process, None if there is none."""
    proc = Path("/proc", str(pid))
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
                return None
            return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            return None
    try:  # no procfs (macOS): just liveness
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""
    return ""


def _run_coro_blocking(coro_factory: Callable[[], object], timeout: float) -> object:
    """Run ``coro_factory()`` to completion in a private event loop on a helper thread.

    Works whether or not the caller is itself inside a running event loop.
    """
    result: dict[str, object] = {}

    def runner() -> None:
        try:
            result["value"] = asyncio.run(coro_factory())  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    t = threading.Thread(target=runner, name="floorwatch-broker-probe", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError("broker probe did not finish")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


async def _metadata_probe(bootstrap: str, request_timeout: float) -> int:
    """Number of brokers a Kafka metadata request against ``bootstrap`` reports (raises on failure)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="floorwatch-broker-probe",
        request_timeout_ms=int(request_timeout * 1000),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), request_timeout + 1)
        return len(client.cluster.brokers())
    finally:
        await client.close()


# the Popen objects of brokers started by this process: keeps them from being reported as leaked
# (ResourceWarning) and lets stop() reap them so no zombie lingers.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap_children() -> None:
    """Collect brokers we started that have exited meanwhile (e.g. stopped by another process)."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


@atexit.register
def _detach_children() -> None:
    """The broker is a daemon meant to outlive this process: don't report it as a leaked child."""
    _reap_children()
    for proc in _CHILDREN.values():
        proc._child_created = False  # type: ignore[attr-defined]  # Popen.__del__ then stays quiet
    _CHILDREN.clear()


# --------------------------------------------------------------------------- the broker


class LocalBroker:
    """A single-node KRaft Kafka broker on 127.0.0.1, run as a detached JVM."""

    def __init__(
        self,
        state_dir: Path | None = None,
        port: int = 9092,
        controller_port: int = 9093,
        kafka_home: Path | None = None,
        progress: Callable[[str], None] = print,
        *,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve() if state_dir else default_state_dir()
        self.port = int(port)
        self.controller_port = int(controller_port)
        if self.port == self.controller_port:
            raise ValueError("port and controller_port must differ")
        home = kafka_home if kafka_home is not None else os.environ.get("KAFKA_HOME") or None
        self.kafka_home = Path(home).expanduser().resolve() if home else None
        self.progress = progress
        self.extra_config = dict(extra_config or {})
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.port}"

    # ---- layout

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def log_file(self) -> Path:
        """log4j's broker log (server.log)."""
        return self.logs_dir / "server.log"

    @property
    def out_file(self) -> Path:
        """The JVM's stdout/stderr (only JVM-level failures land here; Kafka logs go to log_file)."""
        return self.logs_dir / "broker.out"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"

    def __repr__(self) -> str:
        return f"LocalBroker(bootstrap={self.bootstrap!r}, state_dir={str(self.state_dir)!r})"

    # ---- jars

    def ensure_jars(self) -> Path:
        """The directory of Kafka jars: ``$KAFKA_HOME/libs``, or the Maven cache (filled on first use)."""
        if self.kafka_home is not None:
            libs = self.kafka_home / "libs"
            if not any(libs.glob(f"kafka_{SCALA_VERSION}-*.jar")) and not any(libs.glob("kafka_*.jar")):
                raise BrokerError(f"KAFKA_HOME={self.kafka_home}: no Kafka jars in {libs}")
            return libs

        libs = jar_cache_dir()
        version_dir = libs.parent
        marker = version_dir / _MARKER
        expected = self._marker_text()
        if self._cache_complete(libs, marker, expected):
            return libs

        mvn = ensure_mvn_available()
        with _file_lock(version_dir / ".lock"):
            if self._cache_complete(libs, marker, expected):  # another process finished it meanwhile
                return libs
            self.progress(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central (first run only)...")
            started = time.monotonic()
            marker.unlink(missing_ok=True)
            for stale in version_dir.glob("libs.partial-*"):  # left by an interrupted download
                shutil.rmtree(stale, ignore_errors=True)
            staging = version_dir / f"libs.partial-{os.getpid()}"
            cmd = [
                mvn, "-q", "-B", "-Dstyle.color=never",
                "-f", str(POM_PATH),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ]  # fmt: skip
            try:
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    cwd=str(KAFKA_DEPLOY_DIR),
                )
            except subprocess.TimeoutExpired as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise BrokerError(f"mvn took longer than {exc.timeout:.0f}s fetching Kafka jars") from exc
            if proc.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                output = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
                raise BrokerError(
                    f"fetching Kafka {KAFKA_VERSION} jars failed (mvn exit {proc.returncode}):\n"
                    f"  {' '.join(cmd)}\n{output}"
                )
            missing = [p for p in _REQUIRED_JAR_PREFIXES if not any(staging.glob(f"{p}*.jar"))]
            if missing:
                shutil.rmtree(staging, ignore_errors=True)
                raise BrokerError(f"mvn finished but these jars are missing: {', '.join(missing)}")
            shutil.rmtree(libs, ignore_errors=True)
            staging.rename(libs)
            marker.write_text(expected)
            self.progress(f"done: {libs} ({time.monotonic() - started:.1f}s)")
        return libs

    @staticmethod
    def _marker_text() -> str:
        pom_hash = hashlib.sha256(POM_PATH.read_bytes()).hexdigest() if POM_PATH.exists() else "no-pom"
        return f"kafka={KAFKA_VERSION}\npom-sha256={pom_hash}\n"

    @staticmethod
    def _cache_complete(libs: Path, marker: Path, expected: str) -> bool:
        try:
            return marker.read_text() == expected and libs.is_dir()
        except OSError:
            return False

    # ---- config

    def _server_properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@{self.host}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # single node: every internal topic with one replica
            "num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            # consumer groups (faust workers, tests) start at once instead of waiting 3 s
            "group.initial.rebalance.delay.ms": "0",
            # faust declares its own topics through the admin API; plain producers (simulator, tests)
            # may write to a topic nobody declared, so let the dev broker create it like Kafka's default
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "num.network.threads": "3",
            "num.io.threads": "4",
            "log.retention.hours": "168",
        }
        props.update(self.extra_config)
        return props

    def _write_config(self) -> None:
        lines = [
            "# written by streams/broker.py on every start; edits are overwritten",
            *(f"{k}={v}" for k, v in self._server_properties().items()),
        ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _log4j_config(self) -> Path:
        if LOG4J_PATH.exists():
            return LOG4J_PATH
        path = self.state_dir / "log4j.properties"
        path.write_text(_FALLBACK_LOG4J)
        return path

    def _java_base(self, libs: Path) -> list[str]:
        return [
            ensure_java_available(),
            *_JVM_OPTS,
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j.configuration={self._log4j_config().as_uri()}",
            "-cp",
            f"{libs}/*",
        ]

    def _format_storage(self, libs: Path) -> None:
        """``kafka-storage format`` on first start; the cluster id is kept in state_dir/cluster.id."""
        if (self.data_dir / "meta.properties").exists():
            return
        if self.cluster_id_file.exists():
            cluster_id = self.cluster_id_file.read_text().strip()
        else:
            cluster_id = _new_cluster_id()
            self.cluster_id_file.write_text(cluster_id + "\n")
        self.progress(f"formatting Kafka storage in {self.data_dir} (cluster id {cluster_id})")
        cmd = [
            *self._java_base(libs),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id", cluster_id,
            "--config", str(self.config_file),
            "--ignore-formatted",
        ]  # fmt: skip
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        with open(self.out_file, "a") as fh:
            fh.write(f"--- storage format ({time.strftime('%Y-%m-%d %H:%M:%S')}) exit {proc.returncode}\n")
            fh.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise BrokerError(f"formatting Kafka storage failed (exit {proc.returncode}):\n{output}")

    # ---- process bookkeeping

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """``pid`` is alive and is the kafka.Kafka JVM of this state_dir (guards against pid reuse)."""
        cmdline = _process_cmdline(pid)
        if cmdline is None:
            return False
        if cmdline == "":  # no procfs: liveness only
            return True
        return "kafka.Kafka" in cmdline and str(self.config_file) in cmdline

    def _running_listeners(self) -> str | None:
        """``listeners`` of the server.properties the running broker was started with."""
        try:
            for line in self.config_file.read_text().splitlines():
                if line.startswith("listeners="):
                    return line.split("=", 1)[1].strip()
        except OSError:
            pass
        return None

    def _live_pid(self) -> int | None:
        _reap_children()
        pid = self._read_pid()
        if pid is not None and self._is_ours(pid):
            return pid
        return None

    def _answers(self, timeout: float = 5.0) -> bool:
        """The broker answers a Kafka metadata request and lists at least one (unfenced) broker."""
        if not _port_open(self.host, self.port):
            return False
        try:
            n = _run_coro_blocking(lambda: _metadata_probe(self.bootstrap, timeout), timeout + 3)
        except ImportError as exc:
            raise BrokerError(f"cannot probe the broker: {exc} (pip install aiokafka)") from exc
        except Exception:  # noqa: BLE001 - any other failure means "not (yet) answering"
            return False
        return isinstance(n, int) and n > 0

    # ---- public API

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        running = pid is not None and self._answers()
        return BrokerStatus(
            running=running, pid=pid, bootstrap=self.bootstrap, data_dir=self.data_dir, log_file=self.log_file
        )

    def start(self, timeout: float = 120) -> str:
        """Start the broker (or find it already running) and return its bootstrap address.

        Blocks until the broker answers a metadata request. Raises BrokerError naming the log file
        (with its last lines) if it dies or does not answer within ``timeout`` seconds.
        """
        if importlib.util.find_spec("aiokafka") is None:
            raise BrokerError("aiokafka is not installed; start() uses it to probe the broker")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.state_dir / "broker.lock"):
            pid = self._live_pid()
            if pid is not None:
                running_listeners = self._running_listeners()
                wanted = self._server_properties()["listeners"]
                if running_listeners is not None and running_listeners != wanted:
                    raise BrokerError(
                        f"the broker of {self.state_dir} is already running (pid {pid}) with listeners "
                        f"{running_listeners}, not {wanted}: stop() it first"
                    )
                if self._answers():
                    self.progress(f"Kafka broker already running at {self.bootstrap} (pid {pid})")
                    return self.bootstrap
                # alive but not answering yet: probably still starting (another process's start())
                self._wait_ready(pid, None, timeout)
                self.progress(f"Kafka broker running at {self.bootstrap} (pid {pid})")
                return self.bootstrap
            self.pid_file.unlink(missing_ok=True)

            for port in (self.port, self.controller_port):
                if _port_open(self.host, port):
                    raise BrokerError(
                        f"port {self.host}:{port} is already in use by another process (not the broker of "
                        f"{self.state_dir}); stop it or choose other ports"
                    )
            libs = self.ensure_jars()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self._write_config()
            self._format_storage(libs)

            cmd = [*self._java_base(libs), "kafka.Kafka", str(self.config_file)]
            started = time.monotonic()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(self.out_file, "ab") as out:
                out.write(f"--- broker start ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own session: no SIGINT from the caller's terminal, outlives it
                    close_fds=True,
                    cwd=str(self.state_dir),
                )
            _CHILDREN[proc.pid] = proc
            self.pid_file.write_text(f"{proc.pid}\n")
            try:
                self._wait_ready(proc.pid, proc, timeout, log_offset)
            except BaseException:
                self._terminate(proc.pid, 10)
                self.pid_file.unlink(missing_ok=True)
                raise
            self.progress(
                f"Kafka {KAFKA_VERSION} broker ready at {self.bootstrap} "
                f"(pid {proc.pid}, {time.monotonic() - started:.1f}s, logs: {self.log_file})"
            )
            return self.bootstrap

    def _wait_ready(
        self, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float, log_offset: int = 0
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc is not None and proc.poll() is not None:
                headline = f"Kafka broker exited with code {proc.returncode} during startup"
                raise BrokerError(self._failure(headline, log_offset))
            if proc is None and not self._is_ours(pid):
                headline = f"Kafka broker (pid {pid}) exited during startup"
                raise BrokerError(self._failure(headline, log_offset))
            if self._answers(timeout=min(5.0, max(1.0, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                headline = f"Kafka broker (pid {pid}) not answering at {self.bootstrap} after {timeout:.0f}s"
                raise BrokerError(self._failure(headline, log_offset))
            time.sleep(0.5)

    def _failure(self, headline: str, log_offset: int = 0) -> str:
        """Error text: headline, the log file, the first ERROR of this run (with its stack), the tails."""
        parts = [f"{headline}.", f"Broker log: {self.log_file}"]
        errors = _first_error(self.log_file, log_offset)
        if errors:
            parts.append(f"--- first error in {self.log_file.name} ---\n{errors}")
        for path in (self.log_file, self.out_file):
            tail = _tail(path, 25)
            if tail.strip():
                parts.append(f"--- last lines of {path} ---\n{tail}")
        return "\n".join(parts)

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM the broker (SIGKILL after ``timeout`` s); True if there was one to stop."""
        if not self.state_dir.exists():
            return False
        with _file_lock(self.state_dir / "broker.lock"):
            pid = self._live_pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            self.progress(f"stopping Kafka broker (pid {pid})...")
            forced = self._terminate(pid, timeout)
            self.pid_file.unlink(missing_ok=True)
            self.progress("Kafka broker killed (did not stop in time)" if forced else "Kafka broker stopped")
            return True

    def _terminate(self, pid: int, timeout: float) -> bool:
        """SIGTERM, wait, SIGKILL. Returns True if SIGKILL was needed."""

        def signal_group(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                try:
                    os.killpg(pid, sig)  # the JVM leads its own session/process group
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        raise
                    os.kill(pid, sig)

        def wait_gone(limit: float) -> bool:
            deadline = time.monotonic() + limit
            proc = _CHILDREN.get(pid)
            while time.monotonic() < deadline:
                if proc is not None:
                    if proc.poll() is not None:
                        return True
                elif _process_cmdline(pid) is None:
                    return True
                time.sleep(0.2)
            return False

        forced = False
        signal_group(signal.SIGTERM)
        if not wait_gone(timeout):
            forced = True
            signal_group(signal.SIGKILL)
            wait_gone(10)
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        return forced
