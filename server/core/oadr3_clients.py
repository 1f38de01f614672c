"""OAuth2 clients of the OpenADR 3 API and the bearer tokens they obtain (client-credentials grant).

Staff create a client with a role: ``ven`` (a VEN and its resources, its reports and subscriptions) or ``bl``
(business logic: programs, events, everything readable). The secret is shown once and kept only as an argon2
hash; a token is 32 random bytes kept as its SHA-256 with an expiry, so a lost database copy yields neither.
Checking a token is one indexed query that also returns the client's VEN, which makes the request's ``Caller``
(the one identity every 3.x query filters through). Disabling a client ends its tokens at the next request.

The OAuth2 scopes are the specification's; a role grants a fixed set of them and a token carries the ones asked
for (all of the role's when none were).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.choices import OADR3_ROLES
from server.core import changes
from server.core.errors import Conflict, DomainError, Invalid, NotFound
from server.store.models import Oadr3Client, Oadr3Token, Oadr3Ven
from server.store.types import utcnow

ROLES = OADR3_ROLES
READ_ALL, READ_BL, READ_TARGETS, READ_VEN_OBJECTS = "read_all", "read_bl", "read_targets", "read_ven_objects"
WRITE_PROGRAMS, WRITE_EVENTS, WRITE_REPORTS = "write_programs", "write_events", "write_reports"
WRITE_SUBSCRIPTIONS, WRITE_VENS = "write_subscriptions", "write_vens"
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "bl": frozenset(
        {
            READ_ALL,
            READ_BL,
            READ_TARGETS,
            READ_VEN_OBJECTS,
            WRITE_PROGRAMS,
            WRITE_EVENTS,
            WRITE_SUBSCRIPTIONS,
            WRITE_VENS,
        }
    ),
    "ven": frozenset({READ_TARGETS, READ_VEN_OBJECTS, WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS}),
}
CLIENT_ID_PREFIX = "oadr3-"

_hasher = PasswordHasher()


class InvalidClient(DomainError):
    """Unknown client id, wrong secret or a disabled client (RFC 6749 ``invalid_client``)."""

    status = 401


class InvalidScope(DomainError):
    """A scope the client's role does not grant (RFC 6749 ``invalid_scope``)."""

    status = 400


@dataclass(frozen=True)
class Caller:
    """Who a 3.x request acts as: built once per request from its bearer token."""

    client_pk: int
    client_id: str
    name: str
    role: str
    scopes: frozenset[str]
    ven_pk: int | None  # the VEN a VEN client registered (None before it has)
    expires_at: dt.datetime | None = None  # of the token this caller came with

    @property
    def is_bl(self) -> bool:
        return self.role == "bl"


@dataclass(frozen=True)
class NewClient:
    id: int
    name: str
    role: str
    client_id: str
    client_secret: str  # shown once


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_client(session: AsyncSession, name: str, role: str) -> NewClient:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise Invalid("a client name must be 1..128 characters")
    if await session.scalar(select(Oadr3Client.id).where(Oadr3Client.name == name)) is not None:
        raise Conflict(f"an OpenADR 3 client named {name!r} exists")
    secret = secrets.token_urlsafe(32)
    client = Oadr3Client(
        name=name,
        role=role,
        client_id=CLIENT_ID_PREFIX + secrets.token_hex(12),
        secret_hash=_hasher.hash(secret),
    )
    session.add(client)
    await session.flush()
    return NewClient(client.id, client.name, client.role, client.client_id, secret)


async def list_clients(session: AsyncSession) -> list[Oadr3Client]:
    return list(await session.scalars(select(Oadr3Client).order_by(Oadr3Client.id)))


async def by_name(session: AsyncSession, name: str) -> Oadr3Client:
    client = await session.scalar(select(Oadr3Client).where(Oadr3Client.name == name))
    if client is None:
        raise NotFound(f"no OpenADR 3 client named {name!r}")
    return client


async def set_enabled(session: AsyncSession, name: str, enabled: bool) -> Oadr3Client:
    client = await by_name(session, name)
    client.enabled = enabled
    if not enabled:
        await session.execute(delete(Oadr3Token).where(Oadr3Token.client_pk == client.id))
    await session.flush()
    # callers kept per token (server.core.readcache) are dropped everywhere by this change
    changes.record(session, parties=[party_of(client.id)])
    return client


def party_of(client_pk: int) -> str:
    """The party name of a client in change records (a 3.x VEN's ``ven.fingerprint`` is the same string)."""
    return f"oadr3:{client_pk}"


def client_dict(c: Oadr3Client) -> dict[str, object]:
    return {
        "id": c.id,
        "name": c.name,
        "role": c.role,
        "client_id": c.client_id,
        "enabled": c.enabled,
        "created_at": c.created_at.isoformat(),
    }


async def client_for_secret(session: AsyncSession, client_id: str) -> Oadr3Client | None:
    return await session.scalar(select(Oadr3Client).where(Oadr3Client.client_id == client_id))


def secret_matches(client: Oadr3Client | None, secret: str) -> bool:
    """argon2 verification (CPU-heavy: callers run it off the event loop)."""
    if client is None:
        # spend the same time on an unknown client id as on a wrong secret
        _hasher.hash(secret or "-")
        return False
    try:
        return _hasher.verify(client.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def granted_scopes(role: str, asked: str | None) -> frozenset[str]:
    allowed = ROLE_SCOPES[role]
    wanted = frozenset((asked or "").split())
    if not wanted:
        return allowed
    refused = wanted - allowed
    if refused:
        raise InvalidScope(f"scope not granted to a {role} client: {' '.join(sorted(refused))}")
    return wanted


async def issue_token(
    session: AsyncSession, client: Oadr3Client, scopes: frozenset[str], ttl_s: int
) -> tuple[str, int]:
    """A new bearer token for an enabled client whose secret was checked; (token, lifetime in seconds)."""
    if not client.enabled:
        raise InvalidClient("this client is disabled")
    now = utcnow()
    # expired tokens of this client are forgotten as it asks for a new one
    await session.execute(
        delete(Oadr3Token).where(Oadr3Token.client_pk == client.id, Oadr3Token.expires_at <= now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        Oadr3Token(
            token_hash=_token_hash(token),
            client_pk=client.id,
            scopes=" ".join(sorted(scopes)),
            expires_at=now + dt.timedelta(seconds=ttl_s),
        )
    )
    await session.flush()
    return token, ttl_s


def token_key(token: str) -> tuple[str, str]:
    """The key a token's caller is kept under (server.core.readcache): its hash, never the token itself."""
    return ("oadr3-token", _token_hash(token))


async def caller_for_token(session: AsyncSession, token: str) -> Caller | None:
    """The caller a bearer token stands for; None when it is unknown, expired or its client disabled. A kept
    caller is dropped by any change of its client's parties (disabled, its VEN registered or deleted); its
    expiry is checked by whoever uses it (``Caller.expires_at``)."""
    row = (
        await session.execute(
            select(Oadr3Token.scopes, Oadr3Token.expires_at, Oadr3Client, Oadr3Ven.ven_pk)
            .join(Oadr3Client, Oadr3Client.id == Oadr3Token.client_pk)
            .outerjoin(Oadr3Ven, Oadr3Ven.client_pk == Oadr3Client.id)
            .where(Oadr3Token.token_hash == _token_hash(token))
        )
    ).first()
    if row is None:
        return None
    scopes, expires_at, client, ven_pk = row
    if expires_at <= utcnow() or not client.enabled:
        return None
    return Caller(
        client.id, client.client_id, client.name, client.role, frozenset(scopes.split()), ven_pk, expires_at
    )
