"""Staff accounts: roles and the actions they grant, password + TOTP login with lockout, expiring sessions, and
per-account API tokens with scopes.

A role grants an explicit set of actions; no role implies another's. Every admin route declares the one action it
needs (``server.admin.access.requires``); a request is allowed when its credential carries that action. The
configuration's token is the bootstrap credential: it carries every action and is named "bootstrap" in the audit
log."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import StaffAccount, StaffSession, StaffToken

# ---------------------------------------------------------------------------------------------- actions, roles
READ = "fleet.read"  # every list and view of the fleet, programs, events, grid, telemetry, deliveries
ENROL = "devices.enrol"  # devices, aggregators, VENs, Modbus assets, access lists
EVENTS = "events.write"  # controls, events, prices, DR events, Modbus controls, dispatch
PROGRAMS = "programs.write"  # programs, curves, tariffs, rates, DR programs, their members, default controls
GRID = "grid.write"  # grid nodes and members, forecast runs, imported telemetry, plans
SETTINGS = "settings.write"  # 2030.5 rates, mirror usage points, VEN registrations and reports, requeues
STAFF = "staff.manage"  # accounts: create, list, disable
AUDIT = "audit.read"
ALARMS = "alarms.acknowledge"
OWN = "self.manage"  # one's own session and API tokens

ACTIONS = (READ, ENROL, EVENTS, PROGRAMS, GRID, SETTINGS, STAFF, AUDIT, ALARMS, OWN)

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ, OWN}),
    "operator": frozenset({READ, EVENTS, ALARMS, OWN}),
    "engineer": frozenset({READ, ENROL, EVENTS, PROGRAMS, GRID, SETTINGS, ALARMS, OWN}),
    "admin": frozenset({READ, ENROL, EVENTS, PROGRAMS, GRID, SETTINGS, STAFF, AUDIT, ALARMS, OWN}),
}

BOOTSTRAP = "bootstrap"
TOKEN_PREFIX = "dso_"
NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
RECOVERY_CODES = 10
ISSUER = "OpenDSO"

_hasher = PasswordHasher()
# verified against when the account does not exist, so an unknown name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def digest(secret: str) -> str:
    """SHA-256 of a random secret (session id, API token, recovery code): enough for high-entropy values."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and what it may do."""

    actor: str
    credential: str  # session | token:<id> | bootstrap
    actions: frozenset[str]
    account_id: int | None = None
    role: str = ""
    # set for a session: mutating requests must echo it in X-CSRF-Token
    csrf: str | None = None
    session_digest: str | None = None
    expires_at: dt.datetime | None = None


def bootstrap_principal() -> Principal:
    return Principal(actor=BOOTSTRAP, credential=BOOTSTRAP, actions=frozenset(ACTIONS), role="admin")


# ---------------------------------------------------------------------------------------------- accounts
def account_view(a: StaffAccount) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "role": a.role,
        "actions": sorted(ROLES.get(a.role, ())),
        "disabled": a.disabled_at is not None,
        "disabled_at": a.disabled_at,
        "locked_until": a.locked_until,
        "created_at": a.created_at,
        "created_by": a.created_by,
    }


def qr_svg(uri: str) -> str:
    """The provisioning URI as an SVG QR code (for an authenticator app's camera)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False)
    return out.getvalue().decode()


def _recovery_code() -> str:
    raw = secrets.token_hex(6)
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _normal_code(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


async def create_account(session: AsyncSession, name: str, role: str, created_by: str) -> dict[str, Any]:
    """A new account with a generated first password, TOTP secret and recovery codes; the answer is the only
    time those are shown."""
    if not NAME.match(name):
        raise Invalid(
            "name must be 2-64 characters: lower-case letters, digits, '.', '_' or '-', letter first"
        )
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")
    if await session.scalar(select(StaffAccount.id).where(StaffAccount.name == name)) is not None:
        raise Conflict(f"staff account {name!r} exists")
    password = secrets.token_urlsafe(15)
    totp_secret = pyotp.random_base32()
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    account = StaffAccount(
        name=name,
        role=role,
        password_hash=_hasher.hash(password),
        totp_secret=totp_secret,
        totp_last_step=0,
        recovery_digests=[digest(_normal_code(c)) for c in codes],
        failed_logins=0,
        created_by=created_by,
    )
    session.add(account)
    await session.flush()
    uri = pyotp.TOTP(totp_secret).provisioning_uri(name=name, issuer_name=ISSUER)
    return {
        **account_view(account),
        "password": password,
        "totp_secret": totp_secret,
        "totp_uri": uri,
        "totp_qr_svg": qr_svg(uri),
        "recovery_codes": codes,
    }


async def account_named(session: AsyncSession, name: str) -> StaffAccount:
    account = await session.scalar(select(StaffAccount).where(StaffAccount.name == name))
    if account is None:
        raise NotFound(f"no staff account {name!r}")
    return account


async def list_accounts(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.scalars(select(StaffAccount).order_by(StaffAccount.name))
    return [account_view(a) for a in rows]


async def disable_account(session: AsyncSession, name: str, now: dt.datetime) -> dict[str, Any]:
    """A disabled account's sessions and tokens stop working at once (every request checks the account)."""
    account = await account_named(session, name)
    if account.disabled_at is None:
        account.disabled_at = now
    return account_view(account)


