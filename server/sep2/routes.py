"""2030.5 function sets and their hrefs (all relative to the server root; stable, documented in the README).

    /dcap                                   DeviceCapability
    /tm                                     Time
    /edev                                   EndDeviceList (GET; POST = in-band registration)
    /edev/{e}                               EndDevice (GET, DELETE)
    /edev/{e}/rg                            Registration (PIN)
    /edev/{e}/cp                            ConnectionPoint (CSIP-AUS; GET, PUT)
    /edev/{e}/fsa, /edev/{e}/fsa/{f}        FunctionSetAssignmentsList / FunctionSetAssignments
    /edev/{e}/fsa/{f}/derp                  DERProgramList (the programs of that FSA)
    /edev/{e}/derp/{p}                      DERProgram
    /edev/{e}/derp/{p}/derc[/{c}]           DERControlList / DERControl
    /edev/{e}/derp/{p}/actderc              ActiveDERControlList
    /edev/{e}/derp/{p}/dderc                DefaultDERControl
    /edev/{e}/derp/{p}/dc[/{c}]             DERCurveList / DERCurve
    /edev/{e}/der, /edev/{e}/der/1          DERList / DER (one DER per EndDevice)
    /edev/{e}/der/1/{dercap|derg|ders|dera} DERCapability / DERSettings / DERStatus / DERAvailability (GET, PUT)
    /mup, /mup/{m}                          MirrorUsagePointList (GET, POST) / MirrorUsagePoint (GET, POST
                                            MirrorMeterReading[List], DELETE)
    /rsps, /rsps/1, /rsps/1/rsp[/{r}]       ResponseSetList / ResponseSet / ResponseList (POST) / Response

Programs are reached through the device (``/edev/{e}/derp/{p}``) so that every program and control request is
scoped by an EndDevice the caller may reach and a program assigned to it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from aiohttp import web
from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server import pki
from server.core import der_controls as rules
from server.core import programs, responses, sep2_time
from server.core import sep2_device as devres
from server.core.devices import ensure_aggregator
from server.core.errors import Conflict, Forbidden, Invalid, NotFound
from server.core.metering import from_epoch
from server.sep2 import metering, xml
from server.sep2.common import (
    MRID_CONTROL,
    MRID_CURVE,
    MRID_DEFAULT,
    MRID_FSA,
    MRID_PROGRAM,
    MRID_RSET,
    REASON_INVALID_FORMAT,
    Page,
    Scope,
    Sep2Error,
    created,
    device_in_scope,
    epoch,
    error_response,
    list_element,
    mrid,
    no_content,
    page,
    parse_control_mrid,
    path_int,
    read_body,
    reply,
    runtime,
    scope_of,
    sep2_handler,
    visible_devices,
)
from server.store.models import EndDevice, Sep2Control, Sep2Program
from server.store.types import utcnow

routes = web.RouteTableDef()

DER_KINDS = {"dercap": "DERCapability", "derg": "DERSettings", "ders": "DERStatus", "dera": "DERAvailability"}
RESPONSE_SET_ID = 1


# ------------------------------------------------------------------------------------------------- helpers
def lfdi_of(text: str) -> str:
    try:
        return pki.normalise_lfdi(text)
    except ValueError as exc:
        raise Invalid(f"not an LFDI: {exc}") from None


async def poll_rate(request: web.Request, session: AsyncSession, resource: str) -> int:
    value = await devres.get_setting(session, f"pollrate:{resource}")
    return int(value) if value is not None else runtime(request).settings.sep2.poll_rate_s


async def post_rate(request: web.Request, session: AsyncSession, resource: str) -> int:
    value = await devres.get_setting(session, f"postrate:{resource}")
    return int(value) if value is not None else runtime(request).settings.sep2.post_rate_s


def pen(request: web.Request) -> int:
    return runtime(request).settings.sep2.pen


def sessions(request: web.Request):
    return runtime(request).store.sessions


async def program_in_scope(session: AsyncSession, scope: Scope, device_id: int,
                           program_id: int) -> tuple[EndDevice, Sep2Program]:
    device = await device_in_scope(session, scope, device_id)
    for program in await programs.device_programs(session, device.id):
        if program.id == program_id:
            return device, program
    raise NotFound(f"no DERProgram {program_id} for EndDevice {device_id}")


def active_power(tag: str, watts: float) -> etree._Element:
    value, mult = rules.encode_power(watts)
    return xml.E(tag, None, xml.leaf("multiplier", mult), xml.leaf("value", value))


def control_base(base: dict[str, Any], curve_href: str) -> etree._Element:
    """DERControlBase children in schema order; the CSIP-AUS limits come last (csipaus-core redefines it)."""
    el = xml.E("DERControlBase")
    for name in ("opModConnect", "opModEnergize", "opModFixedW"):
        if name in base:
            el.append(xml.leaf(name, base[name]))
    for name in rules.CURVE_FIELDS[:11]:  # opModFreqWatt .. opModLVRTMustTrip
        if name in base:
            el.append(xml.E(name, {"href": f"{curve_href}/{base[name]}"}))
    if "opModMaxLimW" in base:
        el.append(xml.leaf("opModMaxLimW", base["opModMaxLimW"]))
    if "opModTargetVar" in base:
        value, mult = rules.encode_power(base["opModTargetVar"])
        el.append(xml.E("opModTargetVar", None, xml.leaf("multiplier", mult), xml.leaf("value", value)))
    if "opModTargetW" in base:
        el.append(active_power("opModTargetW", base["opModTargetW"]))
    for name in rules.CURVE_FIELDS[11:]:  # opModVoltVar .. opModWattVar
        if name in base:
            el.append(xml.E(name, {"href": f"{curve_href}/{base[name]}"}))
    if "rampTms" in base:
        el.append(xml.leaf("rampTms", base["rampTms"]))
    for name in ("opModImpLimW", "opModExpLimW", "opModGenLimW", "opModLoadLimW"):
        if name in base:
            el.append(active_power("csipaus:" + name, base[name]))
    return el


# ------------------------------------------------------------------------------------------- DeviceCapability
@routes.get("/dcap")
@sep2_handler
async def get_dcap(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        scope = await scope_of(request, session)
        n_edev = len(await visible_devices(session, scope))
        n_mup = len(await devres.mups_of(session, owners(scope)))
        rate = await poll_rate(request, session, "DeviceCapability")
    el = xml.E("DeviceCapability", {"href": "/dcap", "pollRate": rate},
               xml.link("ResponseSetListLink", "/rsps", 1),
               xml.link("TimeLink", "/tm"),
               xml.link("UsagePointListLink", "/upt", n_mup),  # mirrored data read back (server.sep2.metering)
               xml.link("EndDeviceListLink", "/edev", n_edev),
               xml.link("MirrorUsagePointListLink", "/mup", n_mup))
    return reply(el)


# ------------------------------------------------------------------------------------------------------- Time
@routes.get("/tm")
@sep2_handler
async def get_time(request: web.Request) -> web.Response:
    now = int(time.time())
    local = sep2_time.local_time(runtime(request).settings.sep2.time_zone, now)
    async with sessions(request)() as session:
        rate = await poll_rate(request, session, "Time")
    el = xml.E("Time", {"href": "/tm", "pollRate": rate},
               xml.leaf("currentTime", now),
               xml.leaf("dstEndTime", local.dst_end),
               xml.leaf("dstOffset", local.dst_offset),
               xml.leaf("dstStartTime", local.dst_start),
               xml.leaf("localTime", local.local_time),
               xml.leaf("quality", 7),  # 7: the server's clock is NTP-disciplined ("intentionally uncoordinated")
               xml.leaf("tzOffset", local.tz_offset))
    return reply(el)


# -------------------------------------------------------------------------------------------------- EndDevice
async def render_edev(session: AsyncSession, device: EndDevice, post_rate_s: int) -> etree._Element:
    href = f"/edev/{device.id}"
    n_fsa = len(await programs.device_fsas(session, device.id))
    return xml.E("EndDevice", {"href": href},
                 xml.link("DERListLink", f"{href}/der", 1),
                 xml.leaf("deviceCategory", device.device_category or None),
                 xml.leaf("lFDI", device.lfdi),
                 xml.link("LogEventListLink", f"{href}/lel"),  # server.sep2.logevents
                 xml.leaf("sFDI", device.sfdi),
                 xml.leaf("changedTime", epoch(device.changed_at)),
                 xml.leaf("enabled", device.enabled),
                 xml.link("FunctionSetAssignmentsListLink", f"{href}/fsa", n_fsa),
                 xml.leaf("postRate", post_rate_s),
                 xml.link("RegistrationLink", f"{href}/rg") if device.pin is not None else None,
                 xml.link("SubscriptionListLink", f"{href}/sub"),  # server.sep2.subscriptions
                 xml.link("csipaus:ConnectionPointLink", f"{href}/cp"))


@routes.get("/edev")
@sep2_handler
async def get_edev_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        scope = await scope_of(request, session)
        found = await visible_devices(session, scope)
        if pg.after:
            found = [d for d in found if d.changed_at >= pg.after]
        rate = await poll_rate(request, session, "EndDeviceList")
        prate = await post_rate(request, session, "EndDevice")
        items = [await render_edev(session, d, prate) for d in pg.slice(found)]
    return reply(list_element("EndDeviceList", "/edev", items, len(found), rate, subscribable=True))


@routes.post("/edev")
@sep2_handler
async def post_edev(request: web.Request) -> web.Response:
    """In-band registration: a device registers itself; an aggregator registers devices under itself."""
    settings = runtime(request).settings
    body = await read_body(request, "EndDevice")
    lfdi_text = xml.text(body, "lFDI")
    if lfdi_text is None:
        raise Invalid("EndDevice lFDI is required for registration")
    lfdi = lfdi_of(lfdi_text)
    sfdi = xml.integer(body, "sFDI")
    if sfdi != pki.sfdi_from_lfdi(lfdi):
        raise Invalid(f"sFDI {sfdi} does not match lFDI (expected {pki.sfdi_from_lfdi(lfdi)})")
    category = xml.text(body, "deviceCategory") or ""
    async with sessions(request).begin() as session:
        scope = await scope_of(request, session)
        existing = await session.scalar(select(EndDevice).where(EndDevice.lfdi == lfdi))
        if existing is not None:
            raise Conflict(f"an EndDevice with lFDI {lfdi} is already registered")
        if settings.sep2.registration == "out-of-band":
            raise Forbidden("in-band registration is closed on this server; ask the utility to enroll the device")
        if lfdi != scope.lfdi and not scope.is_aggregator:
            raise Forbidden("the lFDI does not match the client certificate")
        device = EndDevice(lfdi=lfdi, sfdi=sfdi, device_category=category[:16], registered_by="in-band",
                           name="")
        if lfdi != scope.lfdi and scope.aggregator is not None:
            device.aggregator_id = (await ensure_aggregator(session, scope.lfdi)).id
        session.add(device)
        await session.flush()
        href = f"/edev/{device.id}"
    return created(href)


@routes.get("/edev/{e}")
@sep2_handler
async def get_edev(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        return reply(await render_edev(session, device, await post_rate(request, session, "EndDevice")))


@routes.delete("/edev/{e}")
@sep2_handler
async def delete_edev(request: web.Request) -> web.Response:
    async with sessions(request).begin() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        await session.delete(device)
    return no_content()


@routes.get("/edev/{e}/rg")
@sep2_handler
async def get_registration(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        if device.pin is None:
            raise NotFound("no Registration for this EndDevice")
        rate = await poll_rate(request, session, "Registration")
    el = xml.E("Registration", {"href": f"/edev/{device.id}/rg", "pollRate": rate},
               xml.leaf("dateTimeRegistered", epoch(device.created_at)),
               xml.leaf("pIN", device.pin))
    return reply(el)


# ------------------------------------------------------------------------------------------- ConnectionPoint
@routes.get("/edev/{e}/cp")
@sep2_handler
async def get_cp(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        stored = await devres.get_resource(session, device.id, "cp")
    if stored is None:
        el = xml.E("csipaus:ConnectionPoint", {"href": f"/edev/{device.id}/cp"},
                   xml.leaf("csipaus:connectionPointId", ""))
        return reply(el)
    return reply(_with_href(stored.body, f"/edev/{device.id}/cp"))


@routes.put("/edev/{e}/cp")
@sep2_handler
async def put_cp(request: web.Request) -> web.Response:
    body = await read_body(request, "ConnectionPoint")
    cp_id = xml.text(body, "csipaus:connectionPointId") or ""
    if not valid_nmi(cp_id):
        raise Invalid("connectionPointId must be a National Metering Identifier (10 characters + check digit)")
    async with sessions(request).begin() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        await devres.put_resource(session, device.id, "cp", _store(body))
    href = f"/edev/{device.id}/cp"
    # 204 as for every PUT, with a Location: some clients (cactus-client) re-read the resource from it
    return web.Response(status=204, headers={"Location": href})


def valid_nmi(nmi: str) -> bool:
    """An Australian NMI (what CSIP-AUS puts in connectionPointId): 10 characters of A-Z (not I or O) and
    digits, optionally followed by the AEMO checksum digit (Luhn-style over the character codes)."""
    nmi = nmi.upper()
    if len(nmi) not in (10, 11) or not all(ch.isdigit() or ("A" <= ch <= "Z" and ch not in "IO") for ch in nmi[:10]):
        return False
    if len(nmi) == 10:
        return True
    total, double = 0, True
    for ch in reversed(nmi[:10]):
        value = ord(ch) * 2 if double else ord(ch)
        total += sum(int(d) for d in str(value))
        double = not double
    return nmi[10] == str((10 - total % 10) % 10)


def _store(root: etree._Element) -> str:
    root.attrib.pop("href", None)
    return etree.tostring(root, encoding="unicode")


def _with_href(body: str, href: str) -> etree._Element:
    root = etree.fromstring(body.encode())  # our own stored, validated XML
    root.set("href", href)
    return root


# ------------------------------------------------------------------------------------------------------ FSAs
@routes.get("/edev/{e}/fsa")
@sep2_handler
async def get_fsa_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        fsas = await programs.device_fsas(session, device.id)
        rate = await poll_rate(request, session, "FunctionSetAssignmentsList")
        items = [await render_fsa(request, session, device, f) for f in pg.slice(fsas)]
    return reply(list_element("FunctionSetAssignmentsList", f"/edev/{device.id}/fsa", items, len(fsas), rate,
                              subscribable=True))


async def render_fsa(request: web.Request, session: AsyncSession, device: EndDevice, fsa) -> etree._Element:
    href = f"/edev/{device.id}/fsa/{fsa.id}"
    n = len(await programs.fsa_programs(session, fsa.id))
    return xml.E("FunctionSetAssignments", {"href": href},
                 # pricing and DRLC are per device (server.sep2.drlc / server.sep2.pricing)
                 xml.link("DemandResponseProgramListLink", f"/edev/{device.id}/drp"),
                 xml.link("DERProgramListLink", f"{href}/derp", n),
                 xml.link("TariffProfileListLink", f"/edev/{device.id}/tp"),
                 xml.link("TimeLink", "/tm"),
                 xml.leaf("mRID", mrid(MRID_FSA, fsa.id, pen(request))),
                 xml.leaf("description", fsa.title[:32]))


@routes.get("/edev/{e}/fsa/{f}")
@sep2_handler
async def get_fsa(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        fsa = next((f for f in await programs.device_fsas(session, device.id) if f.id == path_int(request, "f")),
                   None)
        if fsa is None:
            raise NotFound("no such FunctionSetAssignments")
        return reply(await render_fsa(request, session, device, fsa))


# ---------------------------------------------------------------------------------------------- DERPrograms
async def render_program(request: web.Request, session: AsyncSession, device: EndDevice,
                         program: Sep2Program, now: dt.datetime) -> etree._Element:
    href = f"/edev/{device.id}/derp/{program.id}"
    intervals, _ = await programs.device_intervals(session, device.id)
    mine = [i for i in intervals if i.program_id == program.id]
    visible = [i for i in mine if not rules.evaluate(i, intervals, now).completed]
    active = [i for i in visible if rules.evaluate(i, intervals, now).status == rules.EventStatus.ACTIVE]
    return xml.E("DERProgram", {"href": href},
                 xml.leaf("mRID", mrid(MRID_PROGRAM, program.id, pen(request))),
                 xml.leaf("description", (program.description or program.name)[:32]),
                 xml.link("ActiveDERControlListLink", f"{href}/actderc", len(active)),
                 # always linked: clients subscribe to it before staff set one (cactus S-ALL-35..40)
                 xml.link("DefaultDERControlLink", f"{href}/dderc"),
                 xml.link("DERControlListLink", f"{href}/derc", len(visible)),
                 xml.link("DERCurveListLink", f"{href}/dc", len(await programs.program_curves(session, program.id))),
                 xml.leaf("primacy", program.primacy))


@routes.get("/edev/{e}/fsa/{f}/derp")
@sep2_handler
async def get_program_list(request: web.Request) -> web.Response:
    pg = page(request)
    now = utcnow()
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        fsa_id = path_int(request, "f")
        if fsa_id not in {f.id for f in await programs.device_fsas(session, device.id)}:
            raise NotFound("no such FunctionSetAssignments")
        found = await programs.fsa_programs(session, fsa_id)
        rate = await poll_rate(request, session, "DERProgramList")
        items = [await render_program(request, session, device, p, now) for p in pg.slice(found)]
    return reply(list_element("DERProgramList", f"/edev/{device.id}/fsa/{fsa_id}/derp", items, len(found), rate,
                              subscribable=True))


@routes.get("/edev/{e}/derp/{p}")
@sep2_handler
async def get_program(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
        return reply(await render_program(request, session, device, program, utcnow()))


# ----------------------------------------------------------------------------------------------- DERControls
def render_control(request: web.Request, device: EndDevice, c: Sep2Control, ev: rules.Evaluated) -> etree._Element:
    href = f"/edev/{device.id}/derp/{c.program_id}/derc/{c.id}"
    attrs: dict[str, Any] = {"href": href}
    if c.response_required:
        attrs["replyTo"] = f"/rsps/{RESPONSE_SET_ID}/rsp"
        attrs["responseRequired"] = f"{c.response_required:02X}"
    status_time = c.cancelled_at or c.creation_time
    return xml.E("DERControl", attrs,
                 xml.leaf("mRID", mrid(MRID_CONTROL, c.id, pen(request))),
                 xml.leaf("description", c.description or None),
                 xml.leaf("creationTime", epoch(c.creation_time)),
                 xml.E("EventStatus", None,
                       xml.leaf("currentStatus", int(ev.status)),
                       xml.leaf("dateTime", epoch(status_time)),
                       xml.leaf("potentiallySuperseded", ev.potentially_superseded)),
                 xml.E("interval", None, xml.leaf("duration", c.duration_s), xml.leaf("start", epoch(c.start))),
                 xml.leaf("randomizeDuration", c.randomize_duration_s),
                 xml.leaf("randomizeStart", c.randomize_start_s),
                 control_base(c.base, f"/edev/{device.id}/derp/{c.program_id}/dc"))


async def program_controls(session: AsyncSession, device: EndDevice, program: Sep2Program, now: dt.datetime,
                           active_only: bool = False) -> list[tuple[Sep2Control, rules.Evaluated]]:
    intervals, controls = await programs.device_intervals(session, device.id)
    out = []
    for i in sorted((i for i in intervals if i.program_id == program.id), key=rules.list_order_key):
        ev = rules.evaluate(i, intervals, now)
        if ev.completed or (active_only and ev.status != rules.EventStatus.ACTIVE):
            continue
        out.append((controls[i.id], ev))
    return out


def _after(pg: Page, found: list[tuple[Sep2Control, rules.Evaluated]]) -> list[tuple[Sep2Control, rules.Evaluated]]:
    return [x for x in found if x[0].changed_at >= pg.after] if pg.after else found


@routes.get("/edev/{e}/derp/{p}/derc")
@sep2_handler
async def get_control_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
        found = _after(pg, await program_controls(session, device, program, utcnow()))
    items = [render_control(request, device, c, ev) for c, ev in pg.slice(found)]
    return reply(list_element("DERControlList", f"/edev/{device.id}/derp/{program.id}/derc", items, len(found),
                              subscribable=True))


@routes.get("/edev/{e}/derp/{p}/actderc")
@sep2_handler
async def get_active_control_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
        found = await program_controls(session, device, program, utcnow(), active_only=True)
    items = [render_control(request, device, c, ev) for c, ev in pg.slice(found)]
    return reply(list_element("DERControlList", f"/edev/{device.id}/derp/{program.id}/actderc", items, len(found)))


@routes.get("/edev/{e}/derp/{p}/derc/{c}")
@sep2_handler
async def get_control(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
        intervals, controls = await programs.device_intervals(session, device.id)
        control = controls.get(path_int(request, "c"))
        if control is None or control.program_id != program.id:
            raise NotFound("no such DERControl")
        interval = next(i for i in intervals if i.id == control.id)
        return reply(render_control(request, device, control, rules.evaluate(interval, intervals, utcnow())))


@routes.get("/edev/{e}/derp/{p}/dderc")
@sep2_handler
async def get_default_control(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
    # without one set, an empty DefaultDERControl (no DERControlBase values: nothing to apply by default)
    return reply(render_default(request, device, program))


def render_default(request: web.Request, device: EndDevice, program: Sep2Program) -> etree._Element:
    default = program.default_control or {}
    href = f"/edev/{device.id}/derp/{program.id}/dderc"
    return xml.E("DefaultDERControl", {"href": href},
                 xml.leaf("mRID", mrid(MRID_DEFAULT, program.id, pen(request), program.default_version)),
                 xml.leaf("description", (program.description or program.name)[:32]),
                 control_base(default.get("base", {}), f"/edev/{device.id}/derp/{program.id}/dc"),
                 xml.leaf("setGradW", default.get("setGradW")))


def render_curve(request: web.Request, href: str, c) -> etree._Element:
    return xml.E("DERCurve", {"href": href},
                 xml.leaf("mRID", mrid(MRID_CURVE, c.id, pen(request))),
                 xml.leaf("description", c.description or None),
                 xml.leaf("creationTime", epoch(c.creation_time)),
                 [xml.E("CurveData", None, xml.leaf("xvalue", x), xml.leaf("yvalue", y)) for x, y in c.points],
                 xml.leaf("curveType", c.curve_type),
                 xml.leaf("xMultiplier", c.x_multiplier),
                 xml.leaf("yMultiplier", c.y_multiplier),
                 xml.leaf("yRefType", c.y_ref_type))


@routes.get("/edev/{e}/derp/{p}/dc")
@sep2_handler
async def get_curve_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
        curves = await programs.program_curves(session, program.id)
    href = f"/edev/{device.id}/derp/{program.id}/dc"
    items = [render_curve(request, f"{href}/{c.id}", c) for c in pg.slice(curves)]
    return reply(list_element("DERCurveList", href, items, len(curves)))


@routes.get("/edev/{e}/derp/{p}/dc/{c}")
@sep2_handler
async def get_curve(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device, program = await program_in_scope(session, await scope_of(request, session),
                                                  path_int(request, "e"), path_int(request, "p"))
        curve = next((c for c in await programs.program_curves(session, program.id)
                      if c.id == path_int(request, "c")), None)
    if curve is None:
        raise NotFound("no such DERCurve")
    return reply(render_curve(request, request.path, curve))


# ------------------------------------------------------------------------------------------------------- DER
@routes.get("/edev/{e}/der")
@sep2_handler
async def get_der_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        rate = await poll_rate(request, session, "DERList")
    items = pg.slice([render_der(device)])
    return reply(list_element("DERList", f"/edev/{device.id}/der", items, 1, rate))


def render_der(device: EndDevice) -> etree._Element:
    href = f"/edev/{device.id}/der/1"
    return xml.E("DER", {"href": href},
                 xml.link("DERAvailabilityLink", f"{href}/dera"),
                 xml.link("DERCapabilityLink", f"{href}/dercap"),
                 xml.link("DERSettingsLink", f"{href}/derg"),
                 xml.link("DERStatusLink", f"{href}/ders"))


@routes.get("/edev/{e}/der/{d}")
@sep2_handler
async def get_der(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
    if path_int(request, "d") != 1:
        raise NotFound("no such DER")
    return reply(render_der(device))


@routes.get("/edev/{e}/der/{d}/{kind:dercap|derg|ders|dera}")
@sep2_handler
async def get_der_resource(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    async with sessions(request)() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        if path_int(request, "d") != 1:
            raise NotFound("no such DER")
        stored = await devres.get_resource(session, device.id, kind)
    if stored is None:
        raise NotFound(f"the device has not reported its {DER_KINDS[kind]} yet")
    return reply(_with_href(stored.body, request.path))


@routes.put("/edev/{e}/der/{d}/{kind:dercap|derg|ders|dera}")
@sep2_handler
async def put_der_resource(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    body = await read_body(request, DER_KINDS[kind])
    async with sessions(request).begin() as session:
        device = await device_in_scope(session, await scope_of(request, session), path_int(request, "e"))
        if path_int(request, "d") != 1:
            raise NotFound("no such DER")
        await devres.put_resource(session, device.id, kind, _store(body))
    # 2030.5 answers a successful PUT with 204 whether or not the device had reported the resource before
    return no_content()


# ---------------------------------------------------------------------------------------- MirrorUsagePoints
def owners(scope: Scope) -> list[str]:
    """MirrorUsagePoints belong to the client that created them (a device, or an aggregator for its devices)."""
    return [scope.lfdi]


def render_mup(request: web.Request, mup, post_rate_s: int) -> etree._Element:
    root = _with_href(mup.body, f"/mup/{mup.id}")
    rate = root.find(xml.q("postRate"))
    if rate is None:
        root.append(xml.leaf("postRate", post_rate_s))
    return root


@routes.get("/mup")
@sep2_handler
async def get_mup_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        scope = await scope_of(request, session)
        found = await devres.mups_of(session, owners(scope))
        if pg.after:
            found = [m for m in found if m.changed_at >= pg.after]
        rate = await poll_rate(request, session, "MirrorUsagePointList")
        prate = await post_rate(request, session, "MirrorUsagePoint")
    items = [render_mup(request, m, prate) for m in pg.slice(found)]
    return reply(list_element("MirrorUsagePointList", "/mup", items, len(found), rate))


@routes.post("/mup")
@sep2_handler
async def post_mup(request: web.Request) -> web.Response:
    body = await read_body(request, "MirrorUsagePoint")
    device_lfdi = lfdi_of(xml.text(body, "deviceLFDI") or "")
    mup_mrid = (xml.text(body, "mRID") or "").upper()
    mmrs = [(xml.text(m, "mRID") or "").upper() for m in body.findall(xml.q("MirrorMeterReading"))]
    async with sessions(request).begin() as session:
        scope = await scope_of(request, session)
        visible = {d.lfdi for d in await visible_devices(session, scope)}
        if device_lfdi not in visible:
            raise Forbidden("deviceLFDI is not an EndDevice you may mirror")
        mup, is_new = await devres.upsert_mup(session, scope.lfdi, device_lfdi, mup_mrid, _store(body), mmrs)
        await metering.ingest(session, device_lfdi, mup.body, body)  # readings -> telemetry (server.sep2.metering)
        href = f"/mup/{mup.id}"
    return web.Response(status=201 if is_new else 204, headers={"Location": href})


async def mup_in_scope(session: AsyncSession, scope: Scope, mup_id: int):
    for mup in await devres.mups_of(session, owners(scope)):
        if mup.id == mup_id:
            return mup
    raise NotFound("no such MirrorUsagePoint")


@routes.get("/mup/{m}")
@sep2_handler
async def get_mup(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        mup = await mup_in_scope(session, await scope_of(request, session), path_int(request, "m"))
        prate = await post_rate(request, session, "MirrorUsagePoint")
    return reply(render_mup(request, mup, prate))


@routes.post("/mup/{m}")
@sep2_handler
async def post_readings(request: web.Request) -> web.Response:
    body = await read_body(request, "MirrorMeterReading", "MirrorMeterReadingList")
    readings = [body] if xml.local_name(body) == "MirrorMeterReading" else body.findall(xml.q("MirrorMeterReading"))
    async with sessions(request).begin() as session:
        mup = await mup_in_scope(session, await scope_of(request, session), path_int(request, "m"))
        known = await devres.mup_mmr_mrids(session, mup.id)
        for r in readings:
            if (xml.text(r, "mRID") or "").upper() not in known:
                raise Invalid(f"MirrorMeterReading {xml.text(r, 'mRID')} is not part of this MirrorUsagePoint")
        await devres.add_readings(session, mup, etree.tostring(body, encoding="unicode"), len(readings))
        await metering.ingest(session, mup.device_lfdi, mup.body, body)  # readings -> telemetry, checked
    return web.Response(status=201, headers={"Location": f"/mup/{mup.id}"})


@routes.delete("/mup/{m}")
@sep2_handler
async def delete_mup(request: web.Request) -> web.Response:
    async with sessions(request).begin() as session:
        mup = await mup_in_scope(session, await scope_of(request, session), path_int(request, "m"))
        await session.delete(mup)
    return no_content()


# ------------------------------------------------------------------------------------------------ Responses
def render_response_set(request: web.Request) -> etree._Element:
    href = f"/rsps/{RESPONSE_SET_ID}"
    return xml.E("ResponseSet", {"href": href},
                 xml.leaf("mRID", mrid(MRID_RSET, RESPONSE_SET_ID, pen(request))),
                 xml.leaf("description", "DER control responses"),
                 xml.link("ResponseListLink", f"{href}/rsp"))


@routes.get("/rsps")
@sep2_handler
async def get_response_set_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        await scope_of(request, session)
        rate = await poll_rate(request, session, "ResponseSetList")
    return reply(list_element("ResponseSetList", "/rsps", pg.slice([render_response_set(request)]), 1, rate))


@routes.get("/rsps/{r}")
@sep2_handler
async def get_response_set(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    return reply(render_response_set(request))


def render_response(r, pen_: int) -> etree._Element:
    return xml.E("DERControlResponse", {"href": f"/rsps/{RESPONSE_SET_ID}/rsp/{r.id}"},
                 xml.leaf("createdDateTime", epoch(r.created_date_time)),
                 xml.leaf("endDeviceLFDI", r.lfdi),
                 xml.leaf("status", r.status),
                 xml.leaf("subject", mrid(MRID_CONTROL, r.control_id, pen_)))


@routes.get("/rsps/{r}/rsp")
@sep2_handler
async def get_response_list(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    pg = page(request)
    async with sessions(request)() as session:
        scope = await scope_of(request, session)
        ids = [d.id for d in await visible_devices(session, scope)]
        found = await responses.all_responses(session, ids)
    items = []
    for r in pg.slice(found):
        el = render_response(r, pen(request))
        el.tag = xml.q("Response")  # a plain Response inside a ResponseList
        items.append(el)
    return reply(list_element("ResponseList", f"/rsps/{RESPONSE_SET_ID}/rsp", items, len(found)))


@routes.get("/rsps/{r}/rsp/{i}")
@sep2_handler
async def get_response(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    async with sessions(request)() as session:
        scope = await scope_of(request, session)
        r = await responses.get(session, path_int(request, "i"))
        if r is None or r.end_device_id not in {d.id for d in await visible_devices(session, scope)}:
            raise NotFound("no such Response")
    return reply(render_response(r, pen(request)))


@routes.post("/rsps/{r}/rsp")
@sep2_handler
async def post_response(request: web.Request) -> web.Response:
    if path_int(request, "r") != RESPONSE_SET_ID:
        raise NotFound("no such ResponseSet")
    body = await read_body(request, "Response", "DERControlResponse")
    lfdi = lfdi_of(xml.text(body, "endDeviceLFDI") or "")
    status = xml.integer(body, "status")
    if status is None:
        raise Invalid("Response status is required")
    responses.check_status(status)
    control_id = parse_control_mrid(xml.text(body, "subject") or "", pen(request))
    if control_id is None:
        raise Invalid("subject is not the mRID of a DERControl of this server")
    created_at = xml.integer(body, "createdDateTime")
    created_dt = from_epoch(created_at, "createdDateTime") if created_at is not None else utcnow()
    async with sessions(request).begin() as session:
        scope = await scope_of(request, session)
        device = next((d for d in await visible_devices(session, scope) if d.lfdi == lfdi), None)
        if device is None:
            raise Invalid("endDeviceLFDI is not an EndDevice you may respond for")
        _, controls = await programs.device_intervals(session, device.id)
        if control_id not in controls:
            raise Invalid("subject is not a DERControl sent to this EndDevice")
        r = await responses.record(session, control_id, device.id, lfdi, status, created_dt)
        href = f"/rsps/{RESPONSE_SET_ID}/rsp/{r.id}"
    return created(href)


PREFIXES = ("/dcap", "/tm", "/edev", "/mup", "/rsps", "/upt")


def method_not_allowed(allowed: list[str]):
    async def handler(request: web.Request) -> web.Response:
        response = error_response(405, REASON_INVALID_FORMAT, f"{request.method} is not allowed on {request.path}")
        response.headers["Allow"] = ", ".join(allowed)
        return response

    return handler


async def unknown_href(request: web.Request) -> web.Response:
    return error_response(404, REASON_INVALID_FORMAT, f"no resource at {request.path}")


def setup(app: web.Application) -> None:
    """Add the function sets, then 2030.5 answers (Error bodies) for other methods on them and unknown hrefs
    under their prefixes; aiohttp tries routes in order, so these only see what nothing else matched."""
    app.add_routes(routes)
    methods: dict[str, list[str]] = {}
    for r in routes:
        if isinstance(r, web.RouteDef):
            methods.setdefault(r.path, []).append(r.method)
    for path, allowed in methods.items():
        app.router.add_route("*", path, method_not_allowed(sorted(allowed)))
    for prefix in PREFIXES:
        app.router.add_route("*", prefix + "/{tail:.*}", unknown_href)


__all__ = ["routes", "setup", "Sep2Error"]
