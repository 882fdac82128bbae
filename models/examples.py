"""One example of every input event: used by the docs (README, docs/events.md) and the tests."""

from __future__ import annotations

from typing import Any

_ENVELOPE = {"occurred_at": "2026-11-23T09:15:02+01:00", "source": "acd-1"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "contact.offered": {"contact_id": "c-1001", "channel": "voice", "customer_ref": "+4930123456"},
    "contact.enqueued": {"contact_id": "c-1001", "channel": "voice", "queue": "billing"},
    "contact.answered": {"contact_id": "c-1001", "channel": "voice", "queue": "billing", "agent_id": "a-17"},
    "contact.abandoned": {"contact_id": "c-1002", "channel": "voice", "queue": "billing"},
    "contact.flowed_out": {"contact_id": "c-1003", "channel": "voice", "queue": "billing",
                           "destination": "voicemail"},
    "contact.hold_started": {"contact_id": "c-1001", "channel": "voice", "agent_id": "a-17"},
    "contact.hold_ended": {"contact_id": "c-1001", "channel": "voice", "agent_id": "a-17"},
    "contact.transferred": {"contact_id": "c-1001", "channel": "voice", "agent_id": "a-17",
                            "queue": "billing", "to_queue": "sales"},
    "contact.ended": {"contact_id": "c-1001", "channel": "voice", "agent_id": "a-17"},
    "contact.acw_completed": {"contact_id": "c-1001", "channel": "voice", "agent_id": "a-17",
                              "disposition": "payment_plan", "resolved": True},
    "chat.message": {"contact_id": "c-2001", "channel": "chat", "author": "customer", "source": "chat"},
    "agent.state_changed": {"agent_id": "a-17", "state": "not_ready", "reason": "lunch",
                            "queues": ["billing", "sales"], "capacity": {"voice": 1, "chat": 3},
                            "source": "wfm"},
    "ticket.created": {"ticket_id": "t-501", "priority": "high", "queue": "email_support",
                       "customer_ref": "jane@example.com", "source": "helpdesk"},
    "ticket.assigned": {"ticket_id": "t-501", "agent_id": "a-17", "source": "helpdesk"},
    "ticket.agent_replied": {"ticket_id": "t-501", "agent_id": "a-17", "source": "helpdesk"},
    "ticket.customer_replied": {"ticket_id": "t-501", "source": "helpdesk"},
    "ticket.status_changed": {"ticket_id": "t-501", "status": "pending", "previous_status": "open",
                              "source": "helpdesk"},
    "ticket.reopened": {"ticket_id": "t-501", "source": "helpdesk"},
    "survey.responded": {"contact_id": "c-1001", "kind": "csat", "score": 5, "source": "survey"},
}


def example(event_type: str) -> dict[str, Any]:
    """The full example event (envelope included) of one type."""
    index = sorted(EXAMPLES).index(event_type) + 1
    return {"event_id": f"evt-{index:04d}", "event_type": event_type, **_ENVELOPE, **EXAMPLES[event_type]}