async def set_password(session: AsyncSession, account_id: int, old: str, new: str) -> None:
    account = await session.get(StaffAccount, account_id)
    if account is None:
        raise NotFound("no such staff account")
    if not _password_ok(account.password_hash, old):
        raise Invalid("the current password is wrong")
    if len(new) < 12:
        raise Invalid("a password has at least 12 characters")
    account.password_hash = _hasher.hash(new)


# ---------------------------------------------------------------------------------------------- login
@dataclass
class LoginOutcome:
    """``account`` is set when the login succeeded; otherwise ``reason`` says why (for the audit log, never the
    caller) and ``locked`` whether the account is now locked."""

    account: StaffAccount | None = None
    reason: str = ""
    locked: bool = False
    locked_until: dt.datetime | None = None
    name_known: bool = field(default=False)


def _password_ok(stored: str, given: str) -> bool:
    try:
        return _hasher.verify(stored, given)
    except (VerificationError, InvalidHashError):
        return False


def _second_factor_ok(account: StaffAccount, code: str, now: dt.datetime) -> bool:
    """A TOTP code of the current step or its neighbours, each step used once; or an unused recovery code."""
    code = code.strip()
    if re.fullmatch(r"\d{6}", code):
        totp = pyotp.TOTP(account.totp_secret)
        step = totp.timecode(now)
        for candidate in (step - 1, step, step + 1):
            if candidate <= account.totp_last_step:
                continue
            if hmac.compare_digest(totp.generate_otp(candidate), code):
                account.totp_last_step = candidate
                return True
        return False
    wanted = digest(_normal_code(code))
    if wanted in account.recovery_digests:
        account.recovery_digests = [d for d in account.recovery_digests if d != wanted]
        return True
    return False


async def login(
    session: AsyncSession,
    name: str,
    password: str,
    code: str,
    now: dt.datetime,
    max_failures: int,
    lockout_s: int,
) -> LoginOutcome:
    """Check a password and second factor. A locked account is refused without looking at either; the
    ``max_failures``-th failure in a row locks it for ``lockout_s``. The caller commits either way."""
    account = await session.scalar(select(StaffAccount).where(StaffAccount.name == name))
    if account is None:
        _password_ok(_DUMMY_HASH, password)
        return LoginOutcome(reason="unknown account")
    if account.disabled_at is not None:
        return LoginOutcome(reason="account disabled", name_known=True)
    if account.locked_until is not None and account.locked_until > now:
        return LoginOutcome(
            reason="account locked", locked=True, locked_until=account.locked_until, name_known=True
        )
    password_ok = _password_ok(account.password_hash, password)
    # the second factor is only spent (a TOTP step, a recovery code) when the password was right
    if password_ok and _second_factor_ok(account, code, now):
        account.failed_logins, account.locked_until = 0, None
        return LoginOutcome(account=account, name_known=True)
    account.failed_logins += 1
    reason = "wrong password" if not password_ok else "wrong second factor"
    if account.failed_logins >= max_failures:
        account.failed_logins = 0
        account.locked_until = now + dt.timedelta(seconds=lockout_s)
        return LoginOutcome(
            reason=f"{reason}; locked after {max_failures} failures",
            locked=True,
            locked_until=account.locked_until,
            name_known=True,
        )
    return LoginOutcome(reason=reason, name_known=True)


# ---------------------------------------------------------------------------------------------- sessions
async def start_session(
    session: AsyncSession, account: StaffAccount, now: dt.datetime, ttl_s: int, remote: str
) -> tuple[str, StaffSession]:
    """A new session; the first value is the cookie's secret (only its digest is stored)."""
    secret = secrets.token_urlsafe(32)
    row = StaffSession(
        id_digest=digest(secret),
        account_id=account.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_s),
        remote=remote[:64],
    )
    session.add(row)
    await session.flush()
    return secret, row


