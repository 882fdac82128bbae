"""The worker: a batched ingest loop and a Faust agent that owns the KPI state.

    input topics ──ingest (aiokafka loop)──▶ {app_id}-events ──engine (Faust agent)──▶ entity-records table
         │            one message per (partition, batch)           │  + aggregates (streams.partition)
         └── rejected ──▶ cc.deadletter                            └── /metrics (streams.exposition)

`ingest` (`streams.ingest_process`) runs in a child process of the worker by default, so that it and
the engine each have a core (`worker.ingest_in_process` keeps it in this process). It is stateless: it validates, dead-letters what is bad, hashes personal data away and routes
each valid event to the partition of the entity whose lifecycle it belongs to (contact, agent,
ticket), so that all events of one entity meet on one partition. It reads and writes in batches
with plain aiokafka clients: Faust's per-message machinery costs about 330 µs per event and stage
(docs/architecture.md), more than all of our own work, and a per-event internal hop starved the
engine while ingest had a backlog. It commits its input offsets only after the batch is written
(at least once); the engine's records recognise anything delivered twice.

`engine` receives one Faust event per batch. It applies the events to the partition's
`PartitionState` and writes each changed entity record once per batch to the table's changelog,
so the ids that guard a record and the state they guard always reach the changelog together. The
aggregates are rebuilt from the records when a partition is (re)assigned.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version

import faust
import orjson
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from models.deadletter import RejectReason
from models.events import EVENT_ADAPTER
from streams import transport
from streams.changelog import ChangelogWriter
from streams.config import Settings
from streams.exposition import CachedExposition, KpiCollector
from streams.ingest import Decoder, Rejection, dead_letter
from streams.ingest_process import _MAX_BATCH_LINES, Ingest, IngestSupervisor, entity_partition, worker_name
from streams.kafka_io import internal_events_topic, queue_partials_topic, side_topic
from streams.kpi.queues import QueueRules
from streams.kpi.windows import SiteClock
from streams.metrics import IngestCollector, IngestStats, merged
from streams.partition import (Outcome, PartitionConfig, PartitionState, TooLate, decode_parts,
                               event_parts)
from streams import wallboard
from streams.alert_rules import DEFAULT_RULES, PER_ENTITY
from streams.snapshots import (QUEUE_KPIS, LatestSnapshots, QueueLevelCollector, merge, partition_partials,
                               publish, published, queue_alerts)
from models.snapshots import AgentSnapshot

log = logging.getLogger("floorwatch")
# A batch message on the internal topic: one line per event,
# "topic\tpartition\toffset\ttimestamp_ms\tparts\tjson": `parts` is the event's compact form
# (`streams.partition.encode_parts`), all the engine needs, so it never validates an event again; the
# source position and the validated event's JSON travel with it for the dead-letter record of a
# too-late event. Lines without `parts` (written by an older ingest) are validated as before.
# `entity_partition` and `_MAX_BATCH_LINES` live in streams.ingest_process (imported above, re-exported).
__all__ = ["Floorwatch", "apply_batch", "entity_partition", "_MAX_BATCH_LINES"]
# Side entries per side-topic message: a rebuilt partition resends all of them at once (about 60 B each).
_SIDE_ENTRIES_PER_MESSAGE = 2000
# Agent snapshots built and sent between two chances for the engine to run (the snapshot timer shares
# its loop: thousands of agents at once held every event back for ~100 ms every 5 s, bench.latency).
_AGENT_SNAPSHOTS_PER_YIELD = 100
# Key of the entity-records table under which each partition keeps the newest internal offset applied
# to it. Written after the message's records on the same changelog partition: a restored partition
# resumes right after the records it restored, whatever offset the group committed (`_on_recovered`,
# `resume_positions`).
_APPLIED_PREFIX = "applied-offset:"


def applied_key(partition: int) -> str:
    return f"{_APPLIED_PREFIX}{partition}"


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
        self.worker_name = worker_name(s)
        self.decoder = Decoder(settings.require_hash_key())
        self.stats = IngestStats()
        # /metrics: the ingest counters live, the KPIs and Faust's sensors from a cache that the state
        # version invalidates (streams.exposition.CachedExposition).
        self.live_registry = CollectorRegistry(auto_describe=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self.state_version = 0   # bumped on every change of what the cached collectors read
        datadir = (s.worker.data_dir / f"{s.worker.app_id}-{s.worker.web_port}").resolve()
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = transport.App(   # faust.App with two consumer fixes (streams.transport)
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
            # Let the producer batch for a few ms: with no linger every changelog write became its
            # own tiny produce request.
            producer_linger=0.005,
            # The engine appends each batch's changelog records at once (streams.changelog): with
            # 16 KB batches (the default) a partition's batch is full after a few records and every
            # further append waits for it to drain.
            producer_max_batch_size=1_000_000,
            # Internal messages are batches of up to 1000 events (~0.5 MB): fetch many at once, or the
            # engine waits on fetch round trips between batches (1 MB per partition by default).
            consumer_max_fetch_size=16 * 1024 * 1024,
            # Faust's default (60 s) keeps a crashed worker's partitions idle for a minute.
            broker_session_timeout=s.worker.session_timeout_s,
            # Every value here is bytes we encode ourselves (orjson), table changelogs included.
            key_serializer="raw",
            value_serializer="raw",
        )
        app = self.app
        self.events_topic_name = internal_events_topic(s)
        self.events = app.topic(self.events_topic_name, internal=True, partitions=s.kafka.partitions,
                                key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        # entity key -> EntityRecord.encode(): bytes, which Faust restores natively (a value_type that
        # is not a faust Record is taken for one: recovery then logs "has no attribute 'from_data'").
        self.records = app.Table("entity-records", partitions=s.kafka.partitions, key_type=str, value_type=bytes)
        self.changelog = ChangelogWriter(lambda: app.producer._ensure_producer(),  # Faust's aiokafka producer
                                         self.records.changelog_topic.get_topic_name())
        clock = SiteClock.from_settings(s.site)
        self.alert_rules = s.alerts.active()
        self.queue_alert_rules = {name: rule for name, rule in self.alert_rules.items() if rule.kpi in QUEUE_KPIS}
        # SLA alert events (streams.alerts), keyed by the alert's key: its firing and resolved events
        # share a partition, in order.
        self.alerts_topic = app.topic(s.topics.alerts, key_type=bytes, value_type=bytes)
        self.partition_config = PartitionConfig(
            clock, functools.cache(lambda queue, channel: QueueRules.of(s.queue(queue, channel))),
            rolling_minutes=tuple(s.site.rolling_windows_minutes),
            repeat_window_us=round(s.quality.repeat_window_s * 1_000_000),
            entity_alert_rules={name: rule for name, rule in self.alert_rules.items() if rule.kpi in PER_ENTITY},
            site=s.site.name)
        self.states: dict[int, PartitionState] = {}   # the partitions owned and recovered
        self.clock = clock
        # Queue snapshots (streams.snapshots): partials per partition and queue -> the queue's owner.
        self.partials_topic_name = queue_partials_topic(s)
        self.partials = app.topic(self.partials_topic_name, internal=True, partitions=s.kafka.partitions,
                                  key_type=bytes, value_type=bytes)
        self.queue_records = app.Table("queue-snapshots", partitions=s.kafka.partitions, key_type=str,
                                       value_type=bytes)
        self.queue_changelog = ChangelogWriter(lambda: app.producer._ensure_producer(),
                                               self.queue_records.changelog_topic.get_topic_name())
        self.snapshots = app.topic(s.topics.snapshots, key_type=bytes, value_type=bytes)
        # Side entries (chat legs to the agent, customer facts to the customer): another partition's records.
        self.side_topic_name = side_topic(s)
        self.side = app.topic(self.side_topic_name, internal=True, partitions=s.kafka.partitions,
                              key_type=bytes, value_type=bytes)
        self._side_sent: dict[tuple[str, str], object] = {}
        self._side_lock: asyncio.Lock | None = None   # made in the running loop
        self._sent_partials: dict[tuple[int, str], bytes] = {}
        self.latest = LatestSnapshots(clock)
        # Ingest in a child process (default) reports its tallies; they add to the engine's own.
        self.ingest_supervisor = None if s.worker.ingest_in_process else IngestSupervisor(s)
        self.live_registry.register(IngestCollector(
            self.stats, __version__, self.ingest_supervisor.stats if self.ingest_supervisor else None))
        self.registry.register(KpiCollector(lambda: list(self.states.values()), s))
        self.registry.register(QueueLevelCollector(self._owned_latest))
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(self.registry, "floorwatch_faust"))
        self.exposition = CachedExposition(self.live_registry, self.registry, lambda: self.state_version,
                                           max_age_s=s.worker.metrics_max_age_s)

        @app.page("/metrics")
        async def metrics(view, request):
            """GET /metrics: Prometheus' text format (`CachedExposition`)."""
            return view.bytes(self.exposition.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        @app.page("/progress")
        async def progress(view, request):
            """GET /progress: `progress()` as JSON. A cheap poll (bench.ingest, scripts): /metrics builds
            every KPI on the engine's event loop (tens of ms at a large site)."""
            return view.json(self.progress())

        # The built-in wallboard (streams.wallboard): the queues whose snapshots this worker owns,
        # coloured by the alert rules' thresholds (configured ones replace defaults of the same name).
        wallboard_rules = {**DEFAULT_RULES, **s.alerts.rules}

        @app.page("/wallboard")
        async def wallboard_page(view, request):
            return view.html(wallboard.page())

        @app.page("/wallboard.json")
        async def wallboard_json(view, request):
            data = wallboard.wallboard_data(self._owned_latest(), wallboard_rules, int(time.time() * 1000),
                                            asa_target=lambda queue, channel: s.queue(queue, channel).asa_target)
            return view.bytes(orjson.dumps(data), content_type="application/json",
                              headers={"Cache-Control": "no-store"})

        if self.ingest_supervisor is None:
            app.task(self._ingest_loop)
        else:
            # started and stopped with the app (SIGTERM and Ctrl-C included: mode stops its children)
            app.add_dependency(self.ingest_supervisor)
        app.agent(self.events, name="engine")(self._engine)
        app.agent(self.partials, name="queues")(self._queues)
        app.agent(self.side, name="side")(self._side)
        app.timer(s.worker.snapshot_interval_s)(self._send_partials)
        app.timer(1.0)(self._send_rebuilt_side)
        app.timer(1.0)(self._freeze_survivors)
        app.resume_positions = self.resume_positions
        self.records.on_recover(self._on_recovered)
        self.queue_records.on_recover(self._on_queues_recovered)
        app.on_partitions_revoked.connect(self._on_revoked)

    def progress(self) -> dict[str, int]:
        """Events read, forwarded, applied and recognised as duplicates so far (this worker)."""
        parts = [self.stats, *(self.ingest_supervisor.stats() if self.ingest_supervisor else ())]
        total = merged(parts)
        return {"received": sum(total.received.values()), "forwarded": sum(total.forwarded.values()),
                "accepted": sum(total.accepted.values()), "duplicates": sum(total.duplicates.values())}

    def resume_positions(self) -> dict[TP, int]:
        """Owned internal partitions -> the offset after the newest message applied to their state."""
        return {TP(self.events_topic_name, p): state.applied_offset + 1
                for p, state in self.states.items() if state.applied_offset >= 0}

    async def _freeze_survivors(self) -> None:
        """Collect the young generations, then move what survived out of the cyclic GC's reach.

        The state grows by long-lived objects (records, windows) all the time; left in the oldest
        generation, each full collection rescanned all of them: 170-350 ms pauses on the engine's loop
        every few seconds at 2,000 events/s (bench.latency), far over the freshness budget. Frozen
        objects are still freed by reference counting when dropped; only cycles among them would stay
        (our records hold none)."""
        gc.collect(1)
        gc.freeze()

    # -- ingest ---------------------------------------------------------------------------------

    async def _ingest_loop(self) -> None:
        """`worker.ingest_in_process`: the ingest loop as a task of this worker, sharing its stats."""
        await Ingest(self.settings, self.stats, self.decoder).run()

    # -- engine ---------------------------------------------------------------------------------

    def _state_of(self, partition: int) -> PartitionState:
        state = self.states.get(partition)
        if state is None:  # not restored yet (cannot happen after on_recover; be safe)
            state = self.states[partition] = PartitionState(self.partition_config)
        return state

    async def _engine(self, stream: faust.StreamT) -> None:
        context = {"customer_hash_key": self.decoder.hash_key}
        async for event in stream.events():
            message = event.message
            state = self._state_of(message.partition)
            if message.offset <= state.applied_offset:   # delivered again after a rebalance: applied
                continue
            rejected = apply_batch(state, message.value, self.stats, context,
                                   where=(message.topic, message.partition, message.offset))
            for position, payload, rejection in rejected:
                await self._dead_letter_line(position, payload, rejection)
            state.advance()
            self.state_version += 1
            await self._send_alerts(state.take_alerts())
            await self._write(state, message.partition, applied_offset=message.offset)
            state.applied_offset = message.offset
            await self._send_side(state)

    async def _write(self, state: PartitionState, partition: int, applied_offset: int | None = None) -> None:
        """Changed records to the table's store and, batched, to its changelog partition
        (streams.changelog), then `applied_offset` (the internal message they come from) under
        `applied_key`. Awaited before the batch is acknowledged: the records are then in the
        producer that Faust flushes completely before it commits the batch's offset. Faust's own
        table writes wait in its producer buffer, whose flush can return before they are sent, so a
        commit could get ahead of them (docs/architecture.md, Faust quirks)."""
        changed, deleted = state.take_dirty()
        if not changed and not deleted and applied_offset is None:
            return
        store = self.records.data
        records = []
        # Keys as the table encodes them: a Table serializes `str` keys as JSON, `bytes` values raw.
        for key, value in changed.items():
            store[key] = value
            records.append((orjson.dumps(key), value))
        for key in deleted:
            store.pop(key, None)
            records.append((orjson.dumps(key), None))
        if applied_offset is not None:   # last: a restored offset implies the records before it
            key, value = applied_key(partition), b"%d" % applied_offset
            store[key] = value
            records.append((orjson.dumps(key), value))
        await self.changelog.write(partition, records)

    async def _send_side(self, state: PartitionState) -> None:
        """The state's side entries that changed, in messages per target partition. Taken and sent
        under one lock, so that the engine and `_send_rebuilt_side` send a subject's entries in the
        order they were taken (a later entry replaces an earlier one at the target)."""
        if self._side_lock is None:
            self._side_lock = asyncio.Lock()
        async with self._side_lock:
            partitions = self.settings.kafka.partitions
            by_partition: dict[int, list] = defaultdict(list)
            sent = self._side_sent
            for target, subject, payload in state.take_side():
                if sent.get((target, subject), ...) != payload:
                    sent[(target, subject)] = payload
                    by_partition[entity_partition(target, partitions)].append((target, subject, payload))
            for partition, items in by_partition.items():
                for start in range(0, len(items), _SIDE_ENTRIES_PER_MESSAGE):
                    await self.side.send(value=orjson.dumps(items[start:start + _SIDE_ENTRIES_PER_MESSAGE]),
                                         partition=partition)

    async def _send_rebuilt_side(self) -> None:
        """Side entries and alert events waiting in a partition that has no new events (a rebuilt
        one): send them. Not from the recovery callback itself, which should not wait on the
        producer mid-rebalance."""
        for state in list(self.states.values()):
            if state.side_dirty:
                await self._send_side(state)
            if state.alert_events:
                await self._send_alerts(state.take_alerts())

    async def _send_alerts(self, events) -> None:
        """Alert events to `topics.alerts`, before the state that decided them is written: a crash in
        between repeats an event (same key) rather than losing it (at least once)."""
        for event in events:
            await self.alerts_topic.send(key=event.key.encode(), value=event.model_dump_json().encode())
            log.info("alert %s: %s", event.status, event.summary)

    async def _side(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            partition = event.message.partition
            state = self._state_of(partition)
            try:
                for target, subject, payload in orjson.loads(event.message.value):
                    state.apply_side(target, subject, payload)
            except Exception:  # only our own workers write here; a bug must not stop the agent
                log.exception("side: cannot apply %s[%s]@%s", event.message.topic, partition, event.message.offset)
            state.advance()
            self.state_version += 1
            await self._send_alerts(state.take_alerts())
            await self._write(state, partition)

    async def _dead_letter_line(self, position: tuple[str, int, int, int | None], payload: bytes,
                                rejection: Rejection) -> None:
        """An event the engine could not apply (too late, or a failure) to the dead-letter topic."""
        topic, partition, offset, timestamp_ms = position
        entry = dead_letter(payload, rejection, topic=topic, partition=partition, offset=offset,
                            timestamp_ms=timestamp_ms, key=None, hash_key=self.decoder.hash_key,
                            worker=self.worker_name)
        self.stats.rejected[(rejection.reason.value, topic)] += 1
        await self.app.producer.send(self.settings.topics.deadletter, key=None,
                                     value=entry.model_dump_json().encode(), partition=None,
                                     timestamp=None, headers=None)

    # -- snapshots ------------------------------------------------------------------------------

    async def _send_partials(self) -> None:
        """Each owned partition's partial queue figures (changed ones only), and changed agents."""
        partitions = self.settings.kafka.partitions
        producer = self.app.producer
        site = self.settings.site.name
        for partition, state in list(self.states.items()):
            await asyncio.sleep(0)   # a large site's partials take a while: let the engine run in between
            for queue, partial in partition_partials(state).items():
                body = orjson.dumps({k: v for k, v in partial.items() if k != "wm"})
                if self._sent_partials.get((partition, queue)) == body and not partial["w"]:
                    continue
                self._sent_partials[(partition, queue)] = body
                value = orjson.dumps({"p": partition, **partial})
                await producer.send(self.partials_topic_name, key=queue.encode(), value=value,
                                    partition=entity_partition(f"queue:{queue}", partitions),
                                    timestamp=None, headers=None)
            wm = state.watermark_ms
            # Take the set first: the engine adds to it while this loop awaits the producer.
            touched, state.touched_agents = state.touched_agents, set()
            for n, key in enumerate(touched, 1):
                if n % _AGENT_SNAPSHOTS_PER_YIELD == 0:
                    await asyncio.sleep(0)
                agent = state.agents.get(key)
                latest = agent.latest() if agent is not None else None
                if latest is None:
                    continue
                snap = AgentSnapshot(site=site, agent_id=latest.agent_id, state=latest.state,
                                     reason=latest.reason, since_ms=latest.at_us // 1000, queues=list(latest.queues),
                                     team=latest.team, watermark_ms=wm)
                await producer.send(self.settings.topics.snapshots, key=f"agent:{latest.agent_id}".encode(),
                                    value=snap.model_dump_json().encode(), partition=None, timestamp=None,
                                    headers=None)

    async def _queues(self, stream: faust.StreamT) -> None:
        table = self.queue_records
        clock = self.clock
        async for event in stream.events():
            queue = event.message.key.decode()
            try:
                partial = orjson.loads(event.message.value)
                record = table.get(queue)
                record = merge(orjson.loads(record) if record else None, partial.pop("p"), partial, clock)
                published = publish(record, queue, self.settings, clock)
                alerts = queue_alerts(record, queue, self.settings, clock, self.queue_alert_rules)
            except Exception:  # a bad partial never stops the agent (only our own workers write here)
                log.exception("queues: cannot merge a partial for %r", queue)
                continue
            await self._send_alerts(alerts)
            # Written like the entity records (streams.changelog), before the partial is acknowledged:
            # a new owner then restores the revisions that were published.
            value = table.data[queue] = orjson.dumps(record)
            await self.queue_changelog.write(event.message.partition, [(orjson.dumps(queue), value)])
            for snap in published:
                await self.snapshots.send(key=f"queue:{queue}:{snap.channel}".encode(),
                                          value=snap.model_dump_json().encode())
                self.latest.remember(snap)
                self.state_version += 1

    def _owned_latest(self) -> dict:
        """Latest snapshots of the queues this worker owns, by (queue, channel, window label)."""
        owned = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.partials_topic_name}
        partitions = self.settings.kafka.partitions
        return self.latest.labelled(lambda queue: entity_partition(f"queue:{queue}", partitions) in owned)

    # -- ownership ------------------------------------------------------------------------------

    async def _on_queues_recovered(self) -> None:
        """The queue-level gauges of the queues this worker owns now, from their restored records.

        `latest` is filled by publishing, and `publish` sends nothing for figures the record says were
        sent: without this, a restarted worker or a new owner would export no service-level ratio for a
        window until its figures change (a closed interval: never)."""
        latest = LatestSnapshots(self.clock)
        owned = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.partials_topic_name}
        partitions = self.settings.kafka.partitions
        for queue, raw in list(self.queue_records.data.items()):
            if raw is None or entity_partition(f"queue:{queue}", partitions) not in owned:
                continue
            try:
                for snap in published(orjson.loads(raw), queue, self.settings, self.clock):
                    latest.remember(snap)
            except Exception:  # a bad record must not stop recovery (only our own workers write here)
                log.exception("queues: cannot restore the latest snapshots of %r", queue)
        self.latest = latest
        self.state_version += 1

    async def _on_revoked(self, sender, revoked, **kwargs) -> None:
        """Stop exporting revoked partitions at once; the new owner rebuilds them."""
        for tp in revoked:
            if tp.topic == self.events_topic_name:
                self.states.pop(tp.partition, None)
        self.state_version += 1

    async def _on_recovered(self) -> None:
        """Own exactly the active partitions: rebuild the aggregates of those without state."""
        active = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.events_topic_name}
        self.state_version += 1
        for partition in list(self.states):
            if partition not in active:
                del self.states[partition]
        missing = active - set(self.states)
        if not missing:
            return
        partitions = self.settings.kafka.partitions
        values: dict[int, list[tuple[str, bytes]]] = {p: [] for p in missing}
        applied: dict[int, int] = {}
        for key, value in self.records.data.items():
            if value is None:
                continue
            if key.startswith(_APPLIED_PREFIX):
                applied[int(key[len(_APPLIED_PREFIX):])] = int(value)
                continue
            p = entity_partition(key, partitions)
            if p in values:
                values[p].append((key, value))
        for p, items in values.items():
            state = self.states[p] = PartitionState.rebuild(self.partition_config, items)
            state.applied_offset = applied.get(p, -1)
        # A rebuilt partition sends all its side entries again (PartitionState.rebuild; the engine's
        # next batch or `_send_rebuilt_side` does): forget what this worker sent before, or an entry
        # it sent when it last owned a partition would suppress one.
        self._side_sent.clear()
        # The rebuilt state is millions of long-lived objects: keep the cyclic GC from rescanning them
        # in every full collection (bench.memory measured full collections of 15-25 s at large sites).
        gc.freeze()
        log.info("engine: rebuilt partitions %s from %d records", sorted(missing),
                 sum(len(v) for v in values.values()))


