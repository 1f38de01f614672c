"""The network model stored in the server (each import a new version), where enrolled resources connect to it,
and the plans made on it: their inputs, outputs, power-flow check and the events each created."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class GridModel(Base):
    """One version of a network model (``Network.to_dict``); a new import of the same name is the next version."""

    __tablename__ = "grid_model"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    # simbench:CODE or the file name it came from
    source: Mapped[str] = mapped_column(String(300), default="")
    imported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    # buses, zones and the grid node of each zone (what mapping and planning need without the whole model)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class GridMapping(Base):
    """An enrolled resource (2030.5 device by LFDI, OpenADR VEN by venID, Modbus asset by name) connected at a bus
    of a model; kept across the model's versions."""

    __tablename__ = "grid_mapping"
    __table_args__ = (UniqueConstraint("model_name", "source_kind", "source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(100), index=True)
    bus: Mapped[int] = mapped_column(Integer)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Plan(Base):
    """A plan of one model over one horizon. ``status``: running | failed | proposed (awaiting an operator) |
    active (its events are in force) | superseded (a later plan took over)."""

    __tablename__ = "plan"
    __table_args__ = (Index("ix_plan_model_status", "model_name", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(100))
    grid_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("grid_model.id", ondelete="SET NULL"), nullable=True
    )
    # day_ahead | intraday | manual
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="running")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    step_s: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    # forecast runs, grid model version, flexibility snapshot, defaults used, options
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # per resource: envelopes, setpoints, dispatch blocks with their reasons
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # AC power flow before and after, the envelopes' own check
    check: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    approved_by: Mapped[str] = mapped_column(String(64), default="")
    approved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class PlanEvent(Base):
    """An event a plan created (or kept from its predecessor, unchanged), the resource it is for and why."""

    __tablename__ = "plan_event"

    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("event.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    resource: Mapped[str] = mapped_column(String(100))
    why: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
