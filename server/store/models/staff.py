"""Staff accounts, their sessions and API tokens, and the audit log of what staff did.

Secrets are never stored: passwords as argon2 hashes, session ids, API tokens and recovery codes (random, high
entropy) as SHA-256 digests. The TOTP secret has to be readable to check a code, so it is kept as issued."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models.base import Base
from server.store.types import UtcDateTime, utcnow


class StaffAccount(Base):
    __tablename__ = "staff_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # viewer | operator | engineer | admin (server.core.staff.ROLES says what each may do)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str] = mapped_column(String(64))
    # the last TOTP time step accepted: a code is good once (no replay within its window)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    # SHA-256 digests of the recovery codes not used yet
    recovery_digests: Mapped[list[str]] = mapped_column(JSON, default=list)
    # consecutive failed logins, and the lock they led to
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class StaffSession(Base):
    """A browser login: the cookie carries a random id whose digest is the key here."""

    __tablename__ = "staff_session"
    __table_args__ = (Index("ix_staff_session_account_id", "account_id"),)

    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_account.id", ondelete="CASCADE"))
    # sent back in X-CSRF-Token on every mutating request made with the cookie
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    remote: Mapped[str] = mapped_column(String(64), default="")


class StaffToken(Base):
    """An API token of one account for scripts and the CLI: a subset of the account's actions, an expiry."""

    __tablename__ = "staff_token"
    __table_args__ = (Index("ix_staff_token_account_id", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("staff_account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100), default="")
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditRecord(Base):
    """One staff action or authentication event. The application only ever inserts here (the database refuses
    UPDATE and DELETE with a trigger)."""

    __tablename__ = "audit_record"
    __table_args__ = (Index("ix_audit_record_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # request | login | login.failed | login.locked | logout | token.use | auth.failed
    event: Mapped[str] = mapped_column(String(20))
    # the account name, "bootstrap" (the configuration's token) or "" (nobody authenticated)
    actor: Mapped[str] = mapped_column(String(64), default="")
    # how the actor authenticated: session | token:<id> | bootstrap | none
    credential: Mapped[str] = mapped_column(String(32), default="none")
    method: Mapped[str] = mapped_column(String(8), default="")
    route: Mapped[str] = mapped_column(String(200), default="")
    path: Mapped[str] = mapped_column(String(500), default="")
    # the request body with every secret-looking field replaced (see server.core.audit.redact)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")
    remote: Mapped[str] = mapped_column(String(64), default="")
