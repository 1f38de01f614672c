"""Enrolled parties: 2030.5 EndDevices and the aggregators they are registered under, OpenADR VENs, SunSpec
Modbus assets. Staff enrol them out of band; the protocol adapters add in-band registration on top (2030.5
EndDevice POST, OpenADR self-registration). What a party may then reach is decided by its ``Scope``
(``server.core.scope``): ``visible_devices`` and ``device_in_scope`` are the device queries every adapter uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import delivery, pki
from server.core import changes
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.scope import Scope
from server.core.vens import by_name, mailbox_key, new_ven_id, normalise_fingerprint, queued_counts
from server.store.models import Aggregator, EndDevice, ModbusDevice, Ven
from server.store.models.devices import AGGREGATOR_OWN
from server.store.paging import fetch_page


# ------------------------------------------------------------------------------------ 2030.5 EndDevices
@dataclass(frozen=True)
class DeviceInfo:
    id: int
    lfdi: str
    sfdi: int
    pin: int | None
    name: str
    aggregator_lfdi: str | None
    enabled: bool
    registered_by: str
    created_at: str

    @classmethod
    def of(cls, d: EndDevice) -> DeviceInfo:
        return cls(
            d.id,
            d.lfdi,
            d.sfdi,
            d.pin,
            d.name,
            d.aggregator.lfdi if d.aggregator else None,
            d.enabled,
            d.registered_by,
            d.created_at.isoformat(),
        )


def _check_sfdi(lfdi: str, sfdi: int | None) -> int:
    derived = pki.sfdi_from_lfdi(lfdi)
    if sfdi is None:
        return derived
    if sfdi != derived:
        raise Invalid(f"sfdi {sfdi} does not match the LFDI (expected {derived})")
    return sfdi


async def ensure_aggregator(session: AsyncSession, lfdi: str, name: str = "") -> Aggregator:
    """The aggregator ``lfdi`` (enrolled when new) and its own EndDevice.

    CSIP-AUS gives an aggregator an EndDevice of its own, named by its certificate's LFDI, beside the devices
    registered under it: that EndDevice holds the aggregator's SubscriptionList (the devices' EndDevices, as
    the aggregator sees them, link none)."""
    lfdi = _lfdi(lfdi)
    agg = await session.scalar(select(Aggregator).where(Aggregator.lfdi == lfdi))
    if agg is None:
        agg = Aggregator(lfdi=lfdi, name=name)
        session.add(agg)
        await session.flush()
        changes.record(session, parties=[lfdi])
    if await session.scalar(select(EndDevice.id).where(EndDevice.lfdi == lfdi)) is None:
        own = EndDevice(
            lfdi=lfdi,
            sfdi=pki.sfdi_from_lfdi(lfdi),
            name=name or "aggregator",
            registered_by=AGGREGATOR_OWN,  # it reaches it by its LFDI; it is not one of the devices under it
        )
        session.add(own)
        await session.flush()
        changes.record(session, devices=[own.id])
    return agg


def _lfdi(value: str) -> str:
    try:
        return pki.normalise_lfdi(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _pin(pin: int | None) -> int | None:
    return None if pin is None else check_pin(pin)


def check_pin(pin: int) -> int:
    """A 2030.5 registration PIN: six digits, the last a check digit making the digits' sum a multiple of 10
    (as the SFDI's); a mistyped PIN is refused here rather than failing at the installer."""
    if not 0 <= pin <= 999_999:
        raise Invalid("pin must be six digits (0..999999)")
    digits = [int(d) for d in f"{pin:06d}"]
    if sum(digits) % 10:
        expected = (10 - sum(digits[:5]) % 10) % 10
        raise Invalid(f"pin {pin:06d}: wrong check digit (the last digit should be {expected})")
    return pin


async def enroll_device(
    session: AsyncSession,
    lfdi: str,
    sfdi: int | None = None,
    pin: int | None = None,
    aggregator_lfdi: str | None = None,
    name: str = "",
    registered_by: str = "out-of-band",
) -> DeviceInfo:
    lfdi = _lfdi(lfdi)
    device = EndDevice(
        lfdi=lfdi, sfdi=_check_sfdi(lfdi, sfdi), pin=_pin(pin), name=name, registered_by=registered_by
    )
    if aggregator_lfdi:
        device.aggregator = await ensure_aggregator(session, aggregator_lfdi)
    session.add(device)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a device with LFDI {lfdi} is already enrolled") from None
    changes.record(session, devices=[device.id])
    return DeviceInfo.of(device)


async def ensure_device(
    session: AsyncSession,
    lfdi: str,
    pin: int | None = None,
    aggregator_lfdi: str | None = None,
    name: str = "",
) -> tuple[EndDevice, bool]:
    """Enrol the EndDevice ``lfdi``, or update the PIN/aggregator of the one enrolled (and enable it again);
    returns it and whether it was created."""
    lfdi = _lfdi(lfdi)
    device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == lfdi))
    if device is None:
        info = await enroll_device(session, lfdi, pin=pin, aggregator_lfdi=aggregator_lfdi, name=name)
        made = await session.get(EndDevice, info.id)
        assert made is not None
        return made, True
    before = (device.pin, device.aggregator_id, device.enabled)
    if pin is not None:
        device.pin = _pin(pin)
    if aggregator_lfdi:
        device.aggregator_id = (await ensure_aggregator(session, aggregator_lfdi)).id
    device.enabled = True
    await session.flush()
    if (device.pin, device.aggregator_id, device.enabled) != before:
        changes.record(session, devices=[device.id])
    return device, False


