"""Quantile discretisation of expression values and back-mapping to per-bin values (AnnData-free).

Marginal-based generators (Private-PGM, PrivSyn) work on categorical data: each gene is cut into ``n_bins`` quantile
bins (default 4: ``<25%``, ``25-50%``, ``50-75%``, ``>75%``) and synthetic bin codes are mapped back to one expression
value per (gene, bin), so synthetic data stay on the input scale.

Two ways to get the edges and the per-bin values:

``"dp"`` (:func:`dp_discretization`, the default of the generators)
    One Gaussian release of a per-gene histogram on a fixed grid of ``grid_size`` equal-width cells over public
    bounds ``(lo, hi)``. Quantile edges are read off the noisy CDF (piecewise-linear within a cell) and per-bin values
    are the means of the noisy, piecewise-uniform density within each bin: both are post-processing of the one
    release. Sensitivity: under add/remove-one neighbouring a record adds one count to one cell of each gene's
    histogram (values are clipped to ``[lo, hi]``, so every record lands in exactly one cell per gene): L2
    sensitivity 1 per gene and ``sqrt(d)`` for the d histograms together.
``"public"`` (:func:`public_discretization`, an explicit opt-in)
    Exact per-gene quantiles and exact per-bin means of the private data. **No noise**: both are derived from private
    data outside the budget, and a generator using them must list them in its ``scope``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..privacy import Ledger, gaussian_sigma_for_rho
from ._projection import norm_sub

__all__ = ["Discretization", "dp_discretization", "public_discretization", "quantile_levels"]


def quantile_levels(n_bins: int) -> np.ndarray:
    """Interior quantile levels ``k / n_bins`` for ``k = 1 .. n_bins - 1`` (e.g. 0.25, 0.5, 0.75 for 4 bins)."""
    return np.arange(1, n_bins) / n_bins


@dataclass
class Discretization:
    """Per-gene bin edges and back-mapping values.

    Attributes
    ----------
    edges
        ``(d, n_bins - 1)`` non-decreasing interior edges; bin ``b`` of gene ``g`` holds values
        ``edges[g, b-1] < x <= edges[g, b]`` (bin 0 everything ``<= edges[g, 0]``, the last bin everything above the
        last edge). Ties (e.g. many zeros) go to the lowest bin whose upper edge they reach; bins between equal
        edges stay empty.
    values
        ``(d, n_bins)`` expression value that each bin maps back to.
    """

    edges: np.ndarray
    values: np.ndarray

    @property
    def n_bins(self) -> int:
        return self.values.shape[1]

    @property
    def n_features(self) -> int:
        return self.values.shape[0]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Bin codes (``int16``, ``n x d``) of the rows of ``X``."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n, {self.n_features}), got {X.shape}.")
        codes = np.zeros(X.shape, dtype=np.int16)
        for k in range(self.edges.shape[1]):  # count the edges strictly below each value
            codes += X > self.edges[None, :, k]
        return codes

    def inverse_transform(self, codes: np.ndarray) -> np.ndarray:
        """Map bin codes (``n x d``) back to expression values: ``values[g, codes[:, g]]``."""
        codes = np.asarray(codes)
        return np.take_along_axis(self.values.T, codes.astype(np.intp), axis=0)


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r} (the reference setting is 4 quartile bins).")
    return int(n_bins)


def public_discretization(X: np.ndarray, n_bins: int = 4) -> Discretization:
    """Exact (non-private) quantile edges and per-bin means. Both must be listed in a generator's scope.

    An empty bin (possible with ties) maps back to the nearest edge value.
    """
    n_bins = _check_n_bins(n_bins)
    X = np.asarray(X, dtype=float)
    edges = np.quantile(X, quantile_levels(n_bins), axis=0).T  # (d, n_bins - 1)
    disc = Discretization(edges=np.ascontiguousarray(edges), values=np.zeros((X.shape[1], n_bins)))
    codes = disc.transform(X)
    values = np.empty((X.shape[1], n_bins))
    for b in range(n_bins):
        inbin = codes == b
        cnt = inbin.sum(axis=0)
        total = np.where(inbin, X, 0.0).sum(axis=0)
        fallback = edges[:, min(b, n_bins - 2)]
        values[:, b] = np.where(cnt > 0, total / np.maximum(cnt, 1), fallback)
    disc.values = values
    return disc


def dp_discretization(
    X: np.ndarray,
    n_bins: int = 4,
    *,
    rho: float,
    bounds: tuple[float, float],
    grid_size: int = 32,
    rng: np.random.Generator,
    ledger: Ledger,
) -> Discretization:
    """DP quantile edges and per-bin values from one noisy per-gene histogram (``rho`` of the budget, drawn by
    ``ledger``).

    Values are clipped to ``bounds`` (public, data-independent) and counted in ``grid_size`` equal-width cells per
    gene. The Gaussian noise has ``sigma = sqrt(d) / sqrt(2 rho)``: adding or removing one record changes one cell of
    each gene's histogram by one, L2 sensitivity 1 per gene and ``sqrt(d)`` for all d genes. The noisy histograms are
    projected onto non-negative histograms summing to the estimated number of records (Norm-Sub; post-processing).

    Returns
    -------
    The discretisation; edges are the ``k / n_bins`` quantiles of the noisy piecewise-uniform density, values its
    mean within each bin (the bin midpoint where the bin holds no mass).
    """
    n_bins = _check_n_bins(n_bins)
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be two finite numbers lo < hi, got {bounds!r}.")
    if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < n_bins:
        raise ValueError(f"grid_size must be an integer >= n_bins ({n_bins}), got {grid_size!r}.")
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    width = (hi - lo) / grid_size
    cell = np.clip(((np.clip(X, lo, hi) - lo) / width).astype(np.int64), 0, grid_size - 1)
    hist = np.zeros((d, grid_size))
    np.add.at(hist, (np.broadcast_to(np.arange(d), (n, d)), cell), 1.0)
    sensitivity = math.sqrt(d)
    sigma = gaussian_sigma_for_rho(rho, sensitivity)
    hist = ledger.gaussian(hist, sensitivity=sensitivity, sigma=sigma, rng=rng, name="dp_quantile_histogram")
    # every gene's histogram counts the same records: their inverse-variance weighted total estimates n, and the
    # Euclidean projection onto {mass >= 0, sum = n} (Norm-Sub) removes the spurious mass that clipping the noise of
    # empty cells at zero would leave (post-processing)
    total = max(float(hist.sum(axis=1).mean()), 1.0)
    mass = norm_sub(hist, total)
    mass /= mass.sum(axis=1, keepdims=True)

    grid = lo + width * np.arange(grid_size + 1)
    cdf = np.concatenate([np.zeros((d, 1)), np.cumsum(mass, axis=1)], axis=1)
    cdf[:, -1] = 1.0
    levels = quantile_levels(n_bins)
    edges = np.empty((d, n_bins - 1))
    for g in range(d):
        # the CDF is non-decreasing and piecewise linear; searchsorted picks the first crossing of each level
        j = np.clip(np.searchsorted(cdf[g], levels, side="left"), 1, grid_size)
        c0, c1 = cdf[g, j - 1], cdf[g, j]
        frac = np.where(c1 > c0, (levels - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
        edges[g] = grid[j - 1] + np.clip(frac, 0.0, 1.0) * width
    edges = np.maximum.accumulate(edges, axis=1)

    # mean of the piecewise-uniform density on each bin [a, c]
    lower = np.concatenate([np.full((d, 1), lo), edges], axis=1)  # (d, n_bins)
    upper = np.concatenate([edges, np.full((d, 1), hi)], axis=1)
    left, right = grid[:-1], grid[1:]
    ov_lo = np.maximum(lower[:, :, None], left[None, None, :])  # (d, n_bins, grid)
    ov_hi = np.minimum(upper[:, :, None], right[None, None, :])
    overlap = np.clip(ov_hi - ov_lo, 0.0, None)
    w = mass[:, None, :] * overlap / width
    m = w.sum(axis=2)
    moment = (w * 0.5 * (ov_lo + ov_hi)).sum(axis=2)
    values = np.where(m > 1e-12, moment / np.where(m > 1e-12, m, 1.0), 0.5 * (lower + upper))
    return Discretization(edges=edges, values=values)
