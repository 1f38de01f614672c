"""The grid model staff define (feeders, transformers, groups) and the forecasts stored for each node."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class GridNode(Base):
    __tablename__ = "grid_node"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # feeder | transformer | group
    kind: Mapped[str] = mapped_column(String(20))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grid_node.id", ondelete="SET NULL"), index=True)
    # thermal/contract limits used by orchestration; None when not set
    import_limit_kw: Mapped[float | None] = mapped_column(Float, nullable=True)
    export_limit_kw: Mapped[float | None] = mapped_column(Float, nullable=True)
    # IANA time zone of the area: day type and time of day of the load shape are local
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    members: Mapped[list[GridNodeMember]] = relationship(back_populates="node", cascade="all, delete-orphan")


class GridNodeMember(Base):
    """A telemetry source counted in a node: a 2030.5 device (LFDI), an OpenADR VEN (venID), a gateway."""

    __tablename__ = "grid_node_member"
    __table_args__ = (UniqueConstraint("node_id", "source_kind", "source_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("grid_node.id", ondelete="CASCADE"))
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))

    node: Mapped[GridNode] = relationship(back_populates="members")


class ForecastRun(Base):
    __tablename__ = "forecast_run"
    __table_args__ = (Index("ix_forecast_run_node_issued", "node_id", "issued_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("grid_node.id", ondelete="CASCADE"))
    # load | pv
    target: Mapped[str] = mapped_column(String(10), default="load")
    measurement: Mapped[str] = mapped_column(String(64), default="realPower")
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    step_s: Mapped[int] = mapped_column(Integer)
    horizon_s: Mapped[int] = mapped_column(Integer)
    history_points: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(100))
    notes: Mapped[str] = mapped_column(Text, default="")

    points: Mapped[list[ForecastPoint]] = relationship(
        cascade="all, delete-orphan", order_by="ForecastPoint.ts"
    )


class ForecastPoint(Base):
    __tablename__ = "forecast_point"

    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_run.id", ondelete="CASCADE"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    # W (SI, like telemetry)
    mean: Mapped[float] = mapped_column(Float)
    q10: Mapped[float] = mapped_column(Float)
    q90: Mapped[float] = mapped_column(Float)
