"""Gradient-boosted regression trees in numpy (squared loss, optional row weights).

Used by :mod:`forecasting.pv` for the nonlinear part of the short-lead clear-sky-index forecast.  Features
are cut once into quantile bins (NaN in a bin of its own); trees grow level by level from one weighted
histogram per level (``np.bincount`` over node x feature x bin); each node splits on its own best feature
and cut, or stays whole when no split gains or a side would weigh less than ``min_leaf_weight``.  Each tree
sees a random subsample of the rows (stochastic boosting); leaf values are shrunk by an L2 penalty and by
the learning rate.  Prediction walks all trees of the ensemble at once, level by level.
"""

from __future__ import annotations

import numpy as np


class BoostedTrees:
    def __init__(
        self,
        n_trees: int = 300,
        depth: int = 5,
        learning_rate: float = 0.05,
        l2: float = 1.0,
        n_bins: int = 64,
        subsample: float = 0.8,
        min_leaf_weight: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.n_trees = n_trees
        self.depth = depth
        self.learning_rate = learning_rate
        self.l2 = l2
        self.n_bins = n_bins
        self.subsample = subsample
        self.min_leaf_weight = min_leaf_weight
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> BoostedTrees:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        n, p = X.shape
        w = np.ones(n) if w is None else np.asarray(w, dtype=float)
        if n == 0 or not np.all(np.isfinite(y)) or not np.all(np.isfinite(w)):
            raise ValueError("BoostedTrees.fit needs finite targets and weights")
        B = self.n_bins + 1  # bin 0 holds NaN, bins 1..n_bins the quantile cells
        # Bin edges at feature quantiles; NaN features go to bin 0 (below every edge).
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        self.edges = [
            np.unique(np.nanquantile(X[:, f], qs)) if np.isfinite(X[:, f]).any() else np.zeros(0)
            for f in range(p)
        ]
        bins = self._bins(X)
        self.base = float(np.sum(w * y) / max(np.sum(w), 1e-12))
        pred = np.full(n, self.base)
        rng = np.random.default_rng(self.seed)
        D = self.depth
        half = 2 ** (D - 1)
        # Per tree, level and node of that level: the feature and the bin cut (right when bin > cut).
        feats = np.zeros((self.n_trees, D, half), dtype=np.int64)
        cuts = np.full((self.n_trees, D, half), B, dtype=np.int64)
        leaves = np.zeros((self.n_trees, 2**D))
        lam = self.l2 * np.sum(w) / n  # penalty in units of an average row's weight
        min_w = self.min_leaf_weight
        offs = np.arange(p) * B
        for t in range(self.n_trees):
            sub = np.flatnonzero(rng.random(n) < self.subsample) if self.subsample < 1 else np.arange(n)
            g = w[sub] * (y[sub] - pred[sub])  # negative gradient of the weighted squared loss
            h = w[sub]
            bs = bins[sub]
            node = np.zeros(len(sub), dtype=np.int64)
            for d in range(D):
                n_nodes = 2**d
                # One histogram for all (node, feature, bin) cells of this level.
                key = (node[:, None] * (p * B) + offs[None, :] + bs).ravel()
                size = n_nodes * p * B
                G = np.bincount(key, weights=np.repeat(g, p), minlength=size).reshape(n_nodes, p, B)
                H = np.bincount(key, weights=np.repeat(h, p), minlength=size).reshape(n_nodes, p, B)
                GL, HL = np.cumsum(G, axis=2)[:, :, :-1], np.cumsum(H, axis=2)[:, :, :-1]
                GT, HT = G.sum(axis=2, keepdims=True), H.sum(axis=2, keepdims=True)
                GR, HR = GT - GL, HT - HL
                gain = GL**2 / (HL + lam) + GR**2 / (HR + lam) - GT**2 / (HT + lam)
                gain = np.where((HL >= min_w) & (HR >= min_w), gain, -np.inf).reshape(n_nodes, -1)
                best = np.argmax(gain, axis=1)
                split = gain[np.arange(n_nodes), best] > 0  # otherwise the node stays whole
                f_n, c_n = np.divmod(best, B - 1)
                feats[t, d, :n_nodes] = f_n
                cuts[t, d, :n_nodes] = np.where(split, c_n, B)
                node = node * 2 + (bs[np.arange(len(sub)), f_n[node]] > cuts[t, d, node])
            G = np.bincount(node, weights=g, minlength=2**D)
            H = np.bincount(node, weights=h, minlength=2**D)
            leaves[t] = self.learning_rate * G / (H + lam)
            # Score every row with the new tree (a subsample's walk above covered only its own rows).
            leaf = node if len(sub) == n else self._leaf_of(bins, feats[t : t + 1], cuts[t : t + 1])[:, 0]
            pred += leaves[t][leaf]
        self.feats, self.cuts, self.leaves = feats, cuts, leaves
        return self

    def _leaf_of(self, bins: np.ndarray, feats: np.ndarray, cuts: np.ndarray) -> np.ndarray:
        """Leaf index of every row in every tree given, shape ``(rows, trees)``."""
        rows = np.arange(len(bins))[:, None]
        trees = np.arange(len(feats))[None, :]
        node = np.zeros((len(bins), len(feats)), dtype=np.int64)
        for d in range(self.depth):
            f = feats[trees, d, node]
            node = node * 2 + (bins[rows, f] > cuts[trees, d, node])
        return node

    def _bins(self, X: np.ndarray) -> np.ndarray:
        """Bin index of every value (0 for NaN), column by column against the fitted edges."""
        bins = np.empty(X.shape, dtype=np.int64)
        for f in range(X.shape[1]):
            b = np.searchsorted(self.edges[f], X[:, f], side="right") + 1
            bins[:, f] = np.where(np.isfinite(X[:, f]), b, 0)
        return bins

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[None, :]
        leaf = self._leaf_of(self._bins(X), self.feats, self.cuts)
        return self.base + self.leaves[np.arange(self.n_trees)[None, :], leaf].sum(axis=1)
