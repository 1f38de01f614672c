"""IEEE 2030.5 tables: how programs reach devices (FunctionSetAssignments), the DERCurves of a DER program,
resources the devices PUT (DER capability/settings/status/availability, ConnectionPoint), MirrorUsagePoints, and a
small key/value table for protocol settings staff change at runtime (poll/post rates, client access). Programs,
their events and the responses to them are protocol-neutral (``server.store.models.events``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class Sep2Fsa(Base):
    """A FunctionSetAssignments of one EndDevice: the programs listed under it apply to that device."""

    __tablename__ = "sep2_fsa"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    end_device_id: Mapped[int] = mapped_column(ForeignKey("end_device.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)

    programs: Mapped[list[Sep2FsaProgram]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class Sep2FsaProgram(Base):
    __tablename__ = "sep2_fsa_program"

    fsa_id: Mapped[int] = mapped_column(ForeignKey("sep2_fsa.id", ondelete="CASCADE"), primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("program.id", ondelete="CASCADE"), primary_key=True)


class Sep2Curve(Base):
    """A DERCurve of a program (volt-var, volt-watt, freq-watt, ride-through...), referenced from control bases
    by id. Points are [x, y] integer pairs scaled by the power-of-ten multipliers."""

    __tablename__ = "sep2_curve"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("program.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(32), default="")
    curve_type: Mapped[int] = mapped_column(Integer)
    points: Mapped[list[list[int]]] = mapped_column(JSON)
    x_multiplier: Mapped[int] = mapped_column(Integer, default=0)
    y_multiplier: Mapped[int] = mapped_column(Integer, default=0)
    y_ref_type: Mapped[int] = mapped_column(Integer)
    creation_time: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Sep2DeviceResource(Base):
    """A resource a device maintains by PUT (stored as the validated XML it sent): ``dercap``, ``derg`` (settings),
    ``ders`` (status), ``dera`` (availability), ``cp`` (CSIP-AUS ConnectionPoint)."""

    __tablename__ = "sep2_device_resource"

    end_device_id: Mapped[int] = mapped_column(
        ForeignKey("end_device.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Sep2Mup(Base):
    """A MirrorUsagePoint a device (or aggregator) created; readings are appended as MirrorMeterReading XML."""

    __tablename__ = "sep2_mup"
    __table_args__ = (UniqueConstraint("owner_lfdi", "mrid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_lfdi: Mapped[str] = mapped_column(String(40), index=True)
    device_lfdi: Mapped[str] = mapped_column(String(40))
    mrid: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    readings: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Sep2Mmr(Base):
    """A MirrorMeterReading declared in a MirrorUsagePoint; its mRID is unique server-wide, so one client can
    never post readings into (or claim) another client's meter reading."""

    __tablename__ = "sep2_mmr"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mup_id: Mapped[int] = mapped_column(ForeignKey("sep2_mup.id", ondelete="CASCADE"), index=True)
    mrid: Mapped[str] = mapped_column(String(32), unique=True)


class Sep2MupReading(Base):
    __tablename__ = "sep2_mup_reading"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mup_id: Mapped[int] = mapped_column(ForeignKey("sep2_mup.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Sep2Setting(Base):
    """Runtime protocol settings staff change through the admin API (poll/post rates, client access)."""

    __tablename__ = "sep2_setting"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(400))
