"""The Prometheus and Alertmanager side of SLA alerting (deploy/prometheus, deploy/alertmanager).

The committed rule files are what `python -m streams.prometheus_rules` writes; promtool and amtool
accept them; the promtool unit tests (deploy/prometheus/tests) pass and expect every alert to fire;
every alert carries a severity, a summary, a description and a runbook that exists; every default
rule has its alert; every metric an expression reads is one a worker exports (docs/metrics.md or
Faust's sensor), so a renamed metric fails here. Alertmanager routes and inhibits as documented
(a real alertmanager process on a free port, no system service). No Kafka.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from streams.alert_rules import DEFAULT_RULES, AlertRule, AlertSettings
from streams.prometheus_rules import (
    GENERIC_KPI_RUNBOOK,
    KPI_ALERTS_FILE,
    PIPELINE_FILE,
    RECORDING_FILE,
    alert_name,
    duration,
    glob_to_regex,
    kpi_alert_groups,
    pipeline_groups,
    recording_groups,
    rule_files,
)

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "deploy/prometheus/rules"
PROMTOOL_TESTS = sorted((ROOT / "deploy/prometheus/tests").glob("*.yml"))
PROMETHEUS_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy/alertmanager/alertmanager.yml"
RUNBOOKS = ROOT / "deploy/runbooks"
RECEIVER_OF_CATEGORY = {"kpi": "supervisors", "pipeline": "engineers"}
# The alerts during which KPI alerts are not sent (docs/alerts.md, "Inhibition").
PIPELINE_DOWN = ("FloorwatchWorkerDown", "FloorwatchWatermarkStale", "FloorwatchNoWorkers")


def groups_by_file() -> dict[str, list[dict]]:
    """The rule groups of each committed file, as the generator builds them (equal to the files:
    test_committed_rule_files_are_what_the_generator_writes)."""
    return {RECORDING_FILE: recording_groups(), KPI_ALERTS_FILE: kpi_alert_groups(DEFAULT_RULES),
            PIPELINE_FILE: pipeline_groups()}


def all_rules() -> list[dict]:
    return [rule for groups in groups_by_file().values() for group in groups for rule in group["rules"]]


def all_alerts() -> list[dict]:
    return [rule for rule in all_rules() if "alert" in rule]


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI: install the Debian package {package} (deploy/run setup)")
        pytest.skip(f"{name} not installed (apt-get install {package}; deploy/run setup does it)")
    return path


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kwargs)


# -- generated files ---------------------------------------------------------------------------------

def test_committed_rule_files_are_what_the_generator_writes():
    expected = rule_files()
    assert {p.name for p in RULES_DIR.glob("*.yml")} == set(expected), \
        "deploy/prometheus/rules holds exactly the generated files (prometheus.yml loads rules/*.yml)"
    for name, text in expected.items():
        assert (RULES_DIR / name).read_text() == text, f"{name} is stale: run python -m streams.prometheus_rules"


def test_the_command_writes_the_committed_files_and_check_sees_drift(tmp_path):
    written = run(sys.executable, "-m", "streams.prometheus_rules", "--output-dir", str(tmp_path), cwd=ROOT)
    assert written.returncode == 0, written.stderr
    for name in rule_files():
        assert (tmp_path / name).read_text() == (RULES_DIR / name).read_text()
    clean = run(sys.executable, "-m", "streams.prometheus_rules", "--check", "--output-dir", str(tmp_path), cwd=ROOT)
    assert clean.returncode == 0, clean.stderr
    (tmp_path / KPI_ALERTS_FILE).write_text((tmp_path / KPI_ALERTS_FILE).read_text().replace("for: 1m", "for: 2m", 1))
    drift = run(sys.executable, "-m", "streams.prometheus_rules", "--check", "--output-dir", str(tmp_path), cwd=ROOT)
    assert drift.returncode == 1 and KPI_ALERTS_FILE in drift.stderr


# -- promtool / amtool ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [RECORDING_FILE, KPI_ALERTS_FILE, PIPELINE_FILE])
def test_promtool_accepts_each_rules_file(name):
    result = run(tool("promtool", "prometheus"), "check", "rules", str(RULES_DIR / name))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in groups_by_file()[name])
    assert f"SUCCESS: {rules} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_pass():
    assert PROMTOOL_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = run(tool("promtool", "prometheus"), "test", "rules", *map(str, PROMTOOL_TESTS))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert result.stdout.count("SUCCESS") == len(PROMTOOL_TESTS), result.stdout


def test_the_unit_tests_expect_every_alert_to_fire():
    """An expected firing alert lists its annotations, the runbook among them; every alert must
    have one such expectation somewhere in the promtool tests."""
    tests = "\n".join(path.read_text() for path in PROMTOOL_TESTS)
    tested = set(re.findall(r"alertname:\s*(\w+)", tests))
    for alert in all_alerts():
        assert alert["alert"] in tested, f"no promtool test evaluates {alert['alert']}"
        assert alert["annotations"]["runbook_url"] in tests, f"no promtool test expects {alert['alert']} to fire"


def test_promtool_accepts_the_prometheus_config_and_it_loads_every_rules_file():
    result = run(tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_files())} rule files found" in result.stdout, result.stdout


def test_amtool_accepts_the_alertmanager_config():
    result = run(tool("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_sends_kpi_alerts_to_supervisors_and_pipeline_alerts_to_engineers():
    amtool = tool("amtool", "prometheus-alertmanager")
    for alert in all_alerts():
        labels = {"alertname": alert["alert"], **alert["labels"], "queue": "billing", "channel": "voice"}
        result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                     *(f"{k}={v}" for k, v in labels.items()))
        assert result.returncode == 0, result.stderr
        expected = RECEIVER_OF_CATEGORY[alert["labels"]["category"]]
        assert result.stdout.split() == [expected], (alert["alert"], result.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, body: list | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read()
    return json.loads(text) if text else None


def test_alertmanager_holds_back_kpi_alerts_while_the_pipeline_is_down(tmp_path):
    binary = tool("prometheus-alertmanager", "prometheus-alertmanager")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen([binary, f"--config.file={ALERTMANAGER_CONFIG}", f"--storage.path={tmp_path}",
                                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "alertmanager.log").read_text()
                time.sleep(0.1)
        kpi = next(a for a in all_alerts() if a["labels"]["category"] == "kpi")
        kpi_labels = {"alertname": kpi["alert"], **kpi["labels"], "queue": "billing", "channel": "voice"}
        pipeline = {a["alert"]: a["labels"] for a in all_alerts() if a["labels"]["category"] == "pipeline"}
        assert set(PIPELINE_DOWN) <= set(pipeline)

        def post(name: str, resolved: bool = False) -> None:
            alert = {"labels": {"alertname": name, **pipeline.get(name, {}), "instance": "worker-1:6066"}}
            if name == kpi["alert"]:
                alert["labels"] = kpi_labels
            if resolved:
                alert["endsAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            _api(base, "/api/v2/alerts", [alert])

        def kpi_state() -> str:
            alerts = _api(base, "/api/v2/alerts?active=true&silenced=true&inhibited=true")
            return next(a["status"]["state"] for a in alerts if a["labels"]["alertname"] == kpi["alert"])

        post(kpi["alert"])
        # A pipeline alert that does not make the KPIs untrue holds nothing back.
        post("FloorwatchDeadLetterRateHigh")
        assert kpi_state() == "active"
        for source in PIPELINE_DOWN:
            post(source)
            assert kpi_state() == "suppressed", source
            post(source, resolved=True)
            assert kpi_state() == "active", source
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


# -- what every alert carries ----------------------------------------------------------------------------

def test_every_alert_has_a_severity_a_summary_a_description_and_an_existing_runbook():
    alerts = all_alerts()
    assert len({a["alert"] for a in alerts}) == len(alerts), "an alert name twice"
    for alert in alerts:
        name, labels, annotations = alert["alert"], alert["labels"], alert["annotations"]
        assert name.startswith("Floorwatch"), name
        assert labels["severity"] in ("info", "warning", "critical"), name
        assert labels["category"] in RECEIVER_OF_CATEGORY, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        url = annotations["runbook_url"]
        assert url.startswith("deploy/runbooks/") and url.endswith(".md"), (name, url)
        assert (ROOT / url).is_file(), f"{name}: runbook {url} is missing"


def test_every_runbook_belongs_to_an_alert_and_docs_list_every_alert():
    referenced = {Path(a["annotations"]["runbook_url"]).name for a in all_alerts()}
    on_disk = {p.name for p in RUNBOOKS.glob("*.md")}
    assert on_disk == referenced | {f"{GENERIC_KPI_RUNBOOK}.md"}, "a runbook without its alert, or the reverse"
    docs = (ROOT / "docs/alerts.md").read_text()
    for alert in all_alerts():
        assert f"`{alert['alert']}`" in docs, f"docs/alerts.md does not list {alert['alert']}"


def test_every_enabled_default_rule_has_its_alert_with_the_rules_severity_and_raise_duration():
    committed = (RULES_DIR / KPI_ALERTS_FILE).read_text()
    enabled = {name: rule for name, rule in DEFAULT_RULES.items() if rule.enabled}
    assert re.findall(r"^\s*- alert: (\w+)$", committed, re.M) == [alert_name(n) for n in enabled]
    alerts = {a["alert"]: a for a in kpi_alert_groups(DEFAULT_RULES)[0]["rules"]}
    for name, rule in enabled.items():
        alert = alerts[alert_name(name)]
        assert alert["labels"]["rule"] == name and alert["labels"]["category"] == "kpi"
        assert alert["labels"]["severity"] == rule.severity, name
        assert alert.get("for") == (duration(rule.for_s) if rule.for_s else None), name


def test_alert_names_are_the_rule_names_in_camel_case():
    assert alert_name("service_level_below_target") == "FloorwatchServiceLevelBelowTarget"
    assert alert_name("sl2_low") == "FloorwatchSl2Low"


# -- the expressions read what the workers export -------------------------------------------------------

_MODIFIERS = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_STRING = r'"(?:[^"\\]|\\.)*"'


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: identifiers outside strings, label matchers, ranges
    and modifier lists that are not functions, keywords or numbers."""
    text = re.sub(_STRING, '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(_MODIFIERS, " ", text)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {n for n in names if n not in _KEYWORDS}


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    text = re.sub(_STRING, '""', expr)
    return [(name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)))
            for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", text)]


