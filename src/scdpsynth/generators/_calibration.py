"""Marginal calibration: each feature of a generator's output mapped monotonically onto a target CDF. Arrays only.

A generator that learns the dependence well can still get each feature's marginal shape wrong (a Gaussian decoder
gives symmetric, unimodal marginals to skewed, bimodal or zero-heavy genes). Calibration keeps the model's ranks and
replaces its marginals: a value ``x`` of feature ``g`` in part ``k`` (a class, or one part for all rows) becomes
``F_kg^-1(G_kg(x))``, where ``G_kg`` is the model's own CDF (read once off a reference draw of the fitted model) and
``F_kg`` the target CDF (the data's exact quantiles without privacy, or those of a DP histogram). Both maps are
non-decreasing, so every rank statistic within a part (Spearman correlations, the Wilcoxon DE tests between
classes when the parts are the classes) is kept up to ties the target's atoms create, e.g. zeros.

Both CDFs are kept as quantiles at the same ``L`` levels ``(l + 1/2) / L``, so memory is ``2 k d L`` numbers
whatever the number of rows, and the map is fixed once fitted: any number of rows, drawn in any chunks, gets the
same map (unlike ranking each sample on its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._normal_scores import NormalScores

__all__ = ["MarginalCalibration", "cdf_quantiles", "empirical_quantiles", "quantile_levels"]


def quantile_levels(n_levels: int) -> np.ndarray:
    """The ``n_levels`` CDF levels ``(l + 1/2) / n_levels`` the calibration keeps quantiles at."""
    if isinstance(n_levels, bool) or not isinstance(n_levels, int | np.integer) or n_levels < 2:
        raise ValueError(f"n_levels must be an integer >= 2, got {n_levels!r}.")
    return (np.arange(n_levels) + 0.5) / n_levels


def empirical_quantiles(X: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``(d, L)`` quantiles of each column of ``X`` at ``levels`` (mid-rank, "hazen": the ``i``-th of ``n`` sorted
    values sits at level ``(i + 1/2) / n``, linear in between; an atom is a flat run). ``X`` needs a row.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-d array, got shape {X.shape}.")
    return np.maximum.accumulate(np.quantile(X, levels, axis=0, method="hazen").T, axis=1)


def cdf_quantiles(cdfs: NormalScores, levels: np.ndarray) -> np.ndarray:
    """``(d, L)`` quantiles of piecewise-linear CDFs (e.g. a DP histogram's) at ``levels``."""
    from scipy.special import ndtri

    d = cdfs.x_knots.shape[0]
    Z = np.broadcast_to(ndtri(np.asarray(levels, dtype=float))[:, None], (len(levels), d))
    return np.maximum.accumulate(cdfs.inverse_transform(Z).T, axis=1)


@dataclass
class MarginalCalibration:
    """Per-part, per-feature monotone maps from the model's marginal CDFs to target CDFs.

    Attributes
    ----------
    model_knots, target_knots
        ``(k, d, L)`` quantiles at :attr:`levels` of the model's output and of the target, per part (non-decreasing
        along the last axis). ``k = 1``: one map for all rows.
    levels
        ``(L,)`` CDF levels of the knots (:func:`quantile_levels`).
    """

    model_knots: np.ndarray
    target_knots: np.ndarray
    levels: np.ndarray

    def __post_init__(self) -> None:
        if self.model_knots.ndim != 3 or self.model_knots.shape != self.target_knots.shape:
            raise ValueError(
                f"model_knots and target_knots must both be (k, d, L), got {self.model_knots.shape} and "
                f"{self.target_knots.shape}."
            )
        if self.model_knots.shape[2] != len(self.levels):
            raise ValueError(f"knots have {self.model_knots.shape[2]} levels, levels has {len(self.levels)}.")

    def model_levels(self, X: np.ndarray, part: int = 0) -> np.ndarray:
        """``G_g(x)`` in ``part``: the model CDF level of each value (linear between knots; the middle level of a run
        of equal knots, e.g. an atom at a clipping bound; the first/last level outside the knots).
        """
        X = np.asarray(X, dtype=float)
        d = self.model_knots.shape[1]
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"X must have shape (n, {d}), got {X.shape}.")
        L = len(self.levels)
        U = np.empty(X.shape)
        for g in range(d):
            q = self.model_knots[part, g]
            lo = np.searchsorted(q, X[:, g], side="left")
            hi = np.searchsorted(q, X[:, g], side="right")
            inner = np.clip(lo, 1, L - 1)
            left, right = q[inner - 1], q[inner]
            frac = np.clip((X[:, g] - left) / np.where(right > left, right - left, 1.0), 0.0, 1.0)
            u = self.levels[inner - 1] + frac * (self.levels[inner] - self.levels[inner - 1])
            u = np.where(lo == 0, self.levels[0], np.where(lo >= L, self.levels[-1], u))
            mid = 0.5 * (self.levels[np.clip(lo, 0, L - 1)] + self.levels[np.clip(hi - 1, 0, L - 1)])
            U[:, g] = np.where(hi > lo, mid, u)  # the value equals one or more knots: middle of their levels
        return U

    def apply(self, X: np.ndarray, parts: np.ndarray | None = None) -> np.ndarray:
        """``F^-1(G(x))`` for every value of ``X`` (n x d); ``parts`` (n,) names each row's part (needed when
        ``k > 1``).
        """
        X = np.asarray(X, dtype=float)
        k = self.model_knots.shape[0]
        if parts is None:
            if k > 1:
                raise ValueError(f"this calibration has {k} parts; pass each row's part.")
            parts = np.zeros(len(X), dtype=np.int64)
        parts = np.asarray(parts)
        if parts.shape != (len(X),) or (len(parts) and (parts.min() < 0 or parts.max() >= k)):
            raise ValueError(f"parts must be {len(X)} integers in [0, {k}).")
        out = np.empty(X.shape)
        for p in np.unique(parts):
            rows = parts == p
            U = self.model_levels(X[rows], int(p))
            for g in range(X.shape[1]):
                out[rows, g] = np.interp(U[:, g], self.levels, self.target_knots[p, g])
        return out
