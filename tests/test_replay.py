"""Replay routing: each line to its input topic, keyed by the entity whose order matters."""

import orjson
import pytest

from models.examples import example
from models.events import EVENT_TYPES
from streams.config import load_settings
from streams.replay import route


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.delenv("FLOORWATCH_CONFIG", raising=False)
    return load_settings()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_example_is_routed_and_keyed_by_its_entity(settings, event_type):
    event = example(event_type)
    topic, key, parsed = route(settings, orjson.dumps(event))
    family = event_type.split(".")[0]
    expected_topic = {"agent": "cc.agent.events", "ticket": "cc.ticket.events", "survey": "cc.survey.events",
                      "chat": "cc.chat.events"}.get(family)
    expected_topic = expected_topic or ("cc.chat.events" if event["channel"] == "chat" else "cc.telephony.events")
    expected_key = {"agent": event.get("agent_id"), "ticket": event.get("ticket_id")}.get(
        family, event.get("contact_id") or event.get("ticket_id"))
    assert (topic, key, parsed) == (expected_topic, expected_key.encode(), event)


def test_ticket_events_with_an_agent_are_keyed_by_the_ticket(settings):
    _, key, _ = route(settings, orjson.dumps(example("ticket.assigned")))
    assert key == b"t-501"


@pytest.mark.parametrize("line", [b"not json", b"[1]", b'{"no_type": 1}', b'{"event_type": 5}'])
def test_unreadable_lines_go_to_telephony_unchanged_for_the_dead_letter_topic(settings, line):
    assert route(settings, line) == ("cc.telephony.events", None, None)
