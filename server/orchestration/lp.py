"""A sparse LP held by HiGHS (highspy directly): columns and rows are collected as arrays and handed to HiGHS
as numpy arrays in one call (no per-element conversion), rows found violated later are added to the live
model, so HiGHS re-solves from its last basis (a warm start) instead of from scratch. A basis from an earlier
solve whose LP had the same first columns and rows (``warm``) starts the first solve.

Thousands of small LPs are solved one after another, so a released LP gives its HiGHS instance back for the
next one (cleared), instead of paying for a new instance and the destruction of the old.

Columns and rows may carry a *role key* (an int64 saying what the column or row stands for, e.g. "charge of
the zone's second battery in interval 40"). An LP of the same shape solved before (``BasisTemplate``) then
gives a starting basis by role: each column and row takes the status its namesake ended with, the others
start at a bound (columns) or basic (rows), and HiGHS repairs what does not fit (an "alien" basis). Zones of
one shape solve alike, so the next zone starts a few dozen simplex iterations from its optimum instead of a
few hundred."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INF = float("inf")
# below this many columns presolve costs more than it saves (small zone LPs solve about twice as fast without)
PRESOLVE_MIN_COLS = 20_000
_NO_INT = np.zeros(0, np.int32)
NO_KEY = -1  # a column or row without a role: never matched by a template
_FREE: tuple[int, list[Any]] = (os.getpid(), [])  # released instances of this process
# seconds HiGHS may spend on one LP (0: no limit); the server sets it from orchestration.solver_time_limit_s
TIME_LIMIT_S = 0.0


def set_time_limit(seconds: float) -> None:
    global TIME_LIMIT_S
    TIME_LIMIT_S = max(0.0, float(seconds))


@dataclass
class RowBatch:
    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray  # triplets, rows local to the batch
    cols: np.ndarray
    vals: np.ndarray


def _highs() -> Any:
    pid, free = _FREE
    if pid == os.getpid() and free:
        h = free.pop()
        h.clearModel()
        return h
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h


def _give_back(h: Any) -> None:
    global _FREE
    if _FREE[0] != os.getpid():  # a forked child: the parent's instances are not ours to reuse
        _FREE = (os.getpid(), [])
    if len(_FREE[1]) < 4:
        _FREE[1].append(h)


def compressed(
    major: np.ndarray, minor: np.ndarray, vals: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triplets -> (start, index, value) grouped by ``major`` (column-wise when ``major`` are columns);
    the entries must be distinct."""
    order = np.argsort(major, kind="stable")
    start = np.zeros(count, np.int32)
    np.cumsum(np.bincount(major, minlength=count)[:-1], out=start[1:])
    return start, minor[order].astype(np.int32), vals[order].astype(float)


def role_key(kind: int, slot: np.ndarray | int, t: np.ndarray | int) -> np.ndarray:
    """Role keys: ``kind`` (< 128), ``slot`` (a unit's or node's place in its zone, < 2**36), ``t`` (< 2**20)."""
    return (np.int64(kind) << 56) | (np.asarray(slot, np.int64) << 20) | np.asarray(t, np.int64)


@dataclass
class BasisTemplate:
    """A solved LP's final basis with its columns' and rows' role keys (sorted, and where each sorted key sat),
    to start other LPs of the same shape. The statuses are HiGHS's, each list ending with the statuses given
    to what the template does not have (columns: at the lower bound, or zero if free; rows: basic)."""

    col_keys: np.ndarray
    col_at: np.ndarray
    row_keys: np.ndarray
    row_at: np.ndarray
    col_status: list[Any]
    row_status: list[Any]

    @classmethod
    def of(cls, col_keys: np.ndarray, row_keys: np.ndarray, basis: Any) -> BasisTemplate:
        import highspy

        status = highspy.HighsBasisStatus
        co, ro = np.argsort(col_keys, kind="stable"), np.argsort(row_keys, kind="stable")
        return cls(
            col_keys[co],
            co,
            row_keys[ro],
            ro,
            list(basis.col_status) + [status.kLower, status.kZero],
            list(basis.row_status) + [status.kBasic],
        )

    def statuses(self, col_keys: np.ndarray, col_free: np.ndarray, row_keys: np.ndarray) -> Any:
        """An alien HighsBasis for an LP with these keys: matched columns and rows take the template's status,
        others are nonbasic at their lower bound (zero if free) or, for rows, basic."""
        import highspy

        cols, rows = self.col_status, self.row_status
        col_idx = _match(
            self.col_keys, self.col_at, col_keys, np.where(col_free, len(cols) - 1, len(cols) - 2)
        )
        row_idx = _match(self.row_keys, self.row_at, row_keys, len(rows) - 1)
        b = highspy.HighsBasis()
        b.col_status = [cols[i] for i in col_idx.tolist()]
        b.row_status = [rows[i] for i in row_idx.tolist()]
        b.alien = True
        return b


