"""JSON Schemas of every topic's messages, generated from the models.

The committed copies under models/schemas/ are what other teams read; a test fails when they
drift from the models. Regenerate with: python -m models.schemas
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from models.alerts import AlertEvent
from models.deadletter import DeadLetter
from models.events import Event
from models.snapshots import AgentSnapshot, QueueSnapshot

SCHEMA_DIR = Path(__file__).parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schema(adapter: TypeAdapter, title: str, description: str) -> dict[str, Any]:
    schema = adapter.json_schema(mode="validation")
    return {"$schema": DIALECT, "title": title, "description": description, **schema}


def message_schemas() -> dict[str, dict[str, Any]]:
    """Schemas by message kind (the file names under models/schemas/)."""
    return {
        "input-event": _schema(
            TypeAdapter(Event), "Floorwatch input event",
            "One contact-center event; `event_type` selects the shape. Any input topic accepts any "
            "event type; by convention telephony carries contact.* (voice, callback, email), chat "
            "carries chat contacts and chat.message, and agent, ticket and survey events have their "
            "own topics."),
        "deadletter": _schema(
            TypeAdapter(DeadLetter), "Floorwatch dead-letter record",
            "A rejected input record with the reason, its source position and its raw bytes."),
        "snapshot": _schema(
            TypeAdapter(QueueSnapshot | AgentSnapshot), "Floorwatch KPI snapshot",
            "On cc.kpi.snapshots: a queue's KPIs for one window (type=queue, key queue:<queue>:<channel>; "
            "re-published with a higher revision when its figures change, final once the interval has closed, "
            "correction when late events change it afterwards) or one agent's current state (type=agent, key "
            "agent:<id>)."),
        "alert": _schema(
            TypeAdapter(AlertEvent), "Floorwatch SLA alert event",
            "On cc.sla.alerts, keyed by `key` (rule|scope|started_at_ms): an alert's `firing` event, then its "
            "`resolved` event with the same key. Delivery is at least once: a repeated event has the same key "
            "and status. Per-contact and per-ticket alerts carry the contact or ticket id, never customer data."),
    }


def topic_schemas(topics) -> dict[str, dict[str, Any]]:
    """Schemas by topic name, for `floorwatch schema`."""
    kinds = message_schemas()
    result = {name: kinds["input-event"] for name in topics.inputs}
    result[topics.deadletter] = kinds["deadletter"]
    result[topics.snapshots] = kinds["snapshot"]
    result[topics.alerts] = kinds["alert"]
    return result


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in message_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_bytes(render(schema))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(f"wrote {path}")
