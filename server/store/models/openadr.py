"""OpenADR 2.0b state: VENs and their registrations, opt schedules, report metadata and report requests, and the XML-signature
replay cache. Events and the VENs' responses to them belong to programs (``server.store.models.events``).

Every row that belongs to one VEN carries ``ven_pk`` so that each query can be scoped to the caller: a VEN never
sees another VEN's objects.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
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
    # set by oadrCreatePartyRegistration, cleared by a cancellation (either direction)
    registration_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    registered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    profile: Mapped[str] = mapped_column(String(16), default="2.0b")
    transport_address: Mapped[str] = mapped_column(String(500), default="")
    http_pull: Mapped[bool] = mapped_column(Boolean, default=True)
    report_only: Mapped[bool] = mapped_column(Boolean, default=False)
    xml_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    # staff decide whether the VTN may POST to the VEN's transport address
    push_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    self_registered: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OadrOpt(Base):
    """An oadrCreateOpt: an availability schedule or an event-qualified opt in/out."""

    __tablename__ = "oadr_opt"
    __table_args__ = (UniqueConstraint("ven_pk", "opt_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ven_pk: Mapped[int] = mapped_column(ForeignKey("ven.id", ondelete="CASCADE"), index=True)
    opt_id: Mapped[str] = mapped_column(String(200))
    opt_type: Mapped[str] = mapped_column(String(16))
    opt_reason: Mapped[str] = mapped_column(String(64))
    market_context: Mapped[str] = mapped_column(String(300), default="")
    event_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    modification_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # [{"start": iso, "duration_s": int}]
    availability: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    targets: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OadrReportDescription(Base):
    """One data point (rID) a VEN offered in oadrRegisterReport."""

    __tablename__ = "oadr_report_description"
    __table_args__ = (UniqueConstraint("ven_pk", "report_specifier_id", "r_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ven_pk: Mapped[int] = mapped_column(ForeignKey("ven.id", ondelete="CASCADE"), index=True)
    report_specifier_id: Mapped[str] = mapped_column(String(200))
    report_name: Mapped[str] = mapped_column(String(64))
    r_id: Mapped[str] = mapped_column(String(200))
    resource_id: Mapped[str] = mapped_column(String(200), default="")
    report_type: Mapped[str] = mapped_column(String(64), default="")
    reading_type: Mapped[str] = mapped_column(String(64), default="")
    measurement: Mapped[str] = mapped_column(String(64), default="")
    unit: Mapped[str] = mapped_column(String(32), default="")
    scale: Mapped[str] = mapped_column(String(8), default="none")
    min_period_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_period_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class OadrReportRequest(Base):
    """A report the VTN asked a VEN for (oadrRegisteredReport or oadrCreateReport)."""

    __tablename__ = "oadr_report_request"
    __table_args__ = (UniqueConstraint("ven_pk", "report_request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ven_pk: Mapped[int] = mapped_column(ForeignKey("ven.id", ondelete="CASCADE"), index=True)
    report_request_id: Mapped[str] = mapped_column(String(200))
    report_specifier_id: Mapped[str] = mapped_column(String(200))
    report_name: Mapped[str] = mapped_column(String(64), default="")
    r_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    granularity_s: Mapped[int] = mapped_column(Integer, default=0)
    report_back_duration_s: Mapped[int] = mapped_column(Integer, default=0)
    # requested -> active (oadrCreatedReport) -> cancelled
    status: Mapped[str] = mapped_column(String(16), default="requested")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_update_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OadrNonce(Base):
    """ReplayProtect nonces seen in signed messages; in the database so every server process shares them."""

    __tablename__ = "oadr_nonce"

    nonce: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
