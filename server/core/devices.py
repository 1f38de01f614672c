"""Device enrolment and lookup (out-of-band by staff; the 2030.5 adapter adds in-band registration on top)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server import pki
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import Aggregator, EndDevice


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
    lfdi = _lfdi(lfdi)
    agg = await session.scalar(select(Aggregator).where(Aggregator.lfdi == lfdi))
    if agg is None:
        agg = Aggregator(lfdi=lfdi, name=name)
        session.add(agg)
        await session.flush()
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
    return DeviceInfo.of(device)


async def list_devices(session: AsyncSession, aggregator_lfdi: str | None = None) -> list[DeviceInfo]:
    query = select(EndDevice).options(selectinload(EndDevice.aggregator)).order_by(EndDevice.id)
    if aggregator_lfdi:
        query = query.join(Aggregator).where(Aggregator.lfdi == _lfdi(aggregator_lfdi))
    return [DeviceInfo.of(d) for d in await session.scalars(query)]


async def get_device(session: AsyncSession, device_id: int) -> DeviceInfo:
    device = await session.get(EndDevice, device_id, options=[selectinload(EndDevice.aggregator)])
    if device is None:
        raise NotFound(f"no device {device_id}")
    return DeviceInfo.of(device)


async def delete_device(session: AsyncSession, device_id: int) -> None:
    device = await session.get(EndDevice, device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    await session.delete(device)


async def count_devices(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(EndDevice)) or 0)
