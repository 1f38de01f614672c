"""The one delivery outbox: every message the server owes a receiver (2030.5 notifications, OpenADR messages for
VENs, later OpenADR 3 webhooks), and the delivery processes whose heartbeats keep their claims alive."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class DeliveryMessage(Base):
    __tablename__ = "delivery_message"
    __table_args__ = (
        # the claim query: due pending messages of a channel, oldest first ...
        Index("ix_delivery_message_due", "status", "channel", "next_attempt_at"),
        # ... and "is there an older pending one for this key" / the head of one key
        Index("ix_delivery_message_key", "order_key", "status", "id"),
        Index("ix_delivery_message_lease_owner", "lease_owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # whose sender delivers it: "sep2-notification", "openadr", ...
    channel: Mapped[str] = mapped_column(String(40))
    # messages with the same key are delivered strictly in id order (one subscription, one VEN)
    order_key: Mapped[str] = mapped_column(String(200))
    # what the message is within its channel (a subscribed resource kind, an OpenADR message kind)
    kind: Mapped[str] = mapped_column(String(40), default="")
    # where it is POSTed; empty when the channel works it out at delivery (a VEN's current transport address)
    url: Mapped[str] = mapped_column(String(2000), default="")
    content_type: Mapped[str] = mapped_column(String(100), default="")
    # the bytes to send, or None when the channel renders the message at delivery from kind and payload
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # pending -> delivered | failed (dead letter: gave up) | dropped (nothing left to say at delivery)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # the delivery process that claimed it (a DeliveryInstance id) and until when, renewed by its heartbeat
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # how it left: "post" (the server POSTed it) or "poll" (the receiver fetched it)
    via: Mapped[str] = mapped_column(String(8), default="")
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class DeliveryInstance(Base):
    """A running delivery worker. Its heartbeat renews its leases; a stale heartbeat frees its claims."""

    __tablename__ = "delivery_instance"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
