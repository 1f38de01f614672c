"""Legacy inverters reached over SunSpec Modbus TCP through the gateway."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class ModbusDevice(Base):
    __tablename__ = "modbus_device"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # telemetry is stored under source_kind "modbus" and this name
    name: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=502)
    unit_id: Mapped[int] = mapped_column(Integer, default=1)
    poll_s: Mapped[int] = mapped_column(Integer, default=60)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # what the device said of itself (SunSpec common model), refreshed on every successful poll
    manufacturer: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(64), default="")
    serial: Mapped[str] = mapped_column(String(64), default="")
    models: Mapped[str] = mapped_column(String(200), default="")
    last_poll_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_ok_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
