"""What only the OpenADR 3 adapter needs beside the one domain: OAuth2 clients and their bearer tokens, the 3.x
state of a VEN (its client, targets, attributes), VEN resources, subscriptions with their webhooks, and reports
as the VEN posted them (their values also land in the telemetry store).

A 3.x VEN is a row of ``ven`` like every OpenADR VEN (so program membership, event targets and responses are the
one domain's); it has no certificate, so its ``fingerprint`` holds ``oadr3:<client id>``, which no certificate
fingerprint (colon hex) can equal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class Oadr3Client(Base):
    """An OAuth2 client of the 3.x API, created by staff: a VEN or a business-logic (BL) client. Only an argon2
    hash of its secret is kept."""

    __tablename__ = "oadr3_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(8))  # "ven" | "bl"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Oadr3Token(Base):
    """A bearer token handed out by POST /auth/token; only its SHA-256 is kept."""

    __tablename__ = "oadr3_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oadr3_client.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[str] = mapped_column(String(400))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class Oadr3Ven(Base):
    """The 3.x side of a VEN: the client it belongs to (one VEN per VEN client), its targets and attributes."""

    __tablename__ = "oadr3_ven"

    ven_pk: Mapped[int] = mapped_column(ForeignKey("ven.id", ondelete="CASCADE"), primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oadr3_client.id", ondelete="CASCADE"), unique=True)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Oadr3Resource(Base):
    """A resource of a 3.x VEN (a device or site behind it); its reports are telemetry of the VEN's venID with the
    resource's name as the series."""

    __tablename__ = "oadr3_resource"
    __table_args__ = (UniqueConstraint("ven_pk", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ven_pk: Mapped[int] = mapped_column(ForeignKey("ven.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Oadr3Subscription(Base):
    """A client's subscription: which objects and operations it wants to hear of, and the webhooks to call."""

    __tablename__ = "oadr3_subscription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oadr3_client.id", ondelete="CASCADE"), index=True)
    client_name: Mapped[str] = mapped_column(String(128))
    program_id: Mapped[int | None] = mapped_column(
        ForeignKey("program.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # [{"objects": [...], "operations": [...], "callbackUrl": str, "bearerToken": str | None}]
    object_operations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Oadr3Report(Base):
    """A report a VEN posted about an event, kept as posted (name, descriptors, resources with intervals)."""

    __tablename__ = "oadr3_report"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oadr3_client.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    client_name: Mapped[str] = mapped_column(String(128))
    report_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    payload_descriptors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    resources: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