async def remove_device(session: AsyncSession, lfdi: str) -> bool:
    """Remove the EndDevice ``lfdi`` if enrolled; whether there was one."""
    device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == _lfdi(lfdi)))
    if device is None:
        return False
    _record_removal(session, device)
    await session.delete(device)
    await session.flush()
    return True


def _record_removal(session: AsyncSession, device: EndDevice) -> None:
    # once the row is gone nothing joins from it to the aggregator whose EndDeviceList showed it: name it
    changes.record(
        session,
        devices=[device.id],
        objects={"aggregator": [device.aggregator_id]} if device.aggregator_id is not None else None,
    )


def _devices_query(aggregator_lfdi: str | None) -> Select[EndDevice]:
    query = select(EndDevice).options(selectinload(EndDevice.aggregator)).order_by(EndDevice.id)
    if aggregator_lfdi:
        query = query.join(Aggregator).where(Aggregator.lfdi == _lfdi(aggregator_lfdi))
    return query


async def list_devices(session: AsyncSession, aggregator_lfdi: str | None = None) -> list[DeviceInfo]:
    return [DeviceInfo.of(d) for d in await session.scalars(_devices_query(aggregator_lfdi))]


async def devices_page(
    session: AsyncSession, aggregator_lfdi: str | None, offset: int, limit: int
) -> tuple[list[DeviceInfo], int]:
    """One page of ``list_devices`` and the length of the whole list."""
    found, total = await fetch_page(session, _devices_query(aggregator_lfdi), offset, limit)
    return [DeviceInfo.of(d) for d in found], total


async def get_device(session: AsyncSession, device_id: int) -> DeviceInfo:
    device = await session.get(EndDevice, device_id, options=[selectinload(EndDevice.aggregator)])
    if device is None:
        raise NotFound(f"no device {device_id}")
    return DeviceInfo.of(device)


async def delete_device(session: AsyncSession, device_id: int) -> None:
    device = await session.get(EndDevice, device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    _record_removal(session, device)
    await session.delete(device)


async def count_devices(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(EndDevice)) or 0)


def visible_devices_query(scope: Scope) -> Select[EndDevice]:
    """The enabled EndDevices ``scope`` reaches, in EndDeviceList order (sfdi, then id)."""
    return (
        select(EndDevice)
        .where(scope.device_filter(), EndDevice.enabled.is_(True))
        .order_by(EndDevice.sfdi, EndDevice.id)
    )


async def visible_devices(session: AsyncSession, scope: Scope) -> list[EndDevice]:
    """The enabled EndDevices ``scope`` reaches, in EndDeviceList order (none while its access is revoked)."""
    if scope.revoked:
        return []
    return list(await session.scalars(visible_devices_query(scope)))


async def device_in_scope(session: AsyncSession, scope: Scope, device_id: int) -> EndDevice:
    """The EndDevice ``device_id`` if the caller may reach it; otherwise 404 (existence is not disclosed) or 403."""
    scope.check_access()
    device = await session.get(EndDevice, device_id)
    if device is None or not device.enabled:
        raise NotFound(f"no EndDevice {device_id}")
    if not scope.may_see_device(device):
        raise Forbidden(f"EndDevice {device_id} is not yours")
    return device


