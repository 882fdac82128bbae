"""Ingest statistics: plain counters on the hot path, Prometheus families built at scrape time.

Incrementing a prometheus_client Counter takes a lock per call; at tens of thousands of events per
second that cost shows. Agents bump plain dict counters instead and this collector turns them
into metric families when Prometheus scrapes.

The ingest loop normally runs in a child process (`streams.ingest_process`): it counts received,
forwarded and rejected records there and reports its tallies to the worker, which merges them with
the engine's own (accepted, duplicates, too-late rejections) at scrape time, so every metric keeps
its meaning whichever process did the counting.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from models.deadletter import RejectReason


class IngestStats:
    _COUNTERS = ("received", "accepted", "rejected", "duplicates", "forwarded")
    __slots__ = (*_COUNTERS, "lag")

    def __init__(self) -> None:
        self.received: Tally[str] = Tally()        # by source topic
        self.accepted: Tally[str] = Tally()        # by event_type: valid, first seen
        self.rejected: Tally[tuple[str, str]] = Tally()  # by (reason, source topic)
        self.duplicates: Tally[str] = Tally()      # by event_type
        self.forwarded: Tally[str] = Tally()       # valid events passed on to the engine, by event_type
        # A gauge, not a counter: records not yet read per input topic, as of the running ingest
        # loop's last look (an ended loop's lag means nothing: `add` leaves it out).
        self.lag: dict[str, int] = {}

    def tallies(self) -> tuple[dict, dict, dict, dict]:
        """What the ingest loop counts (received, forwarded, rejected) and its lag, as plain picklable dicts."""
        return dict(self.received), dict(self.forwarded), dict(self.rejected), dict(self.lag)

    @classmethod
    def of_tallies(cls, tallies: tuple[dict, ...]) -> IngestStats:
        stats = cls()
        received, forwarded, rejected, *lag = tallies
        stats.received.update(received)
        stats.forwarded.update(forwarded)
        stats.rejected.update(rejected)
        stats.lag = dict(lag[0]) if lag else {}
        return stats

    def add(self, other: IngestStats) -> None:
        for name in self._COUNTERS:
            getattr(self, name).update(getattr(other, name))


def merged(parts: Iterable[IngestStats]) -> IngestStats:
    """The counters summed; the lag of the parts that have one (one ingest loop runs at a time)."""
    total = IngestStats()
    for part in parts:
        total.add(part)
        total.lag.update(part.lag)
    return total


class IngestCollector(Collector):
    """`stats` and, if given, the stats `more()` returns (an ingest child's reports), summed."""

    def __init__(self, stats: IngestStats, version: str,
                 more: Callable[[], Iterable[IngestStats]] | None = None) -> None:
        self._stats = stats
        self._version = version
        self._more = more

    def collect(self) -> Iterator:
        s = self._stats if self._more is None else merged([self._stats, *self._more()])
        info = InfoMetricFamily("floorwatch_build", "Floorwatch version running in this worker.")
        info.add_metric([], {"version": self._version})
        yield info

        yield _by_label(
            "floorwatch_ingest_received_records",
            "Records read from the input topics, good or bad, by source topic.", "topic", s.received)
        yield _by_label(
            "floorwatch_ingest_valid_events",
            "Input records that decoded and validated, duplicates included, by event type.",
            "event_type", s.forwarded)
        yield _by_label(
            "floorwatch_ingest_accepted_events",
            "Valid events seen for the first time (after de-duplication on event_id) and applied, "
            "by event type.", "event_type", s.accepted)
        yield _by_label(
            "floorwatch_ingest_duplicate_events",
            "Valid events dropped because their event_id was already applied (sources deliver at "
            "least once; duplicates are counted, not dead-lettered), by event type.",
            "event_type", s.duplicates)

        lag = GaugeMetricFamily(
            "floorwatch_ingest_consumer_lag_records",
            "Records in the input topics not yet read by this worker's ingest (the partitions' high "
            "watermark minus its position, summed over the partitions it is assigned), as of its last "
            "look (about once a second), by topic.", labels=["topic"])
        for topic, n in sorted(s.lag.items()):
            lag.add_metric([topic], n)
        yield lag

        rejected = CounterMetricFamily(
            "floorwatch_ingest_rejected_records",
            "Input records sent to the dead-letter topic, by reason and source topic.",
            labels=["reason", "topic"])
        topics = sorted({t for _, t in s.rejected} | set(s.received))
        for reason in RejectReason:  # every reason present, so rate() works from the first reject
            for topic in topics:
                rejected.add_metric([reason.value, topic], s.rejected.get((reason.value, topic), 0))
        yield rejected


def _by_label(name: str, documentation: str, label: str, tally: Tally[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, n in sorted(tally.items()):
        family.add_metric([value], n)
    return family
