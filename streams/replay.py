"""Replay a JSONL event log (ours, or a user's own export) into the input topics.

Each line is sent as it is, byte for byte, to the input topic its event_type belongs on and keyed
by its contact, agent or ticket id; a line that cannot be read goes to the telephony topic as it
is, so that the worker dead-letters it like any other bad record. With `retime`, every event is
shifted by the same amount so that the log's first event happens now (lines are then
re-serialised; unreadable lines still pass unchanged).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from streams.config import Settings
from streams.kafka_io import ensure_topics, producer

# Which id keys an event family: all events of one contact, agent or ticket share a partition.
_KEY_FIELDS = {"contact": ("contact_id",), "chat": ("contact_id",), "agent": ("agent_id",),
               "ticket": ("ticket_id",), "survey": ("contact_id", "ticket_id")}


@dataclass
class ReplayStats:
    sent: int = 0
    unreadable: int = 0
    by_topic: Counter = field(default_factory=Counter)


def route(settings: Settings, line: bytes) -> tuple[str, bytes | None, dict | None]:
    """(topic, key, parsed) for one log line; parsed is None when the line is not a readable event."""
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return settings.topics.telephony, None, None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("event_type"), str):
        return settings.topics.telephony, None, None
    event_type = parsed["event_type"]
    channel = parsed.get("channel")
    topic = settings.topics.input_for(event_type, channel if isinstance(channel, str) else None)
    fields = _KEY_FIELDS.get(event_type.split(".", 1)[0], ())
    key = next((parsed[f] for f in fields if isinstance(parsed.get(f), str) and parsed[f]), None)
    return topic, key.encode() if key else None, parsed


def _event_time(parsed: dict | None) -> datetime | None:
    if parsed is None or not isinstance(parsed.get("occurred_at"), str):
        return None
    try:
        moment = datetime.fromisoformat(parsed["occurred_at"])
    except ValueError:
        return None
    return moment if moment.tzinfo else None


async def replay(settings: Settings, path: Path, *, retime: bool = False, speed: float = 0.0,
                 stop: asyncio.Event | None = None,
                 progress: Callable[[str], None] | None = print) -> ReplayStats:
    if not path.is_file():
        raise FileNotFoundError(f"no such event log: {path}")
    stats = ReplayStats()
    await ensure_topics(settings, settings.topics.inputs)
    shift: timedelta | None = None
    first_event: datetime | None = None
    wall_start = time.monotonic()
    last_report = wall_start
    pending: list[asyncio.Future] = []
    async with producer(settings.kafka) as p:
        with path.open("rb") as log:
            for raw_line in log:
                if stop is not None and stop.is_set():
                    break
                line = raw_line.rstrip(b"\r\n")
                if not line:
                    continue
                topic, key, parsed = route(settings, line)
                moment = _event_time(parsed)
                if moment is not None:
                    if first_event is None:
                        first_event = moment
                        shift = datetime.now(UTC) - moment if retime else timedelta(0)
                    if retime:
                        shifted = moment + shift
                        parsed["occurred_at"] = shifted.isoformat()
                        line = orjson.dumps(parsed)
                    if speed > 0:
                        due = wall_start + (moment - first_event).total_seconds() / speed
                        delay = due - time.monotonic()
                        if delay > 0:
                            await asyncio.gather(*pending)
                            pending.clear()
                            await asyncio.sleep(delay)
                else:
                    stats.unreadable += 1
                pending.append(await p.send(topic, line, key=key))
                stats.sent += 1
                stats.by_topic[topic] += 1
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
                now = time.monotonic()
                if progress and now - last_report >= 5:
                    last_report = now
                    progress(f"replay: {stats.sent} records sent ({stats.sent / (now - wall_start):.0f}/s)")
            await asyncio.gather(*pending)
    if progress:
        elapsed = time.monotonic() - wall_start
        topics = ", ".join(f"{t}={n}" for t, n in sorted(stats.by_topic.items()))
        progress(f"replay: sent {stats.sent} records from {path} in {elapsed:.1f}s ({topics}); "
                 f"{stats.unreadable} unreadable lines sent as-is for the dead-letter topic")
    return stats
