"""Marginal calibration: each feature of a generator's output mapped monotonically onto a target CDF. Arrays only.

A generator that learns the dependence well can still get each feature's marginal shape wrong (a Gaussian decoder
gives symmetric, unimodal marginals to skewed or bimodal genes). Calibration keeps the model's ranks and replaces
its marginals: a value ``x`` of feature ``g`` becomes ``F_g^-1(G_g(x))``, where ``G_g`` is the model's own CDF of
that feature (estimated once, from a reference draw of the fitted model) and ``F_g`` the target CDF
(:class:`~scdpsynth.generators._normal_scores.NormalScores`: the exact empirical CDF without privacy, or the CDF of
a DP histogram). Both maps are non-decreasing, so every rank statistic of the model's output (Spearman
correlations, class orderings) is kept; Pearson correlations move only as far as the marginal shapes do.

The map is fixed once fitted, so any number of rows, drawn in any chunks, gets the same map (unlike ranking each
sample on its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._normal_scores import NormalScores

__all__ = ["MarginalCalibration", "fit_calibration"]


@dataclass
class MarginalCalibration:
    """Per-feature monotone map from the model's marginal CDF to a target CDF.

    Attributes
    ----------
    model_knots
        ``(d, L)`` quantiles of the model's output at the levels :attr:`levels` (non-decreasing along axis 1).
    levels
        ``(L,)`` CDF levels ``(l + 1/2) / L`` of the knots.
    target
        The target CDFs; values are mapped back through :meth:`NormalScores.inverse_transform`.
    """

    model_knots: np.ndarray
    levels: np.ndarray
    target: NormalScores

    def model_levels(self, X: np.ndarray) -> np.ndarray:
        """``G_g(x)``: the model CDF level of each value (linear between knots; mid-level of a run of equal knots, e.g.
        an atom at a clipping bound; the first/last level outside the knots).
        """
        X = np.asarray(X, dtype=float)
        d = self.model_knots.shape[0]
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"X must have shape (n, {d}), got {X.shape}.")
        L = len(self.levels)
        U = np.empty(X.shape)
        for g in range(d):
            q = self.model_knots[g]
            lo = np.searchsorted(q, X[:, g], side="left")
            hi = np.searchsorted(q, X[:, g], side="right")
            tie = hi > lo  # the value equals one or more knots: middle of their levels
            inner = np.clip(lo, 1, L - 1)
            left, right = q[inner - 1], q[inner]
            frac = np.clip((X[:, g] - left) / np.where(right > left, right - left, 1.0), 0.0, 1.0)
            u = self.levels[inner - 1] + frac * (self.levels[inner] - self.levels[inner - 1])
            u = np.where(lo == 0, self.levels[0], np.where(lo >= L, self.levels[-1], u))
            mid = 0.5 * (self.levels[np.clip(lo, 0, L - 1)] + self.levels[np.clip(hi - 1, 0, L - 1)])
            U[:, g] = np.where(tie, mid, u)
        return U

    def apply(self, X: np.ndarray) -> np.ndarray:
        """``F_g^-1(G_g(x))`` for every value of ``X`` (n x d)."""
        from scipy.special import ndtri

        return self.target.inverse_transform(ndtri(self.model_levels(X)))


def fit_calibration(reference: np.ndarray, target: NormalScores, *, n_levels: int = 512) -> MarginalCalibration:
    """Calibration from a reference draw of the fitted model (``m x d``, ``m >= n_levels``) onto ``target``.

    The knots are the reference's quantiles at the levels ``(l + 1/2) / n_levels``; they describe the model, not the
    data, so fitting them costs no privacy (post-processing of the model).
    """
    R = np.asarray(reference, dtype=float)
    if R.ndim != 2 or R.shape[1] != target.x_knots.shape[0]:
        raise ValueError(f"reference must have shape (m, {target.x_knots.shape[0]}), got {R.shape}.")
    if n_levels < 2 or R.shape[0] < n_levels:
        raise ValueError(f"need 2 <= n_levels <= reference rows, got n_levels={n_levels}, {R.shape[0]} rows.")
    levels = (np.arange(n_levels) + 0.5) / n_levels
    knots = np.quantile(R, levels, axis=0).T  # (d, L), non-decreasing per row
    return MarginalCalibration(model_knots=np.maximum.accumulate(knots, axis=1), levels=levels, target=target)
