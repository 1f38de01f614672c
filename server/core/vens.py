"""VENs (OpenADR aggregators): identity checks, registration state and the per-VEN durable message queue
(enrolment lives with every other party in ``server.core.parties``).

A VEN is its certificate fingerprint. ``caller`` turns (TLS fingerprint, venID claimed in the body) into the one
VEN the request may act as, or raises: a venID nobody has -> ``UnknownVen``; a venID that belongs to a different
certificate -> ``VenMismatch``. Every other query in the OpenADR adapter is then scoped by that VEN's primary key.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import DomainError, Invalid, NotFound
from server.store.models import OadrQueued, Ven
from server.store.types import utcnow

_FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){9}[0-9A-F]{2}$")
# queued message kinds concerning the registration (the OpenADR adapter renders them)
REGISTER_REPORT = "register_report"
REQUEST_REREGISTRATION = "request_reregistration"
CANCEL_REGISTRATION = "cancel_registration"


class UnknownVen(DomainError):
    """The venID in a message is not known to this VTN (OpenADR 452)."""

    status = 404


class VenMismatch(DomainError):
    """The venID belongs to a certificate other than the caller's, or the caller is not enrolled (OpenADR 463)."""

    status = 403


class NotRegistered(DomainError):
    """The VEN is known but has no active registration (OpenADR 463)."""

    status = 403


def normalise_fingerprint(value: str) -> str:
    cleaned = value.strip().upper().replace("-", ":")
    if ":" not in cleaned and len(cleaned) == 20:
        cleaned = ":".join(cleaned[i : i + 2] for i in range(0, 20, 2))
    if not _FINGERPRINT.match(cleaned):
        raise Invalid(f"fingerprint must be 10 colon-separated hex bytes, got {value!r}")
    return cleaned


def new_ven_id() -> str:
    # opaque, unguessable, upper case (some VENs dislike lower case identifiers)
    return "VEN-" + secrets.token_hex(8).upper()


async def by_name(session: AsyncSession, name: str) -> Ven:
    ven = await session.scalar(select(Ven).where(Ven.name == name))
    if ven is None:
        raise NotFound(f"no VEN named {name!r}")
    return ven


async def by_names(session: AsyncSession, names: list[str]) -> list[Ven]:
    found = list(await session.scalars(select(Ven).where(Ven.name.in_(names))))
    missing = set(names) - {v.name for v in found}
    if missing:
        raise NotFound(f"no VEN named {', '.join(sorted(missing))}")
    return found


async def by_fingerprint(session: AsyncSession, fingerprint: str) -> Ven | None:
    return await session.scalar(select(Ven).where(Ven.fingerprint == fingerprint))


async def caller(
    session: AsyncSession, fingerprint: str, claimed_ven_id: str | None, require_registration: bool = True
) -> Ven:
    """The VEN this TLS identity may act as, checked against the venID the message claims."""
    ven = await by_fingerprint(session, fingerprint)
    if claimed_ven_id and (ven is None or claimed_ven_id != ven.ven_id):
        other = await session.scalar(select(Ven.id).where(Ven.ven_id == claimed_ven_id))
        if other is None:
            raise UnknownVen(f"venID {claimed_ven_id} is not known to this VTN")
        raise VenMismatch(f"venID {claimed_ven_id} does not belong to certificate {fingerprint}")
    if ven is None:
        raise VenMismatch(f"certificate {fingerprint} is not enrolled with this VTN")
    if not ven.enabled:
        raise VenMismatch(f"VEN {ven.ven_id} is disabled")
    if require_registration and ven.registration_id is None:
        raise NotRegistered(f"VEN {ven.ven_id} is not registered (send oadrCreatePartyRegistration)")
    return ven


async def register(
    session: AsyncSession,
    ven: Ven,
    registration_id: str | None,
    *,
    transport_address: str,
    http_pull: bool,
    report_only: bool,
    xml_signature: bool,
    profile: str,
) -> bool:
    """Create or renew the registration; returns True when it is a new one (not a re-registration)."""
    if registration_id and ven.registration_id and registration_id != ven.registration_id:
        raise UnknownVen(f"registrationID {registration_id} is not this VEN's registration")
    renewed = bool(registration_id and ven.registration_id == registration_id)
    if not renewed:
        ven.registration_id = "REG-" + secrets.token_hex(8).upper()
    ven.registered_at = utcnow()
    ven.transport_address = transport_address
    ven.http_pull = http_pull
    ven.report_only = report_only
    ven.xml_signature = xml_signature
    ven.profile = profile
    await session.flush()
    return not renewed


async def cancel_registration(session: AsyncSession, ven: Ven) -> None:
    ven.registration_id = None
    ven.registered_at = None
    # a cancelled registration takes its pending messages with it (a new registration starts clean)
    await session.execute(delete(OadrQueued).where(OadrQueued.ven_pk == ven.id))
    await session.flush()


async def touch(session: AsyncSession, ven: Ven, every_s: int = 30) -> None:
    """Record that the VEN was seen; at most every ``every_s`` so that a poll stays a read-only transaction."""
    now = utcnow()
    if ven.last_seen_at is None or (now - ven.last_seen_at).total_seconds() >= every_s:
        ven.last_seen_at = now


# ---------------------------------------------------------------------------------------------- queue
async def enqueue(
    session: AsyncSession, ven_pk: int, kind: str, payload: dict[str, Any] | None = None, dedupe: bool = False
) -> None:
    """Queue a message for a VEN. With ``dedupe`` a pending message of the same kind is enough (distributeEvent
    is rendered from the current events at delivery, so one pending copy always carries the latest state)."""
    if dedupe:
        pending = await session.scalar(
            select(OadrQueued.id).where(OadrQueued.ven_pk == ven_pk, OadrQueued.kind == kind).limit(1)
        )
        if pending is not None:
            return
    session.add(OadrQueued(ven_pk=ven_pk, kind=kind, payload=payload or {}))
    await session.flush()


async def take_next(session: AsyncSession, ven_pk: int) -> OadrQueued | None:
    """Remove and return the oldest queued message (one message per poll).

    Whether the DELETE removed the row decides who got it: when two polls of one VEN (or a poll and the push worker) race
    for the same row, the loser moves on to the next row instead of handing the message out twice."""
    for _ in range(10):
        query = select(OadrQueued).where(OadrQueued.ven_pk == ven_pk).order_by(OadrQueued.id).limit(1)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        item = await session.scalar(query)
        if item is None:
            return None
        session.expunge(item)
        deleted = await session.scalar(
            delete(OadrQueued).where(OadrQueued.id == item.id).returning(OadrQueued.id)
        )
        if deleted is not None:
            return item
    return None


async def queued_counts(session: AsyncSession, ven_pks: list[int] | None = None) -> dict[int, int]:
    query = select(OadrQueued.ven_pk, func.count()).group_by(OadrQueued.ven_pk)
    if ven_pks is not None:
        query = query.where(OadrQueued.ven_pk.in_(ven_pks))
    rows = await session.execute(query)
    return {pk: n for pk, n in rows.all()}


async def registered_vens(session: AsyncSession) -> list[Ven]:
    return list(await session.scalars(select(Ven).where(Ven.registration_id.is_not(None), Ven.enabled)))


def stale_before(window_s: int) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=window_s)
