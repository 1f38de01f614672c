"""The LV zones' LPs, solved one zone at a time in this process or in worker processes forked for one planning
step (each worker inherits the step's network, fleet and operating point; only the zones' tasks and results
cross the pipe). A zone solved again in the same step goes to the worker that solved it first, which kept
the zone's final rows and basis: the second LP is rebuilt the same way, starts from that basis and only adds
the boundary the MV step set."""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from server.orchestration.fleet_arrays import FleetArrays
from server.orchestration.lp import BasisTemplate, Lp
from server.orchestration.resources import Costs, Fleet
from server.orchestration.zone_lp import Margins, RowLog, Slack, ZoneBlock, ZoneInput, solve_blocks

if TYPE_CHECKING:
    from server.orchestration.grid_planner import PlanningNetwork
    from server.orchestration.linear import OperatingPoint

CHUNK_MAX = 32  # zones per message to a worker
# zones in a template group: the first zone of each shape in the group solves from scratch, the others of
# that shape start from its basis (by role). Groups are consecutive zones (neighbours solve alike) and go to
# one worker whole, so a zone's start, and so its plan, does not depend on how many workers there are.
TEMPLATE_GROUP = 16


def default_workers() -> int:
    """Two processes where forking is safe (a single-threaded process: the command line, the benchmark), else
    one: a server thread must not fork a process whose other threads may hold locks."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if threading.active_count() > 1 or threading.current_thread() is not threading.main_thread():
        return 1
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class StepContext:
    net: PlanningNetwork
    fleet: Fleet
    op: OperatingPoint
    inj_op: np.ndarray  # (steps, tree nodes) controllable injection at the operating point, kW
    costs: Costs
    margins: Margins
    # zones start from a same-shape zone's basis and a second LP starts with the rows its first plan breaks
    # (fewer simplex iterations and re-solves; the LPs' optima are the same, ties may break otherwise)
    fast_start: bool = False


@dataclass
class ZoneTask:
    zone: int
    offset_pu: np.ndarray | None = None  # (steps,) MV voltage change at the transformer from outside the zone
    boundary_hi_kw: np.ndarray | None = None  # (steps,) the share the MV step asked for
    boundary_lo_kw: np.ndarray | None = None
    asked: bool = False  # the MV step asked the zone for a share (not only held it to its plan)
    group_start: bool = False  # the first of a template group: earlier zones' bases are forgotten


@dataclass
class ZoneResult:
    zone: int
    status: str
    sgen: np.ndarray  # positions in the schedule's tables and their planned values (steps, k), MW / Mvar
    sgen_p: np.ndarray
    storage: np.ndarray
    storage_p: np.ndarray
    load: np.ndarray
    load_p: np.ndarray
    load_q_idx: np.ndarray
    load_q: np.ndarray
    slacks: list[Slack]
    objective: float  # the LP's (constant terms of the zone left out)
    rounds: int
    rows: int
    cols: int
    iterations: int
    build_seconds: float
    lp_seconds: float
    warm: bool


@dataclass
class PoolStats:
    worker_peak_mb: list[float] = field(default_factory=list)  # private memory, largest seen per worker


def zone_schedule(
    block: ZoneBlock, x: np.ndarray, fleet: Fleet, fa: FleetArrays
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The planned values of the zone's units in schedule form: table -> (positions, (steps, k) values)."""
    steps = fleet.steps
    pv, u, ts, c0 = block.pv
    sgen = np.zeros((steps, len(pv)))
    sgen[ts, u] = x[c0 : c0 + len(u)] / 1000
    bat, ch, dis = block.bat
    nb = len(bat) * steps
    storage = ((x[ch : ch + nb] - x[dis : dis + nb]) / 1000).reshape(len(bat), steps).T
    evs, owner, ts, c0 = block.ev
    ev_p = np.zeros((steps, len(evs)))
    ev_p[ts, owner] = x[c0 : c0 + len(ts)] / 1000
    dr, u, ts, c0 = block.dr
    loads = fa.dr_load[dr]
    base = fleet.baseline.load_p[:, loads]
    shed = np.zeros((steps, len(dr)))
    shed[ts, u] = x[c0 : c0 + len(u)] / 1000
    scale = np.divide(base - shed, base, out=np.ones_like(base), where=base > 0)
    of, od, tdn, down0, ou, tup, up0 = block.offers
    moved = np.zeros((steps, len(of)))  # MW, + more import
    np.add.at(moved, (tdn, od), -x[down0 : down0 + len(od)] / 1000)
    np.add.at(moved, (tup, ou), x[up0 : up0 + len(ou)] / 1000)
    of_loads = fa.of_load[of]
    return {
        "sgen": (fa.pv_sgen[pv], sgen),
        "storage": (fa.bat_storage[bat], storage),
        "load": (
            np.concatenate([fa.ev_load[evs], loads, of_loads]),
            np.hstack([ev_p, base - shed, fleet.baseline.load_p[:, of_loads] + moved]),
        ),
        "load_q": (loads, fleet.baseline.load_q[:, loads] * scale),
    }