def documented_metrics() -> dict[str, set[str]]:
    """Metric name -> labels, from the tables of docs/metrics.md."""
    rows = re.findall(r"^\| `(floorwatch_\w+)` \| [^|]+ \| ([^|]+) \|", (ROOT / "docs/metrics.md").read_text(), re.M)
    return {name: set(re.findall(r"`(\w+)`", labels)) for name, labels in rows}


def faust_sensor_metrics() -> dict[str, set[str]]:
    """Series names -> labels of Faust's Prometheus sensor with the prefix the worker gives it."""
    app = (ROOT / "streams/app.py").read_text()
    prefix = re.search(r'FaustMetrics\.create\([^,]+,\s*"(\w+)"\)', app)
    assert prefix, "streams/app.py no longer creates Faust's sensor metrics the way this test reads them"
    sensor = FaustMetrics.create(CollectorRegistry(), prefix.group(1))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = {}
    for metric in sensor:
        family = metric.describe()[0]
        for suffix in suffixes[family.type]:
            names[family.name + suffix] = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
    return names


def known_metrics() -> dict[str, set[str] | None]:
    """Every series an expression may read; None: any labels."""
    recorded = {rule["record"]: None for rule in all_rules() if "record" in rule}
    return {**documented_metrics(), **faust_sensor_metrics(), **recorded,
            "up": {"job", "instance"}, "ALERTS": None}


