"""A sparse LP held by HiGHS (highspy directly): columns and rows are collected as arrays and handed to HiGHS
as numpy arrays in one call (no per-element conversion), rows found violated later are added to the live
model, so HiGHS re-solves from its last basis (a warm start) instead of from scratch. A basis from an earlier
solve whose LP had the same first columns and rows (``warm``) starts the first solve."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

INF = float("inf")
# below this many columns presolve costs more than it saves (small zone LPs solve about twice as fast without)
PRESOLVE_MIN_COLS = 20_000


@dataclass
class RowBatch:
    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray  # triplets, rows local to the batch
    cols: np.ndarray
    vals: np.ndarray


def _highs() -> Any:
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h


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
    iterations: int = 0
    _cols_in_model: int = 0
    _rows_in_model: int = 0

    def add_cols(
        self,
        lower: np.ndarray | float,
        upper: np.ndarray | float,
        cost: np.ndarray | float,
        count: int | None = None,
    ) -> int:
        """Append columns; returns the first column's index."""
        if count is None:
            count = max(np.size(lower), np.size(upper), np.size(cost))
        start = self.n
        for target, value in ((self.lower, lower), (self.upper, upper), (self.cost, cost)):
            a = np.asarray(value, float)
            target.append(np.full(count, float(a)) if a.ndim == 0 else a.astype(float, copy=True))
        self.n += count
        return start

    def add_rows(
        self, lower: np.ndarray, upper: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray
    ) -> int:
        """Append len(lower) rows given as (row within this batch, column, value) triplets; returns the first."""
        start = self.m
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

    def _flush_into_new_model(self) -> None:
        """Pass everything to a new HiGHS model; with ``warm``, pass the leading columns and rows first, set
        the earlier basis and add the rest (HiGHS extends the basis: new rows basic, new columns at a bound)."""
        h = self.highs or _highs()
        lower, upper, cost = (
            np.concatenate(x) if x else np.zeros(0) for x in (self.lower, self.upper, self.cost)
        )
        rl, ru, a = self._stack(self.pending)
        n0, m0 = self.n, len(rl)
        if self.warm is not None and self.warm[1] <= self.n and self.warm[2] <= len(rl):
            n0, m0 = self.warm[1], self.warm[2]
        h.setOptionValue("presolve", "choose" if self.n >= PRESOLVE_MIN_COLS else "off")
        csr = a.tocsr()
        head = csr[:m0, :n0].tocsc()
        if m0 and csr[:m0].nnz != head.nnz:  # a leading row reaches a new column: not the earlier LP
            n0, m0 = self.n, len(rl)
            head = csr.tocsc()
        h.passModel(
            n0,
            m0,
            head.nnz,
            1,  # column-wise
            1,  # minimise
            0.0,
            cost[:n0],
            lower[:n0],
            upper[:n0],
            rl[:m0],
            ru[:m0],
            head.indptr[:-1].astype(np.int32),
            head.indices.astype(np.int32),
            head.data.astype(float),
            np.zeros(n0, np.int32),
        )
        if (n0, m0) != (self.n, len(rl)):
            assert self.warm is not None
            h.setBasis(self.warm[0])
            if self.n > n0:
                h.addCols(
                    self.n - n0,
                    cost[n0:],
                    lower[n0:],
                    upper[n0:],
                    0,
                    np.zeros(0, np.int32),
                    np.zeros(0, np.int32),
                    np.zeros(0),
                )
            if len(rl) > m0:
                tail = csr[m0:]
                h.addRows(
                    len(rl) - m0,
                    rl[m0:],
                    ru[m0:],
                    tail.nnz,
                    tail.indptr[:-1].astype(np.int32),
                    tail.indices.astype(np.int32),
                    tail.data.astype(float),
                )
        self.highs = h
        self._cols_in_model = self.n
        self._rows_in_model = len(rl)
        self.pending = []

    def _stack(self, batches: list[RowBatch]) -> tuple[np.ndarray, np.ndarray, sparse.coo_matrix]:
        if not batches:
            return np.zeros(0), np.zeros(0), sparse.coo_matrix((0, self.n))
        rl = np.concatenate([b.lower for b in batches])
        ru = np.concatenate([b.upper for b in batches])
        offsets = np.cumsum([0] + [len(b.lower) for b in batches])
        rows = np.concatenate([b.rows + o for b, o in zip(batches, offsets, strict=False)])
        cols = np.concatenate([b.cols for b in batches])
        vals = np.concatenate([b.vals for b in batches])
        return rl, ru, sparse.coo_matrix((vals, (rows, cols)), shape=(len(rl), self.n))

    def solve(self) -> tuple[str, np.ndarray, float]:
        """Solve (adding what was appended since the last solve); returns status, column values, objective."""
        if self.n == 0:
            return "Optimal", np.zeros(0), 0.0
        if self.highs is None or self._cols_in_model == 0:
            self._flush_into_new_model()
        else:
            h = self.highs
            new = self.n - self._cols_in_model
            if new:
                lower = np.concatenate(self.lower)[self._cols_in_model :]
                upper = np.concatenate(self.upper)[self._cols_in_model :]
                cost = np.concatenate(self.cost)[self._cols_in_model :]
                h.addCols(
                    new, cost, lower, upper, 0, np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
                )
                self._cols_in_model = self.n
            if self.pending:
                rl, ru, a = self._stack(self.pending)
                csr = a.tocsr()
                h.addRows(
                    len(rl),
                    rl,
                    ru,
                    csr.nnz,
                    csr.indptr[:-1].astype(np.int32),
                    csr.indices.astype(np.int32),
                    csr.data.astype(float),
                )
                self._rows_in_model += len(rl)
                self.pending = []
        h = self.highs
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        x = np.asarray(h.getSolution().col_value)
        info = h.getInfo()
        self.iterations += int(info.simplex_iteration_count)
        return status, x, float(info.objective_function_value)

    def basis(self) -> tuple[Any, int, int] | None:
        """The current basis with the LP's size, for ``warm`` of a later LP that starts the same way."""
        return (self.highs.getBasis(), self.n, self._rows_in_model) if self.highs is not None else None

    def release(self) -> None:
        """Drop HiGHS's copy of the model (the solution already returned stays valid)."""
        self.highs = None
