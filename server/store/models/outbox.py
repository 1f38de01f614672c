"""The durable delivery outbox: 2030.5 notifications and OpenADR push messages waiting to be POSTed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class OutboxMessage(Base):
    __tablename__ = "outbox_message"
    __table_args__ = (
        # the claim query: due pending messages, oldest first, and "is there an older pending one for this key"
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
        Index("ix_outbox_message_key_status", "order_key", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # what produced it: "sep2-notification", "openadr-push", ...
    channel: Mapped[str] = mapped_column(String(40))
    # messages with the same key are delivered strictly in id order (one subscription, one VEN)
    order_key: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    content_type: Mapped[str] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # pending -> delivered | failed (gave up)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # a worker that claimed the message owns it until then (crash-safe across processes)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
