"""Bad-input injection: malformed, invalid and duplicate records added to the valid stream.

Each bad record says what the worker must do with it (`reason`, `field`), derived from how
`models.events.EVENT_ADAPTER` rejects it: json_invalid -> parse_error; union_tag_invalid (an
event_type that is not ours) -> unknown_event_type; anything else -> schema_error with the error
location minus the leading union tag, dotted (None when the error is about the whole value).
A missing event_type (pydantic: union_tag_not_found, loc ()) is declared as field "event_type".

The injector has its own seeded RNG and only reads the valid stream, so the valid records are
the same whatever bad_ratio is.
"""

from __future__ import annotations

from collections import deque
from random import Random

import orjson

from streams.simulator.base import TOPICS, DeadLetterReason, SimMessage
from streams.simulator.engine import dumps

# (kind, weight): the fixed mix of bad records
BAD_MIX: tuple[tuple[str, int], ...] = (
    ("duplicate", 30),
    ("not_json", 8),
    ("truncated", 10),
    ("not_object", 5),
    ("unknown_type", 10),
    ("missing_type", 5),
    ("bad_event_id", 7),
    ("naive_time", 7),
    ("wrong_type", 8),
    ("bad_enum", 6),
    ("score_range", 4),
)

_GARBAGE: tuple[bytes, ...] = (
    b"PING",
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"event_type=contact.answered&contact_id=42&agent_id=7",
    b"{'event_type': 'contact.ended', 'contact_id': 'c-1'}",
    b"\x00\x01\x02\xff\xfe binary noise",
    b"",
    b"contact.answered;c-17;agent-1003",
)
_NOT_OBJECTS: tuple[bytes, ...] = (b"42", b"null", b"true", b'"contact.answered"', b"[]")
_UNKNOWN_TYPES: tuple[str, ...] = ("contact.teleported", "agent.abducted", "ticket.shredded", "contact.answerd",
                                   "Contact.Answered", "survey.ignored")
# field -> a value of the wrong JSON type
_WRONG_TYPES: tuple[tuple[str, object], ...] = (
    ("score", "4"), ("queue", 7), ("agent_id", 1003), ("resolved", "yes"), ("contact_id", 12345),
    ("ticket_id", 987), ("source", 5), ("queues", "sales"),
)
# field -> a value outside its closed set
_BAD_ENUMS: tuple[tuple[str, str], ...] = (
    ("channel", "fax"), ("state", "sleeping"), ("priority", "critical"), ("status", "deleted"),
    ("author", "bot"), ("kind", "ces"),
)


class Injector:
    def __init__(self, seed: int, ratio: float, tag: str) -> None:
        self.rng = Random(f"floorwatch-simulator-bad:{seed}")
        self.ratio = ratio
        self.tag = tag
        self.recent: deque[SimMessage] = deque(maxlen=500)
        self.count = 0
        self._kinds = [k for k, _ in BAD_MIX]
        self._weights = [w for _, w in BAD_MIX]

    def after(self, msg: SimMessage) -> list[SimMessage]:
        """The bad records to emit right after the valid `msg` (usually none)."""
        self.recent.append(msg)
        rng = self.rng
        if rng.random() >= self.ratio:
            return []
        out = [self.make(msg)]
        while rng.random() < self.ratio:       # geometric: a `ratio` share of all records is bad
            out.append(self.make(msg))
        return out

    def make(self, msg: SimMessage) -> SimMessage:
        rng = self.rng
        self.count += 1
        kind = rng.choices(self._kinds, self._weights)[0]
        if kind == "duplicate":
            src = self.recent[rng.randrange(len(self.recent))]
            return SimMessage(src.topic, src.key, src.value, msg.at, "duplicate")
        if kind == "not_json":
            return SimMessage(TOPICS[rng.randrange(len(TOPICS))], None, _GARBAGE[rng.randrange(len(_GARBAGE))],
                              msg.at, "invalid", "parse_error")
        if kind == "truncated":
            return SimMessage(msg.topic, msg.key, msg.value[:rng.randrange(1, len(msg.value) - 1)], msg.at,
                              "invalid", "parse_error")
        event = orjson.loads(msg.value)
        event["event_id"] = f"{self.tag}-bad-{self.count:x}"
        if kind == "not_object":
            value = (dumps(list(event.values())) if rng.random() < 0.4
                     else _NOT_OBJECTS[rng.randrange(len(_NOT_OBJECTS))])
            return SimMessage(msg.topic, msg.key, value, msg.at, "invalid", "schema_error", None)
        if kind == "unknown_type":
            event["event_type"] = _UNKNOWN_TYPES[rng.randrange(len(_UNKNOWN_TYPES))]
            return self._invalid(msg, event, "unknown_event_type", None)
        if kind == "missing_type":
            del event["event_type"]
            return self._invalid(msg, event, "schema_error", "event_type")
        if kind == "bad_event_id":
            if rng.random() < 0.5:
                event["event_id"] = ""
            else:
                del event["event_id"]
            return self._invalid(msg, event, "schema_error", "event_id")
        if kind == "naive_time":
            ts: str = event["occurred_at"]
            event["occurred_at"] = ts[:-1] if ts.endswith("Z") else ts[:-6]
            return self._invalid(msg, event, "schema_error", "occurred_at")
        if kind == "bad_enum":
            options = [(f, v) for f, v in _BAD_ENUMS if f in event]
            if options:
                name, value = options[rng.randrange(len(options))]
                event[name] = value
                return self._invalid(msg, event, "schema_error", name)
            kind = "wrong_type"    # this event type has no enum field
        if kind == "wrong_type":
            options = [(f, v) for f, v in _WRONG_TYPES if f in event]
            name, value = options[rng.randrange(len(options))]
            event[name] = value
            return self._invalid(msg, event, "schema_error", name)
        # score_range: a survey answer off its scale (rejected on the field `score`)
        entity = ("ticket_id", event["ticket_id"]) if "ticket_id" in event else (
            "contact_id", event.get("contact_id", f"c-{self.tag}-unknown"))
        scale, score = (("csat", (0, 6, 10, -1)) if rng.random() < 0.6 else ("nps", (11, -1, 100)))
        survey = {"event_id": event["event_id"], "event_type": "survey.responded",
                  "occurred_at": event["occurred_at"], "source": "survey", entity[0]: entity[1],
                  "kind": scale, "score": score[rng.randrange(len(score))]}
        return SimMessage("survey", str(entity[1]).encode(), dumps(survey), msg.at, "invalid",
                          "schema_error", "score")

    @staticmethod
    def _invalid(msg: SimMessage, event: dict, reason: DeadLetterReason, field: str | None) -> SimMessage:
        return SimMessage(msg.topic, msg.key, dumps(event), msg.at, "invalid", reason, field)
