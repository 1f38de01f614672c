"""The OpenADR 3 objects beside the one program/event model, and what each 3.x caller may see of them.

- Programs and events *are* the core's (``server.core.programs``, ``server.core.events``): the 3.x API shows
  programs of kind ``dr`` and rate components (``rate``), the ones whose events carry an OpenADR signal, and their
  price and DR events. A VEN sees a program it is a member of (or whose tariff it is), or one with no VEN members
  at all; it sees an event that reaches it (``events.visible_to_ven``). Cancelled events are gone from 3.x
  (a 3.x DELETE cancels: the core never deletes an event).
- A 3.x VEN is a ``ven`` row (``profile`` "3.1") bound to one VEN client (``oadr3_ven``); its resources,
  subscriptions and reports belong to that client. A VEN client sees only its own VEN, resources, reports and
  subscriptions; a business-logic (BL) client sees all.
- A report is stored as posted, its numeric values land in the telemetry store (source ``ven``, the VEN's venID,
  one series per resource name) and it counts as the VEN's answer to the event in ``event_response``.

Changes are recorded (``server.core.changes``: objects ``event``, ``program``, ``report``) so that the 3.x
notifier queues webhooks in the same transaction; nothing here announces anything itself.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, String, cast, exists, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import changes, events, programs, telemetry
from server.core import vens as vens_core
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.oadr3_clients import Caller, party_of
from server.core.vens import new_ven_id
from server.store.models import (
    Event,
    EventTarget,
    Oadr3Client,
    Oadr3Report,
    Oadr3Resource,
    Oadr3Subscription,
    Oadr3Ven,
    Program,
    ProgramMember,
    Ven,
)
from server.store.types import utcnow

PROGRAM_KINDS = ("dr", "rate")
PROFILE = "3.1"
# a report counts as the VEN's answer "event received" (2030.5 ResponseType 1, the table's shared status codes)
REPORT_STATUS = 1
NO_VEN = -1  # a VEN client that registered no VEN yet reaches only events sent to every VEN


def fingerprint_of(client_pk: int) -> str:
    """What a 3.x VEN's ``ven.fingerprint`` holds: never colon hex, so never a certificate's (and the client's
    party name in change records, which drops its kept callers)."""
    return party_of(client_pk)


# ------------------------------------------------------------------------------------------------------ programs
def program_filter(caller: Caller) -> ColumnElement[bool]:
    shown = Program.kind.in_(PROGRAM_KINDS)
    if caller.is_bl:
        return shown
    ven_pk = caller.ven_pk if caller.ven_pk is not None else NO_VEN
    has_members = exists().where(ProgramMember.program_id == Program.id, ProgramMember.ven_pk.is_not(None))
    parent_members = exists().where(
        ProgramMember.program_id == Program.parent_id, ProgramMember.ven_pk.is_not(None)
    )
    return shown & or_(Program.id.in_(events.ven_programs(ven_pk)), ~has_members & ~parent_members)


def programs_query(caller: Caller, targets: list[str]) -> Select[Program]:
    query = select(Program).where(program_filter(caller)).order_by(Program.id)
    for target in targets:
        # a program's targets are the names of its VEN members
        query = query.where(
            exists().where(
                ProgramMember.program_id == Program.id,
                ProgramMember.ven_pk == Ven.id,
                Ven.name == target,
            )
        )
    return query


T = TypeVar("T")


async def _one(session: AsyncSession, query: Select[T], missing: str) -> T:
    """The one row a caller may see, or NotFound: another party's object answers as if it did not exist."""
    found = await session.scalar(query)
    if found is None:
        raise NotFound(missing)
    return found


async def program_for(session: AsyncSession, caller: Caller, program_id: int) -> Program:
    return await _one(
        session,
        select(Program).where(Program.id == program_id, program_filter(caller)),
        f"no program {program_id}",
    )


@dataclass(frozen=True)
class ProgramFields:
    name: str
    extra: dict[str, Any]  # intervalPeriod, programDescriptions, payloadDescriptors, attributes as posted
    targets: list[str]  # names of the VENs that are its members


