"""Flexibility offers of aggregators (OpenADR VENs) and what their clearing decided."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class FlexOffer(Base):
    """A VEN's offer: over ``[start, end_at)`` it can raise its net import by up to ``up_kw`` (consume more,
    export less) or lower it by up to ``down_kw``, at ``price`` per kWh. A clearing sets ``status`` and records
    the kW it took (``cleared_kw``, the largest interval; ``cleared_kwh`` in all), its direction, the price paid
    (the offer's own) and the event it became; ``plan_id`` the plan that cleared it (none: a manual clearing),
    ``opt_id`` the OpenADR opt it came from (none: made through the admin API)."""

    __tablename__ = "flex_offer"
    __table_args__ = (
        Index("ix_flex_offer_status_start", "status", "start"),
        Index("ix_flex_offer_opt_id", "ven_pk", "opt_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ven_pk: Mapped[int] = mapped_column(ForeignKey("ven.id", ondelete="CASCADE"), index=True)
    start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    up_kw: Mapped[float] = mapped_column(Float, default=0.0)
    down_kw: Mapped[float] = mapped_column(Float, default=0.0)
    price: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12), default="offered")
    cleared_direction: Mapped[str] = mapped_column(String(4), default="")
    cleared_kw: Mapped[float] = mapped_column(Float, default=0.0)
    cleared_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    cleared_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("event.id", ondelete="SET NULL"), nullable=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plan.id", ondelete="SET NULL"), nullable=True)
    opt_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
