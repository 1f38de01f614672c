"""The time-indexed telemetry store shared by every protocol (OpenADR reports, 2030.5 meter readings, Modbus).

One row is one value of one series at one instant. A series is (source_kind, source_id, resource, measurement);
``unit`` is the SI unit after normalisation (scale multipliers applied), so the forecaster reads one data set
without knowing which protocol delivered it. Rows are append-only and a reading is stored once: the
unique key (source, series, reading type, time) makes a re-posted reading (a device's retry, a re-run
import) a no-op.
That key also serves the usual "this series between t0 and t1" query; the ``ts`` index serves retention and
fleet-wide time slices.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key for billions of rows
BigId = BigInteger().with_variant(Integer(), "sqlite")
# what makes a reading the same reading: its source, its series, its reading type and its time
READING_KEY = ("source_kind", "source_id", "resource", "measurement", "ts", "reading_type")


class TelemetryReading(Base):
    __tablename__ = "telemetry"
    __table_args__ = (
        Index(
            "uq_telemetry_reading",
            *READING_KEY,
            unique=True,
        ),
        Index("ix_telemetry_ts", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "ven" (OpenADR), "device" (2030.5 LFDI), "modbus", ...
    source_kind: Mapped[str] = mapped_column(String(16))
    # venID, LFDI, gateway id
    source_id: Mapped[str] = mapped_column(String(64))
    # resourceID / meter mRID / usage point; "" when the source itself is measured
    resource: Mapped[str] = mapped_column(String(200), default="")
    # protocol-neutral quantity name: realPower, reactivePower, energyReal, voltage, current, frequency, ...
    measurement: Mapped[str] = mapped_column(String(64))
    # Direct Read, Net, Summed, Projected, ... (empty when unknown)
    reading_type: Mapped[str] = mapped_column(String(32), default="")
    unit: Mapped[str] = mapped_column(String(16), default="")
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    value: Mapped[float] = mapped_column(Float)
    # length of the interval the value covers (None for instantaneous readings)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
