"""Records Floorwatch publishes to `cc.sla.alerts`: an alert's `firing` and then its `resolved` event."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertScope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str | None = None
    channel: str | None = None
    priority: str | None = None
    contact_id: str | None = Field(default=None, description="Per-contact alerts: the contact (never customer data).")
    ticket_id: str | None = Field(default=None, description="Per-ticket alerts: the ticket (never customer data).")


class AlertEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["alert"] = "alert"
    status: Literal["firing", "resolved"]
    key: str = Field(description="Idempotent key, the same on both events of one alert: rule|scope|started_at_ms. "
                                 "A repeated event (at-least-once delivery) has the same key and status.")
    rule: str
    kpi: str
    severity: Literal["info", "warning", "critical"]
    site: str
    scope: AlertScope
    window: str | None = Field(description="Window of a windowed KPI (rolling_15m, interval_current, ...); None: now.")
    value: float | None = Field(description="The KPI's value at this event (None: no longer measurable).")
    volume: int = Field(description="The volume the minimum-volume condition counts, at this event.")
    comparison: Literal["<", ">"]
    raise_threshold: float
    clear_threshold: float
    started_at_ms: int = Field(description="Event time the condition began (before the raise duration), Unix ms.")
    at_ms: int = Field(description="Event time of this event (fired or resolved), Unix ms.")
    summary: str = Field(description="One line for people.")
