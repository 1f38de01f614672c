"""OpenADR virtual end nodes (aggregators speaking OpenADR 2.0b), identified by their certificate fingerprint."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class Ven(Base):
    __tablename__ = "ven"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # last 10 bytes of SHA-256 over the DER certificate, colon hex, upper case
    fingerprint: Mapped[str] = mapped_column(String(29), unique=True)
    ven_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