async def _set_members(session: AsyncSession, program: Program, names: list[str]) -> None:
    wanted = {v.id: v for v in await vens_named(session, names)}
    have = set(
        await session.scalars(
            select(ProgramMember.ven_pk).where(
                ProgramMember.program_id == program.id, ProgramMember.ven_pk.is_not(None)
            )
        )
    )
    for pk, member in wanted.items():
        if pk not in have:
            await programs.add_member(session, program, ven=member)
    for gone in have - set(wanted):
        if gone is not None:
            await programs.remove_member(session, program, ven=await session.get(Ven, gone))


async def vens_named(session: AsyncSession, names: list[str]) -> list[Ven]:
    try:
        return await vens_core.by_names(session, list(dict.fromkeys(names)))
    except NotFound as exc:
        raise Invalid(f"targets name VENs: {exc}") from None


async def create_program(session: AsyncSession, fields: ProgramFields) -> Program:
    program = await programs.create(session, "dr", fields.name, attrs={"openadr3": fields.extra})
    program.changed_at = program.created_at  # unchanged since created (the notifier tells CREATE by this)
    await _set_members(session, program, fields.targets)
    changes.record(session, programs=[program.id], objects={"program": [program.id]})
    return program


async def update_program(session: AsyncSession, program: Program, fields: ProgramFields) -> Program:
    if fields.name != program.name:
        clash = await session.scalar(
            select(Program.id).where(
                Program.kind == program.kind,
                Program.name == fields.name,
                Program.parent_ref == program.parent_ref,
                Program.id != program.id,
            )
        )
        if clash is not None:
            raise Conflict(f"a program named {fields.name!r} exists")
        program.name = fields.name
    program.attrs = {**program.attrs, "openadr3": fields.extra}
    program.changed_at = utcnow()
    if program.kind == "dr":
        await _set_members(session, program, fields.targets)
    await session.flush()
    changes.record(session, programs=[program.id], objects={"program": [program.id]})
    return program


async def delete_program(session: AsyncSession, program: Program) -> None:
    """Only a program holding no events goes (the core keeps every event and its answers)."""
    if await session.scalar(select(Event.id).where(Event.program_id == program.id).limit(1)) is not None:
        raise Conflict(f"program {program.id} has events; cancel them instead of deleting the program")
    if program.kind != "dr":
        raise Conflict("a rate component is deleted with its tariff by staff")
    await session.delete(program)
    await session.flush()
    changes.record(session, programs=[program.id])


async def target_names(session: AsyncSession, program_ids: list[int]) -> dict[int, list[str]]:
    if not program_ids:
        return {}
    rows = await session.execute(
        select(ProgramMember.program_id, Ven.name)
        .join(Ven, Ven.id == ProgramMember.ven_pk)
        .where(ProgramMember.program_id.in_(program_ids))
        .order_by(Ven.name)
    )
    out: dict[int, list[str]] = {}
    for pid, name in rows:
        out.setdefault(pid, []).append(name)
    return out


# -------------------------------------------------------------------------------------------------------- events
def event_filter(caller: Caller) -> ColumnElement[bool]:
    live = Event.cancelled_at.is_(None) & Event.kind.in_(("price", "dr"))
    if caller.is_bl:
        return live
    return live & events.visible_to_ven(caller.ven_pk if caller.ven_pk is not None else NO_VEN)


def events_query(
    caller: Caller, *, program_id: int | None, targets: list[str], active: bool | None
) -> Select[Event]:
    query = select(Event).where(event_filter(caller)).order_by(Event.id)
    if program_id is not None:
        query = query.where(Event.program_id == program_id)
    if active:
        query = query.where(Event.end_at > utcnow())
    for target in targets:
        query = query.where(
            exists().where(EventTarget.event_id == Event.id, EventTarget.ven_pk == Ven.id, Ven.name == target)
        )
    return query


