"""Plain aiokafka clients built from `KafkaSettings` (producer, consumer, admin), security included.

Used outside the Faust worker: the simulator, replay, topic set-up, tests and the bench.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.config import KafkaSettings, Settings


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
        if kafka.ssl_certfile:
            context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return options


def producer(kafka: KafkaSettings, **extra: Any) -> AIOKafkaProducer:
    # acks=all + idempotence: the simulator and replay must not lose or duplicate what they send.
    return AIOKafkaProducer(**client_options(kafka), acks="all", enable_idempotence=True,
                            linger_ms=5, max_batch_size=256 * 1024, **extra)


def consumer(kafka: KafkaSettings, *topics: str, **extra: Any) -> AIOKafkaConsumer:
    extra.setdefault("auto_offset_reset", "earliest")
    extra.setdefault("enable_auto_commit", False)
    return AIOKafkaConsumer(*topics, **client_options(kafka), **extra)


def internal_events_topic(settings: Settings) -> str:
    """The internal topic carrying valid events re-keyed by entity, from ingest to the engine."""
    return f"{settings.worker.app_id}-events"


def queue_partials_topic(settings: Settings) -> str:
    """The internal topic carrying each partition's partial queue figures to the queue's owner."""
    return f"{settings.worker.app_id}-queue-partials"


def side_topic(settings: Settings) -> str:
    """The internal topic carrying side entries (chat legs, customer facts) to their target's partition."""
    return f"{settings.worker.app_id}-side"


def all_topics(settings: Settings) -> list[str]:
    """Every topic an agent consumes or a worker writes, except the table changelogs.

    They must exist before a worker starts: a Faust consumer that subscribes while one of its
    source topics is missing ignores that topic for the whole run (even if Faust itself creates
    it a moment later, as it does for internal topics).
    """
    t = settings.topics
    return [*t.inputs, t.snapshots, t.alerts, t.deadletter, internal_events_topic(settings),
            queue_partials_topic(settings), side_topic(settings)]


async def ensure_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create missing topics with the configured partition count; return the ones created."""
    names = list(names if names is not None else all_topics(settings))
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n not in existing]
        if wanted:
            try:
                await admin.create_topics([
                    NewTopic(n, num_partitions=settings.kafka.partitions,
                             replication_factor=settings.kafka.replication_factor)
                    for n in wanted])
            except TopicAlreadyExistsError:
                pass  # another process created them between our look-up and create
        return wanted
    finally:
        await admin.close()
