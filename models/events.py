"""Input events: the contract between upstream systems (ACD/CTI, chat, helpdesk, WFM) and Floorwatch.

Every event is one JSON object with a shared envelope and an `event_type` discriminator.
Validation is strict: wrong types are not coerced, timestamps must carry an offset, enums are
closed, ids are non-empty. Unknown extra fields are ignored (vendors add their own), so a new
upstream field never costs an event.

`customer_ref` is personal data: validation replaces it with a keyed hash (see `models.privacy`),
so the raw value never lives past decoding.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.privacy import hash_customer_ref

Id = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=False)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]


def _hash_ref(value: str, info: ValidationInfo) -> str:
    key = (info.context or {}).get("customer_hash_key")
    return hash_customer_ref(value, key)


CustomerRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=320),
    AfterValidator(_hash_ref),
    Field(description="Customer identity (phone number, e-mail, CRM id): personal data, "
                      "replaced by a keyed hash on decoding."),
]


class Channel(StrEnum):
    voice = "voice"
    chat = "chat"
    email = "email"
    messaging = "messaging"
    callback = "callback"


class AgentState(StrEnum):
    offline = "offline"
    available = "available"
    not_ready = "not_ready"
    on_contact = "on_contact"
    acw = "acw"


class TicketPriority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class TicketStatus(StrEnum):
    new = "new"
    open = "open"
    pending = "pending"
    on_hold = "on_hold"
    solved = "solved"
    closed = "closed"


class MessageAuthor(StrEnum):
    agent = "agent"
    customer = "customer"


class SurveyKind(StrEnum):
    csat = "csat"
    nps = "nps"


class Envelope(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: Id = Field(description="Unique id from the source; duplicates are dropped on it.")
    occurred_at: AwareDatetime = Field(
        description="Event time, RFC 3339 with an offset. All KPIs are computed in event time.")
    source: Name = Field(description="Emitting system, e.g. acd-1, chat, helpdesk.")
    tenant: Name = Field(default="default", description="Tenant; a single tenant by default.")

    @property
    def entity_key(self) -> str:
        """The key that orders this event's lifecycle (all events of one contact, agent or ticket)."""
        raise NotImplementedError


# --- contacts ---------------------------------------------------------------------------------

class _ContactEvent(Envelope):
    contact_id: Id
    channel: Channel

    @property
    def entity_key(self) -> str:
        return f"contact:{self.contact_id}"


class ContactOffered(_ContactEvent):
    """The contact entered the center (IVR, chat entry point, ...)."""

    event_type: Literal["contact.offered"]
    customer_ref: CustomerRef | None = None


class ContactEnqueued(_ContactEvent):
    """The contact entered a queue: starts a queue segment."""

    event_type: Literal["contact.enqueued"]
    queue: Name
    customer_ref: CustomerRef | None = None


class ContactAnswered(_ContactEvent):
    """An agent accepted the contact: ends the queue segment as answered."""

    event_type: Literal["contact.answered"]
    queue: Name
    agent_id: Id


class ContactAbandoned(_ContactEvent):
    """The customer left the queue unanswered."""

    event_type: Literal["contact.abandoned"]
    queue: Name


class ContactFlowedOut(_ContactEvent):
    """The contact left the queue unanswered to another queue, voicemail or callback."""

    event_type: Literal["contact.flowed_out"]
    queue: Name
    destination: Name | None = Field(default=None, description="e.g. queue:billing, voicemail, callback")


class ContactHoldStarted(_ContactEvent):
    event_type: Literal["contact.hold_started"]
    agent_id: Id


class ContactHoldEnded(_ContactEvent):
    event_type: Literal["contact.hold_ended"]
    agent_id: Id


class ContactTransferred(_ContactEvent):
    """The agent transferred the contact; a transfer to a queue is followed by its enqueue."""

    event_type: Literal["contact.transferred"]
    agent_id: Id
    queue: Name | None = Field(default=None, description="Queue of the segment being transferred.")
    to_queue: Name | None = None
    to_agent_id: Id | None = None


class ContactEnded(_ContactEvent):
    """The customer interaction is over (talk ends); after-contact work may follow."""

    event_type: Literal["contact.ended"]
    agent_id: Id | None = None


