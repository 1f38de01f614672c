"""A sparse LP held by HiGHS (highspy directly): columns and rows are collected as arrays and handed to HiGHS
as numpy arrays in one call (no per-element conversion), rows found violated later are added to the live
model, so HiGHS re-solves from its last basis (a warm start) instead of from scratch. A basis from an earlier
solve of the same columns and first rows (``warm_basis``) starts the first solve."""

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
    warm_basis: Any = None  # a HighsBasis of an earlier solve with the same columns and leading rows
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
        h = self.highs or _highs()
        lower, upper, cost = (
            np.concatenate(x) if x else np.zeros(0) for x in (self.lower, self.upper, self.cost)
        )
        rl, ru, a = self._stack(self.pending)
        csc = a.tocsc()
        h.setOptionValue("presolve", "choose" if self.n >= PRESOLVE_MIN_COLS else "off")
        h.passModel(
            self.n,
            len(rl),
            csc.nnz,
            1,  # column-wise
            1,  # minimise
            0.0,
            cost,
            lower,
            upper,
            rl,
            ru,
            csc.indptr[:-1].astype(np.int32),
            csc.indices.astype(np.int32),
            csc.data.astype(float),
            np.zeros(self.n, np.int32),
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
            if self.warm_basis is not None:
                self._set_warm_basis()
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

    def _set_warm_basis(self) -> None:
        """Start from an earlier basis: its columns keep their status, new columns start at their lower
        bound, its rows keep theirs and new rows start basic (their slack in the basis), which keeps the
        basis square; HiGHS refuses (and solves cold) if it is not a valid basis of this LP."""
        import highspy

        old = self.warm_basis
        cols, rows = list(old.col_status), list(old.row_status)
        if len(cols) > self.n or len(rows) > self._rows_in_model:
            return
        basis = highspy.HighsBasis()
        basis.col_status = cols + [highspy.HighsBasisStatus.kLower] * (self.n - len(cols))
        basis.row_status = rows + [highspy.HighsBasisStatus.kBasic] * (self._rows_in_model - len(rows))
        basis.valid = True
        self.highs.setBasis(basis)

    def basis(self) -> Any:
        return self.highs.getBasis() if self.highs is not None else None

    def release(self) -> None:
        """Drop HiGHS's copy of the model (the solution already returned stays valid)."""
        self.highs = None
