"""A small LV grid whose forecast overloads its transformer both ways, and the fleet on it, for the planning
loop's tests: a 50 kVA transformer T1, two houses with 35 kW of rooftop PV each (2030.5 inverters) and a
business with a 10 kW / 20 kWh battery (2030.5) and flexible load behind an OpenADR VEN.

Unmanaged, the midday export (70 kW of PV less about 12 kW of load) and the evening import (about 58 kW: more than the battery alone can cover) both
exceed the transformer's 50 kVA. Every site's net metered load repeats daily, so a forecast from a week of it
is that day again, whatever day the test runs."""

from __future__ import annotations

import datetime as dt

import numpy as np

TRAFO_KVA = 50.0
PV_W = 35_000.0
BATTERY_W, BATTERY_WH = 10_000.0, 20_000.0
STEP_S = 900
NS = "urn:ieee:std:2030.5:ns"


def grid_json() -> str:
    import pandapower as pp

    net = pp.create_empty_network(name="loop feeder")
    mv = pp.create_bus(net, 20.0, name="MV")
    lv = pp.create_bus(net, 0.4, name="LV busbar")
    pp.create_ext_grid(net, mv, vm_pu=1.0)
    pp.create_transformer_from_parameters(
        net,
        mv,
        lv,
        sn_mva=TRAFO_KVA / 1000,
        vn_hv_kv=20,
        vn_lv_kv=0.4,
        vkr_percent=1.2,
        vk_percent=4.0,
        pfe_kw=0.1,
        i0_percent=0.1,
        name="T1",
    )
    for i, (name, p_mw) in enumerate((("house 0", 0.004), ("house 1", 0.004), ("business", 0.030))):
        b = pp.create_bus(net, 0.4, name=name)
        # short, heavy cables: the transformer is the limit, not the feeder
        pp.create_line_from_parameters(net, lv, b, 0.02, 0.1, 0.07, 300, 0.4, name=f"cable {i}")
        pp.create_load(net, b, p_mw, q_mvar=p_mw * 0.2, name=f"load {i}")
    return pp.to_json(net)


BUS = {"house 0": 2, "house 1": 3, "business": 4}


def solar(hours: np.ndarray) -> np.ndarray:
    """The shape the planner assumes without coordinates: a 06:00-18:00 UTC sine."""
    return np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)


def site_net_w(site: str, hours: np.ndarray) -> np.ndarray:
    evening = np.exp(-((hours - 19) ** 2) / 3)
    if site == "business":
        return 10_000 + 38_000 * evening
    return 1_000 + 4_000 * evening - PV_W * solar(hours)


def day_scale(day: dt.date) -> float:
    """How one day's metered power differs from the profile: within +-2 %, the same for every site that day, so
    that a 10-day baseline is not the event day itself and the same-day adjustment has something to correct."""
    return 1.0 + 0.01 * ((day.toordinal() * 7) % 5 - 2)


def metered_w(site: str, ts: np.ndarray) -> np.ndarray:
    """What a site's meter reads (net import, W) in the 15-minute intervals starting at ``ts`` (epoch seconds),
    uncontrolled: the daily profile scaled by ``day_scale`` of its UTC day, with meter noise."""
    hours = (ts % 86400 + STEP_S / 2) / 3600
    scale = np.array([day_scale(dt.date.fromordinal(719163 + int(t) // 86400)) for t in ts])
    return site_net_w(site, hours) * scale + meter_noise_w(site, ts)


def meter_noise_w(site: str, ts: np.ndarray) -> np.ndarray:
    """A real meter never reads the same watt for hours (the forecaster masks such runs as a stuck sensor):
    +-40 W of reproducible noise per site and interval."""
    key = (ts.astype(np.int64) // STEP_S + 7919 * len(site) + ord(site[-1])) * 2654435761 % 2**32
    return (key / 2**32 - 0.5) * 80


def history(site: str, now: dt.datetime, days: int = 7) -> list[list[object]]:
    """[time, W] every 15 minutes for ``days`` days up to ``now``."""
    end = int(now.timestamp()) // STEP_S * STEP_S
    ts = np.arange(end - days * 86400, end, STEP_S)
    hours = (ts % 86400 + STEP_S / 2) / 3600
    values = site_net_w(site, hours)
    return [
        [dt.datetime.fromtimestamp(int(t), dt.UTC).isoformat(), round(float(v), 1)]
        for t, v in zip(ts, values, strict=True)
    ]


def power(tag: str, watts: float) -> str:
    """An ActivePower/WattHour element: the value fits 2030.5's Int16 by the power-of-ten multiplier."""
    value, multiplier = int(watts), 0
    while abs(value) > 32767:
        value, multiplier = value // 10, multiplier + 1
    return f"<{tag}><multiplier>{multiplier}</multiplier><value>{value}</value></{tag}>"


def dercap_xml(der_type: int, rated_w: float, wh: float | None = None) -> str:
    energy = power("rtgMaxWh", wh) if wh else ""
    return (
        f'<DERCapability xmlns="{NS}"><modesSupported>00500040</modesSupported>'
        f"{power('rtgMaxW', rated_w)}{energy}<type>{der_type}</type></DERCapability>"
    )


def ders_xml(soc_percent: float) -> str:
    return (
        f'<DERStatus xmlns="{NS}"><readingTime>0</readingTime>'
        f"<stateOfChargeStatus><dateTime>0</dateTime><value>{int(soc_percent * 100)}</value></stateOfChargeStatus>"
        "</DERStatus>"
    )
