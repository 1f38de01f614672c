"""DER programs, their assignment to devices (FunctionSetAssignments), their controls and default controls.

Protocol-neutral: the 2030.5 adapter renders these as DERProgram/FSA/DERControl/DefaultDERControl, the admin API
as JSON. Controls are never deleted here: cancelling one records when, and its status is derived from time by
``server.core.der_controls``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.core import changes
from server.core.der_controls import CURVE_FIELDS, Interval, check_base, check_event_header
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import EndDevice, Sep2Control, Sep2Curve, Sep2Fsa, Sep2FsaProgram, Sep2Program
from server.store.types import utcnow

DEVICE_PROGRAM_PREFIX = "device:"  # programs created for controls aimed at one device
DEFAULT_FSA_TITLE = "default"


# ------------------------------------------------------------------------------------------------------ programs
def program_dict(p: Sep2Program) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "primacy": p.primacy,
        "default_control": p.default_control,
        "created_at": p.created_at.isoformat(),
    }


def _primacy(value: int) -> int:
    if not 0 <= value <= 255:
        raise Invalid("primacy must be 0..255 (lower wins)")
    return value


async def create_program(
    session: AsyncSession, name: str, primacy: int, description: str = ""
) -> Sep2Program:
    if not name or len(name) > 200:
        raise Invalid("program name must be 1..200 characters")
    program = Sep2Program(name=name, primacy=_primacy(primacy), description=description[:32])
    session.add(program)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a program named {name!r} already exists") from None
    return program


async def update_program(
    session: AsyncSession, program: Sep2Program, primacy: int | None = None, description: str | None = None
) -> Sep2Program:
    if primacy is not None:
        program.primacy = _primacy(primacy)
    if description is not None:
        program.description = description[:32]
    program.changed_at = utcnow()
    await session.flush()
    changes.record(session, programs=[program.id])
    return program


async def list_programs(session: AsyncSession) -> list[Sep2Program]:
    return list(await session.scalars(select(Sep2Program).order_by(Sep2Program.primacy, Sep2Program.id)))


async def get_program(session: AsyncSession, ref: int | str) -> Sep2Program:
    """By id (int or digit string) or by name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        program = await session.get(Sep2Program, int(ref))
    else:
        program = await session.scalar(select(Sep2Program).where(Sep2Program.name == ref))
    if program is None:
        raise NotFound(f"no program {ref!r}")
    return program


async def set_default_control(
    session: AsyncSession, program: Sep2Program, base: dict[str, Any] | None, set_grad_w: int | None = None
) -> Sep2Program:
    """Create/replace (``base`` given) or remove (``base`` None) the program's DefaultDERControl."""
    if base is None:
        program.default_control = None
    else:
        if set_grad_w is not None and not 0 <= set_grad_w <= 65535:
            raise Invalid("setGradW must be 0..65535 (hundredths of a percent of setMaxW per second)")
        clean = check_base(base)
        await _check_curves(session, program, clean)
        program.default_control = {"base": clean, "setGradW": set_grad_w}
    program.default_version += 1
    program.changed_at = utcnow()
    await session.flush()
    changes.record(session, programs=[program.id])
    return program


async def _check_curves(session: AsyncSession, program: Sep2Program, base: dict[str, Any]) -> None:
    """Curve modes reference DERCurves of the same program by id."""
    wanted = {name: base[name] for name in CURVE_FIELDS if name in base}
    if wanted:
        have = {c.id for c in await program_curves(session, program.id)}
        for name, curve_id in wanted.items():
            if curve_id not in have:
                raise Invalid(f"{name}: program {program.name!r} has no curve {curve_id}")


# ----------------------------------------------------------------------------------------------------- devices
async def device_by_lfdi(session: AsyncSession, lfdi: str) -> EndDevice:
    try:
        lfdi = pki.normalise_lfdi(lfdi)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == lfdi))
    if device is None:
        raise NotFound(f"no device with LFDI {lfdi}")
    return device


# -------------------------------------------------------------------------------------------------------- FSAs
async def ensure_fsa(session: AsyncSession, device: EndDevice, title: str = DEFAULT_FSA_TITLE) -> Sep2Fsa:
    fsa = await session.scalar(
        select(Sep2Fsa).where(Sep2Fsa.end_device_id == device.id, Sep2Fsa.title == title)
    )
    if fsa is None:
        fsa = Sep2Fsa(end_device_id=device.id, title=title[:32])
        session.add(fsa)
        await session.flush()
        changes.record(session, devices=[device.id])
    return fsa


