"""Output model of the dead-letter topic: every rejected input, with why and where it came from."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class RejectReason(StrEnum):
    parse_error = "parse_error"                # not UTF-8 JSON
    schema_error = "schema_error"              # JSON, but a field is missing, mistyped or out of range
    unknown_event_type = "unknown_event_type"  # event_type names no event of the contract
    too_late = "too_late"                      # older than the retained windows (KPI engine)
    internal_error = "internal_error"          # the worker failed on this record: a bug, bytes kept for replay


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: RejectReason
    detail: str = Field(description="Human-readable cause, e.g. 'occurred_at: Input should have timezone info'.")
    field: str | None = Field(default=None, description="Dotted path of the offending field, when there is one.")
    event_id: str | None = Field(default=None, description="The event's id, when it could be read.")
    event_type: str | None = Field(default=None, description="The event's type, when it could be read.")
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp_ms: int | None = Field(default=None, description="Kafka record timestamp of the input.")
    key_b64: str | None = Field(default=None, description="The record key, base64.")
    raw_b64: str = Field(description="The record value, base64: the bytes as received, except that personal "
                                     "data is replaced (customer_ref by its keyed hash, e-mail addresses and "
                                     "phone numbers in non-JSON bytes by <redacted>).")
    raw_size: int = Field(description="Size of the received value in bytes.")
    redacted: bool = Field(description="Whether personal data was replaced in raw_b64.")
    rejected_at: AwareDatetime
    worker: str = Field(description="Worker that rejected it (host:port).")
