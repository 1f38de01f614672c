"""The network model: buses with a voltage band, lines, transformers, bus couplers, loads, generators (PV),
storage and the slack, in pandapower's units (kV, kA, ohm/km, MW, Mvar, MVA) and with pandapower's element
indices as ids, so a plan made on the model can be applied to the network it came from.

Everything is a dataclass of plain numbers and strings: ``Network.to_dict()`` is JSON and ``from_dict`` reads it
back, which is how the server will store a model. ``Profiles`` holds the per-interval power of loads, generators
and storage (the forecast the planner plans against)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class NetworkError(ValueError):
    """A network the planner cannot use; the message names the element."""


@dataclass
class Bus:
    id: int
    name: str
    vn_kv: float
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05


@dataclass
class Line:
    id: int
    name: str
    from_bus: int
    to_bus: int
    length_km: float
    r_ohm_per_km: float
    x_ohm_per_km: float
    max_i_ka: float
    c_nf_per_km: float = 0.0
    g_us_per_km: float = 0.0
    parallel: int = 1
    df: float = 1.0
    max_loading_percent: float = 100.0


@dataclass
class Trafo:
    id: int
    name: str
    hv_bus: int
    lv_bus: int
    sn_mva: float
    vn_hv_kv: float
    vn_lv_kv: float
    vk_percent: float
    vkr_percent: float
    pfe_kw: float = 0.0
    i0_percent: float = 0.0
    shift_degree: float = 0.0
    tap_side: str | None = None
    tap_neutral: float = 0.0
    tap_min: float = 0.0
    tap_max: float = 0.0
    tap_step_percent: float = 0.0
    tap_step_degree: float = 0.0
    tap_pos: float = 0.0
    tap_changer_type: str | None = None
    parallel: int = 1
    max_loading_percent: float = 100.0


@dataclass
class Coupler:
    """A closed bus-bus switch (zero impedance)."""

    id: int
    bus: int
    other_bus: int


@dataclass
class Load:
    id: int
    name: str
    bus: int
    p_mw: float
    q_mvar: float = 0.0
    kind: str = "household"  # household | commercial | heat_pump | ev | other
    profile: str | None = None


@dataclass
class Sgen:
    id: int
    name: str
    bus: int
    p_mw: float
    sn_mva: float
    q_mvar: float = 0.0
    kind: str = "pv"  # pv | wind | other
    profile: str | None = None


@dataclass
class Storage:
    id: int
    name: str
    bus: int
    sn_mva: float
    max_e_mwh: float
    p_mw: float = 0.0  # load convention: + charging
    min_e_mwh: float = 0.0
    soc_percent: float = 0.0
    efficiency: float = 0.95  # one way
    profile: str | None = None


@dataclass
class Slack:
    bus: int
    vm_pu: float = 1.0
    va_degree: float = 0.0


@dataclass
class Network:
    name: str
    buses: list[Bus]
    lines: list[Line]
    trafos: list[Trafo]
    slack: Slack
    loads: list[Load] = field(default_factory=list)
    sgens: list[Sgen] = field(default_factory=list)
    storages: list[Storage] = field(default_factory=list)
    couplers: list[Coupler] = field(default_factory=list)
    f_hz: float = 50.0

    def bus_index(self) -> dict[int, Bus]:
        return {b.id: b for b in self.buses}

    def connection_points(self) -> dict[int, dict[str, list[int]]]:
        """One connection point per bus that has a customer's element on it: {bus: {"load": [...], ...}}."""
        out: dict[int, dict[str, list[int]]] = {}
        for table, items in (("load", self.loads), ("sgen", self.sgens), ("storage", self.storages)):
            for item in items:
                out.setdefault(item.bus, {"load": [], "sgen": [], "storage": []})[table].append(item.id)
        out.pop(self.slack.bus, None)
        return dict(sorted(out.items()))

    def validate(self) -> None:
        """Refuse what the planner cannot plan: unknown buses, unrated branches, islands, meshes."""
        from server.orchestration.network.topology import build_tree

        buses = self.bus_index()
        if len(buses) != len(self.buses):
            raise NetworkError("two buses share an id")
        for b in self.buses:
            if not b.vn_kv > 0:
                raise NetworkError(f"bus {b.id} {b.name!r} has no nominal voltage")
            if not b.v_min_pu < b.v_max_pu:
                raise NetworkError(f"bus {b.id} {b.name!r} has an empty voltage band")
        refs: list[tuple[str, Any, int]] = [("slack", self.slack, self.slack.bus)]
        refs += [("line", ln, ln.from_bus) for ln in self.lines] + [
            ("line", ln, ln.to_bus) for ln in self.lines
        ]
        refs += [("trafo", t, t.hv_bus) for t in self.trafos] + [("trafo", t, t.lv_bus) for t in self.trafos]
        refs += [("coupler", c, c.bus) for c in self.couplers] + [
            ("coupler", c, c.other_bus) for c in self.couplers
        ]
        refs += [("load", x, x.bus) for x in self.loads] + [("sgen", x, x.bus) for x in self.sgens]
        refs += [("storage", x, x.bus) for x in self.storages]
        for table, item, bus in refs:
            if bus not in buses:
                label = f"{table} {getattr(item, 'id', '')} {getattr(item, 'name', '')!r}".replace(" ''", "")
                raise NetworkError(f"{label.strip()} refers to unknown bus {bus}")
        for ln in self.lines:
            if not (_finite(ln.max_i_ka) and ln.max_i_ka > 0):
                raise NetworkError(f"line {ln.id} {ln.name!r} has no rating (max_i_ka)")
            if not (
                _finite(ln.r_ohm_per_km)
                and _finite(ln.x_ohm_per_km)
                and _finite(ln.length_km)
                and ln.length_km > 0
            ):
                raise NetworkError(f"line {ln.id} {ln.name!r} has no impedance or length")
        for t in self.trafos:
            if not (_finite(t.sn_mva) and t.sn_mva > 0):
                raise NetworkError(f"trafo {t.id} {t.name!r} has no rating (sn_mva)")
            if not (_finite(t.vk_percent) and t.vk_percent > 0 and _finite(t.vkr_percent)):
                raise NetworkError(f"trafo {t.id} {t.name!r} has no short-circuit impedance (vk_percent)")
        for s in self.storages:
            if not (_finite(s.max_e_mwh) and s.max_e_mwh > 0 and _finite(s.sn_mva) and s.sn_mva > 0):
                raise NetworkError(f"storage {s.id} {s.name!r} has no power or energy rating")
        build_tree(self)  # islands and meshes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "f_hz": self.f_hz,
            "slack": dataclasses.asdict(self.slack),
            **{key: [dataclasses.asdict(x) for x in getattr(self, key)] for key, _ in _TABLES},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Network:
        tables = {key: [kind(**row) for row in data.get(key, [])] for key, kind in _TABLES}
        return cls(name=data["name"], slack=Slack(**data["slack"]), f_hz=data.get("f_hz", 50.0), **tables)


