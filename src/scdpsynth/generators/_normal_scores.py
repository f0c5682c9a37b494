"""Per-feature normal scores: each feature mapped through its (DP or exact) CDF to a standard normal, and back.

A deep generator that learns on normal scores ``z = Phi^-1(F(x))`` and maps its samples back with ``F^-1(Phi(z))``
gets each feature's marginal shape (skew, long tails, bimodality) from ``F`` and needs to learn only the dependence
and the class effects; with a per-feature mean and scale (plain standardisation) its Gaussian decoder or bounded
generator has to produce those shapes itself, and with a few hundred rows it does not. Arrays only.

``F`` is piecewise linear between knots ``(x_knots[g], u_knots[g])`` per feature, both non-decreasing:

* :func:`dp_normal_scores`: the CDF of one DP per-feature histogram on a public grid
  (:func:`~scdpsynth.generators._discretize.dp_discretization`: Gaussian noise, L2 sensitivity ``sqrt(d)`` under
  add/remove-one, shrinkage, support mask and projection as post-processing). Values at the lower bound (an atom,
  e.g. zeros of log1p data) map to the middle of the atom's mass, and back to the lower bound.
* :func:`exact_normal_scores` (non-private fits only): the empirical CDF at mid-ranks, knots at the distinct values
  (repeated values keep a flat run of levels in the inverse map: atoms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..privacy import Ledger
from ._discretize import dp_discretization

__all__ = ["NormalScores", "dp_normal_scores", "exact_normal_scores", "Z_BOUND"]

#: normal scores are clipped to ``[-Z_BOUND, Z_BOUND]`` (CDF levels within about 1e-4 of 0 or 1)
Z_BOUND = 3.75


@dataclass
class NormalScores:
    """Piecewise-linear per-feature CDFs and the maps to and from normal scores.

    Attributes
    ----------
    x_knots, u_knots
        ``(d, m)`` knots of each feature's CDF for the forward map (values and CDF levels, both non-decreasing
        along axis 1).
    u_lower
        ``(d,)`` CDF level that values at or below the first knot map to (the middle of an atom at the lower bound,
        or the first knot's level).
    x_inverse, u_inverse
        ``(d, m')`` knots of the inverse map (levels to values); ``None``: the forward knots. A flat run of values
        over a range of levels is an atom: every level in it maps back to that one value.
    """

    x_knots: np.ndarray
    u_knots: np.ndarray
    u_lower: np.ndarray
    x_inverse: np.ndarray | None = None
    u_inverse: np.ndarray | None = None

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Normal scores ``Phi^-1(F(x))`` of the rows of ``X`` (clipped to ``+-Z_BOUND``)."""
        from scipy.special import ndtri

        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.x_knots.shape[0]:
            raise ValueError(f"X must have shape (n, {self.x_knots.shape[0]}), got {X.shape}.")
        U = np.empty(X.shape)
        for g in range(X.shape[1]):
            xk, uk = self.x_knots[g], self.u_knots[g]
            U[:, g] = np.where(X[:, g] <= xk[0], self.u_lower[g], np.interp(X[:, g], xk, uk))
        return np.clip(ndtri(np.clip(U, 1e-12, 1.0 - 1e-12)), -Z_BOUND, Z_BOUND)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """Values ``F^-1(Phi(z))`` (levels below the first knot's map to the first knot, e.g. an atom's value)."""
        from scipy.special import ndtr

        Z = np.asarray(Z, dtype=float)
        if Z.ndim != 2 or Z.shape[1] != self.x_knots.shape[0]:
            raise ValueError(f"Z must have shape (n, {self.x_knots.shape[0]}), got {Z.shape}.")
        xi = self.x_knots if self.x_inverse is None else self.x_inverse
        ui = self.u_knots if self.u_inverse is None else self.u_inverse
        U = ndtr(Z)
        out = np.empty(Z.shape)
        for g in range(Z.shape[1]):
            out[:, g] = np.interp(U[:, g], ui[g], xi[g])
        return out


def dp_normal_scores(
    X: np.ndarray,
    *,
    rho: float,
    bounds: tuple[float, float],
    grid_size: int,
    rng: np.random.Generator,
    ledger: Ledger,
    partition: tuple[str, int] | None = None,
) -> NormalScores:
    """Normal scores from one DP per-feature histogram (``rho`` of the zCDP budget, drawn and recorded by ``ledger``).

    Values are clipped to the public ``bounds`` and counted in an atom at the lower bound plus ``grid_size``
    equal-width cells (see :func:`~scdpsynth.generators._discretize.dp_discretization`, whose CDF this reuses; its
    sensitivity statement applies: ``sqrt(d)``; ``partition`` as there). Everything after the release is
    post-processing.
    """
    disc = dp_discretization(
        X, 2, rho=rho, bounds=bounds, grid_size=grid_size, rng=rng, ledger=ledger, partition=partition
    )
    d = disc.cdf.shape[0]
    x_knots = np.broadcast_to(disc.grid, (d, len(disc.grid))).copy()
    cdf = np.maximum.accumulate(np.clip(disc.cdf, 0.0, 1.0), axis=1)  # rounding in the cumulative sum
    return NormalScores(x_knots=x_knots, u_knots=cdf, u_lower=0.5 * cdf[:, 0])


def exact_normal_scores(X: np.ndarray) -> NormalScores:
    """Normal scores from the exact empirical CDFs (non-private).

    Forward: each distinct value at its mid-rank level ``(#below + #at-or-below) / (2 n)``, linear in between.
    Inverse: a value seen once sits at its mid-rank level and the map is linear between such values, so draws fall
    between the data's values, not only on them; a value seen ``m >= 2`` times (e.g. zeros) holds the levels
    ``[#below + 1/2, #below + m - 1/2] / n`` flat, an atom of about its share. Every data value maps back to itself.
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    xf, uf, xi, ui = [], [], [], []
    for g in range(d):
        vals, counts = np.unique(X[:, g], return_counts=True)
        below = np.concatenate([[0], np.cumsum(counts)[:-1]])
        mid = (below + 0.5 * counts) / n  # mid-rank level of each distinct value
        xf.append(vals)
        uf.append(mid)
        lo = (below + 0.5) / n
        hi = (below + counts - 0.5) / n
        tied = counts > 1
        knots = np.where(tied, 2, 1)  # two knots (the ends of a flat run) for a repeated value, one otherwise
        xs = np.repeat(vals, knots)
        us = np.empty(len(xs))
        pos = np.cumsum(knots) - knots  # first knot of each value
        us[pos] = np.where(tied, lo, mid)
        us[pos[tied] + 1] = hi[tied]
        xi.append(xs)
        ui.append(us)
    xf, uf = _pad(xf), _pad(uf)
    return NormalScores(x_knots=xf, u_knots=uf, u_lower=uf[:, 0].copy(), x_inverse=_pad(xi), u_inverse=_pad(ui))


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    """Stack rows of different lengths, each padded with its last element (a repeated knot changes no map)."""
    m = max(len(r) for r in rows)
    return np.stack([np.concatenate([r, np.full(m - len(r), r[-1])]) for r in rows])