def unknown_metrics(rules: list[dict], known: dict[str, set[str] | None]) -> list[str]:
    problems = []
    for rule in rules:
        name = rule.get("alert") or rule["record"]
        for metric in sorted(metric_names(rule["expr"]) - set(known)):
            problems.append(f"{name}: {metric} is not exported")
        for metric, labels in selector_labels(rule["expr"]):
            allowed = known.get(metric)
            if allowed is not None and not labels <= allowed:
                problems.append(f"{name}: {metric} has no label {sorted(labels - allowed)}")
    return problems


def test_every_expression_reads_only_exported_metrics_and_their_labels():
    assert documented_metrics(), "no metric table found in docs/metrics.md"
    problems = unknown_metrics(all_rules(), known_metrics())
    assert not problems, "\n".join(problems)


def test_the_metric_check_catches_a_renamed_metric_and_a_wrong_label():
    known = known_metrics()
    rules = [dict(rule) for rule in all_rules()]
    sample = next(rule for rule in rules if "floorwatch_queue_waiting_contacts" in rule["expr"])
    sample["expr"] = sample["expr"].replace("floorwatch_queue_waiting_contacts", "floorwatch_queue_waiting_calls")
    assert any("floorwatch_queue_waiting_calls is not exported" in p for p in unknown_metrics(rules, known))
    wrong_label = [{"record": "x:y:z", "expr": 'sum(floorwatch_agents{queue="billing"})'}]
    assert unknown_metrics(wrong_label, known) == ["x:y:z: floorwatch_agents has no label ['queue']"]
    assert metric_names('sum by (queue) (rate(a_total{b="c:d"}[5m] offset 1h)) / on(x) group_left() e:f:g') == \
        {"a_total", "e:f:g"}


