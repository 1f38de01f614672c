"""Programs and events, once for every protocol.

A program has a kind -- ``der`` (DER controls), ``price`` (a tariff, with ``rate`` components as children) or
``dr`` (demand response) -- and members of any protocol: 2030.5 EndDevices (through FunctionSetAssignments for
``der``, through ``program_member`` for ``price``/``dr``) and OpenADR VENs (``program_member``). An event is stored
once in ``event``: the header every protocol shares (program, interval, randomization, response wanted, creation,
modification, cancellation) and a typed ``payload`` per kind (a DERControlBase; consumption-block prices; a
load-control and its OpenADR signal). The adapters render it. Responses from every protocol land in
``event_response``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow

PROGRAM_KINDS = ("der", "price", "rate", "dr")
EVENT_KINDS = ("der", "price", "dr")


class Program(Base):
    """A program of one kind. Lower ``primacy`` wins across programs of a device. ``parent_ref`` is the parent's id
    (a rate component's tariff) or 0, so names are unique among siblings on every backend (NULLs never collide).
    ``attrs`` holds what a kind needs beyond the header (a tariff's currency, a rate's ReadingType);
    ``default_control`` a ``der`` program's DefaultDERControl."""

    __tablename__ = "program"
    __table_args__ = (UniqueConstraint("kind", "parent_ref", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("program.id", ondelete="CASCADE"), nullable=True, index=True
    )
    parent_ref: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(32), default="")
    primacy: Mapped[int] = mapped_column(Integer, default=1)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # DefaultDERControl: {"base": {...DERControlBase fields...}, "setGradW": int|None}; None = none defined
    default_control: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    default_version: Mapped[int] = mapped_column(Integer, default=0)
    # the OpenADR market context its events carry ("" = the server's configured default)
    market_context: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ProgramMember(Base):
    """A party enrolled in a program: a 2030.5 EndDevice (``price``/``dr`` programs; ``der`` programs reach their
    devices through FunctionSetAssignments) or an OpenADR VEN. Exactly one of the two is set."""

    __tablename__ = "program_member"
    __table_args__ = (
        UniqueConstraint("program_id", "end_device_id", name="uq_program_member_device"),
        UniqueConstraint("program_id", "ven_pk", name="uq_program_member_ven"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("program.id", ondelete="CASCADE"), index=True)
    end_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("end_device.id", ondelete="CASCADE"), nullable=True, index=True
    )
    ven_pk: Mapped[int | None] = mapped_column(
        ForeignKey("ven.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Event(Base):
    """One event of a program, whatever protocols render it. Never deleted by staff actions: cancellation sets
    ``cancelled_at``; status, supersession and primacy are derived from time (``server.core.der_controls``).
    ``end_at`` (start + duration) is stored so that lists skip completed events in the query.
    ``response_required`` is the 2030.5 bit field (0 = none); OpenADR renders non-zero as ``always``."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_program_end", "program_id", "end_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("program.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(32), default="")
    creation_time: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    duration_s: Mapped[int] = mapped_column(Integer)
    end_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    randomize_start_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    randomize_duration_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_required: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # a cancellation the device should apply with its randomization (EventStatus 3)
    cancel_randomized: Mapped[bool] = mapped_column(Boolean, default=False)
    # every change after creation counts (OpenADR modificationNumber)
    modification_number: Mapped[int] = mapped_column(Integer, default=0)
    modification_reason: Mapped[str] = mapped_column(String(200), default="")
    # OpenADR targeting beyond the program's VEN members: every registered VEN, or the rows of event_target
    all_vens: Mapped[bool] = mapped_column(Boolean, default=False)
    test_event: Mapped[bool] = mapped_column(Boolean, default=False)
    # per kind -- der: {"base": {...}}; price: {"touTier", "tiers": [...]}; dr: {"deviceCategory", "control",
    # ...}; and for OpenADR, {"signal": {"name", "type", "intervals": [...]}, "priority", "comment", ...}
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventTarget(Base):
    """An OpenADR VEN an event was aimed at by name, beyond its program's members."""

    __tablename__ = "event_target"

    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), primary_key=True)
    ven_pk: Mapped[int] = mapped_column(
        ForeignKey("ven.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EventResponse(Base):
    """What a party answered about an event, whatever its protocol: a 2030.5 Response/DrResponse/PriceResponse
    (``end_device_id``, ``lfdi``, ``status`` a ResponseType) or an OpenADR oadrCreatedEvent eventResponse
    (``ven_pk``, ``opt_type``, ``response_code``, ``modification_number``; ``status`` 5 opt-in or 4 opt-out).
    History is kept: a party may change its mind."""

    __tablename__ = "event_response"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(16))
    end_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("end_device.id", ondelete="SET NULL"), nullable=True, index=True
    )
    ven_pk: Mapped[int | None] = mapped_column(
        ForeignKey("ven.id", ondelete="CASCADE"), nullable=True, index=True
    )
    lfdi: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[int] = mapped_column(Integer)
    opt_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    modification_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_id: Mapped[str] = mapped_column(String(200), default="")
    # 2030.5-2023 DERControlResponse modesResponded (a DERControlType bitmap); null when not sent
    modes_responded: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_date_time: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