_TABLES: list[tuple[str, type]] = [
    ("buses", Bus),
    ("lines", Line),
    ("trafos", Trafo),
    ("couplers", Coupler),
    ("loads", Load),
    ("sgens", Sgen),
    ("storages", Storage),
]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass
class Profiles:
    """Per-interval power by element id (MW, Mvar; storage in load convention), ``steps`` rows each."""

    start: str  # ISO 8601 start of the first interval
    step_s: int
    load_p: dict[int, np.ndarray]
    load_q: dict[int, np.ndarray]
    sgen_p: dict[int, np.ndarray]
    storage_p: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        for series in (self.load_p, self.sgen_p, self.storage_p):
            for v in series.values():
                return len(v)
        return 0

    def to_dict(self) -> dict[str, Any]:
        def enc(d: dict[int, np.ndarray]) -> dict[str, list[float]]:
            return {str(k): [float(x) for x in v] for k, v in d.items()}

        return {
            "start": self.start,
            "step_s": self.step_s,
            "load_p": enc(self.load_p),
            "load_q": enc(self.load_q),
            "sgen_p": enc(self.sgen_p),
            "storage_p": enc(self.storage_p),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profiles:
        def dec(d: dict[str, list[float]]) -> dict[int, np.ndarray]:
            return {int(k): np.asarray(v, float) for k, v in d.items()}

        return cls(
            start=data["start"],
            step_s=int(data["step_s"]),
            load_p=dec(data["load_p"]),
            load_q=dec(data["load_q"]),
            sgen_p=dec(data["sgen_p"]),
            storage_p=dec(data.get("storage_p", {})),
        )
