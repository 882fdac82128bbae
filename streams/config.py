"""Configuration: one TOML file for the site plus FLOORWATCH_* environment variables.

Precedence, highest first: environment variables (nested with `__`, e.g.
FLOORWATCH_KAFKA__BOOTSTRAP_SERVERS), the TOML file (`--config FILE` or FLOORWATCH_CONFIG), defaults.
Invalid configuration fails at start with `ConfigError`, whose message names every bad field.
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from models.events import Channel
from streams.alert_rules import AlertSettings

CONFIG_ENV = "FLOORWATCH_CONFIG"


class ConfigError(ValueError):
    """Invalid configuration; the message names each offending field and where it came from."""


class ServiceLevelFormula(StrEnum):
    """How service level is computed (the vendors differ; see the KPI specification, section 3)."""

    answered_of_offered_excl_short = "answered_of_offered_excl_short"
    answered_of_answered = "answered_of_answered"
    met_of_removed = "met_of_removed"
    answered_of_offered = "answered_of_offered"


_Strict = ConfigDict(extra="forbid")

# Default service-level thresholds per channel, in seconds (voice 20 s, chat 60 s per the spec;
# asynchronous channels measure in hours, so their defaults are wider).
DEFAULT_SL_THRESHOLD_S: dict[Channel, float] = {
    Channel.voice: 20.0,
    Channel.callback: 20.0,
    Channel.chat: 60.0,
    Channel.messaging: 3600.0,
    Channel.email: 4 * 3600.0,
}


class QueueSettings(BaseModel):
    model_config = _Strict

    channel: Channel = Field(default=Channel.voice, description="Channel the queue serves.")
    sl_threshold_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Service-level threshold T in seconds; default by channel (voice 20, chat 60).")
    sl_formula: ServiceLevelFormula = Field(
        default=ServiceLevelFormula.answered_of_offered_excl_short, description="Service-level formula.")
    sl_target: Annotated[float, Field(gt=0, le=1)] = Field(default=0.80, description="Service-level target, 0..1.")
    short_abandon_s: Annotated[float, Field(ge=0)] = Field(
        default=5.0, description="Abandons with a shorter wait are short abandons.")
    abandon_rate_excludes_short: bool = Field(
        default=True, description="Leave short abandons out of the abandon rate.")
    asa_target_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="ASA target in seconds (alert rules with threshold \"target\"); default: the "
                                  "service-level threshold.")

    @property
    def threshold_s(self) -> float:
        return self.sl_threshold_s if self.sl_threshold_s is not None else DEFAULT_SL_THRESHOLD_S[self.channel]

    @property
    def asa_target(self) -> float:
        return self.asa_target_s if self.asa_target_s is not None else self.threshold_s


class SiteSettings(BaseModel):
    model_config = _Strict

    name: str = Field(default="default", description="Site name, shown in logs and snapshots.")
    timezone: str = Field(default="UTC", description="IANA time zone of the site: interval bounds and \"today\" follow it.")
    interval_minutes: Literal[15, 30, 60] = Field(default=15, description="Length of the clock-aligned reporting intervals.")
    rolling_windows_minutes: tuple[Annotated[int, Field(gt=0, le=1440)], ...] = Field(
        default=(5, 15, 60), description="Trailing windows, in minutes.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin, America/New_York)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class KafkaSettings(BaseModel):
    model_config = _Strict

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to talk to Kafka; SASL_* need the sasl_* settings.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism.")
    sasl_username: str | None = Field(default=None, description="SASL user.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (never logged).")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify the brokers (default: system CAs).")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate for mutual TLS.")
    ssl_keyfile: Path | None = Field(default=None, description="Key of the client certificate.")
    partitions: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=4, description="Partitions of every topic Floorwatch creates (inputs, internal, changelogs).")
    replication_factor: Annotated[int, Field(ge=1)] = Field(
        default=1, description="Replication of the topics Floorwatch creates (3 in production).")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            missing = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @property
    def broker_urls(self) -> list[str]:
        return [f"kafka://{s.strip()}" for s in self.bootstrap_servers.split(",")]


class TopicSettings(BaseModel):
    model_config = _Strict

    telephony: str = Field(default="cc.telephony.events", description="Input: voice, callback and e-mail contact events.")
    chat: str = Field(default="cc.chat.events", description="Input: chat contacts and chat.message.")
    ticket: str = Field(default="cc.ticket.events", description="Input: ticket events.")
    agent: str = Field(default="cc.agent.events", description="Input: agent state events.")
    survey: str = Field(default="cc.survey.events", description="Input: survey responses.")
    snapshots: str = Field(default="cc.kpi.snapshots", description="Output: KPI snapshots per queue and window.")
    alerts: str = Field(default="cc.sla.alerts", description="Output: SLA alert events.")
    deadletter: str = Field(default="cc.deadletter", description="Output: every rejected input record with its reason.")

    @field_validator("*")
    @classmethod
    def _legal_name(cls, value: str) -> str:
        if not value or len(value) > 249 or not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError(f"{value!r} is not a legal Kafka topic name")
        return value

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.telephony, self.chat, self.ticket, self.agent, self.survey)

    def input_for(self, event_type: str, channel: str | None = None) -> str:
        """The input topic an event of this type belongs on (the simulator's and replay's routing)."""
        family = event_type.split(".", 1)[0]
        if family == "chat" or (family == "contact" and channel == "chat"):
            return self.chat
        return {"contact": self.telephony, "agent": self.agent, "ticket": self.ticket,
                "survey": self.survey}.get(family, self.telephony)


class QualitySettings(BaseModel):
    model_config = _Strict

    repeat_window_s: Annotated[float, Field(gt=0, le=30 * 24 * 3600)] = Field(
        default=72 * 3600.0,
        description="Repeat-based FCR: a handled contact is resolved on first contact when the same customer "
                    "starts no other contact or ticket within this many seconds after its ACW.")


class WorkerSettings(BaseModel):
    model_config = _Strict

    app_id: str = Field(default="floorwatch", description="Faust application id: consumer group and internal topic prefix.")
    web_host: str = Field(default="127.0.0.1", description="Address of the worker's web server (/metrics); 0.0.0.0 in containers.")
    web_port: Annotated[int, Field(ge=1, le=65535)] = Field(default=6066, description="Port of /metrics.")
    data_dir: Path = Field(default=Path(".floorwatch/worker"), description="Local state of the worker (table stores).")
    session_timeout_s: Annotated[float, Field(ge=6, le=300)] = Field(
        default=30.0,
        description="Kafka consumer-group session timeout: how long a crashed worker's partitions stay "
                    "assigned to it before the others take them over. Must exceed the worker's longest "
                    "pause (a full garbage collection of a large state: see bench/README.md, memory).")
    snapshot_interval_s: Annotated[float, Field(ge=0.5, le=300)] = Field(
        default=5.0, description="How often queue snapshots and the queue-level figures are refreshed, in seconds.")
    metrics_max_age_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.1,
        description="How stale the KPIs on /metrics may be, in seconds: they are rebuilt from the state at most "
                    "this often (a rebuild takes tens of ms on the engine's loop at a large site).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Worker log level.")
    ingest_in_process: bool = Field(
        default=False, description="Run the ingest loop inside the worker process instead of a child process; for debugging.")


class PrivacySettings(BaseModel):
    model_config = _Strict

    customer_hash_key: SecretStr | None = Field(
        default=None, description="Secret for the keyed hash of customer_ref (HMAC-SHA256). Required by the worker.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLOORWATCH_", env_nested_delimiter="__", extra="forbid", case_sensitive=False)

    site: SiteSettings = SiteSettings()
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    quality: QualitySettings = QualitySettings()
    privacy: PrivacySettings = PrivacySettings()
    queue_defaults: QueueSettings = Field(
        default_factory=QueueSettings, description="Settings for queues not listed under [queues].")
    queues: dict[str, QueueSettings] = Field(default_factory=dict)
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="SLA alert rules (docs/alerts.md).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return env_settings, init_settings

    def queue(self, name: str, channel: Channel | None = None) -> QueueSettings:
        found = self.queues.get(name)
        if found is not None:
            return found
        if channel is not None and channel != self.queue_defaults.channel:
            return self.queue_defaults.model_copy(update={"channel": channel})
        return self.queue_defaults

    def require_hash_key(self) -> bytes:
        key = self.privacy.customer_hash_key
        if key is None or not key.get_secret_value():
            raise ConfigError(
                "privacy.customer_hash_key: required (set it in the config file or "
                "FLOORWATCH_PRIVACY__CUSTOMER_HASH_KEY); customer identities are stored only as keyed hashes")
        return key.get_secret_value().encode()


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for item in error.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in item["loc"]) or "(root)"
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {field}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration; raise ConfigError naming the bad fields."""
    path = path or os.environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    origin = "defaults and FLOORWATCH_* environment"
    if path:
        file = Path(path)
        origin = f"{file} and FLOORWATCH_* environment"
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    for key, value in overrides.items():
        data.setdefault(key, {}).update(value) if isinstance(value, dict) else data.__setitem__(key, value)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None