# -- scopes and site rules -----------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["*", "bill*", "b?lling", "[bs]*", "[!b]*", "sales.eu", "a+b", "x[", "*_[0-9]"])
def test_scope_wildcards_match_what_fnmatch_matches(pattern):
    names = ["billing", "bulling", "sales", "sales.eu", "salesXeu", "a+b", "aab", "x[", "q_1", "q_x", "", "b"]
    regex = re.compile(glob_to_regex(pattern))
    for name in names:
        assert bool(regex.fullmatch(name)) == fnmatchcase(name, pattern), (pattern, name)


SITE_TOML = """
[alerts.rules.service_level_below_target]
kpi = "service_level"
comparison = "<"
raise_threshold = 0.7
window = "interval_current"

[alerts.rules.tickets_at_risk]
kpi = "tickets_at_risk"
comparison = ">"
raise_threshold = 0
enabled = false

[alerts.rules.billing_queue_long]
kpi = "waiting_contacts"
comparison = ">"
raise_threshold = 5
clear_threshold = 2
for_s = 0
min_volume = 1
queue = "bill*"
channel = "voice"
severity = "critical"

[alerts.rules.contact_waits_too_long]
kpi = "contact_wait_seconds"
comparison = ">"
raise_threshold = 300

[alerts.rules.urgent_first_responses_late]
kpi = "ticket_first_response_breaches"
comparison = ">"
raise_threshold = 2
window = "rolling_60m"
priority = "[hu]*"

[alerts.rules.resolutions_late_today]
kpi = "ticket_resolution_breaches"
comparison = ">"
raise_threshold = 10
window = "today"
"""

