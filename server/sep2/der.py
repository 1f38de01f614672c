"""2030.5 DER: the one DER of each EndDevice and the resources the device reports about it (stored as sent, served
back with their href).

    /edev/{e}/der, /edev/{e}/der/1          DERList / DER (one DER per EndDevice)
    /edev/{e}/der/1/{dercap|derg|ders|dera} DERCapability / DERSettings / DERStatus / DERAvailability (GET, PUT)
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree

from server.core import sep2_device as devres
from server.core import telemetry
from server.core.errors import NotFound
from server.core.parties import device_in_scope
from server.sep2 import editions, xml
from server.sep2.common import (
    list_element,
    no_content,
    page,
    path_int,
    read_body,
    reply,
    scope_of,
    sep2_handler,
    sessions,
)
from server.sep2.render import for_storage, poll_rate, render_ctx, with_href
from server.store.models import EndDevice
from server.store.types import utcnow

routes = web.RouteTableDef()
DER_KINDS = {"dercap": "DERCapability", "derg": "DERSettings", "ders": "DERStatus", "dera": "DERAvailability"}


@routes.get("/edev/{e}/der")
@sep2_handler
async def get_der_list(request: web.Request) -> web.Response:
    pg = page(request)
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        rate = await poll_rate(render_ctx(request, session), "DERList")
    items = pg.slice([render_der(device)])
    return reply(list_element("DERList", f"/edev/{device.id}/der", items, 1, rate))


def render_der(device: EndDevice) -> etree._Element:
    href = f"/edev/{device.id}/der/1"
    return xml.E(
        "DER",
        {"href": href},
        xml.link("DERAvailabilityLink", f"{href}/dera"),
        xml.link("DERCapabilityLink", f"{href}/dercap"),
        xml.link("DERSettingsLink", f"{href}/derg"),
        xml.link("DERStatusLink", f"{href}/ders"),
    )


@routes.get("/edev/{e}/der/{d}")
@sep2_handler
async def get_der(request: web.Request) -> web.Response:
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
    if path_int(request, "d") != 1:
        raise NotFound("no such DER")
    return reply(render_der(device))


@routes.get("/edev/{e}/der/{d}/{kind:dercap|derg|ders|dera}")
@sep2_handler
async def get_der_resource(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    async with sessions(request)() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        if path_int(request, "d") != 1:
            raise NotFound("no such DER")
        stored = await devres.get_resource(session, device.id, kind)
        if stored is None:
            raise NotFound(f"the device has not reported its {DER_KINDS[kind]} yet")
        served = await editions.as_stored(request, session, with_href(stored.body, request.path))
    return reply(served)


@routes.put("/edev/{e}/der/{d}/{kind:dercap|derg|ders|dera}")
@sep2_handler
async def put_der_resource(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    body = await read_body(request, DER_KINDS[kind])
    async with sessions(request).begin() as session:
        device = await device_in_scope(session, scope_of(request), path_int(request, "e"))
        if path_int(request, "d") != 1:
            raise NotFound("no such DER")
        await devres.put_resource(session, device.id, kind, for_storage(body))
        now = utcnow()
        # the nameplate and the storage figures as protocol-neutral telemetry, as the Modbus gateway stores
        # SunSpec's WRtg: planning reads a DER's size and its battery the same way whatever it speaks
        readings = [
            telemetry.Reading("device", device.lfdi, name, now, value, unit, resource=kind)
            for name, value, unit in reported_figures(kind, body)
        ]
        if readings:
            await telemetry.add(session, readings)
    # 2030.5 answers a successful PUT with 204 whether or not the device had reported the resource before
    return no_content()


# (telemetry name, path in the resource, unit) of the figures each DER resource reports; the CSIP-AUS 1.3 storage
# extension adds setMinWh (the energy the battery keeps) and the VPP modes (bit 0: opModStorageTargetW)
FIGURES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "dercap": (
        ("ratedPower", "rtgMaxW", "W"),
        ("storageCapacity", "rtgMaxWh", "Wh"),
        ("storageMaxChargeRate", "rtgMaxChargeRateW", "W"),
        ("storageMaxDischargeRate", "rtgMaxDischargeRateW", "W"),
        ("vppModesSupported", "csipaus-storage:vppModesSupported", ""),
    ),
    "derg": (
        ("storageMaxEnergy", "setMaxWh", "Wh"),
        ("storageMinEnergy", "csipaus-storage:setMinWh", "Wh"),
        ("storageMaxChargeRate", "setMaxChargeRateW", "W"),
        ("storageMaxDischargeRate", "setMaxDischargeRateW", "W"),
        ("vppModesEnabled", "csipaus-storage:vppModesEnabled", ""),
    ),
    "ders": (("stateOfCharge", "stateOfChargeStatus", "%"),),
}


def reported_figures(kind: str, body: etree._Element) -> list[tuple[str, float, str]]:
    """The figures of ``FIGURES`` a DER resource carries, in SI units (percent for state of charge)."""
    out = []
    for name, path, unit in FIGURES.get(kind, ()):
        node = xml.find(body, path)
        if node is None:
            continue
        if unit == "":  # a HexBinary8 bitmap
            out.append((name, float(int(node.text or "0", 16)), unit))
        elif unit == "%":  # PerCent in hundredths, in a status with its dateTime
            value = xml.integer(node, "value")
            if value is not None:
                out.append((name, value / 100.0, unit))
        else:
            value = xml.integer(node, "value")
            if value is not None:
                out.append((name, float(value) * 10.0 ** (xml.integer(node, "multiplier") or 0), unit))
    return out
