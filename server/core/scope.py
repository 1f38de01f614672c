"""Who is asking, and what it may see: one ``Scope`` per request or per delivery, built from the TLS identity.

A scope names the *kind* of party (an EndDevice, an aggregator of EndDevices, an OpenADR VEN, staff, or a
certificate nobody enrolled), the party ids it acts as, and whether staff revoked its 2030.5 access. Every core
query over party-owned data takes a scope and filters through it (``device_filter``, ``may_see_device``,
``mup_owners``), so there is exactly one place that decides what a client may see. ``tenant`` is reserved for a
deployment that serves several utilities: when it is set, the filters here add the tenant's condition and no
query elsewhere changes.

Built once: for 2030.5 requests the protocol listener's middleware calls ``for_identity`` (one query) and keeps
the result under ``server.runtime.SCOPE``; the OpenADR adapter resolves the VEN a message acts as (its venID
checked against the certificate) and turns it into the same type (``as_ven``), without a query for the polls it
answers from its cache; a notification is rendered and delivered with ``for_lfdis`` for its subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import changes
from server.core.errors import Forbidden
from server.core.identity import ClientIdentity
from server.store.models import Aggregator, EndDevice, Sep2Setting, Ven

REVOKED = "revoked"  # the value of the ``access:{lfdi}`` setting while a client's 2030.5 access is revoked


def access_key(lfdi: str) -> str:
    return f"access:{lfdi}"


class Party(StrEnum):
    DEVICE = "device"
    AGGREGATOR = "aggregator"
    VEN = "ven"
    STAFF = "staff"
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class Scope:
    kind: Party
    lfdi: str = ""  # the certificate's LFDI (2030.5 clients); "" for staff
    sfdi: int = 0
    fingerprint: str = ""  # the certificate's OpenADR fingerprint
    device_id: int | None = None  # the client's own EndDevice, when it is one
    aggregator_id: int | None = None  # the Aggregator the client is, when it is one
    ven_id: int | None = None  # the VEN (primary key) the client is, when it is one
    revoked: bool = False  # staff revoked this client's 2030.5 access
    tenant: int | None = None  # reserved: the utility the party belongs to on a shared deployment

    @classmethod
    def staff(cls) -> Scope:
        return cls(Party.STAFF)

    @property
    def is_staff(self) -> bool:
        return self.kind is Party.STAFF

    @property
    def registered(self) -> bool:
        return self.device_id is not None or self.aggregator_id is not None

    def check_access(self) -> Scope:
        """The scope itself, or Forbidden when staff revoked this client's access."""
        if self.revoked:
            raise Forbidden("access for this client has been revoked")
        return self

    def device_filter(self) -> ColumnElement[bool]:
        """The EndDevices this party reaches: its own (by certificate LFDI, so a device registered in this very
        request counts) and, for an aggregator, every device registered under it; staff reach all."""
        if self.is_staff:
            return EndDevice.id.is_not(None)
        conds = [EndDevice.lfdi == self.lfdi]
        if self.aggregator_id is not None:
            conds.append(EndDevice.aggregator_id == self.aggregator_id)
        return or_(*conds)

    def may_see_device(self, device: EndDevice) -> bool:
        if self.revoked:
            return False
        if self.is_staff:
            return True
        return device.lfdi == self.lfdi or (
            self.aggregator_id is not None and device.aggregator_id == self.aggregator_id
        )

    def mup_owners(self) -> list[str]:
        """MirrorUsagePoints belong to the client that created them (a device, or an aggregator for its
        devices)."""
        return [self.lfdi]


def _scope(
    lfdi: str,
    sfdi: int,
    fingerprint: str,
    device_id: int | None,
    aggregator_id: int | None,
    ven_id: int | None,
    access: str | None,
) -> Scope:
    if aggregator_id is not None:
        kind = Party.AGGREGATOR
    elif device_id is not None:
        kind = Party.DEVICE
    elif ven_id is not None:
        kind = Party.VEN
    else:
        kind = Party.UNREGISTERED
    return Scope(kind, lfdi, sfdi, fingerprint, device_id, aggregator_id, ven_id, access == REVOKED)


