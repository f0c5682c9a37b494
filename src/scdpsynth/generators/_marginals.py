"""Noisy marginal measurement and consistency post-processing for marginal-based generators (AnnData-free).

The data are ``d`` binned genes (``n_bins`` levels each) plus the class label (``K`` levels). The measured
marginals are the 1-way marginals of every gene and of the label, and the 2-way marginal of each gene with the label:

* ``one_way``: ``(d, B)`` counts, ``one_way[g, b] = #{i : x_ig = b}``;
* ``label``: ``(K,)`` class counts;
* ``two_way``: ``(d, B, K)`` counts, ``two_way[g, b, k] = #{i : x_ig = b, y_i = k}``.

Sensitivity (add/remove-one neighbouring; the dataset size ``n`` is private): adding or removing one record changes
one cell of every count marginal by one, so each marginal has L2 sensitivity 1 and ``m`` marginals released together
have L2 sensitivity ``sqrt(m)``. :func:`gaussian_measure` draws Gaussian noise for that sensitivity through the
:class:`~scdpsynth.privacy.Ledger`. The number of records is estimated from the released marginals
(:func:`estimate_total`, post-processing), never read from the data.

The PrivSyn consistency step (Zhang et al. 2021, Sec. 4) is :func:`make_consistent`: inverse-variance weighted
agreement of the attributes shared between marginals, alternating with :func:`norm_sub` (non-negativity and
normalisation to ``n``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from ..privacy import DEFAULT_DELTA, Ledger, gaussian_sigma_for_rho
from ._base import BaseGenerator
from ._bounds import DEFAULT_BOUNDS, check_bounds, warn_clipped
from ._discretize import dp_discretization, public_discretization
from ._projection import norm_sub

__all__ = [
    "count_marginals",
    "estimate_total",
    "gaussian_measure",
    "MarginalGenerator",
    "make_consistent",
    "norm_sub",
    "round_counts",
    "systematic_sample",
]

#: L2 sensitivity of one count marginal under add/remove-one neighbouring (one cell changes by one)
MARGINAL_SENSITIVITY = 1.0


def count_marginals(codes: np.ndarray, y: np.ndarray, n_bins: int, n_classes: int):
    """Exact ``one_way (d, B)``, ``label (K,)`` and ``two_way (d, B, K)`` count marginals of binned data."""
    codes = np.asarray(codes, dtype=np.intp)
    y = np.asarray(y, dtype=np.intp)
    d = codes.shape[1]
    flat = (np.arange(d)[None, :] * n_bins + codes) * n_classes + y[:, None]
    two_way = np.bincount(flat.ravel(), minlength=d * n_bins * n_classes).reshape(d, n_bins, n_classes)
    two_way = two_way.astype(float)
    return two_way.sum(axis=2), np.bincount(y, minlength=n_classes).astype(float), two_way


def gaussian_measure(
    counts: np.ndarray,
    *,
    rho: float,
    rng: np.random.Generator,
    ledger: Ledger,
    name: str,
    n_marginals: int | None = None,
) -> tuple[np.ndarray, float]:
    """Release count marginals with Gaussian noise under rho-zCDP.

    ``counts`` stacks ``m`` marginals along its first axis (a single marginal: ``m = 1`` if ``n_marginals`` says so).
    Their joint L2 sensitivity is ``sqrt(m)`` (add/remove-one: one cell of each marginal changes by one), so the
    noise standard deviation is ``sigma = sqrt(m) / sqrt(2 rho) = sqrt(m / (2 rho))`` for every cell.

    Returns
    -------
    ``(noisy, sigma)``.
    """
    counts = np.asarray(counts, dtype=float)
    m = counts.shape[0] if n_marginals is None else int(n_marginals)
    sensitivity = MARGINAL_SENSITIVITY * math.sqrt(m)
    sigma = gaussian_sigma_for_rho(rho, sensitivity)
    return ledger.gaussian(counts, sensitivity=sensitivity, sigma=sigma, rng=rng, name=name), sigma


def estimate_total(*measured: tuple[np.ndarray, float]) -> float:
    """The number of records, estimated from released count marginals (post-processing).

    Each ``(marginals, sigma)`` pair stacks marginals along axis 0 whose cells carry independent ``N(0, sigma^2)``
    noise; every marginal sums to ``n`` plus noise of variance ``cells * sigma^2``. Returns the inverse-variance
    weighted mean of all those sums (at least 1); with ``sigma = 0`` (exact marginals) the exact total.
    """
    sums, weights = [], []
    for marg, sigma in measured:
        marg = np.asarray(marg, dtype=float)
        per = marg.reshape(marg.shape[0], -1)
        if sigma == 0:
            return float(per[0].sum())
        sums.append(per.sum(axis=1))
        weights.append(np.full(per.shape[0], 1.0 / (per.shape[1] * sigma**2)))
    s, w = np.concatenate(sums), np.concatenate(weights)
    return max(float((s * w).sum() / w.sum()), 1.0)


def make_consistent(
    one_way: np.ndarray | None,
    var_one: float,
    label: np.ndarray | None,
    var_label: float,
    two_way: np.ndarray,
    var_two: float,
    *,
    total: float,
    selected: np.ndarray | None = None,
    n_rounds: int = 10,
):
    """PrivSyn consistency post-processing of the star marginal set (gene x label 2-ways, gene and label 1-ways).

    Each round (Zhang et al. 2021, Sec. 4.2) makes every marginal sum to ``total`` (the number of records, estimated
    from the released marginals by :func:`estimate_total`), then makes the label agree across the label marginal and
    all selected 2-ways, then each gene agree between its 1-way and its 2-way. The agreed value of a shared
    attribute is the inverse-variance weighted average of the marginals' projections (a projection summing ``c``
    cells of variance ``v`` has variance ``c v``); each marginal is then shifted to it, spreading the difference
    evenly over the cells that project onto each shared cell. Every round ends with :func:`norm_sub`, so the output
    is non-negative and normalised; the last round's non-negativity step may leave small disagreements.

    Parameters
    ----------
    one_way, label, two_way
        Noisy ``(d, B)``, ``(K,)`` and ``(d, B, K)`` marginals (``one_way``/``label`` may be ``None`` if not
        measured).
    var_one, var_label, var_two
        Per-cell noise variances (0 for exact marginals).
    selected
        Boolean ``(d,)``: genes whose 2-way marginal was measured (default all).

    Returns
    -------
    ``(one_way, label, two_way)`` post-processed (copies); rows of unselected genes in ``two_way`` are left as they
    are.
    """
    d, B, K = two_way.shape
    sel = np.ones(d, dtype=bool) if selected is None else np.asarray(selected, dtype=bool)
    two = np.array(two_way, dtype=float)
    one = None if one_way is None else np.array(one_way, dtype=float)
    lab = None if label is None else np.array(label, dtype=float)

    def inv(v: float) -> float:
        return 1.0 / max(v, 1e-12)

    for _ in range(n_rounds):
        # total
        two[sel] += (total - two[sel].sum(axis=(1, 2)))[:, None, None] / (B * K)
        if one is not None:
            one += (total - one.sum(axis=1))[:, None] / B
        if lab is not None:
            lab += (total - lab.sum()) / K
        # the label, shared by the label 1-way and every selected 2-way
        if sel.any():
            proj = two[sel].sum(axis=1)  # (d_sel, K)
            w_two = inv(B * var_two)
            num = w_two * proj.sum(axis=0)
            den = w_two * proj.shape[0]
            if lab is not None:
                num, den = num + inv(var_label) * lab, den + inv(var_label)
            agreed = num / den
            two[sel] += (agreed[None, :] - proj)[:, None, :] / B
            if lab is not None:
                lab = agreed
        # each gene, shared by its 1-way and its 2-way
        if one is not None and sel.any():
            proj = two[sel].sum(axis=2)  # (d_sel, B)
            w_two, w_one = inv(K * var_two), inv(var_one)
            agreed = (w_two * proj + w_one * one[sel]) / (w_two + w_one)
            two[sel] += (agreed - proj)[:, :, None] / K
            one[sel] = agreed
        # non-negativity and normalisation
        flat = two[sel].reshape(-1, B * K)
        two[sel] = norm_sub(flat, total).reshape(-1, B, K)
        if one is not None:
            one = norm_sub(one, total)
        if lab is not None:
            lab = norm_sub(lab, total)
    return one, lab, two


def systematic_sample(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` codes for each row of ``probs`` (``(d, B)``, rows summing to 1) by randomised rounding.

    Systematic sampling: positions ``(u_g + i) / n`` for ``i = 0 .. n-1`` with one uniform offset ``u_g`` per row are
    read through the row's CDF, so category ``b`` appears ``floor(n p_b)`` or ``ceil(n p_b)`` times (``n p_b`` in
    expectation); each column is then shuffled independently. Returns ``(n, d)`` int16 codes.
    """
    probs = np.clip(np.asarray(probs, dtype=float), 0.0, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    d, B = probs.shape
    if n == 0:
        return np.zeros((0, d), dtype=np.int16)
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0 + 1e-12
    pos = (rng.random(d)[None, :] + np.arange(n)[:, None]) / n  # (n, d) in [0, 1)
    codes = np.zeros((n, d), dtype=np.int16)
    for b in range(B - 1):
        codes += pos >= cdf[None, :, b]
    return rng.permuted(codes, axis=0)


def round_counts(probs: np.ndarray, n, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to ``n`` for each row of ``probs`` (last axis), ``floor`` or ``ceil`` of ``n p``.

    ``n`` is a number or an array broadcasting against ``probs.shape[:-1]``; a row of zeros is treated as uniform.

    Randomised (systematic) rounding: ``c_b = floor(n F_b + u) - floor(n F_{b-1} + u)`` with cumulative ``F`` and one
    uniform ``u`` per row; unbiased, and never more than ``ceil(n p_b)``.
    """
    probs = np.clip(np.asarray(probs, dtype=float), 0.0, None)
    s = probs.sum(axis=-1, keepdims=True)
    probs = np.where(s > 0, probs / np.where(s > 0, s, 1.0), 1.0 / probs.shape[-1])
    cdf = np.cumsum(probs, axis=-1)
    cdf[..., -1] = 1.0
    n = np.broadcast_to(np.asarray(n, dtype=float), probs.shape[:-1])[..., None]
    u = rng.random(probs.shape[:-1])[..., None]
    cum = np.floor(n * cdf + u)
    cum[..., -1:] = n
    return np.diff(np.concatenate([np.zeros((*cum.shape[:-1], 1)), cum], axis=-1), axis=-1).astype(np.int64)


# --------------------------------------------------------------------------------------------------------------------
# shared machinery of the marginal-based generators
# --------------------------------------------------------------------------------------------------------------------

_DISCRETIZATIONS = ("public", "dp")


class MarginalGenerator(BaseGenerator):
    """Common part of :class:`~scdpsynth.generators.private_pgm.PrivatePGM` and
    :class:`~scdpsynth.generators.privsyn.PrivSyn`: input checks, discretisation, budget bookkeeping, back-mapping.

    Defaults are private: ``discretization="dp"`` over the public ``bounds`` :data:`DEFAULT_BOUNDS` (log-scale
    expression: log2 intensities or log1p counts), which do not look at the data.
    """

    data = "continuous"
    units = ("sample",)

    def __init__(
        self,
        *,
        eps: float | None = None,
        delta: float = DEFAULT_DELTA,
        random_state=None,
        unit: str = "sample",
        n_bins: int = 4,
        discretization: str = "dp",
        bounds: tuple[float, float] = DEFAULT_BOUNDS,
        grid_size: int = 32,
        discretization_share: float = 0.3,
        within_bin: str = "sample",
    ):
        super().__init__(eps=eps, delta=delta, random_state=random_state, unit=unit)
        if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
            raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r} (the reference setting is 4).")
        if discretization not in _DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {list(_DISCRETIZATIONS)}, got {discretization!r}.")
        self.bounds = check_bounds(bounds)
        if not (0.0 < float(discretization_share) < 1.0):
            raise ValueError(f"discretization_share must be in (0, 1), got {discretization_share!r}.")
        self.n_bins = int(n_bins)
        self.discretization = discretization
        self.grid_size = grid_size
        self.discretization_share = float(discretization_share)
        if within_bin not in ("sample", "mean"):
            raise ValueError(f"within_bin must be 'sample' or 'mean', got {within_bin!r}.")
        self.within_bin = within_bin

    def _check_input(self, X, y, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        if sparse.issparse(X):
            X = X.toarray()
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
            raise ValueError(f"X must be a 2-d array with at least 2 rows and 1 column, got shape {X.shape}.")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values; impute or drop them before fitting.")
        y = np.asarray(y)
        if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must be integer class codes of shape ({X.shape[0]},), got {y.dtype} {y.shape}.")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}.")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"y must hold codes in [0, {n_classes}), got range [{y.min()}, {y.max()}].")
        return X, y.astype(np.intp)

    def _discretize(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """Fit the discretisation; returns the bin codes and the rho left for the marginals."""
        rho = self.budget.rho * (1.0 - 1e-9) if self.private else math.inf  # margin against rounding in the sum
        if self.discretization == "dp" and self.private:
            warn_clipped(X, self.bounds, "bounds")
            rho_disc = self.discretization_share * rho
            self.disc_ = dp_discretization(
                X,
                self.n_bins,
                rho=rho_disc,
                bounds=self.bounds,
                grid_size=self.grid_size,
                rng=self.rng,
                ledger=self.ledger,
            )
            rho -= rho_disc
        else:
            self.disc_ = public_discretization(X, self.n_bins)
            if self.private:
                self.scope.append(
                    f"per-gene quantile bin edges ({self.n_bins} bins) and per-bin mean values computed without "
                    "noise (discretization='public', an explicit opt-in); the default 'dp' charges them to the budget"
                )
        return self.disc_.transform(X), rho

    def _back_map(self, codes: np.ndarray) -> np.ndarray:
        """Synthetic bin codes back to expression values: bin means, or draws within bins (``within_bin``)."""
        return self.disc_.inverse_transform(codes, self.rng if self.within_bin == "sample" else None)

    def _check_class_counts(self, class_counts) -> np.ndarray:
        self._check_fitted()
        counts = np.asarray(class_counts)
        if counts.shape != (self.n_classes_,) or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
            raise ValueError(
                f"class_counts must be {self.n_classes_} non-negative integers (one per class), got {class_counts!r}."
            )
        return counts.astype(np.int64)

    def params(self) -> dict:
        return {
            "n_bins": self.n_bins,
            "discretization": self.discretization,
            "bounds": list(self.bounds),
            "grid_size": int(self.grid_size),
            "discretization_share": self.discretization_share,
            "within_bin": self.within_bin,
        }
