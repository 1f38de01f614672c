"""SimBench codes (``1-MVLV-semiurb-all-2-sw``) -> the model plus one day's profiles of every load, generator
and storage unit (the relative profiles SimBench ships times each element's rated power, as SimBench's own
absolute-value helper computes them, but for the chosen day only). Needs simbench (the ``grid`` extra)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from server.orchestration.network.model import Network, NetworkError, Profiles
from server.orchestration.network.pandapower_io import DEFAULT_BAND, from_pandapower

STEPS_PER_DAY = 96


def simbench_net(code: str) -> Any:
    try:
        import simbench
    except ImportError:
        raise NetworkError("simbench is not installed: pip install 'opendso[grid]'") from None
    try:
        return simbench.get_simbench_net(code)
    except Exception as exc:  # simbench raises bare errors on unknown codes
        raise NetworkError(f"unknown SimBench code {code!r}: {exc}") from None


def day_profiles(net: Any, model: Network, day: int) -> Profiles:
    """Profiles of day ``day`` of the profile year for the model's elements, counted from 0 (0 = 1 January,
    172 = 21 June of SimBench's leap year)."""
    rows = net.profiles["load"]
    days = len(rows) // STEPS_PER_DAY
    if not 0 <= day < days:
        raise NetworkError(f"day {day} is outside the profiles (0..{days - 1})")
    sl = slice(day * STEPS_PER_DAY, (day + 1) * STEPS_PER_DAY)
    gen_rel = {
        **{c: net.profiles["powerplants"][c] for c in net.profiles["powerplants"].columns},
        **{c: net.profiles["renewables"][c] for c in net.profiles["renewables"].columns},
    }

    def rel(table: dict, column: str | None, what: str) -> np.ndarray:
        if column is None:
            return np.ones(STEPS_PER_DAY)
        if column not in table:
            raise NetworkError(f"{what}: profile {column!r} is not in the SimBench data")
        return np.asarray(table[column].to_numpy()[sl], float)

    load_table = {c: net.profiles["load"][c] for c in net.profiles["load"].columns}
    storage_table = {c: net.profiles["storage"][c] for c in net.profiles["storage"].columns}
    load_p = {
        x.id: x.p_mw * rel(load_table, x.profile and f"{x.profile}_pload", f"load {x.id}")
        for x in model.loads
    }
    load_q = {
        x.id: x.q_mvar * rel(load_table, x.profile and f"{x.profile}_qload", f"load {x.id}")
        for x in model.loads
    }
    sgen_p = {s.id: s.p_mw * rel(gen_rel, s.profile, f"sgen {s.id}") for s in model.sgens}
    storage_p = {s.id: s.p_mw * rel(storage_table, s.profile, f"storage {s.id}") for s in model.storages}
    first = str(rows["time"].iloc[sl.start])
    try:
        start = dt.datetime.strptime(first, "%d.%m.%Y %H:%M").isoformat()
    except ValueError:
        start = first
    return Profiles(
        start=start,
        step_s=86400 // STEPS_PER_DAY,
        load_p=load_p,
        load_q=load_q,
        sgen_p=sgen_p,
        storage_p=storage_p,
    )


def load_simbench(
    code: str, day: int, v_band: tuple[float, float] | None = DEFAULT_BAND
) -> tuple[Network, Profiles]:
    net = simbench_net(code)
    model = from_pandapower(net, name=code, v_band=v_band)
    return model, day_profiles(net, model, day)


def load_grid(spec: str, day: int | None = None) -> tuple[Network, Profiles | None]:
    """``simbench:CODE`` (profiles of ``day``) or a pandapower JSON file (no profiles)."""
    if spec.startswith("simbench:"):
        if day is None:
            raise NetworkError("a SimBench grid needs a day (0 = 1 January .. 365)")
        return load_simbench(spec.removeprefix("simbench:"), day)
    from server.orchestration.network.pandapower_io import load_json

    return load_json(spec), None
