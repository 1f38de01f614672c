"""The polling worker and the control call: SunSpec devices -> telemetry store; staff/orchestration -> model 123.

Each poll opens a short connection (poll periods are seconds to minutes, and a device restarting between polls
must not wedge a long-lived socket). Device state lives in the database; the worker keeps none that matters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select, update

from server.config import ModbusSettings
from server.core import telemetry
from server.core.errors import Invalid, NotFound
from server.modbus import sunspec
from server.modbus.client import GatewayError, SunSpecClient
from server.store import Store
from server.store.models import ModbusDevice
from server.store.types import utcnow

log = logging.getLogger("dso.modbus")
UNITS = {
    "current": "A",
    "voltage": "V",
    "realPower": "W",
    "frequency": "Hz",
    "apparentPower": "VA",
    "reactivePower": "var",
    "powerFactor": "",
    "energyReal": "Wh",
    "operatingState": "",
    "ratedPower": "W",
}


@dataclass(frozen=True)
class Target:
    id: int
    name: str
    host: str
    port: int
    unit_id: int


def _target(d: ModbusDevice) -> Target:
    return Target(d.id, d.name, d.host, d.port, d.unit_id)


async def poll_once(store: Store, settings: ModbusSettings, target: Target) -> dict[str, float]:
    """Read one device and store its measurements; returns them. Status is recorded either way."""
    now = utcnow()
    values: dict[str, float] = {}
    info: dict[str, str] = {}
    error = ""
    try:
        async with SunSpecClient(target.host, target.port, target.unit_id, settings.timeout_s) as client:
            if 1 in client.blocks:
                info = sunspec.decode_common(await client.block(1))
            inverter = client.inverter_model()
            if inverter is None:
                raise GatewayError(f"no inverter model (101-103) among {sorted(client.blocks)}")
            values = sunspec.decode_inverter(await client.block(inverter))
            if sunspec.NAMEPLATE in client.blocks:
                values.update(sunspec.decode_nameplate(await client.block(sunspec.NAMEPLATE)))
            info["models"] = ",".join(str(m) for m in sorted(client.blocks))
    except (TimeoutError, GatewayError, OSError) as exc:
        error = str(exc) or type(exc).__name__
    async with store.sessions.begin() as session:
        status = {"last_poll_at": now, "last_error": error}
        if not error:
            status["last_ok_at"] = now
            status.update({k: info[k][:64] for k in ("manufacturer", "model", "serial") if k in info})
            status["models"] = info.get("models", "")[:200]
            await telemetry.add(
                session,
                [
                    telemetry.Reading(
                        source_kind="modbus",
                        source_id=target.name,
                        measurement=name,
                        ts=now,
                        value=value,
                        unit=UNITS.get(name, ""),
                    )
                    for name, value in values.items()
                ],
            )
        await session.execute(update(ModbusDevice).where(ModbusDevice.id == target.id).values(**status))
    if error:
        log.warning("modbus poll of %s failed: %s", target.name, error)
    return values


async def apply_control(
    store: Store,
    settings: ModbusSettings,
    name: str,
    export_limit_pct: float | None = None,
    release_limit: bool = False,
    connect: bool | None = None,
) -> dict[str, object]:
    """Write SunSpec immediate controls; returns what was written (register offsets within model 123)."""
    if export_limit_pct is None and connect is None and not release_limit:
        raise Invalid("nothing to apply: give an export limit, release, or connect")
    if export_limit_pct is not None and release_limit:
        raise Invalid("an export limit and its release cannot be applied together")
    async with store.sessions() as session:
        device = await session.scalar(select(ModbusDevice).where(ModbusDevice.name == name))
        if device is None:
            raise NotFound(f"no modbus device {name!r}")
        target = _target(device)
    try:
        async with SunSpecClient(target.host, target.port, target.unit_id, settings.timeout_s) as client:
            controls = await client.block(sunspec.CONTROLS)
            writes: list[tuple[int, int]] = []
            if export_limit_pct is not None:
                writes += sunspec.encode_export_limit(export_limit_pct, controls[sunspec.WMAXLIMPCT_SF])
            if release_limit:
                writes += sunspec.encode_release_limit()
            if connect is not None:
                writes += sunspec.encode_connect(connect)
            base = client.blocks[sunspec.CONTROLS].address
            for offset, value in writes:
                await client.write(base + offset, value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    except (TimeoutError, GatewayError, OSError) as exc:
        raise Invalid(f"modbus device {name!r}: {exc}") from None
    log.info("modbus control %s: %s", name, writes)
    return {"device": name, "writes": [{"offset": o, "value": v} for o, v in writes]}


class ModbusGateway:
    """Polls every enabled device when its poll period has passed; one process polls (the scheduler's leader
    would be the natural owner on PostgreSQL; on SQLite there is one process)."""

    def __init__(self, store: Store, settings: ModbusSettings, is_leader=lambda: True) -> None:
        self.store = store
        self.settings = settings
        # several processes on one PostgreSQL: only the scheduler's leader polls, so devices are polled once
        self.is_leader = is_leader
        self._task: asyncio.Task[None] | None = None
        self._busy: set[int] = set()
        self._polls: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._run(), name="modbus-gateway")

    async def stop(self) -> None:
        for task in [self._task, *self._polls]:
            if task:
                task.cancel()
        for task in [self._task, *self._polls]:
            if task:
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def _due(self) -> list[Target]:
        now = utcnow()
        async with self.store.sessions() as session:
            devices = await session.scalars(select(ModbusDevice).where(ModbusDevice.enabled.is_(True)))
            return [
                _target(d)
                for d in devices
                if d.id not in self._busy
                and (d.last_poll_at is None or d.last_poll_at + dt.timedelta(seconds=d.poll_s) <= now)
            ]

    async def _poll(self, target: Target) -> None:
        try:
            await poll_once(self.store, self.settings, target)
        except Exception:  # one broken device must not stop the others
            log.exception("modbus poll of %s crashed", target.name)
        finally:
            self._busy.discard(target.id)

    async def _run(self) -> None:
        while True:
            try:
                for target in await self._due() if self.is_leader() else []:
                    self._busy.add(target.id)
                    task = asyncio.create_task(self._poll(target), name=f"modbus-poll-{target.name}")
                    self._polls.add(task)
                    task.add_done_callback(self._polls.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("modbus gateway pass failed")
            await asyncio.sleep(1)
