"""SLA alerts through the real broker and worker: a staffing drop makes the service level fall and
`cc.sla.alerts` gets one `firing`; the worker is killed (SIGKILL) while the alert fires and a new one
takes over with the restored queue record: no second `firing`; staff back, and the same key resolves."""

from __future__ import annotations

import signal
import time
from collections import namedtuple
from datetime import timedelta

import orjson
import pytest

from models.alerts import AlertEvent
from tests.conftest import run, settings_for, total
from tests.test_alerts import T0, contact
from tests.test_ingest_integration import produce, read_all

pytestmark = pytest.mark.integration

Message = namedtuple("Message", "topic key value")
RULE = "service_level_below_target"
ACCEPTED = "floorwatch_ingest_accepted_events_total"


def messages(events) -> list[Message]:
    return [Message("telephony", e.contact_id.encode(), e.model_dump_json().encode()) for e in events]


def alerts(settings, rule: str = RULE) -> list[AlertEvent]:
    values = run(read_all(settings, settings.topics.alerts, expected=10**6, timeout=3.0))
    return [a for a in (AlertEvent.model_validate(orjson.loads(v)) for v in values) if a.rule == rule]


def wait_for_alerts(settings, statuses: list[str], worker, timeout: float = 90.0) -> list[AlertEvent]:
    deadline = time.monotonic() + timeout
    found: list[AlertEvent] = []
    while time.monotonic() < deadline:
        found = alerts(settings)
        if [a.status for a in found] == statuses:
            return found
        if len(found) > len(statuses):
            break
    pytest.fail(f"wanted {statuses} on {settings.topics.alerts}, got {[(a.status, a.key) for a in found]}\n"
                f"{worker.log_tail(20)}")


def test_staffing_drop_fires_once_across_a_sigkill_and_resolves(kafka_bootstrap, make_worker):
    settings, env = settings_for(kafka_bootstrap, FLOORWATCH_WORKER__SNAPSHOT_INTERVAL_S="1",
                                 FLOORWATCH_WORKER__SESSION_TIMEOUT_S="8")
    n = 0

    def contacts(start, count: int, every_s: float, wait_s: float) -> list[Message]:
        nonlocal n
        events = []
        for i in range(count):
            n += 1
            events += contact(n, "sales", start + timedelta(seconds=every_s * i), wait_s)
        return messages(events)

    def feed(worker, start, count: int, every_s: float, wait_s: float, slices: int = 3) -> None:
        """Contacts in slices, each applied and seen by a snapshot round (1 s) before the next: the
        raise duration is event time seen by successive evaluations, as with a live feed (a backlog
        applied at once is one evaluation, which starts the condition and cannot also end it)."""
        for k in range(slices):
            part = count // slices
            batch = contacts(start + timedelta(seconds=every_s * part * k), part, every_s, wait_s)
            before = total(worker.metrics(), ACCEPTED)
            run(produce(settings, batch))
            worker.wait_for(lambda s: total(s, ACCEPTED) >= before + 3 * part, what="a slice applied")
            time.sleep(2.5)

    worker = make_worker(settings, env).start()
    worker.wait_for(lambda s: total(s, "floorwatch_partitions_owned") == 4, what="partitions owned")
    # normal staffing: answered in 10 s (voice threshold 20 s); then the drop: 60 s waits
    feed(worker, T0, 21, 15, 10)
    feed(worker, T0 + timedelta(minutes=5), 30, 10, 60)
    (fired,) = wait_for_alerts(settings, ["firing"], worker)
    assert fired.scope.queue == "sales" and fired.value < 0.8 and fired.severity == "critical"

    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    again = make_worker(settings, env, name="restarted").start()
    # still understaffed: the restored state keeps the alert firing without a second event
    again.wait_for(lambda s: total(s, "floorwatch_partitions_owned") == 4, what="the new worker owns the partitions")
    feed(again, T0 + timedelta(minutes=10), 12, 5, 60)
    assert [a.status for a in alerts(settings)] == ["firing"]
    # staff back: quick answers until the rolling 15 min service level clears (82 %)
    feed(again, T0 + timedelta(minutes=11), 240, 5, 5, slices=4)
    fired_again, resolved = wait_for_alerts(settings, ["firing", "resolved"], again)
    assert fired_again == fired
    assert resolved.key == fired.key and resolved.value >= resolved.clear_threshold