async def session_principal(session: AsyncSession, secret: str, now: dt.datetime) -> Principal | None:
    found = (
        await session.execute(
            select(StaffSession, StaffAccount)
            .join(StaffAccount, StaffAccount.id == StaffSession.account_id)
            .where(StaffSession.id_digest == digest(secret))
        )
    ).first()
    if found is None:
        return None
    row, account = found
    if row.ended_at is not None or row.expires_at <= now or account.disabled_at is not None:
        return None
    return Principal(
        actor=account.name,
        credential="session",
        actions=ROLES.get(account.role, frozenset()),
        account_id=account.id,
        role=account.role,
        csrf=row.csrf_token,
        session_digest=row.id_digest,
        expires_at=row.expires_at,
    )


async def end_session(session: AsyncSession, session_digest: str, now: dt.datetime) -> None:
    row = await session.get(StaffSession, session_digest)
    if row is not None and row.ended_at is None:
        row.ended_at = now


# ---------------------------------------------------------------------------------------------- API tokens
def token_view(t: StaffToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "scopes": list(t.scopes),
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked": t.revoked_at is not None,
        "last_used_at": t.last_used_at,
    }


async def create_token(
    session: AsyncSession,
    principal: Principal,
    name: str,
    scopes: list[str] | None,
    expires_at: dt.datetime,
    now: dt.datetime,
    max_days: int,
) -> dict[str, Any]:
    """A token of the principal's own account carrying ``scopes`` (default: every action of its role, which
    bounds them too); the answer holds the token, shown this once."""
    if principal.account_id is None:
        raise Invalid("the bootstrap credential has no account to issue tokens for; create an admin account")
    wanted = set(principal.actions if scopes is None else scopes)
    unknown = wanted - set(ACTIONS)
    if unknown:
        raise Invalid(f"unknown scopes: {', '.join(sorted(unknown))} (known: {', '.join(ACTIONS)})")
    beyond = wanted - principal.actions
    if beyond:
        raise Invalid(f"a token cannot carry what the account may not do: {', '.join(sorted(beyond))}")
    if not wanted:
        raise Invalid("a token needs at least one scope")
    if expires_at <= now:
        raise Invalid("expires_at must be in the future")
    if expires_at > now + dt.timedelta(days=max_days):
        raise Invalid(f"a token lives at most {max_days} days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = StaffToken(
        account_id=principal.account_id,
        name=name[:100],
        digest=digest(secret),
        scopes=sorted(wanted),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return {**token_view(row), "token": secret}


async def token_principal(session: AsyncSession, secret: str, now: dt.datetime) -> Principal | None:
    """The principal of a live token (not expired, not revoked, account enabled); its use is remembered."""
    found = (
        await session.execute(
            select(StaffToken, StaffAccount)
            .join(StaffAccount, StaffAccount.id == StaffToken.account_id)
            .where(StaffToken.digest == digest(secret))
        )
    ).first()
    if found is None:
        return None
    row, account = found
    if row.revoked_at is not None or row.expires_at <= now or account.disabled_at is not None:
        return None
    row.last_used_at = now
    # a token never does more than its account's role allows now, whatever it was issued with
    actions = frozenset(row.scopes) & ROLES.get(account.role, frozenset())
    return Principal(
        actor=account.name,
        credential=f"token:{row.id}",
        actions=actions,
        account_id=account.id,
        role=account.role,
        expires_at=row.expires_at,
    )


async def list_tokens(session: AsyncSession, account_id: int) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(StaffToken).where(StaffToken.account_id == account_id).order_by(StaffToken.id)
    )
    return [token_view(t) for t in rows]


async def revoke_token(
    session: AsyncSession, account_id: int, token_id: int, now: dt.datetime
) -> dict[str, Any]:
    row = await session.get(StaffToken, token_id)
    if row is None or row.account_id != account_id:
        raise NotFound(f"no token {token_id} of this account")
    if row.revoked_at is None:
        row.revoked_at = now
    return token_view(row)


async def credential_owner(session: AsyncSession, secret: str, is_token: bool) -> str:
    """The account an ended session or dead token belonged to (for the audit record of its refused use)."""
    if is_token:
        query = select(StaffAccount.name).join(StaffToken, StaffToken.account_id == StaffAccount.id)
        query = query.where(StaffToken.digest == digest(secret))
    else:
        query = select(StaffAccount.name).join(StaffSession, StaffSession.account_id == StaffAccount.id)
        query = query.where(StaffSession.id_digest == digest(secret))
    return await session.scalar(query) or ""
