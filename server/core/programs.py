"""Programs of every kind and who is enrolled in them; for DER programs also their FunctionSetAssignments,
DERCurves and default control.

A program is ``der`` (DER controls), ``price`` (a tariff; its ``rate`` components hold the prices) or ``dr``
(demand response). 2030.5 EndDevices reach ``der`` programs through FunctionSetAssignments and ``price``/``dr``
programs as members; OpenADR VENs are members of any program. Events live in ``server.core.events``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.core import changes
from server.core.der_controls import CURVE_FIELDS, check_base
from server.core.errors import Conflict, Invalid, NotFound
from server.store.models import EndDevice, Program, ProgramMember, Sep2Curve, Sep2Fsa, Sep2FsaProgram, Ven
from server.store.models.events import PROGRAM_KINDS
from server.store.types import utcnow

DEVICE_PROGRAM_PREFIX = "device:"  # programs created for controls aimed at one device
DEFAULT_FSA_TITLE = "default"


# ------------------------------------------------------------------------------------------------------ programs
def program_dict(p: Program) -> dict[str, Any]:
    return {
        "id": p.id,
        "kind": p.kind,
        "name": p.name,
        "description": p.description,
        "primacy": p.primacy,
        "parent_id": p.parent_id,
        "attrs": p.attrs,
        "default_control": p.default_control,
        "market_context": p.market_context,
        "created_at": p.created_at.isoformat(),
    }


def _primacy(value: int) -> int:
    if not 0 <= value <= 255:
        raise Invalid("primacy must be 0..255 (lower wins)")
    return value


async def create(
    session: AsyncSession,
    kind: str,
    name: str,
    *,
    primacy: int = 1,
    description: str = "",
    parent: Program | None = None,
    attrs: dict[str, Any] | None = None,
    market_context: str = "",
) -> Program:
    if kind not in PROGRAM_KINDS:
        raise Invalid(f"kind must be one of {', '.join(PROGRAM_KINDS)}")
    if (kind == "rate") != (parent is not None) or (parent is not None and parent.kind != "price"):
        raise Invalid("a rate component belongs to a tariff, and only rate components have a parent")
    if not name or len(name) > 200:
        raise Invalid("program name must be 1..200 characters")
    if len(market_context) > 300:
        raise Invalid("market_context is at most 300 characters")
    parent_ref = parent.id if parent else 0
    found = await session.scalar(
        select(Program.id).where(Program.kind == kind, Program.name == name, Program.parent_ref == parent_ref)
    )
    if found is not None:
        raise Conflict(f"a {kind} program named {name!r} already exists")
    program = Program(
        kind=kind,
        name=name,
        primacy=_primacy(primacy),
        description=description[:32],
        parent_id=parent.id if parent else None,
        parent_ref=parent_ref,
        attrs=attrs or {},
        market_context=market_context,
    )
    session.add(program)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a {kind} program named {name!r} already exists") from None
    if parent is not None:
        # a new rate component changes its tariff as devices read it (the TariffProfile's RateComponentListLink)
        changes.record(session, programs=[parent.id])
    return program


async def create_program(session: AsyncSession, name: str, primacy: int, description: str = "") -> Program:
    """A DER program."""
    return await create(session, "der", name, primacy=primacy, description=description)


async def update_program(
    session: AsyncSession, program: Program, primacy: int | None = None, description: str | None = None
) -> Program:
    if primacy is not None:
        program.primacy = _primacy(primacy)
    if description is not None:
        program.description = description[:32]
    program.changed_at = utcnow()
    await session.flush()
    changes.record(session, programs=[program.id])
    return program


async def list_programs(
    session: AsyncSession, kind: str = "der", parent_id: int | None = None
) -> list[Program]:
    query = select(Program).where(Program.kind == kind)
    if parent_id is not None:
        query = query.where(Program.parent_id == parent_id)
    return list(await session.scalars(query.order_by(Program.primacy, Program.id)))


async def get_program(session: AsyncSession, ref: int | str, kind: str | None = "der") -> Program:
    """By id (int or digit string) or by (top-level) name; of ``kind`` unless None."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        program = await session.get(Program, int(ref))
        if program is not None and kind is not None and program.kind != kind:
            program = None
    else:
        query = select(Program).where(Program.name == ref, Program.parent_ref == 0)
        if kind is not None:
            query = query.where(Program.kind == kind)
        program = (await session.scalars(query.order_by(Program.id))).first()
    if program is None:
        raise NotFound(f"no {kind + ' ' if kind else ''}program {ref!r}")
    return program


async def market_program(session: AsyncSession, market_context: str) -> Program:
    """The DR program OpenADR events of a market context belong to when staff named no program."""
    found = await session.scalar(
        select(Program)
        .where(Program.kind == "dr", Program.market_context == market_context, Program.parent_ref == 0)
        .order_by(Program.id)
        .limit(1)
    )
    if found is not None:
        return found
    return await create(session, "dr", f"openadr:{market_context}"[:200], market_context=market_context)


