"""The Faust application: thin agents around the pure modules.

    input topics ──ingest──▶ {app_id}-events (keyed by contact/agent/ticket) ──engine──▶ KPI state
         │                                                    (dedup on event_id, table-backed)
         └── rejected ──▶ cc.deadletter (reason, field, raw bytes, topic/partition/offset)

`ingest` is stateless: it validates, dead-letters what is bad, hashes personal data away and
re-keys each valid event by the entity whose lifecycle it belongs to, so that all events of one
contact, agent or ticket meet on one partition of the internal topic. `engine` owns the state on
that partition: the de-duplication memory now, the KPI state later.
"""

from __future__ import annotations

import logging
import socket
from importlib.metadata import PackageNotFoundError, version

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import EventT
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from models.deadletter import RejectReason
from models.events import EVENT_ADAPTER
from streams.config import Settings
from streams.dedup import ExpiryIndex
from streams.ingest import Decoder, Rejection, dead_letter
from streams.kafka_io import internal_events_topic
from streams.metrics import IngestCollector, IngestStats

log = logging.getLogger("floorwatch")
_PARTITIONS_PACKED = 1024  # kafka.partitions is at most 1024

try:
    __version__ = version("floorwatch")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+local"


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    from streams.kafka_io import client_options

    options = client_options(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism,
            ssl_context=options.get("ssl_context"),
        )
    return faust.SSLCredentials(options["ssl_context"])


class Floorwatch:
    """Builds the Faust app for one site's settings and holds what its agents share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self.worker_name = f"{socket.gethostname()}:{s.worker.web_port}"
        self.decoder = Decoder(settings.require_hash_key())
        self.stats = IngestStats()
        self.registry = CollectorRegistry(auto_describe=True)
        datadir = (s.worker.data_dir / f"{s.worker.app_id}-{s.worker.web_port}").resolve()
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            s.worker.app_id,
            broker=s.kafka.broker_urls,
            broker_credentials=_credentials(s),
            web_host=s.worker.web_host,
            web_port=s.worker.web_port,
            web_bind=s.worker.web_host,
            datadir=str(datadir),
            topic_partitions=s.kafka.partitions,
            topic_replication_factor=s.kafka.replication_factor,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            store="memory://",
            autodiscover=False,
            web_enabled=True,
            # Let the producer batch for a few ms: with no linger every forwarded event and
            # every changelog write became its own tiny produce request.
            producer_linger=0.005,
        )
        app = self.app
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.inputs = app.topic(*s.topics.inputs, **raw)
        self.deadletter = app.topic(s.topics.deadletter, **raw)
        self.events = app.topic(internal_events_topic(s), internal=True,
                                partitions=s.kafka.partitions, **raw)
        # dedup key -> event time ms * 1024 + partition. Plain str and int, which Faust restores
        # natively (any other value_type is taken for a faust Record: recovery then logs
        # "has no attribute 'from_data'" and stalls). The partition lets a restarted worker rebuild
        # the expiry index of the partitions it owns from the restored table.
        self.seen = app.Table("seen-event-ids", partitions=s.kafka.partitions, key_type=str, value_type=int)
        self.expiry = ExpiryIndex(window_ms=s.worker.dedup_window_s * 1000)

        self.registry.register(IngestCollector(self.stats, __version__, lambda: len(self.seen.data)))
        setup_prometheus_sensors(app, pattern="/metrics", registry=self.registry,
                                 name_prefix="floorwatch_faust")
        app.agent(self.inputs, name="ingest")(self._ingest)
        app.agent(self.events, name="engine")(self._engine)
        self.seen.on_recover(self._rebuild_expiry)

    # -- agents ---------------------------------------------------------------------------------

    async def _ingest(self, stream: faust.StreamT) -> None:
        decode = self.decoder.decode
        stats = self.stats
        send_event = self.events.send_soon
        async for event in stream.events():
            message = event.message
            stats.received[message.topic] += 1
            try:
                decoded = decode(message.value)
                if isinstance(decoded, Rejection):
                    self._reject(event, decoded)
                    continue
                stats.forwarded[decoded.event_type] += 1
                send_event(key=decoded.entity_key.encode(), value=decoded.__pydantic_serializer__.to_json(decoded))
            except Exception as exc:  # a bad event never stops the agent
                log.exception("ingest: unexpected error on %s[%s]@%s", message.topic, message.partition,
                              message.offset)
                self._reject(event, Rejection(RejectReason.internal_error, f"internal error: {type(exc).__name__}"))

    def _reject(self, event: EventT, rejection: Rejection) -> None:
        message = event.message
        record = dead_letter(
            message.value, rejection, topic=message.topic, partition=message.partition,
            offset=message.offset, timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            key=message.key, hash_key=self.decoder.hash_key, worker=self.worker_name)
        self.stats.rejected[(rejection.reason.value, message.topic)] += 1
        self.deadletter.send_soon(key=message.key, value=record.model_dump_json().encode())

    async def _engine(self, stream: faust.StreamT) -> None:
        seen = self.seen
        stats = self.stats
        validate = EVENT_ADAPTER.validate_json
        context = {"customer_hash_key": self.decoder.hash_key}
        async for event in stream.events():
            partition = event.message.partition
            try:
                decoded = validate(event.message.value, context=context)
            except ValidationError:  # only our own ingest writes here; never expected
                log.exception("engine: undecodable internal record at offset %s", event.message.offset)
                continue
            dedup_key = f"{decoded.tenant}|{decoded.source}|{decoded.event_id}"
            if dedup_key in seen:
                stats.duplicates[decoded.event_type] += 1
                continue
            event_ms = int(decoded.occurred_at.timestamp() * 1000)
            seen[dedup_key] = event_ms * _PARTITIONS_PACKED + partition
            expiry = self.expiry
            expiry.add(partition, dedup_key, event_ms)
            stats.accepted[decoded.event_type] += 1
            if expiry.due(partition):
                for key in expiry.pop_expired(partition):
                    seen.pop(key, None)

    async def _rebuild_expiry(self) -> None:
        """After a (re)assignment, index the ids the table now holds, by the partition owning them."""
        self.expiry = expiry = ExpiryIndex(window_ms=self.expiry.window_ms)
        for key, value in list(self.seen.data.items()):
            event_ms, partition = divmod(value, _PARTITIONS_PACKED)
            expiry.add(partition, key, event_ms)
