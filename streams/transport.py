"""Faust's aiokafka transport, with two fixes Floorwatch needs for at-least-once across rebalances.

Known Faust bug (faust-streaming 0.15.3, aiokafka 0.14): records lost when a partition has no
committed offset. While a rebalance is under way, Faust's fetcher can take records from aiokafka
and drop them ("getmany called while flow not active"). It then counts on `perform_seek` to move
back to the committed offsets. aiokafka's `seek_to_committed` seeks only partitions whose committed
offset is above 0, so a partition with none (a new consumer group, or a worker that died before
its first commit) or with 0 stays past the dropped records. A restarted worker then skips them for
good. This happened in the SIGKILL test: the restarted worker's position on every events partition
was the end of the topic, and it never applied the events the dead worker had not written.

`SeekingConsumerThread.seek_to_committed` seeks those partitions to where the consumer starts
without a committed offset (`consumer_auto_offset_reset`). Table changelog partitions are left
alone: Faust's recovery positions them itself and never commits them.

Known Faust bug: records dropped at the end of a rebalance. Recovery seeks to the committed
offsets and only then resumes the app's flow control, which empties every stream queue
(`FlowControlEvent.resume` clears them all, even when flow was already on). Records fetched in
between are dropped unread, and nothing seeks back to them: in `test_dedup_memory_survives_a_restart`
the restarted worker took two internal messages into the engine's queue in that window and never
applied them (about one run in six). Streams also skip, without a trace, messages they take while
flow control is off. `App.on_rebalance_end`, which Faust calls once flow control is back on, seeks
to the committed offsets once more. Whatever was fetched after the committed offset is delivered
again; the engine's records recognise what it already applied.

Known loss: a group commit past a message that was never applied. In the two-worker test (about one
run in ten) the group's committed offset on an internal partition was past one whole message whose
records never reached the changelog. Faust acknowledges, and so lets commit, a message a stream
takes while flow control is off or from an older generation, without running the agent on it, and
it keeps acknowledgements of revoked partitions. Rather than trust the committed offset, the engine
writes the offset it applied to the changelog behind each message's records, and `perform_seek`
resumes a restored partition right after it when the committed offset is further on
(`App.resume_positions`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("floorwatch")


async def seek_to_committed_or_reset(consumer, changelog_topics: Iterable[str] = (),
                                     auto_offset_reset: str = "earliest") -> Mapping[TP, int | None]:
    """Seek an aiokafka consumer's assigned partitions to their committed offsets, and those with
    none (or 0) to where `auto_offset_reset` says, except changelog partitions; return the committed
    offsets as `AIOKafkaConsumer.seek_to_committed` does."""
    committed = await consumer.seek_to_committed()
    changelogs = set(changelog_topics)
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if uncommitted:
        if auto_offset_reset == "latest":
            await consumer.seek_to_end(*uncommitted)
        else:
            await consumer.seek_to_beginning(*uncommitted)
    return committed


# Faust hard-codes `fetch_max_wait_ms=1500` for the worker's consumer. aiokafka keeps one fetch in
# flight per broker, so a fetch that holds only quiet partitions (partials, side entries) kept the
# internal events waiting behind it for up to 1.5 s: p50 1.3 s from internal write to engine at a
# steady 2,000 events/s, 13 ms with 50 ms (bench.latency). The broker answers earlier whenever data
# arrives, so a short wait costs only more empty fetches on an idle worker.
FETCH_MAX_WAIT_MS = 50


class SeekingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # Not started yet: aiokafka hands this to its fetcher in `start()`.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return await self.call_thread(seek_to_committed_or_reset, self._ensure_consumer(),
                                      self.app.tables.changelog_topics, self.app.conf.consumer_auto_offset_reset)


class SeekingConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> SeekingConsumerThread:
        return SeekingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, then back to `App.resume_positions` where those are behind
        them: a group commit past a message whose state never reached the table (see the module)."""
        await super().perform_seek()
        assigned = self.assignment()
        for tp, position in self.app.resume_positions().items():
            committed = self._committed_offset.get(tp)
            if tp in assigned and committed is not None and position < committed:
                log.warning("consumer: %s[%d]: the committed offset %d is past what the restored state "
                            "applied; resuming at %d", tp.topic, tp.partition, committed, position)
                await self.seek(tp, position)


class Transport(faust_aiokafka.Transport):
    Consumer = SeekingConsumer


class App(faust.App):
    """`faust.App` on `Transport` (any `kafka://` or `aiokafka://` broker URL), seeking to the
    committed offsets again when a rebalance has ended (see the module)."""

    _reseek: asyncio.Future | None = None
    # Where partitions resume when their restored state says the committed offset is too far (the
    # app's owner sets it; see the module): TP -> the next offset to read.
    resume_positions: Callable[[], Mapping[TP, int]] = staticmethod(lambda: {})

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        self._reseek = asyncio.ensure_future(self._seek_to_committed_again())

    async def _seek_to_committed_again(self) -> None:
        try:
            await self.consumer.perform_seek()
        except Exception as exc:  # a new rebalance under way: its own end seeks again
            log.warning("consumer: no seek to the committed offsets after the rebalance: %r", exc)