# ----------------------------------------------------------------------------------------------------- members
async def add_member(
    session: AsyncSession, program: Program, *, device: EndDevice | None = None, ven: Ven | None = None
) -> bool:
    """Enrol a 2030.5 EndDevice (price and DR programs; DER programs go through FSAs) or an OpenADR VEN;
    False when it already was."""
    if (device is None) == (ven is None):
        raise Invalid("enrol either a device or a VEN")
    if program.kind == "rate":
        raise Invalid("enrol parties in the tariff, not in one of its rate components")
    if device is not None and program.kind == "der":
        await assign(session, program, device)
        return True
    if device is not None:
        # a device finds its tariffs and DR programs through a FunctionSetAssignments
        await ensure_fsa(session, device)
    column = ProgramMember.end_device_id if device is not None else ProgramMember.ven_pk
    party_id = device.id if device is not None else ven.id  # type: ignore[union-attr]
    found = await session.scalar(
        select(ProgramMember.id).where(ProgramMember.program_id == program.id, column == party_id)
    )
    if found is not None:
        return False
    session.add(
        ProgramMember(
            program_id=program.id,
            end_device_id=device.id if device is not None else None,
            ven_pk=ven.id if ven is not None else None,
        )
    )
    await session.flush()
    changes.record(session, programs=[program.id], devices=[device.id] if device is not None else [])
    return True


async def remove_member(
    session: AsyncSession, program: Program, *, device: EndDevice | None = None, ven: Ven | None = None
) -> None:
    if device is not None and program.kind == "der":
        await unassign(session, program, device)
        return
    column = ProgramMember.end_device_id if device is not None else ProgramMember.ven_pk
    party_id = device.id if device is not None else ven.id if ven is not None else None
    await session.execute(
        delete(ProgramMember).where(ProgramMember.program_id == program.id, column == party_id)
    )
    changes.record(session, programs=[program.id], devices=[device.id] if device is not None else [])


async def member_device_ids(session: AsyncSession, program_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(ProgramMember.end_device_id)
            .where(ProgramMember.program_id == program_id, ProgramMember.end_device_id.is_not(None))
            .order_by(ProgramMember.end_device_id)
        )
    )


async def member_ven_names(session: AsyncSession, program_id: int) -> list[str]:
    return list(
        await session.scalars(
            select(Ven.name)
            .join(ProgramMember, ProgramMember.ven_pk == Ven.id)
            .where(ProgramMember.program_id == program_id)
            .order_by(Ven.name)
        )
    )


async def device_member_programs(session: AsyncSession, device_id: int, kind: str) -> list[Program]:
    """Top-level programs of ``kind`` (price, dr) the device is enrolled in, in primacy order."""
    enrolled = select(ProgramMember.program_id).where(ProgramMember.end_device_id == device_id)
    return list(
        await session.scalars(
            select(Program)
            .where(Program.kind == kind, Program.id.in_(enrolled))
            .order_by(Program.primacy, Program.id)
        )
    )


async def set_default_control(
    session: AsyncSession, program: Program, base: dict[str, Any] | None, set_grad_w: int | None = None
) -> Program:
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


async def _check_curves(session: AsyncSession, program: Program, base: dict[str, Any]) -> None:
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
    session: AsyncSession, program: Program, device: EndDevice, fsa_title: str = DEFAULT_FSA_TITLE
) -> Sep2Fsa:
    """Put ``program`` into the device's FSA titled ``fsa_title`` (created when missing). Idempotent."""
    fsa = await ensure_fsa(session, device, fsa_title)
    exists = await session.get(Sep2FsaProgram, (fsa.id, program.id))
    if exists is None:
        session.add(Sep2FsaProgram(fsa_id=fsa.id, program_id=program.id))
        await session.flush()
        changes.record(session, devices=[device.id])
    return fsa


async def unassign(session: AsyncSession, program: Program, device: EndDevice) -> None:
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


async def fsa_programs(session: AsyncSession, fsa_id: int) -> list[Program]:
    """Programs in one FSA, ordered as DERProgramList requires: primacy ascending, then id."""
    return list(
        await session.scalars(
            select(Program)
            .join(Sep2FsaProgram, Sep2FsaProgram.program_id == Program.id)
            .where(Sep2FsaProgram.fsa_id == fsa_id)
            .order_by(Program.primacy, Program.id)
        )
    )


async def device_programs(session: AsyncSession, device_id: int) -> list[Program]:
    """Every program assigned to the device through any of its FSAs."""
    # IN (subquery) rather than DISTINCT: PostgreSQL cannot compare the JSON column for DISTINCT
    assigned = (
        select(Sep2FsaProgram.program_id)
        .join(Sep2Fsa, Sep2Fsa.id == Sep2FsaProgram.fsa_id)
        .where(Sep2Fsa.end_device_id == device_id)
    )
    return list(
        await session.scalars(
            select(Program).where(Program.id.in_(assigned)).order_by(Program.primacy, Program.id)
        )
    )


async def program_device_ids(session: AsyncSession, program_id: int) -> list[int]:
    """The devices that see a program through one of their FSAs."""
    return list(
        await session.scalars(
            select(Sep2Fsa.end_device_id)
            .join(Sep2FsaProgram, Sep2FsaProgram.fsa_id == Sep2Fsa.id)
            .where(Sep2FsaProgram.program_id == program_id)
            .distinct()
            .order_by(Sep2Fsa.end_device_id)
        )
    )


async def device_program(session: AsyncSession, device: EndDevice, primacy: int = 1) -> Program:
    """The program holding controls aimed at this one device (created and assigned on first use)."""
    name = DEVICE_PROGRAM_PREFIX + device.lfdi
    program = await session.scalar(select(Program).where(Program.kind == "der", Program.name == name))
    if program is None:
        program = await create_program(session, name, primacy, description=f"device {device.id}")
    await assign(session, program, device)
    return program


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
    program: Program,
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
