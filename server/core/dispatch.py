"""One dispatch, every protocol: a decision about a grid node (an export or import limit, connect/disconnect, a
demand-response level) rendered for each resource under the node in the language it speaks.

* 2030.5 devices get a DERControl in their own device program (opModExpLimW, opModImpLimW, opModGenLimW,
  opModConnect), with the usual event rules (status, supersession, primacy) from ``core.der_controls``;
* OpenADR VENs get one event (SIMPLE level, or LOAD_DISPATCH with the limit in W) targeted at them;
* SunSpec Modbus inverters have no schedule of their own: the limit, as a percentage of their rated power, is
  queued in the delivery outbox (channel ``modbus``) to be written when the dispatch starts and released when it
  ends -- durable across restarts, retried while the inverter does not answer (``server.modbus.delivery``).

Protocol adapters render what is stored here; nothing protocol-specific is decided twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import delivery
from server.core import events, grid, oadr_events, programs, telemetry
from server.core.errors import Invalid
from server.store.models import EndDevice, Ven


@dataclass(frozen=True)
class Dispatch:
    start: dt.datetime
    duration_s: int
    export_limit_w: float | None = None
    import_limit_w: float | None = None
    generation_limit_w: float | None = None
    connect: bool | None = None
    dr_level: int | None = None  # OpenADR SIMPLE 0..3
    description: str = ""

    def sep2_base(self) -> dict:
        base = {
            "opModExpLimW": self.export_limit_w,
            "opModImpLimW": self.import_limit_w,
            "opModGenLimW": self.generation_limit_w,
            "opModConnect": self.connect,
        }
        return {k: v for k, v in base.items() if v is not None}


@dataclass
class DispatchResult:
    node: str
    sep2_controls: list[dict] = field(default_factory=list)
    openadr_events: list[dict] = field(default_factory=list)
    # (device name, percent of rated power or None, connect) for the caller to write to Modbus devices
    modbus: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # which programs and devices the dispatch changed (core records them: ``server.core.changes``)
    changed_programs: list[int] = field(default_factory=list)
    changed_devices: list[int] = field(default_factory=list)


def _check(d: Dispatch) -> None:
    if d.start.tzinfo is None:
        raise Invalid("start must carry a time zone")
    if not 0 < d.duration_s <= 7 * 86400:
        raise Invalid("duration must be 1 s to 7 days")
    if not d.sep2_base() and d.dr_level is None:
        raise Invalid("a dispatch needs a limit, connect, or a demand-response level")
    if d.dr_level is not None and not 0 <= d.dr_level <= 3:
        raise Invalid("dr_level is an OpenADR SIMPLE level 0..3")
    for name in ("export_limit_w", "import_limit_w", "generation_limit_w"):
        value = getattr(d, name)
        if value is not None and value < 0:
            raise Invalid(f"{name} must not be negative")


MODBUS_CHANNEL = "modbus"  # the outbox channel of SunSpec writes (sent by server.modbus.delivery)
APPLY, RELEASE = "apply", "release"


def schedule_modbus(session: AsyncSession, write: dict, start: dt.datetime, end: dt.datetime) -> str:
    """Queue the write for ``start`` and its undoing for ``end``, in one order key per dispatch (the release never
    overtakes its write; dispatches to the same inverter do not wait for each other). Returns the key (a plan
    discards a block it no longer wants by it)."""
    key = f"modbus:{write['name']}:{uuid.uuid4().hex[:12]}"
    delivery.enqueue(session, MODBUS_CHANNEL, key, kind=APPLY, payload=write, not_before=start)
    release = {
        "name": write["name"],
        "release_limit": write["export_limit_pct"] is not None,
        # a dispatch that disconnected the inverter reconnects it when it ends
        "connect": True if write["connect"] is False else None,
    }
    if release["release_limit"] or release["connect"] is not None:
        delivery.enqueue(session, MODBUS_CHANNEL, key, kind=RELEASE, payload=release, not_before=end)
    return key


async def dispatch_to_node(
    session: AsyncSession, node: str, d: Dispatch, market_context: str, near_window_s: int
) -> DispatchResult:
    _check(d)
    sources = await grid.node_sources(session, node)
    if not sources:
        raise Invalid(f"grid node {node!r} has no members to dispatch")
    result = DispatchResult(node)
    base = d.sep2_base()
    ven_ids = [sid for kind, sid in sources if kind == "ven"]
    for kind, source in sources:
        if kind == "device":
            if not base:
                result.skipped.append(
                    f"device {source}: a demand-response level has no 2030.5 DERControl form"
                )
                continue
            device = await session.scalar(select(EndDevice).where(EndDevice.lfdi == source))
            if device is None:
                result.skipped.append(f"device {source}: not enrolled")
                continue
            program = await programs.device_program(session, device)
            control = await events.create(
                session,
                program,
                events.NewEvent(
                    start=d.start,
                    duration_s=d.duration_s,
                    payload={"base": base},
                    description=d.description or f"dispatch {node}",
                ),
            )
            result.sep2_controls.append(events.control_dict(control, program) | {"lfdi": source})
            result.changed_programs.append(program.id)
            result.changed_devices.append(device.id)
        elif kind == "modbus":
            rated = (await telemetry.newest_values(session, "modbus", [source], "ratedPower")).get(source)
            pct = None
            if d.export_limit_w is not None or d.generation_limit_w is not None:
                limit = min(v for v in (d.export_limit_w, d.generation_limit_w) if v is not None)
                if not rated:
                    result.skipped.append(
                        f"modbus {source}: rated power unknown, cannot express a limit in %"
                    )
                    continue
                pct = round(min(100.0, 100.0 * limit / rated), 1)
            if pct is None and d.connect is None:
                result.skipped.append(
                    f"modbus {source}: this dispatch has no SunSpec form (an export limit or connect)"
                )
                continue
            write = {"name": source, "export_limit_pct": pct, "connect": d.connect}
            schedule_modbus(session, write, d.start, d.start + dt.timedelta(seconds=d.duration_s))
            result.modbus.append(
                write
                | {
                    "start": d.start.isoformat(),
                    "end": (d.start + dt.timedelta(seconds=d.duration_s)).isoformat(),
                }
            )
    if ven_ids:
        vens = list(await session.scalars(select(Ven).where(Ven.ven_id.in_(ven_ids))))
        missing = set(ven_ids) - {v.ven_id for v in vens}
        result.skipped += [f"ven {v}: not enrolled" for v in sorted(missing)]
        if vens:
            if d.dr_level is not None:
                signal, level = "SIMPLE", float(d.dr_level)
            elif d.import_limit_w is not None:
                # LOAD_DISPATCH carries the setpoint; an import limit is the level a VEN's load must stay under
                signal, level = "LOAD_DISPATCH", float(d.import_limit_w)
            elif d.export_limit_w is not None:
                signal, level = "LOAD_DISPATCH", -float(d.export_limit_w)
            else:
                signal, level = "", 0.0
            if signal:
                event = await oadr_events.create_event(
                    session,
                    signal_name=signal,
                    start=d.start,
                    market_context=market_context,
                    near_window_s=near_window_s,
                    level=level,
                    duration_s=d.duration_s,
                    ven_names=[v.name for v in vens],
                    comment=d.description or f"dispatch {node}",
                )
                result.openadr_events.append(asdict(event))
            else:
                result.skipped += [f"ven {v.ven_id}: connect/disconnect has no OpenADR form" for v in vens]
    return result