class ZoneSolver:
    """Solves LV zones around the step's operating point, one LP per zone, remembering each zone's rows and
    final basis for a second solve of the same zone."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        # per zone solved: its final rows, basis and injection change, for solving it again
        self.memory: dict[int, tuple[RowLog, Any, np.ndarray]] = {}
        # per shape (nodes, units of each kind): the template group's first zone of that shape
        self.templates: dict[tuple[int, ...], BasisTemplate] = {}

    def solve(self, task: ZoneTask) -> ZoneResult:
        ctx = self.ctx
        net = ctx.net
        t0 = time.perf_counter()
        zm = net.zones[task.zone]
        units = net.unit_index.get(task.zone, {})
        empty = np.zeros(0, np.int64)
        earlier = self.memory.get(task.zone)
        zi = ZoneInput(
            model=zm,
            op=ctx.op,
            vmin=net.vmin[zm.nodes],
            vmax=net.vmax[zm.nodes],
            pv=units.get("pv", empty),
            batteries=units.get("batteries", empty),
            evs=units.get("evs", empty),
            dr=units.get("dr", empty),
            offers=units.get("offers", empty),
            offset_pu=task.offset_pu,
            boundary_hi_kw=task.boundary_hi_kw,
            boundary_lo_kw=task.boundary_lo_kw,
            replay=earlier[0] if earlier else None,
        )
        lp = Lp()
        block = ZoneBlock(lp, zi, net.arrays, net.local_of, ctx.inj_op[:, zm.nodes], ctx.costs, ctx.margins)
        shape = (len(zm.nodes), len(zi.pv), len(zi.batteries), len(zi.evs), len(zi.dr), len(zi.offers))
        if task.group_start:
            self.templates.clear()
        template = self.templates.get(shape)
        if earlier:
            lp.warm = earlier[1]
        if earlier and ctx.fast_start:
            # the rows the zone's first plan breaks under the new offset and boundary are needed anyway: in
            # the LP from the start, they save a round of re-solving
            block.check_injection(earlier[2])
        elif not earlier and ctx.fast_start:
            lp.template = template
        t1 = time.perf_counter()
        status, x, rounds, objective = solve_blocks(lp, [block])
        t2 = time.perf_counter()
        if status == "Optimal":
            self.memory[task.zone] = (block.log, lp.basis(), block.injection(x))
            if not earlier and template is None and ctx.fast_start:
                first = lp.as_template()
                if first is not None:
                    self.templates[shape] = first
        lp.release()
        sched = zone_schedule(block, x, ctx.fleet, net.arrays) if status == "Optimal" else {}
        none = (np.zeros(0, np.int64), np.zeros((ctx.fleet.steps, 0)))
        return ZoneResult(
            zone=task.zone,
            status=status,
            sgen=sched.get("sgen", none)[0],
            sgen_p=sched.get("sgen", none)[1],
            storage=sched.get("storage", none)[0],
            storage_p=sched.get("storage", none)[1],
            load=sched.get("load", none)[0],
            load_p=sched.get("load", none)[1],
            load_q_idx=sched.get("load_q", none)[0],
            load_q=sched.get("load_q", none)[1],
            slacks=block.slacks(x) if status == "Optimal" else [],
            objective=objective,
            rounds=rounds,
            rows=lp.m,
            cols=lp.n,
            iterations=lp.iterations,
            build_seconds=t1 - t0,
            lp_seconds=t2 - t1,
            warm=earlier is not None,
        )


def _private_mb() -> float:
    """Memory this process does not share with the parent it was forked from (Linux; else its peak RSS)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            kb = sum(
                int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty"))
            )
        return kb / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _serve(conn: Connection, ctx: StepContext) -> None:
    """A worker: solves the chunks of zone tasks it is sent; with the last chunk of a pass (``measure``) it also
    reports its private memory (reading it costs about as much as a zone's LP, so not with every chunk)."""
    solver = ZoneSolver(ctx)
    while True:
        message = conn.recv()
        if message is None:
            break
        tasks, measure = message
        try:
            results = [solver.solve(t) for t in tasks]
            conn.send(("ok", results, _private_mb() if measure else 0.0))
        except BaseException:  # noqa: BLE001  (reported to the parent, which raises)
            conn.send(("error", traceback.format_exc(), _private_mb()))
    conn.close()