class ContactAcwCompleted(_ContactEvent):
    """After-contact work is done: handle-time figures are attributed here."""

    event_type: Literal["contact.acw_completed"]
    agent_id: Id
    disposition: Name
    resolved: bool | None = None


class ChatMessage(_ContactEvent):
    """A chat message (its text never enters Floorwatch)."""

    event_type: Literal["chat.message"]
    author: MessageAuthor
    agent_id: Id | None = None


# --- agents -----------------------------------------------------------------------------------

class AgentStateChanged(Envelope):
    event_type: Literal["agent.state_changed"]
    agent_id: Id
    state: AgentState
    reason: Name | None = Field(default=None, description="Not-ready reason (break, lunch, training...).")
    queues: tuple[Name, ...] = Field(default=(), description="Queues (skills) the agent serves.")
    capacity: dict[Channel, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=dict, description="Concurrent contacts per channel, e.g. {\"chat\": 3}.")
    team: Name | None = None

    @property
    def entity_key(self) -> str:
        return f"agent:{self.agent_id}"


# --- tickets ----------------------------------------------------------------------------------

class _TicketEvent(Envelope):
    ticket_id: Id

    @property
    def entity_key(self) -> str:
        return f"ticket:{self.ticket_id}"


class TicketCreated(_TicketEvent):
    event_type: Literal["ticket.created"]
    priority: TicketPriority
    queue: Name
    channel: Channel = Channel.email
    customer_ref: CustomerRef | None = None


class TicketAssigned(_TicketEvent):
    event_type: Literal["ticket.assigned"]
    agent_id: Id
    queue: Name | None = None


class TicketAgentReplied(_TicketEvent):
    """A public reply by an agent (internal notes are not replies)."""

    event_type: Literal["ticket.agent_replied"]
    agent_id: Id


class TicketCustomerReplied(_TicketEvent):
    event_type: Literal["ticket.customer_replied"]


class TicketStatusChanged(_TicketEvent):
    event_type: Literal["ticket.status_changed"]
    status: TicketStatus
    previous_status: TicketStatus | None = None


class TicketReopened(_TicketEvent):
    event_type: Literal["ticket.reopened"]


# --- surveys ----------------------------------------------------------------------------------

class SurveyResponded(Envelope):
    """A CSAT (1..5) or NPS (0..10) answer about one contact or one ticket."""

    event_type: Literal["survey.responded"]
    contact_id: Id | None = None
    ticket_id: Id | None = None
    kind: SurveyKind
    score: int
    queue: Name | None = None
    agent_id: Id | None = None

    @field_validator("score")
    @classmethod
    def _on_scale(cls, score: int, info: ValidationInfo) -> int:
        kind = info.data.get("kind")  # declared before score, so already validated
        if kind is not None:
            low, high = (1, 5) if kind is SurveyKind.csat else (0, 10)
            if not low <= score <= high:
                raise ValueError(f"score {score} is outside the {kind.value} scale {low}..{high}")
        return score

    @model_validator(mode="after")
    def _one_subject(self) -> SurveyResponded:
        if (self.contact_id is None) == (self.ticket_id is None):
            raise ValueError("exactly one of contact_id and ticket_id is required")
        return self

    @property
    def entity_key(self) -> str:
        return f"contact:{self.contact_id}" if self.contact_id else f"ticket:{self.ticket_id}"


ContactEvent = Union[
    ContactOffered, ContactEnqueued, ContactAnswered, ContactAbandoned, ContactFlowedOut,
    ContactHoldStarted, ContactHoldEnded, ContactTransferred, ContactEnded, ContactAcwCompleted,
    ChatMessage,
]
TicketEvent = Union[
    TicketCreated, TicketAssigned, TicketAgentReplied, TicketCustomerReplied,
    TicketStatusChanged, TicketReopened,
]

Event = Annotated[
    Union[ContactEvent, AgentStateChanged, TicketEvent, SurveyResponded],
    Field(discriminator="event_type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_CLASSES: dict[str, type[Envelope]] = {
    cls.model_fields["event_type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in (
        *ContactEvent.__args__, AgentStateChanged, *TicketEvent.__args__, SurveyResponded,
    )
}
EVENT_TYPES: tuple[str, ...] = tuple(sorted(EVENT_CLASSES))


def event_time(event: Envelope) -> datetime:
    return event.occurred_at
