"""A sparse LP held by HiGHS (highspy directly): columns and rows are collected as arrays, passed once in
column-wise (CSC) form, and rows found violated later are added to the live model, so HiGHS re-solves from
its last basis (a warm start) instead of from scratch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

INF = float("inf")


@dataclass
class RowBatch:
    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray  # triplets, rows local to the batch
    cols: np.ndarray
    vals: np.ndarray


@dataclass
class Lp:
    lower: list[np.ndarray] = field(default_factory=list)
    upper: list[np.ndarray] = field(default_factory=list)
    cost: list[np.ndarray] = field(default_factory=list)
    n: int = 0
    pending: list[RowBatch] = field(default_factory=list)
    m: int = 0
    highs: Any = None
    _cols_in_model: int = 0

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
        self.lower.append(np.broadcast_to(np.asarray(lower, float), (count,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, float), (count,)).copy())
        self.cost.append(np.broadcast_to(np.asarray(cost, float), (count,)).copy())
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
        import highspy

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        lp = highspy.HighsLp()
        lower, upper, cost = (
            np.concatenate(x) if x else np.zeros(0) for x in (self.lower, self.upper, self.cost)
        )
        rl, ru, a = self._stack(self.pending, 0)
        lp.num_col_, lp.num_row_ = self.n, len(rl)
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lower, upper
        lp.row_lower_, lp.row_upper_ = rl, ru
        csc = a.tocsc()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
        lp.a_matrix_.index_ = csc.indices.astype(np.int32)
        lp.a_matrix_.value_ = csc.data
        h.passModel(lp)
        self.highs = h
        self._cols_in_model = self.n
        self.pending = []

    def _stack(self, batches: list[RowBatch], row0: int) -> tuple[np.ndarray, np.ndarray, sparse.coo_matrix]:
        rl = np.concatenate([b.lower for b in batches]) if batches else np.zeros(0)
        ru = np.concatenate([b.upper for b in batches]) if batches else np.zeros(0)
        offsets = np.cumsum([0] + [len(b.lower) for b in batches])
        rows = (
            np.concatenate([b.rows + o for b, o in zip(batches, offsets, strict=False)])
            if batches
            else np.zeros(0, int)
        )
        cols = np.concatenate([b.cols for b in batches]) if batches else np.zeros(0, int)
        vals = np.concatenate([b.vals for b in batches]) if batches else np.zeros(0)
        return rl, ru, sparse.coo_matrix((vals, (rows, cols)), shape=(len(rl), self.n))

    def solve(self) -> tuple[str, np.ndarray, float]:
        """Solve (adding what was appended since the last solve); returns status, column values, objective."""
        if self.n == 0:
            return "Optimal", np.zeros(0), 0.0
        if self.highs is None:
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
                rl, ru, a = self._stack(self.pending, 0)
                csr = a.tocsr()
                h.addRows(
                    len(rl),
                    rl,
                    ru,
                    csr.nnz,
                    csr.indptr[:-1].astype(np.int32),
                    csr.indices.astype(np.int32),
                    csr.data,
                )
                self.pending = []
        h = self.highs
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        x = np.asarray(h.getSolution().col_value)
        return status, x, float(h.getInfo().objective_function_value)
