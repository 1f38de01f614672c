"""What staff see of the fleet, one page at a time: each party's online state and last contact (by the windows of
``server.core.comms``), a 2030.5 device's reported DER status and capability, and the controls in force.

Filtering (online/offline, a name or identifier fragment) and paging happen in SQL, so a page of a fleet of ten
thousand costs the same as a page of ten; per-row details are fetched for the rows of the page only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.config import Settings
from server.core import comms, events
from server.core import sep2_device as devres
from server.store.models import (
    Aggregator,
    EndDevice,
    Event,
    ModbusDevice,
    Program,
    Sep2DeviceResource,
    Sep2Fsa,
    Sep2FsaProgram,
    Ven,
)
from server.store.paging import count_rows

KINDS = ("sep2", "aggregator", "ven", "modbus")
STATES = ("all", "online", "offline")


@dataclass
class Row:
    kind: str
    id: int
    name: str
    ident: str  # LFDI, fingerprint or host:port
    online: bool
    last_contact: dt.datetime | None
    detail: str = ""
    status: dict[str, Any] | None = None
    active_controls: list[dict[str, Any]] = field(default_factory=list)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search(columns: list[Any], q: str) -> ColumnElement[bool]:
    return or_(*(c.ilike(_like(q), escape="\\") for c in columns))


def _state(query: Any, fresh: ColumnElement[bool], state: str) -> Any:
    if state == "online":
        return query.where(fresh)
    if state == "offline":
        return query.where(~fresh)
    return query


async def _rows(session: AsyncSession, query: Any, offset: int, limit: int) -> tuple[list[Any], int]:
    """``fetch_page`` for queries of several columns."""
    total = await count_rows(session, query)
    if limit <= 0 or offset >= total:
        return [], total
    return list((await session.execute(query.offset(offset).limit(limit))).all()), total


async def active_der_controls(
    session: AsyncSession, device_ids: list[int], now: dt.datetime
) -> dict[int, list[dict[str, Any]]]:
    """device id -> DER controls in force now (not cancelled, started, not ended) in any of its programs."""
    if not device_ids:
        return {}
    rows = await session.execute(
        select(Sep2Fsa.end_device_id, Event, Program)
        .join(Sep2FsaProgram, Sep2FsaProgram.fsa_id == Sep2Fsa.id)
        .join(Event, Event.program_id == Sep2FsaProgram.program_id)
        .join(Program, Program.id == Event.program_id)
        .where(
            Sep2Fsa.end_device_id.in_(device_ids),
            Event.kind == "der",
            Event.cancelled_at.is_(None),
            Event.start <= now,
            Event.end_at > now,
        )
        .order_by(Event.start)
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for device_id, e, program in rows:
        out.setdefault(device_id, []).append(events.control_dict(e, program))
    return out


async def page(
    session: AsyncSession,
    settings: Settings,
    now: dt.datetime,
    kind: str = "sep2",
    state: str = "all",
    q: str = "",
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Row], int]:
    w = await comms.windows(session, settings)
    q = q.strip()
    if kind == "sep2":
        return await _sep2(session, now, w, state, q, offset, limit)
    if kind == "aggregator":
        cutoff = now - dt.timedelta(seconds=w.sep2_s)
        fresh = and_(Aggregator.last_contact_at.is_not(None), Aggregator.last_contact_at >= cutoff)
        query = _state(select(Aggregator, fresh).order_by(Aggregator.id), fresh, state)
        if q:
            query = query.where(_search([Aggregator.name, Aggregator.lfdi], q))
        found, total = await _rows(session, query, offset, limit)
        counts = dict(
            (
                await session.execute(
                    select(EndDevice.aggregator_id, func.count())
                    .where(EndDevice.aggregator_id.in_([a.id for a, _ in found]))
                    .group_by(EndDevice.aggregator_id)
                )
            ).all()
        )
        return [
            Row(
                "aggregator",
                a.id,
                a.name,
                a.lfdi,
                bool(on),
                a.last_contact_at,
                f"{counts.get(a.id, 0)} devices",
            )
            for a, on in found
        ], total
    if kind == "ven":
        cutoff = now - dt.timedelta(seconds=w.ven_s)
        fresh = and_(Ven.last_seen_at.is_not(None), Ven.last_seen_at >= cutoff)
        query = _state(select(Ven, fresh).order_by(Ven.id), fresh, state)
        if q:
            query = query.where(_search([Ven.name, Ven.ven_id, Ven.fingerprint], q))
        found, total = await _rows(session, query, offset, limit)
        return [
            Row(
                "ven",
                v.id,
                v.name,
                v.fingerprint,
                bool(on),
                v.last_seen_at,
                ("registered" if v.registration_id else "not registered")
                + (", push" if v.push_enabled and v.transport_address else ", poll"),
            )
            for v, on in found
        ], total
    if kind == "modbus":
        # each asset has its own poll period and a site has a handful of them: judged here, not in SQL
        query = select(ModbusDevice).order_by(ModbusDevice.id)
        if q:
            query = query.where(_search([ModbusDevice.name, ModbusDevice.host], q))
        rows = [
            Row(
                "modbus",
                m.id,
                m.name,
                f"{m.host}:{m.port}/{m.unit_id}",
                bool(
                    m.enabled
                    and m.last_ok_at
                    and (now - m.last_ok_at).total_seconds() <= w.modbus_s(m.poll_s)
                ),
                m.last_ok_at,
                " ".join(x for x in (m.manufacturer, m.model) if x)
                or (m.last_error[:80] if m.last_error else ""),
            )
            for m in await session.scalars(query)
        ]
        if state != "all":
            rows = [r for r in rows if r.online == (state == "online")]
        return rows[offset : offset + limit], len(rows)
    raise ValueError(kind)


async def device_row(
    session: AsyncSession, settings: Settings, now: dt.datetime, device_id: int
) -> Row | None:
    """The fleet row of one 2030.5 device (its device page)."""
    w = await comms.windows(session, settings)
    rows, _ = await _sep2(session, now, w, "all", "", 0, 1, device_id)
    return rows[0] if rows else None


async def _sep2(
    session: AsyncSession,
    now: dt.datetime,
    w: comms.Windows,
    state: str,
    q: str,
    offset: int,
    limit: int,
    device_id: int | None = None,
) -> tuple[list[Row], int]:
    cutoff = now - dt.timedelta(seconds=w.sep2_s)
    contact = comms.device_contact()
    fresh = and_(EndDevice.enabled.is_(True), contact.is_not(None), contact >= cutoff)
    query = (
        select(EndDevice, contact, fresh)
        .outerjoin(Aggregator, Aggregator.id == EndDevice.aggregator_id)
        .where(comms.fleet_devices())
        .order_by(EndDevice.id)
    )
    query = _state(query, fresh, state)
    if q:
        query = query.where(_search([EndDevice.name, EndDevice.lfdi], q))
    if device_id is not None:
        query = query.where(EndDevice.id == device_id)
    found, total = await _rows(session, query, offset, limit)
    ids = [d.id for d, _, _ in found]
    statuses = dict(
        (
            await session.execute(
                select(Sep2DeviceResource.end_device_id, Sep2DeviceResource.body).where(
                    Sep2DeviceResource.end_device_id.in_(ids), Sep2DeviceResource.kind == "ders"
                )
            )
        ).all()
    )
    controls = await active_der_controls(session, ids, now)
    return [
        Row(
            "sep2",
            d.id,
            d.name,
            d.lfdi,
            bool(on),
            last,
            "disabled" if not d.enabled else ("via aggregator" if d.aggregator_id else ""),
            devres.der_status_summary(statuses.get(d.id)),
            controls.get(d.id, []),
        )
        for d, last, on in found
    ], total


async def device_events(session: AsyncSession, device_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The DER controls of a device's programs, newest first (cancelled and past ones included)."""
    rows = await session.execute(
        select(Event, Program)
        .join(Program, Program.id == Event.program_id)
        .where(
            Event.program_id.in_(
                select(Sep2FsaProgram.program_id)
                .join(Sep2Fsa, Sep2Fsa.id == Sep2FsaProgram.fsa_id)
                .where(Sep2Fsa.end_device_id == device_id)
            ),
            Event.kind == "der",
        )
        .order_by(Event.start.desc(), Event.id.desc())
        .limit(limit)
    )
    return [events.control_dict(e, p) for e, p in rows]
