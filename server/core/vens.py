"""VENs (OpenADR aggregators): identity checks, registration state and the VEN's ordered message stream in the
delivery outbox (channel ``openadr``; handed out by oadrPoll or pushed). Enrolment lives with every other party in
``server.core.parties``.

A VEN is its certificate fingerprint. ``caller`` turns (TLS fingerprint, venID claimed in the body) into the one
VEN the request may act as, or raises: a venID nobody has -> ``UnknownVen``; a venID that belongs to a different
certificate -> ``VenMismatch``. Every other query in the OpenADR adapter is then scoped by that VEN's primary key.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.core.errors import DomainError, Invalid, NotFound
from server.store.models import Ven
from server.store.types import utcnow

_FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){9}[0-9A-F]{2}$")
# queued message kinds concerning the registration (the OpenADR adapter renders them)
REGISTER_REPORT = "register_report"
REQUEST_REREGISTRATION = "request_reregistration"
CANCEL_REGISTRATION = "cancel_registration"
# the delivery outbox channel of messages for VENs, and one order key per VEN
CHANNEL = "openadr"
KEY_PREFIX = "openadr-ven:"


def mailbox_key(ven_pk: int) -> str:
    return f"{KEY_PREFIX}{ven_pk}"


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
    await delivery.discard(session, mailbox_key(ven.id))
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
    key = mailbox_key(ven_pk)
    if dedupe and await delivery.has_unclaimed(session, key, kind):
        return
    delivery.enqueue(session, CHANNEL, key, kind=kind, payload=payload or {})
    await session.flush()


async def take_next(session: AsyncSession, ven_pk: int) -> delivery.Taken | None:
    """Take the VEN's oldest queued message (one message per poll), marked delivered in the caller's
    transaction; None when nothing is queued or the head is being pushed right now."""
    return await delivery.take_head(session, mailbox_key(ven_pk))


async def queued_counts(session: AsyncSession, ven_pks: list[int]) -> dict[int, int]:
    counts = await delivery.pending_counts(session, [mailbox_key(pk) for pk in ven_pks])
    return {int(key.removeprefix(KEY_PREFIX)): n for key, n in counts.items()}


async def registered_vens(session: AsyncSession) -> list[Ven]:
    return list(await session.scalars(select(Ven).where(Ven.registration_id.is_not(None), Ven.enabled)))


def stale_before(window_s: int) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=window_s)