async def assign(
    session: AsyncSession, program: Sep2Program, device: EndDevice, fsa_title: str = DEFAULT_FSA_TITLE
) -> Sep2Fsa:
    """Put ``program`` into the device's FSA titled ``fsa_title`` (created when missing). Idempotent."""
    fsa = await ensure_fsa(session, device, fsa_title)
    exists = await session.get(Sep2FsaProgram, (fsa.id, program.id))
    if exists is None:
        session.add(Sep2FsaProgram(fsa_id=fsa.id, program_id=program.id))
        await session.flush()
        changes.record(session, devices=[device.id])
    return fsa


async def unassign(session: AsyncSession, program: Sep2Program, device: EndDevice) -> None:
    fsa_ids = select(Sep2Fsa.id).where(Sep2Fsa.end_device_id == device.id)
    await session.execute(
        delete(Sep2FsaProgram).where(
            Sep2FsaProgram.program_id == program.id, Sep2FsaProgram.fsa_id.in_(fsa_ids)
        )
    )
    changes.record(session, devices=[device.id])


async def device_fsas(session: AsyncSession, device_id: int) -> list[Sep2Fsa]:
    return list(
        await session.scalars(select(Sep2Fsa).where(Sep2Fsa.end_device_id == device_id).order_by(Sep2Fsa.id))
    )


async def fsa_programs(session: AsyncSession, fsa_id: int) -> list[Sep2Program]:
    """Programs in one FSA, ordered as DERProgramList requires: primacy ascending, then id."""
    return list(
        await session.scalars(
            select(Sep2Program)
            .join(Sep2FsaProgram, Sep2FsaProgram.program_id == Sep2Program.id)
            .where(Sep2FsaProgram.fsa_id == fsa_id)
            .order_by(Sep2Program.primacy, Sep2Program.id)
        )
    )


async def device_programs(session: AsyncSession, device_id: int) -> list[Sep2Program]:
    """Every program assigned to the device through any of its FSAs."""
    # IN (subquery) rather than DISTINCT: PostgreSQL cannot compare the JSON column for DISTINCT
    assigned = (
        select(Sep2FsaProgram.program_id)
        .join(Sep2Fsa, Sep2Fsa.id == Sep2FsaProgram.fsa_id)
        .where(Sep2Fsa.end_device_id == device_id)
    )
    return list(
        await session.scalars(
            select(Sep2Program)
            .where(Sep2Program.id.in_(assigned))
            .order_by(Sep2Program.primacy, Sep2Program.id)
        )
    )


async def device_program(session: AsyncSession, device: EndDevice, primacy: int = 1) -> Sep2Program:
    """The program holding controls aimed at this one device (created and assigned on first use)."""
    name = DEVICE_PROGRAM_PREFIX + device.lfdi
    program = await session.scalar(select(Sep2Program).where(Sep2Program.name == name))
    if program is None:
        program = await create_program(session, name, primacy, description=f"device {device.id}")
    await assign(session, program, device)
    return program


# ---------------------------------------------------------------------------------------------------- controls
@dataclass(frozen=True)
class NewControl:
    start: dt.datetime
    duration_s: int
    base: dict[str, Any]
    description: str = ""
    randomize_start_s: int | None = None
    randomize_duration_s: int | None = None
    response_required: int = 3


def control_dict(c: Sep2Control, program: Sep2Program | None = None) -> dict[str, Any]:
    return {
        "id": c.id,
        "program_id": c.program_id,
        "program": program.name if program else None,
        "description": c.description,
        "creation_time": c.creation_time.isoformat(),
        "start": c.start.isoformat(),
        "duration_s": c.duration_s,
        "base": c.base,
        "randomize_start_s": c.randomize_start_s,
        "randomize_duration_s": c.randomize_duration_s,
        "response_required": c.response_required,
        "cancelled_at": c.cancelled_at.isoformat() if c.cancelled_at else None,
    }


async def create_control(session: AsyncSession, program: Sep2Program, new: NewControl) -> Sep2Control:
    check_event_header(
        new.start, new.duration_s, new.randomize_start_s, new.randomize_duration_s, new.response_required
    )
    base = check_base(new.base)
    if not base:
        raise Invalid("a control needs at least one DERControlBase value")
    await _check_curves(session, program, base)
    control = Sep2Control(
        program_id=program.id,
        description=new.description[:32],
        start=new.start,
        duration_s=new.duration_s,
        base=base,
        randomize_start_s=new.randomize_start_s,
        randomize_duration_s=new.randomize_duration_s,
        response_required=new.response_required,
        creation_time=utcnow(),
    )
    session.add(control)
    await session.flush()
    changes.record(session, programs=[program.id])
    return control


