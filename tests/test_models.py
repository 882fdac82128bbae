"""The event contract: what is accepted, what is rejected and why, and the committed schemas."""

import orjson
import pytest
from pydantic import ValidationError

from models.events import EVENT_ADAPTER, EVENT_CLASSES, EVENT_TYPES, ContactEnqueued, SurveyResponded
from models.examples import EXAMPLES as ALL_EXAMPLES
from models.examples import example
from models.privacy import HASH_PREFIX, MissingHashKey
from models.schemas import SCHEMA_DIR, message_schemas, render

KEY = {"customer_hash_key": b"test-key"}

ENVELOPE = {"event_id": "e-1", "occurred_at": "2026-11-23T10:00:00+01:00", "source": "acd-1"}
EXAMPLES = {t: {k: v for k, v in example(t).items() if k not in ("event_id", "occurred_at", "event_type")}
            for t in EVENT_TYPES}


def decode(payload: dict):
    return EVENT_ADAPTER.validate_json(orjson.dumps(payload), context=KEY)


def test_every_event_type_has_an_example_that_validates():
    assert set(ALL_EXAMPLES) == set(EVENT_TYPES) == set(EVENT_CLASSES)
    for event_type, fields in EXAMPLES.items():
        event = decode({**ENVELOPE, "event_type": event_type, **fields})
        assert type(event) is EVENT_CLASSES[event_type]
        assert event.occurred_at.utcoffset().total_seconds() == 3600
        assert event.tenant == "default"
        assert event.entity_key.split(":", 1)[0] in ("contact", "agent", "ticket")


def test_customer_ref_is_hashed_on_decode_and_hashing_is_stable_and_idempotent():
    event = decode({**ENVELOPE, "event_type": "contact.offered", **EXAMPLES["contact.offered"]})
    assert event.customer_ref.startswith(HASH_PREFIX)
    assert "4930123456" not in event.model_dump_json()
    again = decode({**ENVELOPE, "event_type": "contact.offered", **EXAMPLES["contact.offered"]})
    assert again.customer_ref == event.customer_ref
    rehashed = decode({**ENVELOPE, "event_type": "contact.offered", "contact_id": "c1", "channel": "voice",
                       "customer_ref": event.customer_ref})
    assert rehashed.customer_ref == event.customer_ref
    other_key = EVENT_ADAPTER.validate_json(orjson.dumps(
        {**ENVELOPE, "event_type": "contact.offered", **EXAMPLES["contact.offered"]}),
        context={"customer_hash_key": b"another"})
    assert other_key.customer_ref != event.customer_ref


def test_customer_ref_without_a_key_is_a_configuration_fault_not_bad_input():
    with pytest.raises(MissingHashKey):
        EVENT_ADAPTER.validate_json(orjson.dumps(
            {**ENVELOPE, "event_type": "contact.offered", **EXAMPLES["contact.offered"]}))


@pytest.mark.parametrize("change, field", [
    ({"occurred_at": "2026-11-23T10:00:00"}, "occurred_at"),          # naive timestamp
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"event_id": ""}, "event_id"),
    ({"channel": "fax"}, "channel"),
    ({"queue": 7}, "queue"),                                           # no coercion from numbers
    ({"contact_id": None}, "contact_id"),
])
def test_invalid_fields_are_named(change, field):
    payload = {**ENVELOPE, "event_type": "contact.enqueued", **EXAMPLES["contact.enqueued"], **change}
    with pytest.raises(ValidationError) as info:
        decode(payload)
    locs = [e["loc"][1:] for e in info.value.errors()]
    assert (field,) in locs


def test_missing_ids_are_rejected():
    payload = {**ENVELOPE, "event_type": "contact.enqueued", **EXAMPLES["contact.enqueued"]}
    del payload["event_id"]
    with pytest.raises(ValidationError):
        decode(payload)


@pytest.mark.parametrize("kind, score, ok", [
    ("csat", 1, True), ("csat", 5, True), ("csat", 0, False), ("csat", 6, False),
    ("nps", 0, True), ("nps", 10, True), ("nps", 11, False), ("nps", -1, False),
])
def test_survey_score_ranges(kind, score, ok):
    payload = {**ENVELOPE, "event_type": "survey.responded", "ticket_id": "t1", "kind": kind, "score": score}
    if ok:
        assert isinstance(decode(payload), SurveyResponded)
    else:
        with pytest.raises(ValidationError, match="outside"):
            decode(payload)


def test_survey_needs_exactly_one_subject():
    base = {**ENVELOPE, "event_type": "survey.responded", "kind": "csat", "score": 4}
    for subject in ({}, {"contact_id": "c", "ticket_id": "t"}):
        with pytest.raises(ValidationError, match="exactly one"):
            decode({**base, **subject})


def test_unknown_fields_are_ignored_and_not_kept():
    event = decode({**ENVELOPE, "event_type": "contact.enqueued", **EXAMPLES["contact.enqueued"],
                    "vendor_extension": {"x": 1}})
    assert isinstance(event, ContactEnqueued)
    assert "vendor_extension" not in event.model_dump_json()


def test_round_trip_through_json_is_lossless():
    for event_type, fields in EXAMPLES.items():
        event = decode({**ENVELOPE, "event_type": event_type, **fields})
        assert EVENT_ADAPTER.validate_json(event.model_dump_json(), context=KEY) == event


def test_committed_schemas_match_the_models():
    generated = message_schemas()
    committed = {p.name.removesuffix(".schema.json"): p for p in SCHEMA_DIR.glob("*.schema.json")}
    assert set(committed) == set(generated), "run: python -m models.schemas"
    for name, schema in generated.items():
        assert committed[name].read_bytes() == render(schema), f"{name} drifted: run python -m models.schemas"


def test_schema_validates_the_examples_and_rejects_garbage():
    import jsonschema
    schema = message_schemas()["input-event"]
    validator = jsonschema.Draft202012Validator(schema)
    for event_type, fields in EXAMPLES.items():
        validator.validate({**ENVELOPE, "event_type": event_type, **fields})
    assert not validator.is_valid({**ENVELOPE, "event_type": "contact.enqueued", "contact_id": "c"})
