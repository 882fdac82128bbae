"""Configuration: file plus environment, and errors that name the field."""

import pytest

from models.events import Channel
from streams.config import ConfigError, ServiceLevelFormula, load_settings


def write(tmp_path, text):
    path = tmp_path / "floorwatch.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_specification(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    s = load_settings()
    assert s.topics.inputs == ("cc.telephony.events", "cc.chat.events", "cc.ticket.events",
                               "cc.agent.events", "cc.survey.events")
    assert (s.topics.snapshots, s.topics.alerts, s.topics.deadletter) == (
        "cc.kpi.snapshots", "cc.sla.alerts", "cc.deadletter")
    assert s.site.interval_minutes == 15 and s.site.rolling_windows_minutes == (5, 15, 60)
    q = s.queue("anything")
    assert q.sl_formula is ServiceLevelFormula.answered_of_offered_excl_short
    assert (q.sl_target, q.short_abandon_s, q.threshold_s) == (0.80, 5.0, 20.0)
    assert s.queue("webchat", Channel.chat).threshold_s == 60.0


def test_file_and_environment(tmp_path, monkeypatch):
    path = write(tmp_path, """
[site]
timezone = "Europe/Berlin"
interval_minutes = 30

[kafka]
bootstrap_servers = "kafka-1:9092,kafka-2:9092"
partitions = 8

[queues.billing]
channel = "voice"
sl_threshold_s = 30
sl_formula = "met_of_removed"
sl_target = 0.9

[queues.web]
channel = "chat"
""")
    monkeypatch.setenv("FLOORWATCH_KAFKA__PARTITIONS", "12")
    monkeypatch.setenv("FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY", "s3cret")
    s = load_settings(path)
    assert s.site.tz.key == "Europe/Berlin" and s.site.interval_minutes == 30
    assert s.kafka.partitions == 12, "the environment overrides the file"
    assert s.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092", "file values the environment leaves alone stay"
    assert s.queue("billing").sl_formula is ServiceLevelFormula.met_of_removed
    assert s.queue("billing").threshold_s == 30
    assert s.queue("web").threshold_s == 60
    assert s.require_hash_key() == b"s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize("text, field", [
    ('[site]\ntimezone = "Mars/Olympus"', "site.timezone"),
    ('[site]\ninterval_minutes = 20', "site.interval_minutes"),
    ('[queues.billing]\nsl_formula = "fastest"', "queues.billing.sl_formula"),
    ('[queues.billing]\nsl_target = 1.5', "queues.billing.sl_target"),
    ('[queues.billing]\nshort_abandon_s = -1', "queues.billing.short_abandon_s"),
    ('[kafka]\nbootstrap_servers = "nohost"', "kafka.bootstrap_servers"),
    ('[kafka]\nsecurity_protocol = "SASL_SSL"', "kafka"),
    ('[topics]\ndeadletter = "bad topic!"', "topics.deadletter"),
    ('[worker]\nweb_port = 70000', "worker.web_port"),
    ('[wroker]\nweb_port = 1', "wroker"),
])
def test_invalid_configuration_names_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert f"  {field}" in str(info.value), str(info.value)


def test_invalid_environment_names_the_field(monkeypatch):
    monkeypatch.setenv("FLOORWATCH_WORKER__WEB_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="worker.web_port"):
        load_settings()


def test_sasl_needs_credentials_and_says_which(tmp_path):
    with pytest.raises(ConfigError, match="sasl_mechanism, sasl_username, sasl_password"):
        load_settings(write(tmp_path, '[kafka]\nsecurity_protocol = "SASL_SSL"'))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[site"))


def test_worker_requires_the_hash_key(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY", raising=False)
    with pytest.raises(ConfigError, match="privacy.customer_hash_key"):
        load_settings().require_hash_key()


def test_generated_reference_docs_are_current():
    from streams.docs import DOCS, GENERATED, README, readme_with_examples

    for name, render in GENERATED.items():
        assert (DOCS / name).read_text() == render(), f"docs/{name} drifted: run python -m streams.docs"
    text = README.read_text()
    assert readme_with_examples(text) == text, "README events block drifted: run python -m streams.docs"


@pytest.mark.parametrize("utc_hour", range(24))
def test_demo_zone_is_mid_morning_whatever_the_hour(utc_hour):
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from streams.demo import busy_zone

    now = datetime(2026, 11, 23, utc_hour, 30, tzinfo=UTC)
    assert now.astimezone(ZoneInfo(busy_zone(now))).hour == 10