def _mark_groups(tasks: list[ZoneTask]) -> None:
    for i, t in enumerate(tasks):
        t.group_start = i % TEMPLATE_GROUP == 0


class ZonePool:
    """Runs zone tasks in ``workers`` forked processes (or here, with one)."""

    def __init__(self, ctx: StepContext, workers: int) -> None:
        self.local: ZoneSolver | None = None
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.owner: dict[int, int] = {}
        self.stats = PoolStats()
        if workers <= 1:
            self.local = ZoneSolver(ctx)
            return
        fork = multiprocessing.get_context("fork")
        for _ in range(workers):
            parent, child = fork.Pipe()
            proc = fork.Process(target=_serve, args=(child, ctx), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.stats.worker_peak_mb = [0.0] * workers

    def __enter__(self) -> ZonePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
        for c in self.conns:
            c.close()
        self.conns, self.procs = [], []

    def run(self, tasks: list[ZoneTask]) -> list[ZoneResult]:
        if self.local is not None:
            _mark_groups([t for t in tasks if t.zone not in self.local.memory])
            return [self.local.solve(t) for t in tasks]
        workers = len(self.conns)
        own: list[deque[ZoneTask]] = [deque() for _ in range(workers)]
        free: deque[ZoneTask] = deque()
        for t in tasks:
            (own[self.owner[t.zone]] if t.zone in self.owner else free).append(t)
        _mark_groups(list(free))
        chunk = max(1, min(CHUNK_MAX, len(tasks) // (workers * 8) or 1))
        # zones not solved before go in whole template groups
        free_chunk = TEMPLATE_GROUP * max(1, round(chunk / TEMPLATE_GROUP))
        busy: dict[int, int] = {}  # connection index -> chunks in flight
        results: list[ZoneResult] = []

        def feed(w: int) -> None:
            queue, size = (own[w], chunk) if own[w] else (free, free_chunk)
            batch = [queue.popleft() for _ in range(min(size, len(queue)))]
            if batch:
                for t in batch:
                    self.owner[t.zone] = w
                self.conns[w].send((batch, not own[w] and not free))
                busy[w] = busy.get(w, 0) + 1

        for w in range(workers):  # two chunks in flight per worker: it never waits for the parent
            feed(w)
            feed(w)
        while busy:
            for ready in wait([self.conns[w] for w in busy]):
                w = next(i for i, c in enumerate(self.conns) if c is ready)
                kind, payload, peak = self.conns[w].recv()
                self.stats.worker_peak_mb[w] = max(self.stats.worker_peak_mb[w], peak)
                busy[w] -= 1
                if not busy[w]:
                    del busy[w]
                if kind == "error":
                    raise RuntimeError(f"a zone worker failed:\n{payload}")
                results.extend(payload)
                feed(w)
        by_zone = {r.zone: r for r in results}
        return [by_zone[t.zone] for t in tasks]