SITE_UNIT_TEST = """
rule_files: [recording.yml, alerts.yml]
evaluation_interval: 1m
group_eval_order: [floorwatch-queue-recording, floorwatch-ticket-recording, floorwatch-kpi-alerts]
tests:
  - interval: 1m
    input_series:
      - series: 'floorwatch_queue_waiting_contacts{queue="billing-eu", channel="voice", instance="w1"}'
        values: '3 7 4 1'
      - series: 'floorwatch_queue_waiting_contacts{queue="billing-eu", channel="chat", instance="w1"}'
        values: '9 9 9 9'
      - series: 'floorwatch_queue_waiting_contacts{queue="sales", channel="voice", instance="w1"}'
        values: '9 9 9 9'
      # 3 first-response breaches of today, all within the last 60 minutes: above 2 for high, not
      # for normal (out of the priority scope [hu]*).
      - series: 'floorwatch_ticket_window_tickets{queue="billing", priority="high", window="today", kind="first_response_breached", instance="w2"}'
        values: '3 3 3 3'
      - series: 'floorwatch_ticket_window_tickets{queue="billing", priority="normal", window="today", kind="first_response_breached", instance="w2"}'
        values: '3 3 3 3'
    promql_expr_test:
      - expr: count by (priority, window) (ALERTS{alertname="FloorwatchUrgentFirstResponsesLate", alertstate="firing"})
        eval_time: 2m
        exp_samples: [{labels: '{priority="high", window="rolling_60m"}', value: 1}]
      - expr: count(ALERTS{alertname="FloorwatchBillingQueueLong", alertstate="firing", queue="billing-eu", channel="voice"})
        eval_time: 2m
        exp_samples: [{labels: '{}', value: 1}]
      - expr: count(ALERTS{alertname="FloorwatchBillingQueueLong"}) or vector(0)
        eval_time: 3m
        exp_samples: [{labels: '{}', value: 0}]
"""


def test_a_sites_rules_generate_valid_rules_with_their_scopes(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(SITE_TOML)
    out = tmp_path / "rules"
    result = run(sys.executable, "-m", "streams.prometheus_rules", "--config", str(config), "--output-dir", str(out),
                 "--runbook-base-url", "https://git.example.com/floorwatch/deploy/runbooks", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = (out / KPI_ALERTS_FILE).read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", text, re.M)
    assert "FloorwatchTicketsAtRisk" not in alerts
    assert {"FloorwatchBillingQueueLong", "FloorwatchContactWaitsTooLong", "FloorwatchUrgentFirstResponsesLate",
            "FloorwatchResolutionsLateToday", "FloorwatchServiceLevelBelowTarget"} <= set(alerts)
    assert 'queue=~"bill.*", channel="voice"' in text and 'priority=~"[hu].*"' in text
    base = "https://git.example.com/floorwatch/deploy/runbooks/"
    assert f"runbook_url: {base}FloorwatchServiceLevelBelowTarget.md" in text
    # A rule whose KPI no default rule watches gets the generic runbook, which exists.
    assert f"runbooks/{GENERIC_KPI_RUNBOOK}.md" in text and (RUNBOOKS / f"{GENERIC_KPI_RUNBOOK}.md").is_file()
    promtool = tool("promtool", "prometheus")
    for name in rule_files():
        check = run(promtool, "check", "rules", str(out / name))
        assert check.returncode == 0, check.stdout + check.stderr
    # The scope and the hysteresis at work: billing-eu/voice fires at 7 waiting, holds at 4 (above
    # the clear threshold 2), resolves at 1; chat and sales are out of scope.
    (out / "recording.yml").write_text((out / RECORDING_FILE).read_text())
    (out / "alerts.yml").write_text(text)
    (out / "site.test.yml").write_text(SITE_UNIT_TEST)
    unit = run(promtool, "test", "rules", str(out / "site.test.yml"))
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_a_rule_whose_alert_name_a_pipeline_alert_has_is_refused(tmp_path):
    rules = AlertSettings(rules={"worker_down": AlertRule(kpi="waiting_contacts", comparison=">",
                                                          raise_threshold=5)}).active()
    with pytest.raises(ValueError, match="FloorwatchWorkerDown"):
        kpi_alert_groups(rules)
    config = tmp_path / "site.toml"
    config.write_text('[alerts.rules.worker_down]\nkpi = "waiting_contacts"\ncomparison = ">"\nraise_threshold = 5\n')
    result = run(sys.executable, "-m", "streams.prometheus_rules", "--config", str(config),
                 "--output-dir", str(tmp_path / "out"), cwd=ROOT)
    assert result.returncode == 2 and "FloorwatchWorkerDown" in result.stderr
    assert not (tmp_path / "out").exists()
