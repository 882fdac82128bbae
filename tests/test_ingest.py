"""Decoding and dead-lettering, without Faust: every kind of garbage gets a precise reason."""

import base64
from datetime import UTC, datetime

import orjson
import pytest

from models.deadletter import DeadLetter, RejectReason
from models.events import ContactEnqueued
from streams.ingest import Decoder, Rejection, dead_letter

KEY = b"test-key"
GOOD = {"event_id": "e-1", "event_type": "contact.enqueued", "occurred_at": "2026-11-23T10:00:00Z",
        "source": "acd-1", "contact_id": "c1", "channel": "voice", "queue": "billing",
        "customer_ref": "+49 30 1234567"}


@pytest.fixture
def decoder():
    return Decoder(KEY)


def raw(**change):
    payload = {**GOOD, **change}
    return orjson.dumps({k: v for k, v in payload.items() if v is not ...})


def test_good_event(decoder):
    event = decoder.decode(raw())
    assert isinstance(event, ContactEnqueued) and event.entity_key == "contact:c1"


@pytest.mark.parametrize("value, reason, field", [
    (b"not json at all", RejectReason.parse_error, None),
    (b'{"event_id": "e-1", "event_type": "contact.enq', RejectReason.parse_error, None),
    (b"\xff\xfe\x00garbage", RejectReason.parse_error, None),
    (b"", RejectReason.parse_error, None),
    (None, RejectReason.parse_error, None),
    (b"[1, 2, 3]", RejectReason.schema_error, None),
    (b"42", RejectReason.schema_error, None),
    (raw(event_type="contact.teleported"), RejectReason.unknown_event_type, None),
    (raw(event_type=...), RejectReason.schema_error, "event_type"),
    (raw(event_id=...), RejectReason.schema_error, "event_id"),
    (raw(event_id=""), RejectReason.schema_error, "event_id"),
    (raw(contact_id=...), RejectReason.schema_error, "contact_id"),
    (raw(occurred_at="2026-11-23T10:00:00"), RejectReason.schema_error, "occurred_at"),
    (raw(channel="fax"), RejectReason.schema_error, "channel"),
    (raw(queue=12), RejectReason.schema_error, "queue"),
    (orjson.dumps({**{k: GOOD[k] for k in ("event_id", "occurred_at", "source")}, "event_type": "survey.responded",
                   "contact_id": "c1", "kind": "csat", "score": 9}), RejectReason.schema_error, "score"),
])
def test_rejections_are_precise(decoder, value, reason, field):
    result = decoder.decode(value)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)
    assert result.detail
    if field:
        assert result.detail.startswith(field)


def test_unknown_type_detail_names_the_type(decoder):
    result = decoder.decode(raw(event_type="contact.teleported"))
    assert "contact.teleported" in result.detail and len(result.detail) < 300


def dl(value, rejection, key=b"c1"):
    return dead_letter(value, rejection, topic="cc.telephony.events", partition=3, offset=42,
                       timestamp_ms=1_700_000_000_000, key=key, hash_key=KEY, worker="host:6066",
                       now=datetime(2026, 11, 23, tzinfo=UTC))


def test_dead_letter_keeps_position_reason_and_bytes():
    value = raw(channel="fax", customer_ref=...)
    record = dl(value, Rejection(RejectReason.schema_error, "channel: bad", "channel"))
    assert base64.b64decode(record.raw_b64) == value and not record.redacted
    assert (record.source_topic, record.source_partition, record.source_offset) == ("cc.telephony.events", 3, 42)
    assert (record.event_id, record.event_type, record.field) == ("e-1", "contact.enqueued", "channel")
    assert record.raw_size == len(value)
    assert DeadLetter.model_validate_json(record.model_dump_json()) == record


def test_dead_letter_never_carries_personal_data():
    # A JSON event that fails validation: customer_ref is replaced by its keyed hash.
    value = raw(channel="fax")
    record = dl(value, Rejection(RejectReason.schema_error, "channel: bad", "channel"))
    stored = base64.b64decode(record.raw_b64)
    assert record.redacted and b"1234567" not in stored
    assert orjson.loads(stored)["customer_ref"].startswith("fwh1:")
    assert orjson.loads(stored)["contact_id"] == "c1", "ids are kept so the event can be repaired"
    # Truncated JSON and free text: the readable customer_ref is hashed, e-mails and phones masked.
    for garbage in (raw()[:-5], b'{"customer_ref": "jane.doe@example.com", "x": ',
                    b"call back +44 20 7946 0958 or mail jane@example.org"):
        record = dl(garbage, Rejection(RejectReason.parse_error, "bad"))
        stored = base64.b64decode(record.raw_b64)
        assert record.redacted
        for secret in (b"1234567", b"jane", b"7946"):
            assert secret not in stored, (garbage, stored)
    # Nothing personal: bytes exactly as received.
    plain = b"oops, not json; contact c-20250106-000123 at 2026-11-23T10:00:00Z"
    record = dl(plain, Rejection(RejectReason.parse_error, "bad"))
    assert base64.b64decode(record.raw_b64) == plain and not record.redacted


def test_dead_letter_of_null_value_and_key():
    record = dl(None, Rejection(RejectReason.parse_error, "empty record (null value)"), key=None)
    assert record.raw_b64 == "" and record.key_b64 is None and record.raw_size == 0
