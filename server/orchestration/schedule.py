"""A schedule: the active (and reactive) power of every load, generator and storage unit per interval, in the
model's element order (MW, Mvar; loads and storage in load convention, generators as generation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.orchestration.network.model import Network, Profiles


@dataclass
class Schedule:
    load_p: np.ndarray  # (steps, loads)
    load_q: np.ndarray
    sgen_p: np.ndarray  # (steps, sgens)
    storage_p: np.ndarray  # (steps, storages), + charging

    @property
    def steps(self) -> int:
        return int(self.load_p.shape[0])

    def copy(self) -> Schedule:
        return Schedule(self.load_p.copy(), self.load_q.copy(), self.sgen_p.copy(), self.storage_p.copy())

    @classmethod
    def from_profiles(cls, model: Network, profiles: Profiles) -> Schedule:
        steps = profiles.steps

        def stack(ids: list[int], series: dict[int, np.ndarray]) -> np.ndarray:
            if not ids:
                return np.zeros((steps, 0))
            return np.column_stack([series.get(i, np.zeros(steps)) for i in ids]).astype(float)

        return cls(
            load_p=stack([x.id for x in model.loads], profiles.load_p),
            load_q=stack([x.id for x in model.loads], profiles.load_q),
            sgen_p=stack([x.id for x in model.sgens], profiles.sgen_p),
            storage_p=stack([x.id for x in model.storages], profiles.storage_p),
        )

    def bus_injection(
        self, model: Network, bus_pos: dict[int, int], nodes: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Net injection (generation positive) per tree node per interval, MW and Mvar: (steps, nodes) each."""
        p = np.zeros((self.steps, nodes))
        q = np.zeros((self.steps, nodes))
        if model.loads:
            idx = np.array([bus_pos[x.bus] for x in model.loads])
            np.add.at(p.T, idx, -self.load_p.T)
            np.add.at(q.T, idx, -self.load_q.T)
        if model.sgens:
            idx = np.array([bus_pos[x.bus] for x in model.sgens])
            np.add.at(p.T, idx, self.sgen_p.T)
            np.add.at(q.T, idx, np.array([s.q_mvar for s in model.sgens])[:, None] * (self.sgen_p.T != 0))
        if model.storages:
            idx = np.array([bus_pos[x.bus] for x in model.storages])
            np.add.at(p.T, idx, -self.storage_p.T)
        return p, q
