"""What the plan may count on of a 2030.5 battery that reported its DERAvailability: the power it has in reserve,
the energy it can deliver (its state-of-charge floor) and take (its ceiling), the energy CSIP-AUS ``setMinWh``
keeps; every figure listed with what it was built from; and the planner never takes a battery below its floor."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import numpy as np
import pytest
from lxml import etree

from server.cli.loop_cmds import show_lines
from server.core import parties, sep2_device
from server.orchestration import flexibility, plan_model
from server.orchestration.flexibility import Resource
from server.orchestration.resources import build_fleet
from server.sep2 import xml

pytest.importorskip("pandapower")
from support.grid_feeders import feeder_model, profiles_for  # noqa: E402

NS = "urn:ieee:std:2030.5:ns"
STORAGE_NS = "https://csipaus.org/ns/v1.3-beta/storage"
# 5 kW (5 x 10^3), 10 kWh (100 x 10^2): the values carried with multipliers, as devices do
DERCAP = (
    f'<DERCapability xmlns="{NS}"><modesSupported>00500040</modesSupported>'
    "<rtgMaxW><multiplier>3</multiplier><value>5</value></rtgMaxW>"
    "<rtgMaxWh><multiplier>2</multiplier><value>100</value></rtgMaxWh><type>80</type></DERCapability>"
)
DERS = (
    f'<DERStatus xmlns="{NS}"><readingTime>0</readingTime>'
    "<stateOfChargeStatus><dateTime>0</dateTime><value>6000</value></stateOfChargeStatus></DERStatus>"
)
# 4 kW in reserve (40 x 10^2), 90 % of setMaxW; an hour at that power; half an hour at 50 % of its charge rate
DERA = (
    f'<DERAvailability xmlns="{NS}"><availabilityDuration>3600</availabilityDuration>'
    "<maxChargeDuration>1800</maxChargeDuration><readingTime>0</readingTime>"
    "<reserveChargePercent>5000</reserveChargePercent><reservePercent>9000</reservePercent>"
    "<statVarAvail><multiplier>0</multiplier><value>2000</value></statVarAvail>"
    "<statWAvail><multiplier>2</multiplier><value>40</value></statWAvail></DERAvailability>"
)
DERG_MIN_WH = (
    f'<DERSettings xmlns="{NS}" xmlns:s="{STORAGE_NS}"><modesEnabled>00500040</modesEnabled>'
    "<setGradW>100</setGradW><setMaxW><multiplier>3</multiplier><value>5</value></setMaxW>"
    "<updatedTime>0</updatedTime><s:setMinWh><multiplier>0</multiplier><value>2500</value></s:setMinWh>"
    "</DERSettings>"
)


def test_the_documents_are_2030_5():
    for body in (DERCAP, DERS, DERA):
        xml.schema(strict=False).assertValid(etree.fromstring(body.encode()))
    xml.schema(strict=False, storage=True).assertValid(etree.fromstring(DERG_MIN_WH.encode()))


def battery(res: dict[str, str]) -> Resource:
    (r,) = flexibility.device_resources("AB" * 20, 3, res)
    assert r.kind == "battery"
    return r


def test_availability_caps_power_and_bounds_the_state_of_charge():
    r = battery({"dercap": DERCAP, "ders": DERS, "dera": DERA})
    assert r.energy_kwh == pytest.approx(10.0)
    assert r.soc_percent == pytest.approx(60.0)
    assert r.power_kw == pytest.approx(4.0)  # statWAvail 4 kW below 90 % of 5 kW
    # an hour at 4 kW from 6 kWh: 2 kWh floor; half an hour at 2.5 kW into it: 7.25 kWh ceiling
    assert r.min_soc_percent == pytest.approx(20.0)
    assert r.max_soc_percent == pytest.approx(72.5)
    assert "DERAvailability statWAvail 4000 W" in r.said
    assert "DERAvailability reservePercent 90 %" in r.said
    assert "DERAvailability availabilityDuration 3600 s at 4000 W" in r.said
    assert "DERAvailability maxChargeDuration 1800 s at 2500 W" in r.said
    assert "DERAvailability statVarAvail 2000 var" in r.said
    assert not any("DERAvailability" in d for d in r.defaults)


def test_reserve_percent_caps_power_and_without_availability_all_is_available():
    dera = DERA.replace("<reservePercent>9000", "<reservePercent>6000")
    r = battery({"dercap": DERCAP, "ders": DERS, "dera": dera})
    assert r.power_kw == pytest.approx(3.0)  # 60 % of 5 kW, below statWAvail
    assert r.min_soc_percent == pytest.approx(30.0)  # an hour at 3 kW from 6 kWh
    r = battery({"dercap": DERCAP, "ders": DERS})
    assert (r.power_kw, r.min_soc_percent, r.max_soc_percent) == (5.0, 0.0, 100.0)
    assert "no DERAvailability: all of its energy and power available" in r.defaults


def test_csip_aus_set_min_wh_is_a_floor_and_a_floor_never_above_the_charge_held():
    r = battery({"dercap": DERCAP, "ders": DERS, "derg": DERG_MIN_WH})
    assert r.min_soc_percent == pytest.approx(25.0)
    assert "DERSettings setMinWh 2500 Wh" in r.said
    low = DERS.replace("<value>6000</value>", "<value>1000</value>")  # 1 kWh held, 2.5 kWh kept
    r = battery({"dercap": DERCAP, "ders": low, "derg": DERG_MIN_WH})
    assert r.min_soc_percent == pytest.approx(10.0)  # not discharged, not forced to charge


@pytest.fixture
def store(sqlite_store):  # noqa: ANN001, ANN201 - these tests need one backend
    return sqlite_store


async def test_snapshot_of_a_stored_device_lists_its_availability(store) -> None:
    lfdi = hashlib.sha256(b"battery").hexdigest()[:40].upper()
    other = hashlib.sha256(b"other battery").hexdigest()[:40].upper()
    async with store.sessions.begin() as session:
        for lf, res in ((lfdi, {"dercap": DERCAP, "ders": DERS, "dera": DERA}), (other, {"dercap": DERCAP})):
            info = await parties.enroll_device(session, lf)
            for kind, body in res.items():
                await sep2_device.put_resource(session, info.id, kind, body)
    mapped = [{"kind": "device", "id": lfdi, "bus": 3}, {"kind": "device", "id": other, "bus": 4}]
    async with store.sessions.begin() as session:
        got = await flexibility.snapshot(session, mapped, dt.datetime.now(dt.UTC), 3600)
    a, b = got
    assert (a.id, a.power_kw, a.energy_kwh) == (lfdi, pytest.approx(4.0), pytest.approx(10.0))
    assert (a.min_soc_percent, a.max_soc_percent) == (pytest.approx(20.0), pytest.approx(72.5))
    assert any(s.startswith("DERAvailability") for s in a.to_dict()["said"])
    assert b.to_dict()["defaults"] == [
        "no DERStatus stateOfChargeStatus: 50 %",
        "no DERAvailability: all of its energy and power available",
    ]
    plan = {
        "id": 1,
        "model": "m",
        "trigger": "t",
        "status": "ok",
        "reason": "",
        "start": "s",
        "steps": 1,
        "step_s": 900,
        "created_at": "c",
        "inputs": {"flexibility": [a.to_dict(), b.to_dict()]},
    }
    shown = "\n".join(show_lines(plan))
    assert "4 kW 10 kWh SOC 60 % (kept within 20..72.5 %)" in shown
    assert "5 kW 10 kWh SOC 50 %, counted" in shown  # no band shown for one with no DERAvailability
    # the planner's storage of it: floor and ceiling as energy, the charge it holds unchanged
    st = plan_model.storage(0, a)
    assert st.min_e_mwh * 1000 == pytest.approx(2.0)
    assert st.max_e_mwh * 1000 == pytest.approx(7.25)
    assert st.soc_percent / 100 * st.max_e_mwh * 1000 == pytest.approx(6.0)


def soc_path(plan) -> list[np.ndarray]:  # noqa: ANN001
    s, f = plan.schedule, plan.fleet
    out = []
    for b in f.batteries:
        kw = s.storage_p[:, b.storage] * 1000
        out.append(b.soc0_kwh + np.cumsum(np.where(kw > 0, kw * b.efficiency, kw / b.efficiency)) * f.step_h)
    return out


def test_the_planner_never_takes_a_battery_below_its_floor():
    from server.orchestration.grid_planner import PlannerOptions, plan_grid

    def planned(floor_mwh: float) -> list[np.ndarray]:
        m = feeder_model(pv_kw=30.0)
        m = dataclasses.replace(
            m, storages=[dataclasses.replace(s, soc_percent=80.0, min_e_mwh=floor_mwh) for s in m.storages]
        )
        return soc_path(plan_grid(m, profiles_for(m), PlannerOptions(max_iterations=3)))

    assert min(p.min() for p in planned(0.0)) < 6.0 - 1e-3  # it would use the energy below 6 kWh
    for p in planned(0.006):
        assert p.min() >= 6.0 - 1e-6
    # a floor above the charge held is the charge held: no discharge, and the plan stays feasible
    m = feeder_model()
    m = dataclasses.replace(
        m, storages=[dataclasses.replace(s, soc_percent=20.0, min_e_mwh=0.005) for s in m.storages]
    )
    f = build_fleet(m, profiles_for(m))
    assert [b.min_kwh for b in f.batteries] == [pytest.approx(2.0)] * len(f.batteries)
