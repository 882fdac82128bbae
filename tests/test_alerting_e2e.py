"""SLA alerting end to end with the real servers: Kafka (session fixture), a Floorwatch worker, Prometheus
and Alertmanager (the Debian packages' binaries), and a webhook in this process standing in for the
supervisors' endpoint.

One site configuration (a TOML in tmp_path) drives both paths: the worker evaluates its rules in the
stream (event time, `cc.sla.alerts`), and `python -m streams.prometheus_rules --config` generates from
the same file the rules that Prometheus loads (wall-clock time, to Alertmanager). The only change to the
defaults is a short raise duration (`for_s`) of `service_level_below_target`, for test speed.
Alertmanager runs the committed `deploy/alertmanager/alertmanager.yml` with the webhook URL and the
grouping timings replaced (short waits), so its routes, receivers and `send_resolved` are the ones
shipped.

The scenario: a queue `night` gets two contacts at 02:00 site time with long waits (one abandoned):
its service level is 0 % for a while, in the stream and in Prometheus, but the volume is below the
rule's minimum, so nothing is raised, on either path. Then queue `sales` (voice, 20 s threshold, 80 %
target) is answered within 10 s, the staffing drops (60 s waits) and the service level falls below
the target: one `firing` event on the alerts topic, and Alertmanager posts
FloorwatchServiceLevelBelowTarget (queue sales, channel voice, severity critical) to the supervisors'
webhook. Staff back (quick answers until the rolling 15 min service level is above the 82 % clear
threshold): `resolved` on the topic with the same key, and Alertmanager posts the alert resolved.

Every wait is bounded; a failure shows the worker's, Prometheus' and Alertmanager's logs
(test-output/logs/), Prometheus' ALERTS, what the webhook got and what the topic holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from models.alerts import AlertEvent
from streams.alert_rules import DEFAULT_RULES, AlertRule
from streams.kafka_io import consumer
from streams.prometheus_rules import alert_name
from tests.conftest import REPO, free_port, run, settings_for, total
from tests.test_alerts import T0, contact
from tests.test_alerts_integration import messages
from tests.test_ingest_integration import produce
from tests.test_prometheus_rules import tool

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"                        # the site's time zone: "02:00" is site time
RULE = "service_level_below_target"
ALERT = alert_name(RULE)                      # FloorwatchServiceLevelBelowTarget
FOR_S = 5                                     # the rule's raise duration here (default 60 s): test speed
# The rules of the site: the defaults, with the service-level rule's raise duration shortened.
SITE_RULES: dict[str, AlertRule] = {RULE: DEFAULT_RULES[RULE].model_copy(update={"for_s": FOR_S})}
ACCEPTED = "floorwatch_ingest_accepted_events_total"
SL_SERIES = "queue_channel_window:floorwatch_queue_service_level:ratio"
OFFERED_SERIES = "queue_channel_window_kind:floorwatch_queue_window_contacts:sum"
ALERTMANAGER_CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"
COMMITTED_WEBHOOK = "http://127.0.0.1:9099/alerts"
LOGS = REPO / "test-output" / "logs"


# -- configuration -------------------------------------------------------------------------------------

def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)    # a JSON string of plain text is a TOML basic string


def write_site_config(path: Path, rules: dict[str, AlertRule]) -> Path:
    lines = ["[site]", f'timezone = "{ZONE}"']
    for name, rule in rules.items():
        lines.append(f"[alerts.rules.{name}]")
        lines += [f"{key} = {_toml_value(value)}"
                  for key, value in rule.model_dump(mode="json", exclude_none=True).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def alertmanager_config(webhook_url: str) -> str:
    """The committed configuration with the webhook URL replaced and short grouping timings (1s/1s/1h):
    its routes, receivers, inhibition and send_resolved as shipped."""
    text = ALERTMANAGER_CONFIG.read_text()
    supervisors = text[text.index("- name: supervisors"):text.index("- name: engineers")]
    assert "send_resolved: true" in supervisors, "the supervisors' webhook must send resolved notifications"
    assert COMMITTED_WEBHOOK in text, f"{ALERTMANAGER_CONFIG} no longer posts to {COMMITTED_WEBHOOK}"
    text = text.replace(COMMITTED_WEBHOOK, webhook_url)
    for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1h")):
        text, count = re.subn(rf"(?m)^(\s+{key}:) \S+$", rf"\1 {value}", text)
        assert count >= 2, f"{key} not found in {ALERTMANAGER_CONFIG}"
    return text


def prometheus_config(rules_dir: Path, target: str, alertmanager: str) -> str:
    return f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules_dir}/*.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager}"]
scrape_configs:
  - job_name: floorwatch
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""


# -- the servers -----------------------------------------------------------------------------------------

class Webhook:
    """An HTTP endpoint in a thread that records every JSON body POSTed to it (Alertmanager's webhook)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        bodies, lock = self.bodies, self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with lock:
                    bodies.append({"path": self.path, **body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict]:
        """Every alert of every notification, with the notification's receiver and path."""
        with self._lock:
            return [{**alert, "receiver": body["receiver"], "path": body["path"]}
                    for body in self.bodies for alert in body["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Server:
    """Prometheus or Alertmanager as a subprocess on 127.0.0.1, its output in a log file."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready on {self.base} within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prom_query(prometheus: Server, expr: str) -> list[dict]:
    url = f"{prometheus.base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


async def _read_topic(settings, topic: str) -> list[bytes]:
    """Every record of `topic`, up to its end offsets now."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
    values: list[bytes] = []
    async with consumer(settings.kafka, group_id=None) as c:
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + 15
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            assert asyncio.get_running_loop().time() < deadline, f"could not read {topic} to its end"
            batch = await c.getmany(timeout_ms=500)
            values += [r.value for records in batch.values() for r in records]
    return values


# -- the scenario's pieces --------------------------------------------------------------------------------

@dataclass
class Site:
    """The servers of one test and what it needs to drive them and to explain a failure."""

    settings: object
    worker: object
    prometheus: Server
    alertmanager: Server
    webhook: Webhook
    contacts: int = 0

    def topic_alerts(self) -> list[AlertEvent]:
        values = run(_read_topic(self.settings, self.settings.topics.alerts))
        return [AlertEvent.model_validate(orjson.loads(v)) for v in values]

    def new_contacts(self, queue: str, start: datetime, count: int, every_s: float, wait_s: float,
                     answered: bool = True) -> list:
        out = []
        for i in range(count):
            self.contacts += 1
            out += contact(self.contacts, queue, start + timedelta(seconds=every_s * i), wait_s, answered)
        return messages(out)

    def feed(self, batches: list[list]) -> None:
        """Each batch applied and seen by a few snapshot rounds (1 s) before the next: the raise duration
        is event time seen by successive evaluations, as with a live feed (tests/test_alerts_integration)."""
        for batch in batches:
            before = total(self.worker.metrics(), ACCEPTED)
            run(produce(self.settings, batch))
            self.worker.wait_for(lambda s: total(s, ACCEPTED) >= before + len(batch),
                                 what=f"{len(batch)} events applied")
            time.sleep(2.5)

    def diagnostics(self) -> str:
        try:
            alerts = [r["metric"] for r in prom_query(self.prometheus, "ALERTS")]
            levels = {(r["metric"]["queue"], r["metric"]["channel"]): r["value"][1]
                      for r in prom_query(self.prometheus, f'{SL_SERIES}{{window="rolling_15m"}}')}
        except Exception as exc:  # noqa: BLE001 - the report must not fail
            alerts = levels = f"query failed: {exc!r}"
        try:
            topic = [(a.status, a.rule, a.scope.queue, a.key) for a in self.topic_alerts()]
        except Exception as exc:  # noqa: BLE001
            topic = f"read failed: {exc!r}"
        webhook = [(a["receiver"], a["status"], a["labels"].get("alertname"), a["labels"].get("queue"))
                   for a in self.webhook.alerts()]
        return (f"\nPrometheus ALERTS: {alerts}\nPrometheus service level rolling_15m: {levels}\nwebhook got: {webhook}\ntopic {self.settings.topics.alerts}: "
                f"{topic}\n--- worker log ({self.worker.log_path}):\n{self.worker.log_tail(20)}\n"
                f"--- prometheus log ({self.prometheus.log_path}):\n{self.prometheus.log_tail(15)}\n"
                f"--- alertmanager log ({self.alertmanager.log_path}):\n{self.alertmanager.log_tail(15)}")

    def wait_until(self, check: Callable[[], object], what: str, timeout: float = 60.0):
        """Poll `check` until it returns something truthy; fail with everything that may explain why not."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.worker.proc
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the worker exited with {proc.returncode} while waiting for {what}{self.diagnostics()}")
            for server in (self.prometheus, self.alertmanager):
                if server.proc.poll() is not None:
                    pytest.fail(f"{server.name} exited with {server.proc.returncode} while waiting for {what}"
                                f"{self.diagnostics()}")
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{self.diagnostics()}")
            time.sleep(0.5)


def topic_events(site: Site, queue: str, rule: str = RULE) -> list[AlertEvent]:
    return [a for a in site.topic_alerts() if a.rule == rule and a.scope.queue == queue]


def webhook_alerts(site: Site, status: str, queue: str = "sales") -> list[dict]:
    return [a for a in site.webhook.alerts()
            if a["labels"].get("alertname") == ALERT and a["labels"].get("queue") == queue and a["status"] == status]


@pytest.fixture
def site(request, kafka_bootstrap, make_worker, tmp_path) -> Iterator[Site]:
    prometheus_bin = tool("prometheus", "prometheus")
    alertmanager_bin = tool("prometheus-alertmanager", "prometheus-alertmanager")
    config = write_site_config(tmp_path / "site.toml", SITE_RULES)
    settings, env = settings_for(kafka_bootstrap, FLOORWATCH_CONFIG=str(config),
                                 FLOORWATCH_WORKER__SNAPSHOT_INTERVAL_S="1")
    assert settings.alerts.active()[RULE].for_s == FOR_S

    # The Prometheus rules of this site, from the same configuration the worker reads.
    rules_dir = tmp_path / "rules"
    generated = subprocess.run(
        [sys.executable, "-m", "streams.prometheus_rules", "--config", str(config), "--output-dir", str(rules_dir)],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert generated.returncode == 0, generated.stderr
    assert sorted(p.name for p in rules_dir.glob("*.yml")) == [
        "floorwatch-kpi-alerts.yml", "floorwatch-pipeline.yml", "floorwatch-recording.yml"], generated.stdout

    name = request.node.name
    webhook = Webhook()
    started: list[Server] = []
    try:
        (tmp_path / "alertmanager.yml").write_text(alertmanager_config(webhook.url))
        am_port = free_port()
        alertmanager = Server("alertmanager", [
            alertmanager_bin, f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address="], am_port, LOGS / f"{name}-alertmanager.log")
        started.append(alertmanager)
        alertmanager.start()

        worker = make_worker(settings, env).start()
        worker.wait_for(lambda s: total(s, "floorwatch_partitions_owned") == settings.kafka.partitions,
                        what="partitions owned")
        w = settings.worker
        (tmp_path / "prometheus.yml").write_text(
            prometheus_config(rules_dir, f"{w.web_host}:{w.web_port}", f"127.0.0.1:{am_port}"))
        prom_port = free_port()
        prometheus = Server("prometheus", [
            prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            prom_port, LOGS / f"{name}-prometheus.log")
        started.append(prometheus)
        prometheus.start()

        here = Site(settings, worker, prometheus, alertmanager, webhook)
        here.wait_until(lambda: prom_query(prometheus, 'up{job="floorwatch"} == 1'),
                        "Prometheus to scrape the worker", timeout=30)
        with urllib.request.urlopen(prometheus.base + "/api/v1/rules?type=alert", timeout=5) as response:
            loaded = {r["name"]: r for g in json.loads(response.read())["data"]["groups"] for r in g["rules"]}
        # The site's raise duration reached Prometheus through the generated rules.
        assert loaded[ALERT]["duration"] == FOR_S, loaded[ALERT]
        yield here
    finally:
        for server in reversed(started):
            server.stop()
        webhook.close()
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{name}-webhook.json").write_text(json.dumps(webhook.bodies, indent=1))


# -- the test ----------------------------------------------------------------------------------------------

def test_staffing_drop_alerts_supervisors_and_a_quiet_night_queue_does_not(site: Site):
    # -- night: two contacts at 02:00 site time with long waits, one abandoned --------------------------
    # One after the other (no contact waits while another's events move the clock past its enqueue),
    # each batch evaluated on its own: in event time the service level is 0 % from 02:05 to 02:13.
    night = datetime(T0.year, T0.month, T0.day, 2, 0, tzinfo=ZoneInfo(ZONE))
    assert night < T0
    site.feed([site.new_contacts("night", night, 1, 0, 300),
               site.new_contacts("night", night + timedelta(minutes=6), 1, 0, 420, answered=False)])
    # Prometheus sees it too: service level 0 % with 2 offered, for longer than the raise duration.
    night_sl = f'{SL_SERIES}{{queue="night", window="rolling_15m"}}'
    first_seen = site.wait_until(lambda: [r for r in prom_query(site.prometheus, night_sl)
                                          if float(r["value"][1]) < 0.8] and time.monotonic(),
                                 "Prometheus to record the night queue's service level", timeout=30)
    site.wait_until(lambda: time.monotonic() - first_seen > FOR_S + 4, "time to pass", timeout=FOR_S + 10)
    assert [float(r["value"][1]) for r in prom_query(site.prometheus, night_sl)] == [0.0], \
        "the night queue's figures should still be on /metrics"

    # -- sales: normal staffing, then the staffing drop ----------------------------------------------------
    # 21 contacts answered within 10 s (voice threshold 20 s), then 30 that wait 60 s each.
    site.feed([site.new_contacts("sales", T0 + timedelta(seconds=105 * k), 7, 15, 10) for k in range(3)])
    assert topic_events(site, "sales") == [] and webhook_alerts(site, "firing") == []
    site.feed([site.new_contacts("sales", T0 + timedelta(minutes=5, seconds=100 * k), 10, 10, 60)
               for k in range(3)])

    # (a) the stream: one `firing` on the alerts topic
    events = site.wait_until(lambda: topic_events(site, "sales"), f"{RULE} firing on the alerts topic")
    assert [a.status for a in events] == ["firing"], events
    fired = events[0]
    assert fired.scope.channel == "voice" and fired.severity == "critical" and fired.window == "rolling_15m"
    assert fired.raise_threshold == pytest.approx(0.8) and fired.value < 0.8
    assert fired.at_ms - fired.started_at_ms >= FOR_S * 1000
    # (b) Prometheus -> Alertmanager -> the supervisors' webhook
    (notified, *_) = site.wait_until(lambda: webhook_alerts(site, "firing"),
                                     f"Alertmanager to post {ALERT} firing to the webhook")
    labels = notified["labels"]
    assert notified["receiver"] == "supervisors" and notified["path"] == "/alerts"
    assert (labels["queue"], labels["channel"], labels["severity"], labels["category"], labels["rule"]) == \
        ("sales", "voice", "critical", "kpi", RULE), labels
    assert "Service level of sales (voice)" in notified["annotations"]["summary"]

    # -- staff back: quick answers until the rolling 15 min service level clears (82 %) ------------------
    site.feed([site.new_contacts("sales", T0 + timedelta(minutes=11, seconds=300 * k), 60, 5, 5)
               for k in range(3)])
    fired_again, resolved = site.wait_until(
        lambda: (found := topic_events(site, "sales")) and found[-1].status == "resolved" and found,
        f"{RULE} resolved on the alerts topic")
    assert fired_again == fired, "fired once, then resolved"
    assert resolved.key == fired.key and resolved.clear_threshold == pytest.approx(0.82)
    assert resolved.value >= resolved.clear_threshold
    (cleared, *_) = site.wait_until(lambda: webhook_alerts(site, "resolved"),
                                    f"Alertmanager to post {ALERT} resolved to the webhook")
    assert cleared["receiver"] == "supervisors" and cleared["labels"] == labels
    assert cleared["fingerprint"] == notified["fingerprint"] and cleared["startsAt"] == notified["startsAt"]
    assert not prom_query(site.prometheus, f'ALERTS{{alertname="{ALERT}", queue="sales"}}')

    # -- the quiet night queue raised nothing, on either path (time has passed: the other alerts came) ----
    # (in Prometheus not even pending, while it saw the night queue at 0 % with 2 contacts offered)
    raised = {"topic": [(a.status, a.rule) for a in site.topic_alerts() if a.scope.queue == "night"],
              "webhook": [(a["status"], a["labels"]["alertname"]) for a in site.webhook.alerts()
                          if a["labels"].get("queue") == "night"],
              "prometheus": [(r["metric"]["alertname"], r["metric"]["alertstate"]) for r in
                             prom_query(site.prometheus, 'count_over_time(ALERTS{queue="night"}[30m])')]}
    assert raised == {"topic": [], "webhook": [], "prometheus": []}, "a queue with two contacts raised alerts"
    night_offered = f'max_over_time({OFFERED_SERIES}{{queue="night", window="rolling_15m", kind="offered"}}[30m])'
    assert [float(r["value"][1]) for r in prom_query(site.prometheus, night_offered)] == [2.0]