async def event_for(session: AsyncSession, caller: Caller, event_id: int) -> Event:
    return await _one(
        session, select(Event).where(Event.id == event_id, event_filter(caller)), f"no event {event_id}"
    )


async def event_targets(session: AsyncSession, event_ids: list[int]) -> dict[int, list[str]]:
    if not event_ids:
        return {}
    rows = await session.execute(
        select(EventTarget.event_id, Ven.name)
        .join(Ven, Ven.id == EventTarget.ven_pk)
        .where(EventTarget.event_id.in_(event_ids))
        .order_by(Ven.name)
    )
    out: dict[int, list[str]] = {}
    for eid, name in rows:
        out.setdefault(eid, []).append(name)
    return out


async def reaches_everyone(session: AsyncSession, program: Program, targets: list[str]) -> bool:
    """An event aimed at nobody by name in a program without VEN members goes to every VEN (as 2.0b)."""
    if targets:
        return False
    program_ids = [program.id] + ([program.parent_id] if program.parent_id else [])
    member = await session.scalar(
        select(ProgramMember.id)
        .where(ProgramMember.program_id.in_(program_ids), ProgramMember.ven_pk.is_not(None))
        .limit(1)
    )
    return member is None


async def reached_vens(session: AsyncSession, event: Event) -> set[int] | None:
    """The VENs (primary keys) an event reaches, whatever their protocol; None: every VEN."""
    if event.all_vens:
        return None
    program = await session.get(Program, event.program_id)
    program_ids = [event.program_id] + ([program.parent_id] if program and program.parent_id else [])
    members = await session.scalars(
        select(ProgramMember.ven_pk).where(
            ProgramMember.program_id.in_(program_ids), ProgramMember.ven_pk.is_not(None)
        )
    )
    named = await session.scalars(select(EventTarget.ven_pk).where(EventTarget.event_id == event.id))
    return {pk for pk in members if pk is not None} | set(named)


def operation_of(event: Event) -> str:
    """The 3.x operation an event's last change was: a cancellation is its DELETE."""
    if event.cancelled_at is not None:
        return "DELETE"
    return "CREATE" if event.modification_number == 0 else "UPDATE"


@dataclass(frozen=True)
class Subscriber:
    subscription: Oadr3Subscription
    role: str
    ven_pk: int | None


async def subscribers(session: AsyncSession, object_type: str, program_id: int | None) -> list[Subscriber]:
    """Subscriptions naming ``object_type`` (of this program, or of none), with who holds each."""
    query = (
        select(Oadr3Subscription, Oadr3Client.role, Oadr3Ven.ven_pk)
        .join(Oadr3Client, Oadr3Client.id == Oadr3Subscription.client_pk)
        .outerjoin(Oadr3Ven, Oadr3Ven.client_pk == Oadr3Client.id)
        .where(Oadr3Client.enabled, _json_list_has(Oadr3Subscription.object_operations, object_type))
        .order_by(Oadr3Subscription.id)
    )
    if program_id is not None:
        query = query.where(
            or_(Oadr3Subscription.program_id.is_(None), Oadr3Subscription.program_id == program_id)
        )
    return [Subscriber(s, role, ven_pk) for s, role, ven_pk in (await session.execute(query)).all()]


# ---------------------------------------------------------------------------------------------------------- VENs
def ven_filter(caller: Caller) -> ColumnElement[bool]:
    """3.x VENs this caller may see: a BL every one, a VEN client its own."""
    mine = Oadr3Ven.client_pk == caller.client_pk
    return true() if caller.is_bl else mine


def vens_query(caller: Caller, *, name: str | None, targets: list[str]) -> Select[Ven, Oadr3Ven]:
    query = (
        select(Ven, Oadr3Ven)
        .join(Oadr3Ven, Oadr3Ven.ven_pk == Ven.id)
        .where(ven_filter(caller))
        .order_by(Ven.id)
    )
    if name is not None:
        query = query.where(Ven.name == name)
    if targets:
        for target in targets:
            query = query.where(_json_list_has(Oadr3Ven.targets, target))
    return query


