"""The dispatch optimizer: forecasts + grid limits + DER flexibility -> the cheapest feasible plan (an LP on HiGHS).

The grid is a tree of nodes (feeder > transformer > ...); each node may carry an import and an export limit and
holds DERs. Per interval the net load of a node is its forecast uncontrolled load below it plus what the plan
does with the flexible resources below it:

    net[n, t] = base[n, t] + sum over DERs under n of (curtailed PV + battery charge - battery discharge
                                                       + EV charge - demand response)

Every limit is soft with a large penalty, so a case no flexibility can fix returns the least-violating plan and
reports the violation instead of failing. Decision variables are continuous; one ``scipy.optimize.linprog``
(HiGHS) call solves the whole horizon. Pure computation: the server runs it in an executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VIOLATION_COST = 1e4  # per kWh outside a limit: far above any energy or comfort cost


@dataclass
class Pv:
    name: str
    available_kw: np.ndarray  # forecast generation if not curtailed
    curtail_cost: float = 0.05  # per kWh not generated (lost value, compensation)


@dataclass
class Battery:
    name: str
    power_kw: float
    energy_kwh: float
    soc_kwh: float
    efficiency: float = 0.95  # one way
    min_soc_kwh: float = 0.0
    final_soc_kwh: float | None = None  # at least this much at the end of the horizon
    cycle_cost: float = 0.02  # per kWh through the battery


@dataclass
class Ev:
    name: str
    power_kw: float
    energy_kwh: float  # to deliver ...
    deadline: int  # ... by the end of this interval index (exclusive)
    available_from: int = 0


@dataclass
class Flexible:
    name: str
    reduction_kw: np.ndarray  # how much load can be shed per interval
    cost: float = 0.3  # per kWh shed (incentive paid)


Der = Pv | Battery | Ev | Flexible


@dataclass
class Node:
    name: str
    base_kw: np.ndarray  # forecast net load of everything below this node, flexible DERs at their default
    import_limit_kw: float | None = None
    export_limit_kw: float | None = None
    ders: list[Der] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)


@dataclass
class Plan:
    status: str
    cost: float
    net_kw: dict[str, np.ndarray]  # per node
    violation_kw: dict[str, np.ndarray]  # per node, > 0 where a limit could not be met
    pv_output_kw: dict[str, np.ndarray]  # allowed generation: the envelope to send as a generation limit
    battery_kw: dict[str, np.ndarray]  # + charge, - discharge
    battery_soc_kwh: dict[str, np.ndarray]
    ev_kw: dict[str, np.ndarray]
    shed_kw: dict[str, np.ndarray]

    @property
    def feasible(self) -> bool:
        return all(float(v.max(initial=0)) < 1e-6 for v in self.violation_kw.values())


class _Vars:
    """Column bookkeeping for the LP."""

    def __init__(self) -> None:
        self.n = 0
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []

    def add(self, count: int, lower, upper, cost) -> slice:
        start = self.n
        self.n += count
        self.lower.append(np.broadcast_to(np.asarray(lower, float), (count,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, float), (count,)))
        self.cost.append(np.broadcast_to(np.asarray(cost, float), (count,)))
        return slice(start, start + count)


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        out += _walk(child)
    return out


def _ders_under(node: Node) -> list[Der]:
    return [d for n in _walk(node) for d in n.ders]


def _triplets(entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    rows, cols, data = zip(*entries, strict=True)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(data)


def optimise(root: Node, steps: int, step_h: float, import_price: np.ndarray | None = None) -> Plan:
    """Plan ``steps`` intervals of ``step_h`` hours; ``import_price`` (per kWh at the root) values energy."""
    # scipy loads with the first plan, not with every server and CLI process that imports the planner
    from scipy import sparse
    from scipy.optimize import linprog

    price = np.zeros(steps) if import_price is None else np.asarray(import_price, float)
    nodes = _walk(root)
    for n in nodes:
        if len(n.base_kw) != steps:
            raise ValueError(f"node {n.name}: base_kw has {len(n.base_kw)} values, expected {steps}")
    v = _Vars()
    cols: dict[str, dict[str, slice]] = {}
    # effect of each DER variable on net load: list of (slice, sign)
    effect: dict[int, list[tuple[slice, float]]] = {}
    # constraint blocks as (row, column, value) triplets with their right-hand sides
    Triplets = tuple[np.ndarray, np.ndarray, np.ndarray]
    a_eq: list[Triplets] = []
    b_eq: list[np.ndarray] = []
    a_ub: list[Triplets] = []
    b_ub: list[np.ndarray] = []
    t = np.arange(steps)

    for der in _ders_under(root):
        if isinstance(der, Pv):
            avail = np.clip(np.asarray(der.available_kw, float), 0, None)
            s = v.add(steps, 0, avail, der.curtail_cost * step_h)
            cols[der.name] = {"curtail": s}
            effect[id(der)] = [(s, +1.0)]
        elif isinstance(der, Battery):
            ch = v.add(steps, 0, der.power_kw, der.cycle_cost * step_h / 2)
            dis = v.add(steps, 0, der.power_kw, der.cycle_cost * step_h / 2)
            final = der.final_soc_kwh if der.final_soc_kwh is not None else der.min_soc_kwh
            soc_upper = np.full(steps, der.energy_kwh)
            soc_lower = np.full(steps, der.min_soc_kwh)
            soc_lower[-1] = max(der.min_soc_kwh, min(final, der.energy_kwh))
            soc = v.add(steps, soc_lower, soc_upper, 0.0)
            cols[der.name] = {"charge": ch, "discharge": dis, "soc": soc}
            effect[id(der)] = [(ch, +1.0), (dis, -1.0)]
            # soc[t] - soc[t-1] - eta*dt*ch[t] + dt/eta*dis[t] = 0 (soc[-1] = initial)
            rows, cidx, data = [], [], []
            for name_slice, coef in (
                (soc, 1.0),
                (ch, -der.efficiency * step_h),
                (dis, step_h / der.efficiency),
            ):
                rows.append(t)
                cidx.append(name_slice.start + t)
                data.append(np.full(steps, coef))
            rows.append(t[1:])
            cidx.append(soc.start + t[:-1])
            data.append(np.full(steps - 1, -1.0))
            a_eq.append((np.concatenate(rows), np.concatenate(cidx), np.concatenate(data)))
            rhs = np.zeros(steps)
            rhs[0] = der.soc_kwh
            b_eq.append(rhs)
        elif isinstance(der, Ev):
            upper = np.where((t >= der.available_from) & (t < der.deadline), der.power_kw, 0.0)
            s = v.add(steps, 0, upper, 0.0)
            cols[der.name] = {"charge": s}
            effect[id(der)] = [(s, +1.0)]
            # deliver the energy by the deadline (soft: a shortfall is a violation of the owner's need)
            short = v.add(1, 0, np.inf, VIOLATION_COST)
            cols[der.name]["short"] = short
            a_eq.append(
                (
                    np.zeros(steps + 1, int),
                    np.concatenate([s.start + t, [short.start]]),
                    np.concatenate([np.full(steps, step_h), [1.0]]),
                )
            )
            b_eq.append(np.array([der.energy_kwh]))
        elif isinstance(der, Flexible):
            s = v.add(steps, 0, np.clip(np.asarray(der.reduction_kw, float), 0, None), der.cost * step_h)
            cols[der.name] = {"shed": s}
            effect[id(der)] = [(s, -1.0)]
        else:  # pragma: no cover - the union above is closed
            raise TypeError(der)

    # node balance rows: net[n] = base + effects; limits with slack
    slacks: dict[str, tuple[slice | None, slice | None]] = {}
    root_terms: list[tuple[slice, float]] = [s for der in _ders_under(root) for s in effect[id(der)]]
    for node in nodes:
        terms = [s for der in _ders_under(node) for s in effect[id(der)]]
        imp = exp = None
        if node.import_limit_kw is not None:
            imp = v.add(steps, 0, np.inf, VIOLATION_COST * step_h)
            # sum(terms) - slack <= import_limit - base
            entries = [(t, s.start + t, np.full(steps, sign)) for s, sign in terms]
            entries.append((t, imp.start + t, np.full(steps, -1.0)))
            a_ub.append(_triplets(entries))
            b_ub.append(node.import_limit_kw - node.base_kw)
        if node.export_limit_kw is not None:
            exp = v.add(steps, 0, np.inf, VIOLATION_COST * step_h)
            # -(base + sum(terms)) - slack <= export_limit
            entries = [(t, s.start + t, np.full(steps, -sign)) for s, sign in terms]
            entries.append((t, exp.start + t, np.full(steps, -1.0)))
            a_ub.append(_triplets(entries))
            b_ub.append(node.export_limit_kw + node.base_kw)
        slacks[node.name] = (imp, exp)

    cost = np.concatenate(v.cost) if v.cost else np.zeros(0)
    # energy bought at the root: price * net (the constant base part does not change the argmin)
    for s, sign in root_terms:
        cost[s] += sign * price * step_h

    def stack(parts, rhs_parts):
        if not parts:
            return None, None
        offsets, rows_all, cols_all, data_all = 0, [], [], []
        for (r, c, d), rhs in zip(parts, rhs_parts, strict=True):
            rows_all.append(r + offsets)
            cols_all.append(c)
            data_all.append(d)
            offsets += len(rhs)
        matrix = sparse.csr_matrix(
            (np.concatenate(data_all), (np.concatenate(rows_all), np.concatenate(cols_all))),
            shape=(offsets, v.n),
        )
        return matrix, np.concatenate(rhs_parts)

    A_ub, B_ub = stack(a_ub, b_ub)  # noqa: N806
    A_eq, B_eq = stack(a_eq, b_eq)  # noqa: N806
    bounds = np.column_stack([np.concatenate(v.lower), np.concatenate(v.upper)]) if v.n else np.zeros((0, 2))
    # an (n, 2) array of bounds is what linprog takes at run time; scipy-stubs only types sequences of pairs
    result = linprog(  # type: ignore[call-overload]
        cost, A_ub=A_ub, b_ub=B_ub, A_eq=A_eq, b_eq=B_eq, bounds=bounds, method="highs"
    )
    if result.status != 0:
        raise RuntimeError(f"optimizer failed: {result.message}")
    x = result.x

    def get(s: slice) -> np.ndarray:
        return x[s].copy()

    plan = Plan(
        status=result.message,
        cost=float(result.fun),
        net_kw={},
        violation_kw={},
        pv_output_kw={},
        battery_kw={},
        battery_soc_kwh={},
        ev_kw={},
        shed_kw={},
    )
    for node in nodes:
        net = node.base_kw.astype(float).copy()
        for der in _ders_under(node):
            for s, sign in effect[id(der)]:
                net += sign * x[s]
        plan.net_kw[node.name] = net
        imp, exp = slacks[node.name]
        plan.violation_kw[node.name] = (get(imp) if imp else 0) + (get(exp) if exp else 0) + np.zeros(steps)
    for der in _ders_under(root):
        c = cols[der.name]
        if isinstance(der, Pv):
            plan.pv_output_kw[der.name] = np.clip(np.asarray(der.available_kw, float), 0, None) - get(
                c["curtail"]
            )
        elif isinstance(der, Battery):
            plan.battery_kw[der.name] = get(c["charge"]) - get(c["discharge"])
            plan.battery_soc_kwh[der.name] = get(c["soc"])
        elif isinstance(der, Ev):
            plan.ev_kw[der.name] = get(c["charge"])
        elif isinstance(der, Flexible):
            plan.shed_kw[der.name] = get(c["shed"])
    return plan
