"""The Grafana dashboards (grafana/generate.py -> grafana/dashboards/*.json).

- drift: the committed JSON is what the generator writes;
- structure: fixed uids, refresh no faster than the scrape interval, a unit and the Prometheus datasource on
  every panel, thresholds on the wallboard tiles, multi-value variables matched with =~ only, every metric
  name known (docs/metrics.md or the recording rules) and every query parsed by promtool;
- live: a real worker fed by the simulator (contacts, agents, tickets, surveys, bad records), a real
  Prometheus scraping it every second with the committed rules loaded, and every query of every panel and
  variable answered with data through Prometheus' HTTP API.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from streams.simulator import SimConfig, generate
from tests.conftest import REPO, free_port, run, settings_for, total
from tests.test_alerting_e2e import LOGS, Server, prom_query
from tests.test_ingest_integration import produce
from tests.test_prometheus_rules import tool

GENERATOR = REPO / "grafana" / "generate.py"
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
METRICS_DOC = REPO / "docs" / "metrics.md"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
UIDS = ["floorwatch-wallboard", "floorwatch-queue-detail", "floorwatch-agents", "floorwatch-tickets",
        "floorwatch-quality", "floorwatch-pipeline"]
# Grafana's built-in interval variables, as a dashboard at 15 s steps over a few hours would set them.
BUILTIN_VALUES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Series Prometheus makes itself, not the worker.
PROMETHEUS_SERIES = {"up"}


def load_generator():
    """grafana/generate.py by path: `grafana/` is a folder, not a package (see the module's docstring)."""
    spec = importlib.util.spec_from_file_location("floorwatch_grafana_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration)
    assert match, f"not a duration: {duration!r}"
    return int(match[1]) * units[match[2]]


def scrape_interval() -> float:
    match = re.search(r"^\s*scrape_interval:\s*(\S+)", PROMETHEUS_CONFIG.read_text(), re.M)
    assert match, f"no scrape_interval in {PROMETHEUS_CONFIG}"
    return seconds(match[1])


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel that shows data (rows are containers; a collapsed row holds its panels)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def variables(dashboard: dict) -> list[dict]:
    return dashboard.get("templating", {}).get("list", [])


def variable_values(dashboard: dict) -> dict[str, str]:
    """What each variable becomes in a test query: a regex matching all for multi-value ones (queries match
    them with =~), the default for single-value ones."""
    values = {}
    for var in variables(dashboard):
        if var.get("multi") or var.get("includeAll"):
            values[var["name"]] = ".+"
        else:
            current = var["current"]["value"]
            values[var["name"]] = current[0] if isinstance(current, list) else current
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable interpolation, enough for our queries; an unknown variable is an error."""
    def replace(match: re.Match) -> str:
        name = match[1] or match[2]
        if name.isdigit():          # "$1" in label_replace is a regex group, not a variable
            return match[0]
        if name in BUILTIN_VALUES:
            return BUILTIN_VALUES[name]
        assert name in values, f"unknown variable ${name} in {expr!r}"
        return values[name]
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", replace, expr)


def variable_query(query: str | dict) -> str:
    """label_values(selector, label) as the PromQL that finds the same values."""
    text = query["query"] if isinstance(query, dict) else query
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip(), re.S)
    assert match, f"unsupported variable query {text!r}"
    return f"count by ({match[2]}) ({match[1]})"


def all_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL with the variables filled in) of every panel target and every query variable."""
    values = variable_values(dashboard)
    out = [(f"{dashboard['uid']} / variable ${var['name']}", substitute(variable_query(var["query"]), values))
           for var in variables(dashboard) if var["type"] == "query"]
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"{dashboard['uid']} / {panel['title']} / {target['refId']}",
                        substitute(target["expr"], values)))
    return out


def known_metric_names() -> set[str]:
    """Families documented in docs/metrics.md, recording rules and the series those rules read."""
    names = set(re.findall(r"`(floorwatch_[a-z0-9_]+)`", METRICS_DOC.read_text()))
    recording = (RULES_DIR / "floorwatch-recording.yml").read_text()
    names |= set(re.findall(r"record:\s*(\S+)", recording))
    names |= set(re.findall(r"\b(floorwatch_[a-z0-9_]+)\b", recording))
    return names | PROMETHEUS_SERIES