def apply_batch(state: PartitionState, value: bytes, stats: IngestStats, context: dict,
                where: tuple[str, int, int] = ("?", -1, -1)) -> list[tuple[tuple, bytes, Rejection]]:
    """Apply one internal batch message to its partition's state and count the outcomes. Return the
    lines that go to the dead-letter topic instead, as ((source topic, partition, offset,
    timestamp ms), event bytes, Rejection): events older than retention (`too_late`), and any line
    that fails (`internal_error`: a bad line never stops the engine; `where`, the internal message's
    position, stands in when the line's own source position cannot be read)."""
    accepted, duplicates = stats.accepted, stats.duplicates
    apply_parts = state.apply_parts
    rejected = []
    for line in value.split(b"\n"):
        fields = line.split(b"\t", 5)
        try:
            if len(fields) == 6:
                parts = decode_parts(fields[4])
            else:  # a line of an older ingest: no compact parts
                fields.insert(4, None)
                parts = event_parts(EVENT_ADAPTER.validate_json(fields[5], context=context))
            outcome = apply_parts(*parts)
        except Exception as exc:  # only our own ingest writes here: a bug, never bad input
            log.exception("engine: cannot apply an internal line in %s[%s]@%s", *where)
            rejected.append((_source_position(fields, where), fields[5] if len(fields) >= 6 else line,
                             Rejection(RejectReason.internal_error, f"internal error: {type(exc).__name__}")))
            continue
        if outcome is Outcome.accepted:
            accepted[parts[0]] += 1
        elif outcome is Outcome.duplicate:
            duplicates[parts[0]] += 1
        elif isinstance(outcome, TooLate):
            rejected.append((_source_position(fields, where), fields[5], Rejection(RejectReason.too_late, (
                f"event time {outcome.event_us // 1000} ms is before the retained windows "
                f"(since {outcome.retained_since_us // 1000} ms)"), "occurred_at")))
    return rejected


def _source_position(fields: list, where: tuple[str, int, int]) -> tuple[str, int, int, int | None]:
    """(topic, partition, offset, timestamp ms or None) of a line's source record."""
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]) or None
    except (IndexError, TypeError, ValueError, UnicodeDecodeError):
        return (*where, None)