async def for_identity(session: AsyncSession, ident: ClientIdentity) -> Scope:
    """The scope of a TLS client, in one query."""
    row = (
        await session.execute(
            select(
                select(EndDevice.id).where(EndDevice.lfdi == ident.lfdi).scalar_subquery(),
                select(Aggregator.id).where(Aggregator.lfdi == ident.lfdi).scalar_subquery(),
                select(Ven.id).where(Ven.fingerprint == ident.fingerprint).scalar_subquery(),
                select(Sep2Setting.value).where(Sep2Setting.key == access_key(ident.lfdi)).scalar_subquery(),
            )
        )
    ).one()
    return _scope(ident.lfdi, ident.sfdi, ident.fingerprint, *row)


def unresolved(ident: ClientIdentity) -> Scope:
    """A TLS client before the adapter resolved which party it is (OpenADR resolves it per message: ``as_ven``)."""
    return Scope(Party.UNREGISTERED, ident.lfdi, ident.sfdi, ident.fingerprint)


def as_ven(found: Scope, ven_pk: int) -> Scope:
    """The scope of a request once the OpenADR adapter resolved the VEN it acts as (its certificate checked
    against the venID in the message, ``server.core.vens.caller``)."""
    kind = Party.VEN if found.kind in (Party.UNREGISTERED, Party.VEN) else found.kind
    return replace(found, kind=kind, ven_id=ven_pk)


async def for_lfdis(session: AsyncSession, lfdis: Iterable[str]) -> dict[str, Scope]:
    """The scopes of 2030.5 clients known only by LFDI (subscribers whose notifications are rendered or
    delivered), revocation included; a few queries for any number of clients."""
    wanted = sorted(set(lfdis))
    if not wanted:
        return {}
    devices = {
        lfdi: (ident, sfdi)
        for lfdi, ident, sfdi in (
            await session.execute(
                select(EndDevice.lfdi, EndDevice.id, EndDevice.sfdi).where(EndDevice.lfdi.in_(wanted))
            )
        ).all()
    }
    aggs = dict(
        (
            await session.execute(select(Aggregator.lfdi, Aggregator.id).where(Aggregator.lfdi.in_(wanted)))
        ).all()
    )
    revoked = await revoked_among(session, wanted)
    return {
        lfdi: _scope(
            lfdi,
            devices[lfdi][1] if lfdi in devices else 0,
            "",
            devices[lfdi][0] if lfdi in devices else None,
            aggs.get(lfdi),
            None,
            REVOKED if lfdi in revoked else None,
        )
        for lfdi in wanted
    }


async def of_client(session: AsyncSession, lfdi: str, *, as_staff: bool = False) -> Scope:
    """One 2030.5 client's scope; ``as_staff``: what the client owns as staff see it (revoked or not)."""
    found = (await for_lfdis(session, [lfdi]))[lfdi]
    return replace(found, revoked=False) if as_staff else found


async def revoked_among(session: AsyncSession, lfdis: Iterable[str]) -> set[str]:
    """Which of these 2030.5 clients staff revoked."""
    keys = {access_key(lfdi): lfdi for lfdi in lfdis}
    if not keys:
        return set()
    rows = await session.scalars(
        select(Sep2Setting.key).where(Sep2Setting.key.in_(list(keys)), Sep2Setting.value == REVOKED)
    )
    return {keys[k] for k in rows}


async def set_access(session: AsyncSession, lfdi: str, granted: bool) -> None:
    """Grant or revoke a 2030.5 client's access (staff). Takes effect for its next request, its next
    notification and every notification already queued for it (``server.core.subscriptions``)."""
    key = access_key(lfdi)
    row = await session.get(Sep2Setting, key)
    if granted:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(Sep2Setting(key=key, value=REVOKED))
    else:
        row.value = REVOKED
    await session.flush()
    # the record drops every process's kept scopes (server.core.readcache): the next request sees it
    changes.record(session, parties=[lfdi])
