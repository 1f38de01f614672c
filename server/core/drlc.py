"""Demand response / load control (the 2030.5 DRLC function set, protocol-neutral).

A DR program (DemandResponseProgram) holds load-control events (EndDeviceControl) aimed at device categories
(a bit map: thermostats, water heaters, EVSE, ...). An event carries exactly the controls 2030.5 defines:
``applianceLoadReduction`` (type), ``dutyCycle`` (normalValue %), ``offset`` (coolingOffset/heatingOffset in
degrees C, loadAdjustmentPercentageOffset in hundredths of a percent), ``setPoint`` (cooling/heating in hundredths of
a degree C) and ``targetReduction`` (type, value). These events are created like every event
(``server.core.events.create``); their status and primacy follow ``server.core.der_controls``.

Device categories are matched by the device, not here: IEEE 2030.5 EndDeviceControl.deviceCategory "Specifies
the bitmap indicating the categories of devices that SHOULD respond. Devices SHOULD ignore events that do not
indicate their device category." Every EndDevice assigned to a DR program therefore sees (and, subscribed,
is notified of) all its events, as a GET of the EndDeviceControlList returns them (a Notification carries what a
GET returns, §8.7.3.2); filtering by EndDevice.deviceCategory -- optional, and for a gateway or EMS not the
category of the loads behind it -- would hide events from devices the standard leaves to decide.
"""

from __future__ import annotations

from typing import Any

from server.core.errors import Invalid

# DeviceCategoryType bits (IEEE 2030.5): what staff may name instead of a hex bit map
CATEGORIES = {
    "thermostat": 1 << 0,
    "strip-heater": 1 << 1,
    "baseboard-heater": 1 << 2,
    "water-heater": 1 << 3,
    "pool-pump": 1 << 4,
    "smart-appliance": 1 << 7,
    "irrigation-pump": 1 << 8,
    "load-control-switch": 1 << 13,
    "ems": 1 << 14,
    "electric-vehicle": 1 << 16,
    "evse": 1 << 17,
    "virtual-der": 1 << 18,
    "pv-storage": 1 << 23,
    "other-storage": 1 << 25,
    "all": (1 << 26) - 1,
}


def category_bits(value: Any) -> int:
    """A hex bit map ("0008"), or a list of names (["thermostat", "evse"])."""
    if isinstance(value, str):
        try:
            bits = int(value, 16)
        except ValueError:
            raise Invalid("device_category must be a hex bit map or a list of category names") from None
    elif isinstance(value, list) and value:
        unknown = [v for v in value if v not in CATEGORIES]
        if unknown:
            raise Invalid(f"unknown device categories {unknown}; known: {sorted(CATEGORIES)}")
        bits = 0
        for v in value:
            bits |= CATEGORIES[v]
    else:
        raise Invalid("device_category is required")
    if not 0 < bits <= 0xFFFFFFFF:
        raise Invalid("device_category must name at least one category (32 bits)")
    return bits


def _int(body: dict[str, Any], name: str, lo: int, hi: int, where: str, required: bool = True) -> int | None:
    v = body.get(name)
    if v is None and not required:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Invalid(f"{where}.{name} must be an integer {lo}..{hi}")
    return v


def check_control(control: object) -> dict[str, Any]:
    """Validate the load-control part of an EndDeviceControl; at least one control is needed."""
    if not isinstance(control, dict):
        raise Invalid("control must be an object")
    known = {"applianceLoadReduction", "dutyCycle", "offset", "setPoint", "targetReduction"}
    unknown = set(control) - known
    if unknown:
        raise Invalid(f"unknown control fields {sorted(unknown)}; known: {sorted(known)}")
    clean: dict[str, Any] = {}
    if "applianceLoadReduction" in control:
        clean["applianceLoadReduction"] = {
            "type": _int(control["applianceLoadReduction"] or {}, "type", 0, 1, "applianceLoadReduction")
        }
    if "dutyCycle" in control:
        clean["dutyCycle"] = {
            "normalValue": _int(control["dutyCycle"] or {}, "normalValue", 0, 100, "dutyCycle")
        }
    if "offset" in control:
        o = control["offset"] or {}
        clean["offset"] = {
            k: v
            for k, v in (
                ("coolingOffset", _int(o, "coolingOffset", 0, 255, "offset", False)),
                ("heatingOffset", _int(o, "heatingOffset", 0, 255, "offset", False)),
                (
                    "loadAdjustmentPercentageOffset",
                    _int(o, "loadAdjustmentPercentageOffset", 0, 10000, "offset", False),
                ),
            )
            if v is not None
        }
        if not clean["offset"]:
            raise Invalid("offset needs coolingOffset, heatingOffset or loadAdjustmentPercentageOffset")
    if "setPoint" in control:
        s = control["setPoint"] or {}
        clean["setPoint"] = {
            k: v
            for k, v in (
                ("coolingSetpoint", _int(s, "coolingSetpoint", -32768, 32767, "setPoint", False)),
                ("heatingSetpoint", _int(s, "heatingSetpoint", -32768, 32767, "setPoint", False)),
            )
            if v is not None
        }
        if not clean["setPoint"]:
            raise Invalid("setPoint needs coolingSetpoint or heatingSetpoint (hundredths of a degree C)")
        for v in clean["setPoint"].values():
            if not -5000 <= v <= 10000:
                raise Invalid("a set point must be within -50..100 degrees C (hundredths)")
    if "targetReduction" in control:
        t = control["targetReduction"] or {}
        clean["targetReduction"] = {
            "type": _int(t, "type", 0, 12, "targetReduction"),
            "value": _int(t, "value", 0, 65535, "targetReduction"),
        }
    if not clean:
        raise Invalid("an EndDeviceControl needs at least one control")
    return clean


def dr_payload(p: dict[str, Any]) -> dict[str, Any]:
    """The 2030.5 half of a DR event's payload from what staff gave: {"device_category", "control",
    "load_shift_forward"?, "mandatory"?, "override_duration_s"?}."""
    override = p.get("override_duration_s")
    if override is not None and (
        isinstance(override, bool) or not isinstance(override, int) or not 0 <= override <= 65535
    ):
        raise Invalid("override_duration_s must be 0..65535")
    return {
        "deviceCategory": category_bits(p.get("device_category")),
        "control": check_control(p.get("control")),
        "loadShiftForward": bool(p.get("load_shift_forward", False)),
        "drProgramMandatory": bool(p.get("mandatory", False)),
        "overrideDuration": override,
    }
