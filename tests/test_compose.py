"""docker-compose.yml, deploy/Dockerfile and Grafana provisioning, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema (vendored in
tests/data/compose-spec.json, Apache-2.0, from github.com/compose-spec/compose-spec), then against
the repository: every file it mounts or builds from exists, every service, volume and profile it
names is defined, images are pinned, the worker can be scaled, secrets are required variables, and
the pieces agree with each other (topics, ports, Prometheus discovery, Grafana uids).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml   # pyyaml, a dev extra

from streams.broker import KAFKA_VERSION
from streams.config import WorkerSettings, load_settings
from streams.kafka_io import all_topics

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"
OPERATIONS_GUIDE = REPO / "deploy" / "OPERATIONS.md"
WORKER = "worker"
WALLBOARD_UID = "floorwatch-wallboard"
GRAFANA_MINOR = "11.6"   # grafana-foundation-sdk 11.6.0 builds the dashboards

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|HASH_KEY|API_KEY|PRIVATE_KEY", re.IGNORECASE)


# -- helpers -----------------------------------------------------------------------------------

def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def interpolate(value: str, given: dict[str, str] | None = None) -> str:
    """Compose's interpolation: defaults used, required variables taken from `given`."""
    given = given or {}

    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in given:
            return given[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no default and the test gave no value")

    return VARIABLE.sub(replace, value)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def split_volume(spec: str) -> tuple[str, str]:
    """`SOURCE:TARGET[:MODE]` -> (source, target)."""
    parts = spec.split(":")
    assert len(parts) in (2, 3), f"volume {spec!r}: expected SOURCE:TARGET[:MODE]"
    return parts[0], parts[1]


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for spec in service.get("volumes", []):
        source, target = split_volume(spec)
        if source.startswith((".", "/")):
            mounts.append(((REPO / source).resolve(), target))
    return mounts


def host_path(service: dict, container_path: str) -> Path:
    """The repository file a container path comes from, through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return source / wanted.relative_to(target)
    raise AssertionError(f"{container_path} is not inside any bind mount")


def published_host_port(spec) -> str | None:
    """The host side of a short port spec ("[IP:]HOST:CONTAINER"), or None when only a container port."""
    parts = interpolate(str(spec)).split(":")
    return parts[-2] if len(parts) >= 2 else None


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped) per stage."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += (" " if current else "") + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current)
            current = ""
    stages: list[list[str]] = [[]]
    for line in lines:
        if line.upper().startswith("FROM ") and stages[-1] and any(
                s.upper().startswith("FROM ") for s in stages[-1]):
            stages.append([])
        stages[-1].append(line)
    return stages


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) + 1:].strip() for line in stage if line.upper().startswith(keyword + " ")]


# -- the Compose Specification -------------------------------------------------------------------

def test_compose_file_matches_the_compose_specification(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors)


def test_the_schema_rejects_an_invalid_compose_file():
    # Guards the guard: a misspelt key must fail validation.
    schema = json.loads(SCHEMA_FILE.read_text())
    broken = {"services": {"worker": {"image": "floorwatch:0.1.0", "restrat": "always"}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


# -- references ----------------------------------------------------------------------------------

def test_build_context_and_dockerfile_exist(compose):
    builds = {name: s["build"] for name, s in services(compose).items() if "build" in s}
    assert WORKER in builds, "the worker is built from this repository"
    for name, build in builds.items():
        context = REPO / (build if isinstance(build, str) else build.get("context", "."))
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"


def test_bind_mounted_files_and_directories_exist(compose):
    for name, service in services(compose).items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: mounts {source} at {target}, which does not exist"
            assert REPO in source.parents, f"{name}: mounts {source} from outside the repository"


def test_named_volumes_are_declared_and_used(compose):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services(compose).items():
        for spec in service.get("volumes", []):
            source, _ = split_volume(spec)
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source!r} is not declared under volumes:"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"


def test_networks_are_declared(compose):
    declared = set(compose.get("networks") or {}) | {"default"}
    for name, service in services(compose).items():
        networks = service.get("networks") or []
        for network in networks if isinstance(networks, list) else networks.keys():
            assert network in declared, f"{name}: network {network!r} is not declared"


def test_depends_on_targets_exist_and_share_profiles(compose):
    all_services = services(compose)
    for name, service in all_services.items():
        for target in service.get("depends_on") or {}:
            assert target in all_services, f"{name} depends on unknown service {target!r}"
            # A service outside a profile cannot wait for one inside it: `up` would fail.
            target_profiles = set(all_services[target].get("profiles", []))
            assert target_profiles <= set(service.get("profiles", [])) or not target_profiles, \
                f"{name} depends on {target}, which only runs with profiles {sorted(target_profiles)}"


def test_simulator_only_runs_in_the_demo_profile(compose):
    profiled = {name: s["profiles"] for name, s in services(compose).items() if s.get("profiles")}
    assert profiled == {"simulator": ["demo"]}


def test_every_variable_is_documented_in_the_operations_guide():
    guide = OPERATIONS_GUIDE.read_text()
    names = {m["name"] for m in VARIABLE.finditer(COMPOSE_FILE.read_text())}
    undocumented = sorted(n for n in names if f"`{n}`" not in guide)
    assert not undocumented, f"variables of docker-compose.yml missing in deploy/OPERATIONS.md: {undocumented}"


# -- images, scaling, health, secrets --------------------------------------------------------------

def test_images_are_pinned(compose):
    for name, service in services(compose).items():
        image = service.get("image")
        assert image, f"{name}: no image name (built images need one too, so they are shared)"
        tag = image_tag(image)
        assert "@sha256:" in image or (tag and tag != "latest" and "$" not in tag), \
            f"{name}: image {image!r} is not pinned to a version"


def test_kafka_and_grafana_versions(compose):
    assert image_tag(services(compose)["kafka"]["image"]) == KAFKA_VERSION
    assert services(compose)["kafka"]["image"].startswith("apache/kafka:")
    grafana_tag = image_tag(services(compose)["grafana"]["image"])
    assert grafana_tag.startswith(GRAFANA_MINOR + "."), f"Grafana {grafana_tag}, dashboards target {GRAFANA_MINOR}"


def test_worker_can_be_scaled(compose):
    worker = services(compose)[WORKER]
    assert "container_name" not in worker, "a fixed container name allows one replica only"
    fixed = [p for p in worker.get("ports", []) if published_host_port(p)]
    assert not fixed, f"the worker publishes host ports {fixed}: a second replica could not bind them"
    assert "hostname" not in worker


def test_host_ports_are_unique(compose):
    seen: dict[str, str] = {}
    for name, service in services(compose).items():
        for spec in service.get("ports", []):
            port = published_host_port(spec)
            if port:
                assert port not in seen, f"host port {port} published by {seen[port]} and {name}"
                seen[port] = name


def test_long_running_services_have_healthchecks_and_restart_policies(compose):
    image_healthcheck = any(instructions(stage, "HEALTHCHECK") for stage in dockerfile_stages()[-1:])
    for name, service in services(compose).items():
        one_shot = service.get("restart") == "no"
        check = service.get("healthcheck")
        if one_shot or "profiles" in service:
            continue
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: no restart policy"
        if check is None:
            assert "build" in service and image_healthcheck, f"{name}: no healthcheck"
        else:
            assert not check.get("disable"), f"{name}: healthcheck disabled"
            assert check.get("test"), f"{name}: healthcheck without a test"


def test_services_of_the_floorwatch_image_that_serve_no_web_port_disable_its_healthcheck(compose):
    for name, service in services(compose).items():
        if "build" in service and name != WORKER:
            assert (service.get("healthcheck") or {}).get("disable") is True, \
                f"{name}: the image's /progress check would mark it unhealthy"


def test_no_literal_secrets(compose):
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                match = VARIABLE.fullmatch(value)
                assert match and match["op"] in (":?", "?"), \
                    f"{name}: {key} must be a required variable (${{VAR:?message}}), not a value"
    env = environment(services(compose)["grafana"])
    assert VARIABLE.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"])["op"] == ":?"
    env = environment(services(compose)[WORKER])
    assert VARIABLE.fullmatch(env["FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY"])["op"] == ":?"


# -- the pieces agree ------------------------------------------------------------------------------

def floorwatch_settings(service: dict, monkeypatch):
    """The Settings a Floorwatch container of this service would load from its environment."""
    for key in list(os.environ):
        if key.startswith("FLOORWATCH_"):
            monkeypatch.delenv(key)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, {"FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY": "test-key"}))
    return load_settings()


def test_floorwatch_environment_is_valid_configuration(compose, monkeypatch):
    documented = (REPO / "docs" / "configuration.md").read_text()
    for name, service in services(compose).items():
        if "build" not in service:
            continue
        for key in environment(service):
            if key.startswith("FLOORWATCH_"):
                assert f"`{key}`" in documented, f"{name}: {key} is no setting (docs/configuration.md)"
        settings = floorwatch_settings(service, monkeypatch)
        assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_topic_initialiser_runs_before_workers_with_the_same_partitions(compose, monkeypatch):
    all_services = services(compose)
    init = all_services["kafka-init"]
    script = "\n".join(init["entrypoint"])
    assert "ensure_topics(settings)" in script, "kafka-init must create streams.kafka_io.all_topics"
    compile(init["entrypoint"][-1], "kafka-init", "exec")
    for name in (WORKER, "simulator"):
        assert all_services[name]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    counts = {name: floorwatch_settings(all_services[name], monkeypatch).kafka.partitions
              for name in ("kafka-init", WORKER, "simulator")}
    assert len(set(counts.values())) == 1, f"partition counts differ: {counts}"
    broker_default = interpolate(environment(all_services["kafka"])["KAFKA_NUM_PARTITIONS"])
    assert int(broker_default) == counts[WORKER]
    settings = floorwatch_settings(init, monkeypatch)
    assert len(all_topics(settings)) == len(set(all_topics(settings)))


def test_prometheus_discovers_every_worker_replica_and_alertmanager(compose, monkeypatch):
    prometheus = services(compose)["prometheus"]
    config_path = host_path(prometheus, "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text())
    assert any(flag == "--config.file=/etc/prometheus/prometheus.yml" for flag in prometheus["command"])
    for pattern in config.get("rule_files", []):
        assert list(config_path.parent.glob(pattern)), f"rule_files {pattern!r} matches nothing"
    worker_port = floorwatch_settings(services(compose)[WORKER], monkeypatch).worker.web_port
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    discovery = jobs["floorwatch"]["dns_sd_configs"]
    assert any(WORKER in sd["names"] and sd["type"] == "A" and sd["port"] == worker_port for sd in discovery), \
        "the floorwatch job must resolve the worker service name (one A record per replica)"
    assert str(worker_port) in map(str, services(compose)[WORKER]["expose"])
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"] and "alertmanager" in services(compose)
    alertmanager = services(compose)["alertmanager"]
    assert host_path(alertmanager, "/etc/alertmanager/alertmanager.yml").is_file()


def test_grafana_provisioning(compose):
    grafana = services(compose)["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    datasources = [ds for f in sorted((provisioning / "datasources").glob("*.yml"))
                   for ds in yaml.safe_load(f.read_text())["datasources"]]
    by_uid = {ds["uid"]: ds for ds in datasources}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090" and "prometheus" in services(compose)
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers, "no dashboard provider"
    for provider in providers:
        folder = host_path(grafana, provider["options"]["path"])
        assert folder == (REPO / "grafana" / "dashboards").resolve()
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = host_path(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.is_file(), f"home dashboard {home} missing"
    assert json.loads(home.read_text())["uid"] == WALLBOARD_UID
    # Every data source a dashboard names is provisioned.
    used = set()
    for dashboard in (REPO / "grafana" / "dashboards").glob("*.json"):
        used |= set(re.findall(r'"uid":\s*"([^"$]+)"', json.dumps(_datasource_refs(json.loads(dashboard.read_text())))))
    assert used <= set(by_uid) | {"grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --"}, used - set(by_uid)


def _datasource_refs(node) -> list:
    """Every `datasource` object in a dashboard model."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                found.append(value)
            else:
                found.extend(_datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_datasource_refs(item))
    return found


# -- the Dockerfile --------------------------------------------------------------------------------

def test_dockerfile_is_multi_stage_with_pinned_bases():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "builder and runtime stages expected"
    preamble_args = dict(arg.split("=", 1) for arg in instructions(stages[0], "ARG") if "=" in arg)
    for stage in stages:
        base = instructions(stage, "FROM")[0].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: preamble_args.get(m[1], m[0]), base)
        tag = image_tag(base)
        assert tag and tag != "latest" and "$" not in tag, f"base image {base!r} is not pinned"
    assert any(re.search(r"(--from=|\bfrom=)builder\b", line) for line in stages[-1]), \
        "the runtime stage takes nothing from the builder"


def test_dockerfile_runtime_stage():
    runtime = dockerfile_stages()[-1]
    users = instructions(runtime, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime must not run as root"
    env = " ".join(instructions(runtime, "ENV"))
    assert "FLOORWATCH_WORKER__WEB_HOST=0.0.0.0" in env
    port = WorkerSettings().web_port
    assert f"FLOORWATCH_WORKER__WEB_PORT={port}" in env and str(port) in instructions(runtime, "EXPOSE")[0]
    healthcheck = instructions(runtime, "HEALTHCHECK")
    assert healthcheck and re.search(r"/(progress|metrics)\b", healthcheck[0])
    entrypoint = json.loads(instructions(runtime, "ENTRYPOINT")[0]) + json.loads(instructions(runtime, "CMD")[0])
    assert entrypoint == ["floorwatch", "worker"]


def test_dockerfile_copies_only_what_the_build_context_holds():
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    assert "*" in (REPO / ".dockerignore").read_text().splitlines(), ".dockerignore should be an allow-list"
    for stage in dockerfile_stages():
        for copy in instructions(stage, "COPY"):
            if "--from=" in copy:
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: missing"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
    assert ".env" not in allowed and ".venv" not in allowed