async def get_control(session: AsyncSession, control_id: int) -> Sep2Control:
    control = await session.get(Sep2Control, control_id)
    if control is None:
        raise NotFound(f"no control {control_id}")
    return control


async def cancel_control(
    session: AsyncSession, control: Sep2Control, randomized: bool = False
) -> Sep2Control:
    if control.cancelled_at is None:
        control.cancelled_at = utcnow()
        control.cancel_randomized = randomized
        await session.flush()
        changes.record(session, programs=[control.program_id])
    return control


async def list_controls(session: AsyncSession, program_ids: list[int] | None = None) -> list[Sep2Control]:
    query = select(Sep2Control).order_by(
        Sep2Control.start, Sep2Control.creation_time.desc(), Sep2Control.id.desc()
    )
    if program_ids is not None:
        query = query.where(Sep2Control.program_id.in_(program_ids))
    return list(await session.scalars(query))


async def device_intervals(
    session: AsyncSession, device_id: int
) -> tuple[list[Interval], dict[int, Sep2Control]]:
    """Every control of every program assigned to the device, as Intervals for the status rules."""
    programs = {p.id: p for p in await device_programs(session, device_id)}
    controls = await list_controls(session, list(programs)) if programs else []
    intervals = [interval_of(c, programs[c.program_id].primacy) for c in controls]
    return intervals, {c.id: c for c in controls}


def interval_of(c: Sep2Control, primacy: int) -> Interval:
    return Interval(
        id=c.id,
        program_id=c.program_id,
        primacy=primacy,
        creation_time=c.creation_time,
        start=c.start,
        duration_s=c.duration_s,
        cancelled=c.cancelled_at is not None,
        cancel_randomized=c.cancel_randomized,
    )


async def count_controls(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Sep2Control)) or 0)


# ------------------------------------------------------------------------------------------------------ curves
CURVE_TYPES = range(0, 14)  # DERCurveType: 0 opModFreqWatt .. 13 opModWattVar
Y_REF_TYPES = range(
    0, 6
)  # DERUnitRefType: 0 N/A, 1 %setMaxW, 2 %setMaxVar, 3 %statVarAvail, 4 %setEffectiveV, ...


def curve_dict(c: Sep2Curve) -> dict[str, Any]:
    return {
        "id": c.id,
        "program_id": c.program_id,
        "description": c.description,
        "curve_type": c.curve_type,
        "points": c.points,
        "x_multiplier": c.x_multiplier,
        "y_multiplier": c.y_multiplier,
        "y_ref_type": c.y_ref_type,
        "creation_time": c.creation_time.isoformat(),
    }


async def create_curve(
    session: AsyncSession,
    program: Sep2Program,
    curve_type: int,
    points: list[list[int]],
    y_ref_type: int,
    x_multiplier: int = 0,
    y_multiplier: int = 0,
    description: str = "",
) -> Sep2Curve:
    if curve_type not in CURVE_TYPES:
        raise Invalid("curve_type must be a DERCurveType 0..13")
    if y_ref_type not in Y_REF_TYPES:
        raise Invalid("y_ref_type must be a DERUnitRefType 0..5")
    if not 1 <= len(points) <= 10:
        raise Invalid("a DERCurve has 1..10 points")
    for p in points:
        if (
            not isinstance(p, list | tuple)
            or len(p) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31 for v in p)
        ):
            raise Invalid("points must be [x, y] pairs of Int32")
    for m in (x_multiplier, y_multiplier):
        if not -9 <= m <= 9:
            raise Invalid("multipliers are powers of ten -9..9")
    curve = Sep2Curve(
        program_id=program.id,
        curve_type=curve_type,
        points=[list(p) for p in points],
        y_ref_type=y_ref_type,
        x_multiplier=x_multiplier,
        y_multiplier=y_multiplier,
        description=description[:32],
        creation_time=utcnow(),
    )
    session.add(curve)
    await session.flush()
    changes.record(session, programs=[program.id])  # its DERProgram counts its curves
    return curve


async def program_curves(session: AsyncSession, program_id: int) -> list[Sep2Curve]:
    return list(
        await session.scalars(
            select(Sep2Curve).where(Sep2Curve.program_id == program_id).order_by(Sep2Curve.id)
        )
    )


async def delete_curve(session: AsyncSession, curve_id: int) -> None:
    curve = await session.get(Sep2Curve, curve_id)
    if curve is None:
        raise NotFound(f"no curve {curve_id}")
    await session.delete(curve)
    changes.record(session, programs=[curve.program_id])
