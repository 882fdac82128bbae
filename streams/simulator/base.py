"""Public value types of the simulator: its configuration and what it emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The input topics, named as the fields of `streams.config.TopicSettings`.
TOPICS: tuple[str, ...] = ("telephony", "chat", "ticket", "agent", "survey")

MessageKind = Literal["valid", "invalid", "duplicate"]
DeadLetterReason = Literal["parse_error", "schema_error", "unknown_event_type"]


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One Kafka record the simulator emits, with what the worker is expected to make of it."""

    topic: str
    """One of TOPICS: contact.* of channel chat and chat.message go to "chat", other contact.* to
    "telephony"; agent.*, ticket.* and survey.* to their own."""
    key: bytes | None
    """Entity id (contact_id / agent_id / ticket_id; a survey's contact_id or ticket_id), utf-8."""
    value: bytes
    """The exact record value: compact JSON without a newline inside (or garbage, for injected bad ones)."""
    at: datetime
    """Simulated emission time (aware, UTC); non-decreasing along the stream. For a valid message it
    is its occurred_at."""
    kind: MessageKind
    reason: DeadLetterReason | None = None
    """For kind "invalid": the dead-letter reason the worker must give."""
    field: str | None = None
    """For a schema_error: the dotted field path at fault (None when the error is about the whole event)."""


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    duration_s: float = 3600.0
    rate: float = 6.0
    """Mean contact arrivals (voice + chat) per minute across the center at the profile's peak (1.0).
    Tickets arrive at a tenth of it; staffing is sized from it."""
    start: datetime | None = None
    """Aware datetime; None: Monday 2025-01-06 08:00 in the site time zone (reproducible runs)."""
    timezone: str = "UTC"
    bad_ratio: float = 0.0
    """Fraction of emitted messages that are injected bad (malformed, invalid, duplicate); they are
    added to the valid stream, which stays the same whatever this ratio."""
    staffing_factor: float = 1.0
    """Head-count multiplier on the planned staffing (0.6 = a 40 % staffing drop)."""

    def __post_init__(self) -> None:
        problems = []
        if not self.duration_s >= 0:
            problems.append(f"duration_s must be >= 0, not {self.duration_s}")
        if not self.rate > 0:
            problems.append(f"rate must be > 0, not {self.rate}")
        if not 0 <= self.bad_ratio < 1:
            problems.append(f"bad_ratio must be in [0, 1), not {self.bad_ratio}")
        if not self.staffing_factor > 0:
            problems.append(f"staffing_factor must be > 0, not {self.staffing_factor}")
        if self.start is not None and (self.start.tzinfo is None or self.start.utcoffset() is None):
            problems.append("start must be an aware datetime")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown IANA time zone {self.timezone!r}")
        if problems:
            raise ValueError("invalid SimConfig: " + "; ".join(problems))


@dataclass
class SimStats:
    sent: int = 0
    valid: int = 0
    invalid: int = 0
    duplicate: int = 0
    by_event_type: dict[str, int] = field(default_factory=dict)
    """Valid messages by event_type."""
    first_at: datetime | None = None
    last_at: datetime | None = None
