"""IEEE 2030.5 tables of the "data up, push down" half: Subscriptions (what a client wants pushed, and where) and
LogEvents (what a device logged). Prices and DRLC events are events of programs (``server.store.models.events``);
meter readings go to the protocol-neutral ``telemetry`` table, notifications to the durable ``delivery_message``
outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class Sep2Subscription(Base):
    """A 2030.5 Subscription, held in the SubscriptionList of ``end_device_id``.

    ``kind`` names what was subscribed to (``derc-list``, ``derc``, ``dderc``, ``derp``, ``derp-list``,
    ``fsa-list``, ``edev-list``, ``edev``); ``program_id``/``target_id`` say which program/object, so a change finds
    its subscribers with one indexed query instead of matching hrefs."""

    __tablename__ = "sep2_subscription"
    __table_args__ = (Index("ix_sep2_subscription_kind_program", "kind", "program_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    end_device_id: Mapped[int] = mapped_column(ForeignKey("end_device.id", ondelete="CASCADE"), index=True)
    # the client (certificate LFDI) that created it: notifications render what *that* client may see
    owner_lfdi: Mapped[str] = mapped_column(String(40), index=True)
    resource: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    program_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    target_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the device whose view the subscribed resource is (``/edev/{e}/...``); None for ``/edev``
    subject_device_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    notification_uri: Mapped[str] = mapped_column(String(2000))
    limit: Mapped[int] = mapped_column(BigInteger, default=1)
    level: Mapped[str] = mapped_column(String(16), default="+S1")
    encoding: Mapped[int] = mapped_column(Integer, default=0)
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    # how many notifications were queued for it (a staff view; the outbox rows carry delivery state)
    notifications: Mapped[int] = mapped_column(BigInteger, default=0)
    # SHA-256 of the resource as its subscriber last saw it (at subscribing, then in each notification): a
    # change that leaves it as it was notifies nobody
    shown_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Sep2LogEvent(Base):
    """A LogEvent a device POSTed to its LogEventList."""

    __tablename__ = "sep2_log_event"
    __table_args__ = (Index("ix_sep2_log_event_device_time", "end_device_id", "created_date_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    end_device_id: Mapped[int] = mapped_column(ForeignKey("end_device.id", ondelete="CASCADE"))
    created_date_time: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    details: Mapped[str] = mapped_column(String(64), default="")
    extended_data: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    function_set: Mapped[int] = mapped_column(Integer)
    log_event_code: Mapped[int] = mapped_column(Integer)
    log_event_id: Mapped[int] = mapped_column(Integer)
    log_event_pen: Mapped[int] = mapped_column(BigInteger)
    profile_id: Mapped[int] = mapped_column(Integer)
    # the validated XML as sent, so staff see exactly what the device said
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