def metric_names(expr: str) -> set[str]:
    """Metric names in a query: ours (floorwatch_*), recording rules (with colons) and Prometheus' own."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    names = set(re.findall(r"(?<![\w:])(floorwatch_\w+|[a-z_]+:[\w:]+)", without_strings))
    names |= {name for name in PROMETHEUS_SERIES if re.search(rf"(?<![\w:]){name}\s*\{{", without_strings)}
    return names


# -- drift ----------------------------------------------------------------------------------------------

def test_committed_dashboards_are_what_the_generator_writes():
    generated = load_generator().render()
    assert sorted(generated) == sorted(f"{uid}.json" for uid in UIDS)
    on_disk = {path.name: path.read_text() for path in DASHBOARD_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(generated), "grafana/dashboards holds exactly the generated files"
    stale = [name for name, text in generated.items() if on_disk[name] != text]
    assert not stale, f"stale: {stale}; run python grafana/generate.py"


def test_generator_check_mode_reports_drift(tmp_path):
    generator = load_generator()
    assert generator.main(["--output-dir", str(tmp_path)]) == 0
    assert generator.main(["--check", "--output-dir", str(tmp_path)]) == 0
    wallboard = tmp_path / "floorwatch-wallboard.json"
    wallboard.write_text(wallboard.read_text().replace('"refresh": "15s"', '"refresh": "5s"'))
    assert generator.main(["--check", "--output-dir", str(tmp_path)]) == 1


# -- structure ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("uid", UIDS)
def test_dashboard_structure(uid):
    dashboard = committed()[uid]
    assert dashboard["uid"] == uid
    assert dashboard["title"].strip()
    assert seconds(dashboard["refresh"]) >= scrape_interval(), \
        f"{uid} refreshes every {dashboard['refresh']}, faster than Prometheus scrapes"
    assert dashboard["time"]["from"].startswith("now-") and dashboard["time"]["to"] == "now"
    shown = list(panels(dashboard))
    assert shown, f"{uid} has no panels"
    ids = [p["id"] for p in dashboard["panels"]] + [c["id"] for p in dashboard["panels"] for c in p.get("panels") or []]
    assert len(ids) == len(set(ids)) and 0 not in ids, f"{uid}: panel ids must be unique and set: {ids}"
    problems = []
    for panel in shown:
        where = f"{uid} / {panel.get('title')!r}"
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if not defaults.get("unit"):
            problems.append(f"{where}: no unit")
        if panel.get("datasource") != {"type": "prometheus", "uid": "prometheus"}:
            problems.append(f"{where}: datasource {panel.get('datasource')}")
        if not panel.get("targets"):
            problems.append(f"{where}: no query")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "prometheus" or not target.get("expr", "").strip():
                problems.append(f"{where} / {target.get('refId')}: datasource or expr missing")
        if uid == "floorwatch-wallboard" and panel["type"] in ("stat", "gauge"):
            if len(defaults.get("thresholds", {}).get("steps", [])) < 2:
                problems.append(f"{where}: a wallboard tile needs threshold colours")
    for var in variables(dashboard):
        if var["type"] == "query" and var.get("datasource", {}).get("uid") != "prometheus":
            problems.append(f"{uid} / ${var['name']}: datasource {var.get('datasource')}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("uid", UIDS)
def test_multi_value_variables_are_matched_as_regexes(uid):
    """Grafana turns several selected values into a regex (a|b): `label="$var"` would match nothing."""
    dashboard = committed()[uid]
    multi = [v["name"] for v in variables(dashboard) if v.get("multi") or v.get("includeAll")]
    texts = [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]
    texts += [(f"${v['name']}", str(v.get("query"))) for v in variables(dashboard)]
    wrong = [(where, name) for where, text in texts for name in multi
             if re.search(rf'(?<![=!~])!?=\s*"\$\{{?{name}\b', text)]
    assert not wrong, f"multi-value variables matched with = or != instead of =~ / !~: {wrong}"


def test_every_metric_name_is_documented_or_recorded():
    known = known_metric_names()
    unknown = {(where, name) for dashboard in committed().values() for where, expr in all_queries(dashboard)
               for name in metric_names(expr) if name not in known}
    assert not unknown, "metrics neither in docs/metrics.md nor in the recording rules:\n" + \
        "\n".join(f"{where}: {name}" for where, name in sorted(unknown))


def test_every_query_parses(tmp_path):
    """promtool has no query linter of its own; it parses the expression of every rule it checks."""
    promtool = tool("promtool", "prometheus")
    queries = [q for dashboard in committed().values() for q in all_queries(dashboard)]
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{n}:check", "expr": expr} for n, (_, expr) in enumerate(queries)]}]},
        indent=1))   # JSON is YAML
    checked = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True,
                             timeout=60)
    if checked.returncode != 0:
        numbered = "\n".join(f"query_{n}: {where}: {expr}" for n, (where, expr) in enumerate(queries))
        pytest.fail(f"promtool rejects a dashboard query:\n{checked.stdout}{checked.stderr}\n{numbered}")
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout, checked.stdout


# -- live -----------------------------------------------------------------------------------------------

SIM_HOURS = 1.5      # enough for every window, ticket and survey kind to have series; produced in seconds
BAD_RATIO = 0.02     # malformed, invalid and duplicate records: the dead-letter and duplicate panels


def prometheus_config(target: str) -> str:
    return f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES_DIR}/*.yml
scrape_configs:
  - job_name: floorwatch
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""


@pytest.mark.integration
def test_every_panel_query_returns_data_from_a_live_worker(request, kafka_bootstrap, make_worker, tmp_path):
    prometheus_bin = tool("prometheus", "prometheus")
    started = time.monotonic()
    messages = list(generate(SimConfig(seed=3, duration_s=SIM_HOURS * 3600, rate=30, bad_ratio=BAD_RATIO)))
    kinds = {m.kind for m in messages}
    assert {"valid", "duplicate"} <= kinds and len(kinds) > 2, kinds
    assert {m.topic for m in messages} >= {"telephony", "chat", "agent", "ticket", "survey"}
    settings, env = settings_for(kafka_bootstrap, FLOORWATCH_WORKER__SNAPSHOT_INTERVAL_S="1")
    worker = make_worker(settings, env).start()
    worker.wait_for(lambda s: total(s, "floorwatch_partitions_owned") == settings.kafka.partitions,
                    what="partitions owned")

    (tmp_path / "prometheus.yml").write_text(
        prometheus_config(f"{settings.worker.web_host}:{settings.worker.web_port}"))
    port = free_port()
    prometheus = Server("prometheus", [
        prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{port}"],
        port, LOGS / f"{request.node.name}-prometheus.log")
    try:
        prometheus.start()
        run(produce(settings, messages))
        with_records = sum(1 for m in messages if m.kind in ("valid", "duplicate"))
        applied = worker.wait_for(lambda s: total(s, "floorwatch_ingest_valid_events_total") >= with_records,
                                  what=f"{with_records} valid records applied")
        accepted = total(applied, "floorwatch_ingest_accepted_events_total")

        def prometheus_state() -> dict[str, list]:
            return {"accepted": prom_query(prometheus, "sum(floorwatch_ingest_accepted_events_total)"),
                    "recorded": prom_query(prometheus,
                                           "count(queue_channel_window:floorwatch_queue_service_level:ratio)"),
                    # rate() needs two samples in its range
                    "samples": prom_query(prometheus, "count_over_time(floorwatch_partitions_owned[1m])")}

        deadline = time.monotonic() + 30
        while True:
            state = prometheus_state()
            if (state["accepted"] and float(state["accepted"][0]["value"][1]) >= accepted and state["recorded"]
                    and state["samples"] and float(state["samples"][0]["value"][1]) >= 3):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus did not get the worker's data within 30 s (worker accepted {accepted}): "
                            f"{state}\n{prometheus.log_tail()}")
            time.sleep(0.5)
        time.sleep(2)   # a scrape and a rule evaluation after the full count

        queries = [q for dashboard in committed().values() for q in all_queries(dashboard)]
        empty = [(where, expr) for where, expr in queries if not prom_query(prometheus, expr)]
        # One more round for stragglers (a recording rule evaluated a second after the scrape).
        if empty:
            time.sleep(3)
            empty = [(where, expr) for where, expr in empty if not prom_query(prometheus, expr)]
        report = "\n".join(f"- {where}:\n    {expr}" for where, expr in empty)
        assert not empty, f"{len(empty)} of {len(queries)} dashboard queries returned no data:\n{report}"
        print(f"{len(queries)} dashboard queries answered with data "
              f"({time.monotonic() - started:.1f} s, {len(messages)} records)")
    finally:
        prometheus.stop()
