"""Records Floorwatch publishes to `cc.kpi.snapshots` (JSON Schema: models/schemas/snapshot.schema.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowBounds(_Out):
    kind: Literal["interval", "today", "rolling_15m", "rolling_60m"]
    start_ms: int = Field(description="Window start, Unix ms (UTC).")
    end_ms: int = Field(description="Window end (exclusive), Unix ms; for rolling windows the watermark's sub-bucket end.")


class QueueKpis(_Out):
    offered: int
    answered: int
    abandoned: int
    short_abandoned: int
    flowed_out: int
    answered_within_threshold: int
    abandoned_within_threshold: int
    transferred: int
    handled: int
    held: int
    service_level: float | None = Field(description="The queue's configured formula; None: empty denominator.")
    service_level_formula: str
    service_level_target: float
    service_level_threshold_s: float
    service_level_by_formula: dict[str, float | None]
    asa_s: float | None
    average_abandon_time_s: float | None
    abandon_rate: float | None
    aht_s: float | None
    average_talk_s: float | None
    average_hold_s: float | None
    average_acw_s: float | None
    hold_rate: float | None
    transfer_rate: float | None


class QueueNow(_Out):
    """State at the watermark (in the snapshots of open windows only)."""

    waiting: int
    oldest_wait_s: float | None
    agents_online: int
    agents_available: int
    agents_on_contact: int
    agents_acw: int
    agents_not_ready: int
    estimated_wait_s: float | None = Field(
        description="For a contact arriving now: (waiting + 1) x recent AHT / agents serving the queue "
                    "(available + on contact + ACW); None without agents or AHT.")
    required_agents: int | None = Field(
        description="Erlang C agents to meet the SL target at the rolling 15 min arrival rate and the rolling "
                    "60 min AHT (chat: AHT / average chat capacity).")
    staffing_gap: int | None = Field(description="required - (available + on contact); positive: short-staffed.")


class QueueSnapshot(_Out):
    type: Literal["queue"] = "queue"
    site: str
    queue: str
    channel: str
    window: WindowBounds
    revision: int = Field(description="Grows by one each time this window of this queue is published again.")
    final: bool = Field(description="The interval has closed (the watermark passed its end).")
    correction: bool = Field(description="Re-published after being final: late events changed it.")
    watermark_ms: int = Field(description="Newest event time the figures include, Unix ms.")
    kpis: QueueKpis
    now: QueueNow | None = None


class AgentSnapshot(_Out):
    """One agent's current state, for supervisor screens (never a Prometheus label)."""

    type: Literal["agent"] = "agent"
    site: str
    agent_id: str
    state: str
    reason: str | None
    since_ms: int
    queues: list[str]
    team: str | None
    watermark_ms: int