def _json_list_has(column: Any, value: str) -> ColumnElement[bool]:
    """The JSON list in ``column`` holds the string ``value`` (its quoted form is in the stored text; LIKE's own
    wildcards escaped), on SQLite and PostgreSQL alike."""
    escaped = json.dumps(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(column, String).like(f"%{escaped}%", escape="\\")


async def ven_for(session: AsyncSession, caller: Caller, ven_pk: int) -> tuple[Ven, Oadr3Ven]:
    row = (
        await session.execute(
            select(Ven, Oadr3Ven)
            .join(Oadr3Ven, Oadr3Ven.ven_pk == Ven.id)
            .where(Ven.id == ven_pk, ven_filter(caller))
        )
    ).first()
    if row is None:
        raise NotFound(f"no VEN {ven_pk}")
    return row[0], row[1]


async def client_ids(session: AsyncSession, client_pks: list[int]) -> dict[int, str]:
    if not client_pks:
        return {}
    rows = await session.execute(
        select(Oadr3Client.id, Oadr3Client.client_id).where(Oadr3Client.id.in_(client_pks))
    )
    return {pk: cid for pk, cid in rows}


async def ven_clients(session: AsyncSession, ven_pks: list[int]) -> dict[int, int]:
    """The client of each of these 3.x VENs."""
    if not ven_pks:
        return {}
    rows = await session.execute(
        select(Oadr3Ven.ven_pk, Oadr3Ven.client_pk).where(Oadr3Ven.ven_pk.in_(ven_pks))
    )
    return {v: c for v, c in rows}


async def _ven_client(session: AsyncSession, caller: Caller, client_id: str | None) -> Oadr3Client:
    """The VEN client a new VEN belongs to: the caller itself, or the one a BL client names."""
    if not caller.is_bl:
        client = await session.get(Oadr3Client, caller.client_pk)
        assert client is not None
        return client
    if not client_id:
        raise Invalid("clientID names the VEN client this VEN belongs to")
    client = await session.scalar(select(Oadr3Client).where(Oadr3Client.client_id == client_id))
    if client is None or client.role != "ven":
        raise Invalid(f"clientID {client_id!r} is not a VEN client of this VTN")
    return client


async def create_ven(
    session: AsyncSession,
    caller: Caller,
    *,
    name: str,
    attributes: list[dict[str, Any]],
    targets: list[str],
    client_id: str | None,
) -> tuple[Ven, Oadr3Ven]:
    client = await _ven_client(session, caller, client_id)
    if await session.scalar(select(Oadr3Ven.ven_pk).where(Oadr3Ven.client_pk == client.id)) is not None:
        raise Conflict("this client already has a VEN")
    if await session.scalar(select(Ven.id).where(Ven.name == name)) is not None:
        raise Conflict(f"a VEN named {name!r} exists")
    now = utcnow()
    ven = Ven(name=name, fingerprint=fingerprint_of(client.id), ven_id=new_ven_id(), profile=PROFILE)
    ven.created_at = now
    session.add(ven)
    await session.flush()
    state = Oadr3Ven(
        ven_pk=ven.id,
        client_pk=client.id,
        targets=targets if caller.is_bl else [],
        attributes=attributes,
        changed_at=now,
    )
    session.add(state)
    await session.flush()
    changes.record(session, parties=[ven.fingerprint])
    return ven, state


async def update_ven(
    session: AsyncSession,
    caller: Caller,
    ven: Ven,
    state: Oadr3Ven,
    *,
    name: str,
    attributes: list[dict[str, Any]],
    targets: list[str] | None,
) -> tuple[Ven, Oadr3Ven]:
    if name != ven.name:
        if await session.scalar(select(Ven.id).where(Ven.name == name, Ven.id != ven.id)) is not None:
            raise Conflict(f"a VEN named {name!r} exists")
        ven.name = name
    state.attributes = attributes
    if caller.is_bl and targets is not None:  # a VEN cannot aim events at itself
        state.targets = targets
    state.changed_at = utcnow()
    await session.flush()
    return ven, state


async def delete_ven(session: AsyncSession, ven: Ven) -> None:
    await session.delete(ven)
    await session.flush()
    changes.record(session, parties=[ven.fingerprint])


# ----------------------------------------------------------------------------------------------------- resources
def resource_filter(caller: Caller) -> ColumnElement[bool]:
    if caller.is_bl:
        return true()
    if caller.ven_pk is None:
        return false()
    return Oadr3Resource.ven_pk == caller.ven_pk


def resources_query(
    caller: Caller, *, name: str | None, ven_pk: int | None, targets: list[str]
) -> Select[Oadr3Resource]:
    query = select(Oadr3Resource).where(resource_filter(caller)).order_by(Oadr3Resource.id)
    if name is not None:
        query = query.where(Oadr3Resource.name == name)
    if ven_pk is not None:
        query = query.where(Oadr3Resource.ven_pk == ven_pk)
    for target in targets:
        query = query.where(_json_list_has(Oadr3Resource.targets, target))
    return query


async def resource_for(session: AsyncSession, caller: Caller, resource_id: int) -> Oadr3Resource:
    return await _one(
        session,
        select(Oadr3Resource).where(Oadr3Resource.id == resource_id, resource_filter(caller)),
        f"no resource {resource_id}",
    )


async def save_resource(
    session: AsyncSession,
    caller: Caller,
    resource: Oadr3Resource | None,
    *,
    ven_pk: int,
    name: str,
    attributes: list[dict[str, Any]],
    targets: list[str] | None,
) -> Oadr3Resource:
    """Create (``resource`` None) or replace a resource of a VEN the caller may act for."""
    await ven_for(session, caller, ven_pk)  # NotFound for another client's VEN
    if resource is not None and resource.ven_pk != ven_pk:
        raise Invalid("a resource cannot move to another VEN")
    clash = select(Oadr3Resource.id).where(Oadr3Resource.ven_pk == ven_pk, Oadr3Resource.name == name)
    if resource is not None:
        clash = clash.where(Oadr3Resource.id != resource.id)
    if await session.scalar(clash) is not None:
        raise Conflict(f"VEN {ven_pk} has a resource named {name!r}")
    now = utcnow()
    if resource is None:
        resource = Oadr3Resource(ven_pk=ven_pk, name=name, targets=[], created_at=now)
        session.add(resource)
    resource.name = name
    resource.attributes = attributes
    if caller.is_bl and targets is not None:
        resource.targets = targets
    resource.changed_at = now
    await session.flush()
    return resource


async def delete_resource(session: AsyncSession, resource: Oadr3Resource) -> None:
    await session.delete(resource)
    await session.flush()


# ------------------------------------------------------------------------------------------------- subscriptions
def subscription_filter(caller: Caller) -> ColumnElement[bool]:
    return true() if caller.is_bl else Oadr3Subscription.client_pk == caller.client_pk


def subscriptions_query(
    caller: Caller, *, program_id: int | None, client_name: str | None, objects: list[str]
) -> Select[Oadr3Subscription]:
    query = select(Oadr3Subscription).where(subscription_filter(caller)).order_by(Oadr3Subscription.id)
    if program_id is not None:
        query = query.where(Oadr3Subscription.program_id == program_id)
    if client_name is not None:
        query = query.where(Oadr3Subscription.client_name == client_name)
    for obj in objects:
        query = query.where(_json_list_has(Oadr3Subscription.object_operations, obj))
    return query


async def subscription_for(session: AsyncSession, caller: Caller, sub_id: int) -> Oadr3Subscription:
    return await _one(
        session,
        select(Oadr3Subscription).where(Oadr3Subscription.id == sub_id, subscription_filter(caller)),
        f"no subscription {sub_id}",
    )


async def save_subscription(
    session: AsyncSession,
    caller: Caller,
    sub: Oadr3Subscription | None,
    *,
    client_name: str,
    program_id: int | None,
    object_operations: list[dict[str, Any]],
    targets: list[str],
) -> Oadr3Subscription:
    if program_id is not None:
        await program_for(session, caller, program_id)
    now = utcnow()
    if sub is None:
        sub = Oadr3Subscription(client_pk=caller.client_pk, created_at=now)
        session.add(sub)
    sub.client_name = client_name
    sub.program_id = program_id
    sub.object_operations = object_operations
    sub.targets = targets
    sub.changed_at = now
    await session.flush()
    return sub


async def delete_subscription(session: AsyncSession, sub: Oadr3Subscription) -> None:
    await session.delete(sub)
    await session.flush()


# ------------------------------------------------------------------------------------------------------- reports
def report_filter(caller: Caller) -> ColumnElement[bool]:
    return true() if caller.is_bl else Oadr3Report.client_pk == caller.client_pk


def reports_query(
    caller: Caller, *, program_id: int | None, event_id: int | None, client_name: str | None
) -> Select[Oadr3Report]:
    query = select(Oadr3Report).where(report_filter(caller)).order_by(Oadr3Report.id)
    if program_id is not None:
        query = query.where(Oadr3Report.event_id.in_(select(Event.id).where(Event.program_id == program_id)))
    if event_id is not None:
        query = query.where(Oadr3Report.event_id == event_id)
    if client_name is not None:
        query = query.where(Oadr3Report.client_name == client_name)
    return query


async def report_for(session: AsyncSession, caller: Caller, report_id: int) -> Oadr3Report:
    return await _one(
        session,
        select(Oadr3Report).where(Oadr3Report.id == report_id, report_filter(caller)),
        f"no report {report_id}",
    )


@dataclass(frozen=True)
class ReportValue:
    resource: str
    measurement: str
    ts: dt.datetime
    duration_s: float | None
    value: float
    unit: str
    reading_type: str


async def save_report(
    session: AsyncSession,
    caller: Caller,
    report: Oadr3Report | None,
    *,
    event_id: int,
    client_name: str,
    report_name: str | None,
    payload_descriptors: list[dict[str, Any]] | None,
    resources: list[dict[str, Any]],
    values: list[ReportValue],
) -> Oadr3Report:
    """A VEN's report on an event that reaches it: kept as posted, values into telemetry, an answer recorded."""
    if caller.ven_pk is None:
        raise Forbidden("register this client's VEN before reporting")
    event = await session.scalar(
        select(Event).where(Event.id == event_id, events.visible_to_ven(caller.ven_pk))
    )
    if event is None:
        raise NotFound(f"no event {event_id} for this VEN")
    ven = await session.get(Ven, caller.ven_pk)
    assert ven is not None
    known = set(
        await session.scalars(select(Oadr3Resource.name).where(Oadr3Resource.ven_pk == caller.ven_pk))
    )
    unknown = {v.resource for v in values} - known - {"AGGREGATED_REPORT"}
    if unknown:
        raise Invalid(f"resources not registered for this VEN: {', '.join(sorted(unknown))}")
    now = utcnow()
    if report is None:
        report = Oadr3Report(client_pk=caller.client_pk, created_at=now)
        session.add(report)
    elif report.event_id != event_id:
        raise Invalid("a report cannot move to another event")
    report.event_id = event_id
    report.client_name = client_name
    report.report_name = report_name
    report.payload_descriptors = payload_descriptors
    report.resources = resources
    report.changed_at = now
    await session.flush()
    await telemetry.add(
        session,
        [
            telemetry.Reading(
                source_kind="ven",
                source_id=ven.ven_id,
                resource=v.resource,
                measurement=v.measurement,
                reading_type=v.reading_type,
                unit=telemetry.normalise(v.value, v.unit)[1],
                ts=v.ts,
                value=v.value,
                duration_s=v.duration_s,
            )
            for v in values
        ],
    )
    await events.record_response(session, event, events.ReportAnswer(caller.ven_pk, report.id))
    changes.record(session, objects={"report": [report.id]})
    return report


async def delete_report(session: AsyncSession, report: Oadr3Report) -> None:
    await session.delete(report)
    await session.flush()
