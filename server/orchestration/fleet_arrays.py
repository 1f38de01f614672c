"""The fleet as arrays (one row per unit, tree positions instead of buses), so that a zone's LP is built with a
handful of numpy operations over its units instead of a loop over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.orchestration.resources import Fleet


@dataclass
class FleetArrays:
    steps: int
    step_h: float
    pv_sgen: np.ndarray  # (P,) position in model.sgens
    pv_node: np.ndarray  # (P,) tree position
    pv_avail: np.ndarray  # (P, steps) kW
    bat_storage: np.ndarray  # (B,)
    bat_node: np.ndarray
    bat_power: np.ndarray  # kW
    bat_energy: np.ndarray  # kWh
    bat_soc0: np.ndarray
    bat_min: np.ndarray
    bat_eff: np.ndarray
    ev_load: np.ndarray  # (E,)
    ev_node: np.ndarray
    ev_power: np.ndarray
    ev_first: np.ndarray  # (E + 1,) the sessions of EV e are ev_first[e]:ev_first[e + 1]
    sess_t0: np.ndarray  # (S,)
    sess_t1: np.ndarray  # exclusive
    sess_energy: np.ndarray  # kWh
    dr_load: np.ndarray  # (D,)
    dr_node: np.ndarray
    dr_max: np.ndarray  # (D, steps) kW that may be shed
    of_load: np.ndarray  # (O,) offers: the load each moves
    of_node: np.ndarray
    of_up: np.ndarray  # (O, steps) kW import may be raised by
    of_down: np.ndarray  # (O, steps) kW import may be lowered by
    of_price: np.ndarray  # (O,) per kWh moved

    @classmethod
    def of(cls, fleet: Fleet, pos: dict[int, int]) -> FleetArrays:
        steps = fleet.steps

        def ints(xs: list[int]) -> np.ndarray:
            return np.array(xs, dtype=np.int64)

        def floats(xs: list[float]) -> np.ndarray:
            return np.array(xs, dtype=float)

        def rows(xs: list[np.ndarray]) -> np.ndarray:
            return np.array(xs, dtype=float).reshape(len(xs), steps)

        sessions = [s for ev in fleet.evs for s in ev.sessions]
        return cls(
            steps=steps,
            step_h=fleet.step_h,
            pv_sgen=ints([u.sgen for u in fleet.pv]),
            pv_node=ints([pos[u.bus] for u in fleet.pv]),
            pv_avail=rows([u.avail_kw for u in fleet.pv]),
            bat_storage=ints([b.storage for b in fleet.batteries]),
            bat_node=ints([pos[b.bus] for b in fleet.batteries]),
            bat_power=floats([b.power_kw for b in fleet.batteries]),
            bat_energy=floats([b.energy_kwh for b in fleet.batteries]),
            bat_soc0=floats([b.soc0_kwh for b in fleet.batteries]),
            bat_min=floats([b.min_kwh for b in fleet.batteries]),
            bat_eff=floats([b.efficiency for b in fleet.batteries]),
            ev_load=ints([ev.load for ev in fleet.evs]),
            ev_node=ints([pos[ev.bus] for ev in fleet.evs]),
            ev_power=floats([ev.power_kw for ev in fleet.evs]),
            ev_first=np.concatenate([[0], np.cumsum([len(ev.sessions) for ev in fleet.evs])]).astype(
                np.int64
            ),
            sess_t0=ints([s.t0 for s in sessions]),
            sess_t1=ints([s.t1 for s in sessions]),
            sess_energy=floats([s.energy_kwh for s in sessions]),
            dr_load=ints([d.load for d in fleet.dr]),
            dr_node=ints([pos[d.bus] for d in fleet.dr]),
            dr_max=rows([d.max_shed_kw for d in fleet.dr]),
            of_load=ints([o.load for o in fleet.flex]),
            of_node=ints([pos[o.bus] for o in fleet.flex]),
            of_up=rows([o.up_kw for o in fleet.flex]),
            of_down=rows([o.down_kw for o in fleet.flex]),
            of_price=floats([o.price for o in fleet.flex]),
        )

    def sessions_of(self, evs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(session indices, the EV of each, as index into ``evs``) of the EVs ``evs``."""
        first, last = self.ev_first[evs], self.ev_first[evs + 1]
        counts = last - first
        owner = np.repeat(np.arange(len(evs)), counts)
        idx = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return idx, owner
