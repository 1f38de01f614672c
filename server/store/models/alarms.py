"""Alarms: conditions staff must see and acknowledge (communication lost, deliveries failing, a forecast or plan
that failed, a predicted or measured limit violation).

One row per occurrence of a condition on a subject: while it stays open, raising it again only counts and
refreshes it; once cleared, the next raise opens a new row, so the history of every alarm is kept."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class Alarm(Base):
    __tablename__ = "alarm"
    __table_args__ = (
        Index("ix_alarm_kind_subject", "kind", "subject"),
        Index("ix_alarm_cleared_at", "cleared_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # server.core.alarms.KINDS
    kind: Mapped[str] = mapped_column(String(32))
    # what it is about, as "<type>:<name>": device:LFDI, ven:NAME, plan:ID, node:NAME, channel:NAME, scheduler:JOB
    subject: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(8), default="warning")  # warning | critical
    message: Mapped[str] = mapped_column(Text, default="")
    raised_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    # the condition went away (by itself, or a later success cleared it)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_by: Mapped[str] = mapped_column(String(64), default="")