# ------------------------------------------------------------------------------------------------ OpenADR VENs
@dataclass(frozen=True)
class VenInfo:
    id: int
    name: str
    fingerprint: str
    ven_id: str
    registration_id: str | None
    registered_at: str | None
    transport_address: str
    http_pull: bool
    push_enabled: bool
    xml_signature: bool
    report_only: bool
    enabled: bool
    self_registered: bool
    last_seen_at: str | None
    created_at: str
    queued: int = 0

    @classmethod
    def of(cls, v: Ven, queued: int = 0) -> VenInfo:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return cls(
            v.id,
            v.name,
            v.fingerprint,
            v.ven_id,
            v.registration_id,
            iso(v.registered_at),
            v.transport_address,
            v.http_pull,
            v.push_enabled,
            v.xml_signature,
            v.report_only,
            v.enabled,
            v.self_registered,
            iso(v.last_seen_at),
            v.created_at.isoformat(),
            queued,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def enroll_ven(
    session: AsyncSession,
    name: str,
    fingerprint: str,
    ven_id: str | None = None,
    push_enabled: bool = False,
    self_registered: bool = False,
) -> Ven:
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("name must be 1..200 characters")
    if ven_id is not None and not (0 < len(ven_id) <= 64):
        raise Invalid("venID must be 1..64 characters")
    ven = Ven(
        name=name,
        fingerprint=normalise_fingerprint(fingerprint),
        ven_id=ven_id or new_ven_id(),
        push_enabled=push_enabled,
        self_registered=self_registered,
    )
    session.add(ven)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("a VEN with that name, fingerprint or venID is already enrolled") from None
    changes.record(session, parties=[ven.fingerprint])
    return ven


async def enroll_self_registered_ven(session: AsyncSession, name: str, fingerprint: str) -> Ven:
    """A VEN registering itself: its requested name, or (when another VEN has it) that name made unique with
    the fingerprint. Checked first rather than caught after a failed INSERT: a SAVEPOINT on SQLite opens a read
    transaction that a concurrent commit makes impossible to upgrade ("database is locked" at once)."""
    name = name.strip()[:150]
    if await session.scalar(select(Ven.id).where(Ven.name == name)) is not None:
        name = f"{name}-{normalise_fingerprint(fingerprint).replace(':', '')}"
    return await enroll_ven(session, name, fingerprint, self_registered=True)


async def list_vens(session: AsyncSession) -> list[VenInfo]:
    found = list(await session.scalars(select(Ven).order_by(Ven.id)))
    counts = await queued_counts(session, [v.id for v in found])
    return [VenInfo.of(v, counts.get(v.id, 0)) for v in found]


async def vens_page(session: AsyncSession, offset: int, limit: int) -> tuple[list[VenInfo], int]:
    """One page of ``list_vens`` (queue lengths counted for that page only) and the number of VENs."""
    found, total = await fetch_page(session, select(Ven).order_by(Ven.id), offset, limit)
    counts = await queued_counts(session, [v.id for v in found])
    return [VenInfo.of(v, counts.get(v.id, 0)) for v in found], total


async def ven_info(session: AsyncSession, name: str) -> VenInfo:
    ven = await by_name(session, name)
    counts = await queued_counts(session, [ven.id])
    return VenInfo.of(ven, counts.get(ven.id, 0))


async def update_ven(
    session: AsyncSession, name: str, push_enabled: bool | None = None, enabled: bool | None = None
) -> VenInfo:
    ven = await by_name(session, name)
    if push_enabled is not None:
        ven.push_enabled = push_enabled
    if enabled is not None:
        ven.enabled = enabled
    await session.flush()
    return await ven_info(session, name)


async def delete_ven(session: AsyncSession, name: str) -> None:
    ven = await by_name(session, name)
    await delivery.discard(session, mailbox_key(ven.id))  # what was queued for it goes with it
    changes.record(session, parties=[ven.fingerprint])
    await session.delete(ven)


# -------------------------------------------------------------------------------------- SunSpec Modbus assets
async def list_modbus_devices(session: AsyncSession) -> list[ModbusDevice]:
    return list(await session.scalars(select(ModbusDevice).order_by(ModbusDevice.id)))


async def enroll_modbus_device(
    session: AsyncSession, name: str, host: str, port: int = 502, unit_id: int = 1, poll_s: int = 60
) -> ModbusDevice:
    if (
        not 1 <= len(name) <= 64
        or not 1 <= port <= 65535
        or not 0 <= unit_id <= 247
        or not 1 <= poll_s <= 86400
    ):
        raise Invalid("name 1..64 chars, port 1..65535, unit_id 0..247, poll_s 1..86400")
    device = ModbusDevice(
        name=name,
        host=host,
        port=port,
        unit_id=unit_id,
        poll_s=poll_s,
        enabled=True,
        manufacturer="",
        model="",
        serial="",
        models="",
        last_error="",
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a modbus device named {name!r} exists") from None
    return device


async def modbus_device(session: AsyncSession, name: str) -> ModbusDevice:
    device = await session.scalar(select(ModbusDevice).where(ModbusDevice.name == name))
    if device is None:
        raise NotFound(f"no modbus device {name!r}")
    return device
