"""Ingest, the pure part: raw bytes to a validated event, or to a precise rejection.

No Faust here: the agents in `streams.agents` call these functions, and the tests drive them
directly. Decoding goes from bytes straight to the model (pydantic's JSON parser, no dict in
between); only a rejected message is parsed a second time, to read its id and redact it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from models.deadletter import DeadLetter, RejectReason
from models.events import EVENT_ADAPTER, Envelope
from models.privacy import redact_json_value, redact_text

_MAX_DETAIL = 300


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    field: str | None = None


class Decoder:
    """Decodes input records; holds the per-site context (the customer hashing key)."""

    __slots__ = ("_context", "_validate_json")

    def __init__(self, customer_hash_key: bytes) -> None:
        self._context = {"customer_hash_key": customer_hash_key}
        self._validate_json = EVENT_ADAPTER.validate_json

    def decode(self, raw: bytes | None) -> Envelope | Rejection:
        if raw is None:
            return Rejection(RejectReason.parse_error, "empty record (null value)")
        try:
            return self._validate_json(raw, context=self._context)
        except ValidationError as exc:
            return rejection_from(exc)

    @property
    def hash_key(self) -> bytes:
        return self._context["customer_hash_key"]


def rejection_from(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return Rejection(RejectReason.parse_error, _clip(first["msg"]))
    if kind == "union_tag_invalid":
        return Rejection(RejectReason.unknown_event_type, _clip(
            f"unknown event_type: {first['msg'].split(' found ')[0].removeprefix('Input tag ')}"))
    if kind == "union_tag_not_found":
        return Rejection(RejectReason.schema_error, "event_type: missing (every event needs one)", "event_type")
    if kind in ("dict_type", "model_attributes_type") and not first["loc"]:
        return Rejection(RejectReason.schema_error, "the record must be a JSON object")
    # The first location element is the union tag (the event type); the rest is the field path.
    fields = []
    parts = []
    for error in errors:
        path = ".".join(str(p) for p in error["loc"][1:])
        fields.append(path or None)
        msg = error["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {msg}" if path else msg)
    return Rejection(RejectReason.schema_error, _clip("; ".join(parts)), fields[0])


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def dead_letter(
    raw: bytes | None,
    rejection: Rejection,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    hash_key: bytes,
    worker: str,
    now: datetime | None = None,
) -> DeadLetter:
    """Build the dead-letter record: raw bytes kept, personal data replaced, ids read if possible."""
    raw = raw or b""
    parsed: Any = None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if isinstance(parsed, (dict, list)):
        redacted_value = redact_json_value(parsed, hash_key)
        stored = raw if redacted_value == parsed else orjson.dumps(redacted_value)
    else:
        stored = redact_text(raw, hash_key)
    event_id = event_type = None
    if isinstance(parsed, dict):
        event_id = _short_str(parsed.get("event_id"))
        event_type = _short_str(parsed.get("event_type"))
    stored_key = redact_text(key, hash_key) if key else key
    return DeadLetter(
        reason=rejection.reason,
        detail=rejection.detail,
        field=rejection.field,
        event_id=event_id,
        event_type=event_type,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp_ms=timestamp_ms,
        key_b64=base64.b64encode(stored_key).decode() if stored_key is not None else None,
        raw_b64=base64.b64encode(stored).decode(),
        raw_size=len(raw),
        redacted=stored != raw or stored_key != key,
        rejected_at=now or datetime.now(UTC),
        worker=worker,
    )


def _short_str(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
