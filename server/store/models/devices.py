"""Devices and the aggregators that may act for them (2030.5 clients are identified by their LFDI)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class Aggregator(Base):
    __tablename__ = "aggregator"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lfdi: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # when its client last made a request (kept per process, flushed in batches: server.core.contact)
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)

    devices: Mapped[list[EndDevice]] = relationship(back_populates="aggregator")


AGGREGATOR_OWN = "aggregator"


class EndDevice(Base):
    __tablename__ = "end_device"
    # an aggregator's EndDeviceList pages walk this index in list order (server.sep2.common)
    __table_args__ = (Index("ix_end_device_aggregator_list", "aggregator_id", "enabled", "sfdi", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lfdi: Mapped[str] = mapped_column(String(40), unique=True)
    sfdi: Mapped[int] = mapped_column(BigInteger, index=True)
    pin: Mapped[int | None] = mapped_column(Integer, nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # 2030.5 DeviceCategoryType bit string as hex; empty when unknown
    device_category: Mapped[str] = mapped_column(String(16), default="")
    aggregator_id: Mapped[int | None] = mapped_column(
        ForeignKey("aggregator.id", ondelete="SET NULL"), index=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # how it came to be known: "out-of-band" (staff), "in-band" (POSTed by the device or its aggregator), or
    # AGGREGATOR_OWN: the EndDevice CSIP-AUS gives an aggregator itself, which is not one of the fleet's devices
    registered_by: Mapped[str] = mapped_column(String(20), default="out-of-band")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # when its own client last made a request (kept per process, flushed in batches: server.core.contact)
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)

    aggregator: Mapped[Aggregator | None] = relationship(back_populates="devices")
