"""Clearing flexibility offers against what a plan would otherwise do (pure: no store, no clock).

A plan needs, per interval, some kW of *up* flexibility (net import raised: consumption moved in, export held
back -- what PV curtailment otherwise buys against reverse flow) and of *down* flexibility (net import lowered:
load shed or shifted -- what an import overload otherwise costs), each with the cost per kWh of the plan's own
alternative (curtailment's value, a violation's penalty). Offers are taken in merit order: cheapest first, an
interval at a time, each paid its own price (pay-as-offered), only while the offer is cheaper than the
alternative and need remains. An offer covering several intervals may clear a different kW in each; it is
cleared at all if any interval takes some of it.

Equal prices are broken by the earlier offer (lower id), so a clearing is reproducible.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

DIRECTIONS = ("up", "down")


@dataclass(frozen=True)
class Offer:
    id: int
    ven: str
    start: dt.datetime
    end: dt.datetime
    up_kw: float
    down_kw: float
    price: float  # per kWh


@dataclass(frozen=True)
class Need:
    """What the plan needs from ``start`` in steps of ``step_s``: ``up_kw[i]`` / ``down_kw[i]`` per interval, and
    the cost per kWh of meeting it without offers (``up_cost``, ``down_cost``)."""

    start: dt.datetime
    step_s: int
    up_kw: tuple[float, ...] = ()
    down_kw: tuple[float, ...] = ()
    up_cost: float = 0.0
    down_cost: float = 0.0

    def interval(self, i: int) -> tuple[dt.datetime, dt.datetime]:
        a = self.start + dt.timedelta(seconds=i * self.step_s)
        return a, a + dt.timedelta(seconds=self.step_s)


@dataclass
class Award:
    """What one offer cleared: kW per interval of the need (0 where it took nothing), all in one direction."""

    offer_id: int
    ven: str
    direction: str
    price: float
    kw: list[float] = field(default_factory=list)
    step_s: int = 900
    start: dt.datetime | None = None

    @property
    def cleared_kw(self) -> float:
        return max(self.kw, default=0.0)

    @property
    def cleared_kwh(self) -> float:
        return sum(self.kw) * self.step_s / 3600.0

    @property
    def cost(self) -> float:
        return self.cleared_kwh * self.price


@dataclass
class Clearing:
    awards: list[Award]
    rejected: dict[int, str]  # offer id -> why nothing of it cleared
    unmet_up_kw: list[float]
    unmet_down_kw: list[float]

    @property
    def cost(self) -> float:
        return sum(a.cost for a in self.awards)


def _covers(o: Offer, a: dt.datetime, b: dt.datetime) -> bool:
    return o.start <= a and b <= o.end


def clear(offers: list[Offer], need: Need) -> Clearing:
    """Merit-order, pay-as-offered clearing of ``offers`` against ``need`` (see the module docstring). An offer
    clears in one direction only: up is cleared first, and an offer taken there is not offered down."""
    n = max(len(need.up_kw), len(need.down_kw))
    remaining = {
        "up": [float(need.up_kw[i]) if i < len(need.up_kw) else 0.0 for i in range(n)],
        "down": [float(need.down_kw[i]) if i < len(need.down_kw) else 0.0 for i in range(n)],
    }
    cost = {"up": need.up_cost, "down": need.down_cost}
    taken: dict[tuple[int, str], list[float]] = {}
    order = sorted(offers, key=lambda o: (o.price, o.id))
    for direction in DIRECTIONS:
        for i in range(n):
            a, b = need.interval(i)
            for o in order:
                if remaining[direction][i] <= 1e-9:
                    break
                size = o.up_kw if direction == "up" else o.down_kw
                if size <= 0 or o.price > cost[direction] or not _covers(o, a, b):
                    continue
                if direction == "down" and (o.id, "up") in taken:
                    continue
                kw = taken.setdefault((o.id, direction), [0.0] * n)
                amount = min(size, remaining[direction][i])
                kw[i] += amount
                remaining[direction][i] -= amount
    awards: list[Award] = []
    rejected: dict[int, str] = {}
    for o in order:
        key = (o.id, "up") if (o.id, "up") in taken else (o.id, "down")
        if key not in taken:
            rejected[o.id] = _why(o, need, cost)
            continue
        awards.append(Award(o.id, o.ven, key[1], o.price, taken[key], need.step_s, need.start))
    return Clearing(awards, rejected, remaining["up"], remaining["down"])


def _why(o: Offer, need: Need, cost: dict[str, float]) -> str:
    n = max(len(need.up_kw), len(need.down_kw))
    wanted = [
        d
        for d, sizes, size in (("up", need.up_kw, o.up_kw), ("down", need.down_kw, o.down_kw))
        if size > 0 and any(v > 0 for v in sizes)
    ]
    if not wanted:
        return "the plan needs no flexibility in the direction offered"
    if all(o.price > cost[d] for d in wanted):
        return f"price {o.price:g} above the plan's alternative ({', '.join(f'{d} {cost[d]:g}' for d in wanted)})"
    if not any(_covers(o, *need.interval(i)) for i in range(n)):
        return "the offer's window covers no interval where flexibility is needed"
    return "cheaper offers met the need"