def _match(
    sorted_keys: np.ndarray, at: np.ndarray, keys: np.ndarray, missing: np.ndarray | int
) -> np.ndarray:
    """For each of ``keys``: its position in the template (``at`` of the equal sorted key), else ``missing``."""
    if not len(sorted_keys):
        return np.broadcast_to(np.asarray(missing, np.int64), keys.shape).copy()
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found = (sorted_keys[pos] == keys) & (keys != NO_KEY)
    return np.where(found, at[pos], missing)


@dataclass
class Lp:
    lower: list[np.ndarray] = field(default_factory=list)
    upper: list[np.ndarray] = field(default_factory=list)
    cost: list[np.ndarray] = field(default_factory=list)
    n: int = 0
    pending: list[RowBatch] = field(default_factory=list)
    m: int = 0
    highs: Any = None
    # a HighsBasis of an earlier solve whose LP had the same first columns and rows: (basis, columns, rows)
    warm: tuple[Any, int, int] | None = None
    # otherwise, an LP of the same shape to take a starting basis from by role keys
    template: BasisTemplate | None = None
    col_keys: list[np.ndarray] = field(default_factory=list)
    row_keys: list[np.ndarray] = field(default_factory=list)
    iterations: int = 0
    _cols_in_model: int = 0
    _rows_in_model: int = 0

    def add_cols(
        self,
        lower: np.ndarray | float,
        upper: np.ndarray | float,
        cost: np.ndarray | float,
        count: int | None = None,
        keys: np.ndarray | None = None,
    ) -> int:
        """Append columns (with their role keys, if any); returns the first column's index."""
        if count is None:
            count = max(np.size(lower), np.size(upper), np.size(cost))
        start = self.n
        for target, value in ((self.lower, lower), (self.upper, upper), (self.cost, cost)):
            a = np.asarray(value, float)
            target.append(np.full(count, float(a)) if a.ndim == 0 else a.astype(float, copy=True))
        self.col_keys.append(np.full(count, NO_KEY, np.int64) if keys is None else np.asarray(keys, np.int64))
        self.n += count
        return start

    def add_rows(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        vals: np.ndarray,
        keys: np.ndarray | None = None,
    ) -> int:
        """Append len(lower) rows given as (row within this batch, column, value) triplets (with their role
        keys, if any); returns the first."""
        start = self.m
        self.row_keys.append(
            np.full(len(lower), NO_KEY, np.int64) if keys is None else np.asarray(keys, np.int64)
        )
        self.pending.append(
            RowBatch(
                np.asarray(lower, float),
                np.asarray(upper, float),
                np.asarray(rows, np.int64),
                np.asarray(cols, np.int64),
                np.asarray(vals, float),
            )
        )
        self.m += len(lower)
        return start

    def _columns(self, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(  # type: ignore[return-value]
            np.concatenate(x)[first:] if x else np.zeros(0) for x in (self.lower, self.upper, self.cost)
        )

    def _stack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pending rows: bounds and triplets with rows numbered from the first pending row."""
        batches = self.pending
        if not batches:
            z = np.zeros(0)
            return z, z, z.astype(np.int64), z.astype(np.int64), z
        offsets = np.cumsum([0] + [len(b.lower) for b in batches])
        return (
            np.concatenate([b.lower for b in batches]),
            np.concatenate([b.upper for b in batches]),
            np.concatenate([b.rows + o for b, o in zip(batches, offsets, strict=False)]),
            np.concatenate([b.cols for b in batches]),
            np.concatenate([b.vals for b in batches]),
        )

    def _add_rows_to_model(
        self, lower: np.ndarray, upper: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray
    ) -> None:
        if not len(lower):
            return
        start, index, value = compressed(rows, cols, vals, len(lower))
        self.highs.addRows(len(lower), lower, upper, len(value), start, index, value)

    def _add_cols_to_model(self, first: int) -> None:
        if self.n > first:
            lower, upper, cost = self._columns(first)
            self.highs.addCols(self.n - first, cost, lower, upper, 0, _NO_INT, _NO_INT, np.zeros(0))

    def _flush_into_new_model(self) -> None:
        """Pass everything to a new HiGHS model; with ``warm``, pass the leading columns and rows first, set
        the earlier basis and add the rest (HiGHS extends the basis: new rows basic, new columns at a bound)."""
        h = self.highs = _highs()
        lower, upper, cost = self._columns(0)
        rl, ru, rows, cols, vals = self._stack()
        n0, m0 = self.n, len(rl)
        if self.warm is not None and self.warm[1] <= self.n and self.warm[2] <= len(rl):
            n0, m0 = self.warm[1], self.warm[2]
            head = rows < m0
            if (cols[head] >= n0).any():  # a leading row reaches a new column: not the earlier LP
                n0, m0 = self.n, len(rl)
        head = rows < m0
        h.setOptionValue("presolve", "choose" if self.n >= PRESOLVE_MIN_COLS else "off")
        start, index, value = compressed(cols[head], rows[head], vals[head], n0)
        h.passModel(
            n0,
            m0,
            len(value),
            1,  # column-wise
            1,  # minimise
            0.0,
            cost[:n0],
            lower[:n0],
            upper[:n0],
            rl[:m0],
            ru[:m0],
            start,
            index,
            value,
            np.zeros(n0, np.int32),
        )
        if self.warm is None and self.template is not None:
            h.setBasis(self.template.statuses(self.keys_of_cols(), np.isneginf(lower), self.keys_of_rows()))
        if (n0, m0) != (self.n, len(rl)):
            assert self.warm is not None
            h.setBasis(self.warm[0])
            self._add_cols_to_model(n0)
            tail = ~head
            self._add_rows_to_model(rl[m0:], ru[m0:], rows[tail] - m0, cols[tail], vals[tail])
        self._cols_in_model = self.n
        self._rows_in_model = len(rl)
        self.pending = []

    def solve(self) -> tuple[str, np.ndarray, float]:
        """Solve (adding what was appended since the last solve); returns status, column values, objective."""
        if self.n == 0:
            return "Optimal", np.zeros(0), 0.0
        if self.highs is None:
            self._flush_into_new_model()
        else:
            self._add_cols_to_model(self._cols_in_model)
            self._cols_in_model = self.n
            if self.pending:
                rl, ru, rows, cols, vals = self._stack()
                self._add_rows_to_model(rl, ru, rows, cols, vals)
                self._rows_in_model += len(rl)
                self.pending = []
        h = self.highs
        h.setOptionValue("time_limit", TIME_LIMIT_S if TIME_LIMIT_S > 0 else INF)
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        x = np.asarray(h.getSolution().col_value)
        info = h.getInfo()
        self.iterations += int(info.simplex_iteration_count)
        return status, x, float(info.objective_function_value)

    def keys_of_cols(self) -> np.ndarray:
        return np.concatenate(self.col_keys) if self.col_keys else np.zeros(0, np.int64)

    def keys_of_rows(self) -> np.ndarray:
        return np.concatenate(self.row_keys) if self.row_keys else np.zeros(0, np.int64)

    def as_template(self) -> BasisTemplate | None:
        """This LP's final basis by role, to start the next LP of the same shape."""
        if self.highs is None:
            return None
        return BasisTemplate.of(self.keys_of_cols(), self.keys_of_rows(), self.highs.getBasis())

    def basis(self) -> tuple[Any, int, int] | None:
        """The current basis with the LP's size, for ``warm`` of a later LP that starts the same way."""
        return (self.highs.getBasis(), self.n, self._rows_in_model) if self.highs is not None else None

    def release(self) -> None:
        """Give HiGHS's instance back for the next LP (the solution already returned stays valid)."""
        if self.highs is not None:
            _give_back(self.highs)
            self.highs = None
