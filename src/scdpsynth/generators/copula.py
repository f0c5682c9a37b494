"""scDesign2-style DP Gaussian-copula count generator (per cell type), with cell- or donor-level privacy.

Model (Sun et al. 2021, scDesign2): within each cell type, every gene has its own count marginal (Poisson, NB or
ZINB, chosen per gene), and the ``n_copula_genes`` most highly expressed genes are tied together by a Gaussian
copula; the remaining genes are sampled independently from their marginals.

Private fit (all releases are Gaussian mechanisms drawn through ``self.ledger``; sensitivities are for
add/remove-one-unit neighbouring, see :mod:`scdpsynth.generators._contribution`; ``m = 1`` for ``unit="sample"``
and ``m = max_cells_per_donor`` for ``unit="donor"``, where each donor's cells are first subsampled to at most
``m`` over all cell types):

1. ``counts``: per-type cell counts (``f(x) = 1``), sensitivity ``m``.
2. ``mean``: per-type sums of the counts ``x`` (entries capped at ``mean_cap``, default ``count_cap``) with each
   cell's gene vector clipped to L2 norm ``clip_mean``; sensitivity ``m * clip_mean``.
3. ``second_moment``: same for ``c**2``, ``c = min(x, count_cap)``, with clip ``clip_sq``; sensitivity
   ``m * clip_sq``.
4. ``nonzero``: same for ``1[x > 0]`` with clip ``clip_nonzero``; sensitivity ``m * clip_nonzero``.
   Means are noisy sums divided by noisy counts; marginals follow by the method of moments
   (:func:`~scdpsynth.generators._count_marginals.marginals_from_moments`) -- post-processing.
5. ``library`` (with ``size_factors=True``, default): per-type histograms of ``log10`` library sizes on fixed
   public bins (one-hot per cell), sensitivity ``m``. Its ``n_size_levels`` quantiles, scaled to mean 1, are the
   cells' size factors ``s`` (scDesign2's sequencing depth): a synthetic cell draws one ``s`` and every gene's
   count from its marginal with mean ``s * mu``, so all genes share the cell's depth. Dispersions are estimated net
   of the size-factor variance (post-processing).
6. ``copula``: per type, copula genes are the top genes by the *released* mean (post-processing). Each cell's
   counts are turned into Gaussian scores ``z = Phi^-1(u)`` by the randomised probability integral transform under
   the released marginals (at the size-factor level nearest the cell's own library size), clipped to L2 norm
   ``C = score_clip * sqrt(p)``, and the per-type Gram matrices
   ``sum z z^T`` are released (upper triangle) with sensitivity ``m * C**2``. The noisy covariance is projected to
   the nearest valid correlation matrix (eigenvalue clipping, then rescaling to a unit diagonal).

Post-processing of the releases (no privacy cost; ``denoise=True``, default): each per-type row of releases 2-4 is
replaced by its empirical-Bayes posterior mean (:mod:`~scdpsynth.generators._denoise`: an NPMLE prior over genes
learnt from the releases, with the mechanism's public noise scale), so genes whose release is within noise of zero
are not given spurious expression; the library histogram's bins below 3 noise sd are zeroed (they are empty bins:
their clipped noise once put the largest size-factor level at ten times the mean).

Gene tiers (``gene_tiers=T > 1``, default 5 for private fits; :mod:`~scdpsynth.generators._tiers`): a pilot
release (budget share ``pilot``) of the per-type means under the one clip ``clip_mean`` (sensitivity
``m * clip_mean``) ranks each type's genes into ``T`` tiers of growing size, and releases 2-4 are made per tier,
each type's tier sub-vector clipped to a norm set from its pilot means (``tier_clip_scale`` times a Poisson rule,
at most the whole-vector clip). Tier ``t`` releases the type sums divided by their tier clips (sensitivity ``m``)
with ``1 / T`` of the statistic's share.

Each cell belongs to one cell type, so every release covers all cell types at once (parallel composition for
cells; for donors the total cap ``m`` bounds the concatenated change, see ``_contribution``).

Donor means (``unit="donor"``, ``donor_aggregation="mean"``, default): every per-cell vector above is weighted by
``1 / n_dk`` (``n_dk`` the donor's kept cells of that type) before summing, so each donor adds its per-type mean;
sensitivities use ``sqrt(min(K, m))`` in place of ``m``, a ``donors`` release (donors per type, sensitivity
``sqrt(min(K, m))``) gives the denominators, and the cell ``counts`` release (sensitivity ``m``) only sets the
cell-type proportions of the synthetic data. The estimate is the average donor's profile; its noise is about
``sqrt(K) / n_donors`` clips per type instead of ``K / n_donors`` (cell sums are less noisy only for a type holding
more than ``1 / sqrt(K)`` of the cells).

Public reference (``fit(..., reference=(X_ref, y_ref))``, ``tl.generate(..., public_reference=...)``): releases 2-5
are replaced by the exact statistics of data the user declares public, and the budget is split over ``counts``
(``donors``) and ``copula`` only.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse, special

from .._chunks import CHUNK_ROWS, is_in_memory, iter_row_blocks, load_rows
from ..privacy import gaussian_sigma_for_rho
from ._base import BaseGenerator
from ._contribution import (
    NEIGHBOURING,
    clip_rows_l2,
    contribution_bound,
    donor_mean_multiplier,
    donor_type_weights,
    grouped_sums,
    release,
    sum_sensitivity,
)
from ._count_marginals import (
    FAMILIES,
    LIB_EDGES,
    CountMarginals,
    TableSampler,
    library_onehot,
    marginals_from_moments,
    size_factor_levels,
)
from ._denoise import npmle_posterior_mean, threshold_histogram
from ._tiers import plan_tiers

__all__ = ["CopulaGenerator", "dp_count_moments", "nearest_correlation", "normal_scores", "project_mean"]

_U_EPS = 1e-4
_CHUNK = 10_000  # cells drawn at a time (bounds memory at ~ _CHUNK x n_genes floats)
_SAFETY = 1.0 - 1e-9  # keeps the composed rho a hair under the budget despite float rounding


def nearest_correlation(S: np.ndarray, min_eig: float = 1e-3) -> np.ndarray:
    """Project a symmetric matrix to a correlation matrix: clip eigenvalues at ``min_eig``, rescale to unit diagonal."""
    S = 0.5 * (S + S.T)
    w, V = np.linalg.eigh(S)
    S = (V * np.maximum(w, min_eig * max(np.abs(w).max(), 1e-12))) @ V.T
    d = np.sqrt(np.maximum(np.diag(S), 1e-12))
    R = S / np.outer(d, d)
    np.fill_diagonal(R, 1.0)
    return R


def project_mean(M: np.ndarray, *, upper: float, norm: float) -> np.ndarray:
    """Post-process noisy means of per-cell vectors with entries in ``[0, upper]`` and L2 norm ``<= norm``.

    Each row is clipped to ``[0, upper]`` and rescaled into the L2 ball of radius ``norm``: the true means satisfy
    both constraints, so this only removes noise (no privacy cost).
    """
    M = np.clip(M, 0.0, upper)
    nrm = np.linalg.norm(M, axis=-1, keepdims=True)
    return M * np.minimum(1.0, norm / np.maximum(nrm, 1e-300))


def _weighted(A, w):
    """Rows of ``A`` (CSR or dense) scaled by ``w`` (``None``: ``A`` itself); a CSR ``A`` is scaled in place."""
    if w is None:
        return A
    if sparse.issparse(A):
        A.data *= np.repeat(w, np.diff(A.indptr))
        return A
    return A * w[:, None]


def dp_count_moments(X, y, K, *, m, neighbouring, count_cap, clips, rho, ledger, rng, mean_cap=None,
                     cell_weights=None, m_weighted=None, chunk_rows=None, denoise=False, pilot=None):  # fmt: skip
    """Noisy per-type cell counts and means of ``min(x, cap)``, its square and ``1[x > 0]`` (each ``K x d``).

    Releases ``counts`` (sensitivity ``m``) and, for each key of ``clips`` (``"mean"``, ``"second_moment"``,
    ``"nonzero"``), the per-type sums of the per-cell vectors clipped to L2 norm ``clips[key]`` (sensitivity
    ``m * clips[key]``), each with budget ``rho[key]``. Means divide by the noisy counts (at least 1) and are
    projected with :func:`project_mean`. Returns the released counts as drawn (possibly below 1) and the means;
    ``stats["denominator"]`` holds the (noisy) denominators used, and ``stats["library"]`` each cell's exact
    library size (read in the same pass; private, for the caller's own clipped releases, never released as is).
    ``denoise=True`` replaces each released row by its empirical-Bayes posterior mean
    (:func:`~scdpsynth.generators._denoise.npmle_posterior_mean`, post-processing).

    Gene tiers (:mod:`~scdpsynth.generators._tiers`): ``pilot={"n_tiers": T, "scale": s, "rho": r}`` plans ``T``
    tiers per type from a pilot release of the per-type means (one clip ``clips["mean"]``, budget ``r``). Tier
    ``t`` of each key is released as the concatenation over types of the tier sums divided by the type's tier clip
    (sensitivity ``m``), with ``rho[key] / T``; ``stats["tiers"]`` returns the per-type plans
    ``[(genes, clips), ...]`` (``None`` without tiers).
    ``mean_cap`` (default ``count_cap``) caps the entries of the ``"mean"`` vectors; ``np.inf`` leaves them uncapped
    (the L2 clip alone bounds the sensitivity). A clip of ``np.inf`` (non-private fits) skips clipping.

    ``X`` may be out of core (backed h5ad, h5py, dask): it is read in blocks of ``chunk_rows`` rows (default
    ``CHUNK_ROWS``), each checked to hold raw counts; in-memory input goes through the same blocks, so both give
    the same sums.

    ``cell_weights`` (donor means, :func:`~scdpsynth.generators._contribution.donor_type_weights`): the clipped
    vectors are weighted before summing, the weighted counts (donors per type) are released as ``donors`` (budget
    ``rho["donors"]``) and serve as denominators, and every sensitivity uses ``m_weighted`` in place of ``m``.
    """
    ones = grouped_sums(np.ones((X.shape[0], 1)), y, K)[:, 0]
    released = release(ones, sensitivity=sum_sensitivity(1.0, m, neighbouring=neighbouring), rho=rho["counts"],
                       name="counts", ledger=ledger, rng=rng)  # fmt: skip
    w = None if cell_weights is None else np.asarray(cell_weights, dtype=np.float64)
    if w is None:
        n = np.maximum(released, 1.0)
    else:
        m = float(m_weighted)
        units = release(grouped_sums(w[:, None], y, K)[:, 0],
                        sensitivity=sum_sensitivity(1.0, m, neighbouring=neighbouring),
                        rho=rho["donors"], name="donors", ledger=ledger, rng=rng)  # fmt: skip
        n = np.maximum(units, 1.0)
    mean_cap = count_cap if mean_cap is None else mean_cap

    def vector(block, key):  # one block's per-cell vectors (memory: one float64 copy of the block at a time)
        v = block.astype(np.float64)
        if key == "mean":
            v.data = np.minimum(v.data, mean_cap)
        elif key == "second_moment":
            v.data = np.minimum(v.data, count_cap) ** 2
        else:
            v.data = (v.data > 0).astype(np.float64)
        return v

    upper = {"mean": mean_cap, "second_moment": count_cap**2, "nonzero": 1.0}
    tiers = None  # per-type gene tiers, planned from a one-clip release of the per-type means
    if pilot is not None:
        tiers = _pilot_tiers(X, y, K, w, n, vector, m=m, neighbouring=neighbouring, clips=clips, count_cap=count_cap,
                             mean_cap=mean_cap, ledger=ledger, rng=rng, chunk_rows=chunk_rows, **pilot)  # fmt: skip
    d = X.shape[1]
    # per-type sums of the clipped (and weighted) per-cell vectors, accumulated over row blocks: an out-of-core X
    # (backed h5ad, dask) is streamed once and never held whole. With gene tiers, each tier's sub-vector is clipped
    # to its type's tier clip (a type's tiers hold disjoint genes, so their sums fill disjoint columns)
    sums = {key: np.zeros((K, d)) for key in clips}
    lib = np.zeros(X.shape[0])
    for start, stop, block in iter_row_blocks(X, chunk_rows or CHUNK_ROWS):
        block = _check_counts_matrix(block)
        lib[start:stop] = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
        yb, wb = y[start:stop], None if w is None else w[start:stop]
        for key, clip in clips.items():
            full = vector(block, key)
            if tiers is None:
                v = full if np.isinf(clip) else clip_rows_l2(full, clip)
                sums[key] += grouped_sums(_weighted(v, wb), yb, K)
                continue
            for k in np.unique(yb):
                rows = np.flatnonzero(yb == k)
                Vk, wk = full[rows], np.ones(rows.size) if wb is None else wb[rows]
                for genes, tier_clips in tiers[k]:
                    sums[key][k, genes] += np.asarray(clip_rows_l2(Vk[:, genes], tier_clips[key]).T @ wk).ravel()
    stats = {}
    for key, clip in clips.items():
        if np.isinf(clip):  # non-private: exact means
            stats[key] = sums[key] / n[:, None]
            continue
        if tiers is None:
            noisy = _released_means(sums[key], n, sensitivity=sum_sensitivity(clip, m, neighbouring=neighbouring),
                                    rho=rho[key], name=key, upper=upper[key], denoise=denoise, ledger=ledger,
                                    rng=rng)  # fmt: skip
            stats[key] = project_mean(noisy, upper=upper[key], norm=clip)
            continue
        # tier t: the concatenation over types of each type's tier sums divided by its tier clip C_kt. A unit's
        # contribution to block k then has norm <= 1 per clipped vector, so the release has sensitivity m (or
        # m_weighted) whatever the clips; block k's noise is sigma * C_kt once scaled back
        n_tiers = len(tiers[0])
        share = rho[key] / n_tiers
        sens = sum_sensitivity(1.0, m, neighbouring=neighbouring)
        sigma = gaussian_sigma_for_rho(share, sens)
        out = np.zeros((K, d))
        for t in range(n_tiers):
            parts = [sums[key][k, tiers[k][t][0]] / tiers[k][t][1][key] for k in range(K)]
            noisy = release(np.concatenate(parts), sensitivity=sens, rho=share, ledger=ledger, rng=rng,
                            name=f"{key} (gene tier {t + 1}/{n_tiers}, per-type clips)")  # fmt: skip
            bounds = np.cumsum([0] + [p.size for p in parts])
            for k in range(K):
                genes, c = tiers[k][t][0], tiers[k][t][1][key]
                row = noisy[bounds[k] : bounds[k + 1]] * c / n[k]
                if denoise:
                    row = npmle_posterior_mean(row, sigma * c / n[k], upper=upper[key])
                out[k, genes] = project_mean(row[None, :], upper=upper[key], norm=c)[0]
        stats[key] = out
    stats["tiers"] = tiers
    stats["denominator"] = n
    stats["library"] = lib
    return released, stats


def _pilot_tiers(X, y, K, w, n, vector, *, m, neighbouring, clips, count_cap, mean_cap, ledger, rng, chunk_rows,
                 n_tiers, scale, rho):  # fmt: skip
    """Per-type gene tiers from a pilot release: per-type means of ``min(x, mean_cap)``, one L2 clip
    (``clips["mean"]``, sensitivity ``m * clip``), denoised, then :func:`~scdpsynth.generators._tiers.plan_tiers`
    per type (post-processing).
    """
    clip = clips["mean"]
    sums = np.zeros((K, X.shape[1]))
    for start, stop, block in iter_row_blocks(X, chunk_rows or CHUNK_ROWS):
        block = _check_counts_matrix(block)
        v = clip_rows_l2(vector(block, "mean"), clip)
        sums += grouped_sums(_weighted(v, None if w is None else w[start:stop]), y[start:stop], K)
    means = _released_means(sums, n, sensitivity=sum_sensitivity(clip, m, neighbouring=neighbouring), rho=rho,
                            name="pilot: per-type gene means (tiers)", upper=mean_cap, denoise=True, ledger=ledger,
                            rng=rng)  # fmt: skip
    return [plan_tiers(means[k], n_tiers, clips=clips, count_cap=count_cap, mean_cap=mean_cap, scale=scale)
            for k in range(K)]  # fmt: skip


def _released_means(sums, n, *, sensitivity, rho, name, upper, denoise, ledger, rng):
    """Gaussian release of per-type sums (``K x d``) divided by the denominators ``n``; with ``denoise`` each row is
    replaced by its empirical-Bayes posterior mean (post-processing: released values and the public noise scale).
    """
    noisy = release(sums, sensitivity=sensitivity, rho=rho, name=name, ledger=ledger, rng=rng) / n[:, None]
    if denoise:
        sigma = gaussian_sigma_for_rho(rho, sensitivity)
        noisy = np.stack([npmle_posterior_mean(noisy[k], sigma / n[k], upper=upper) for k in range(len(n))])
    return noisy


def _check_neighbouring(neighbouring: str) -> str:
    if neighbouring not in NEIGHBOURING:
        raise ValueError(f"neighbouring must be one of {NEIGHBOURING}, got {neighbouring!r}.")
    return neighbouring


def _check_counts_matrix(X) -> sparse.csr_matrix:
    X = sparse.csr_matrix(X)
    if X.nnz and (X.data.min() < 0 or not np.all(X.data == np.round(X.data))):
        raise ValueError("X must hold raw non-negative integer counts; pass the raw-count layer (layer='counts').")
    return X


def normal_scores(X, marg: CountMarginals, table: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT ``u = F(x - 1) + V (F(x) - F(x - 1))`` under ``marg`` (via its CDF ``table``), then ``Phi^-1``.

    ``X`` is dense ``(n, p)`` counts of the ``p`` genes of ``table`` (shape ``(p, L + 1)``); counts above ``L`` use
    the last column.
    """
    L = table.shape[1] - 1
    x = np.minimum(np.asarray(X, dtype=np.int64), L)
    cols = np.arange(table.shape[0])[None, :]
    hi = table[cols, x]
    lo = np.where(x > 0, table[cols, np.maximum(x - 1, 0)], 0.0)
    u = lo + rng.random(x.shape) * (hi - lo)
    return special.ndtri(np.clip(u, _U_EPS, 1.0 - _U_EPS))


def _scores_direct(X, marg: CountMarginals, rng: np.random.Generator) -> np.ndarray:
    """As :func:`normal_scores`, with the marginal CDF evaluated at the observed counts (no table)."""
    x = np.asarray(X, dtype=np.float64)
    hi, lo = marg.cdf(x), marg.cdf(x - 1.0)
    u = lo + rng.random(x.shape) * (hi - lo)
    return special.ndtri(np.clip(u, _U_EPS, 1.0 - _U_EPS))


class CopulaGenerator(BaseGenerator):
    """DP Gaussian-copula count generator with per-gene Poisson/NB/ZINB marginals (scDesign2 style).

    Parameters
    ----------
    eps, delta, random_state
        See :class:`~scdpsynth.generators.BaseGenerator`.
    unit
        ``"sample"`` (one cell; ``"cell"`` is accepted as an alias) or ``"donor"`` (needs ``donors`` in :meth:`fit`).
    n_copula_genes
        Genes per cell type modelled jointly by the copula (the top genes by released mean); others are independent.
        Default: 100 for private fits (the copula release's noise grows with the number of genes), 500 for
        non-private ones (on the Kang PBMC data, 100 -> 500 genes lowers the real-vs-synthetic discriminator AUC
        from 0.75 to 0.73 and lifts iLISI from 0.87 to 0.90; 300 genes at eps=10 lower iLISI from 0.70 to 0.56).
    max_cells_per_donor
        Donor-level cap ``m``: cells kept per donor (over all cell types); only for ``unit="donor"``.
    donor_aggregation
        ``unit="donor"`` only. ``"mean"`` (default): every release sums each donor's per-type *mean* of its clipped
        per-cell vectors (cell weights ``1 / n_dk``) and divides by the released number of donors per type, with
        sensitivity ``sqrt(min(K, m))`` clips instead of ``m`` (see :mod:`~scdpsynth.generators._contribution`):
        about ``sqrt(K)`` times less relative noise. It estimates the average donor's profile rather than the
        average cell's. ``"sum"``: plain per-type sums of the kept cells (sensitivity ``m`` clips).
    count_cap
        Per-entry cap on counts before the second moment and zero fraction are taken (limits the influence of a single
        huge count).
    mean_cap
        Per-entry cap for the mean (``None``: ``count_cap``; ``np.inf``: the L2 clip ``clip_mean`` alone bounds the
        sensitivity). A cap distorts the composition of cells (the few highest genes are cut), which normalised data
        show at once; non-private fits use no cap.
    clip_mean, clip_sq, clip_nonzero
        Per-cell L2 clipping norms of the vectors ``min(x, cap)``, ``min(x, cap)**2`` and ``1[x > 0]``. Defaults
        suit 10x PBMC-like data (~1-4k UMIs per cell); set them from domain knowledge, not from the private data.
    score_clip
        Per-cell L2 clip of the copula Gaussian scores, in units of ``sqrt(n_copula_genes)``.
    families
        Marginal families to choose from per gene.
    dispersion
        ``"zeros"``: NB size from the released mean and zero fraction (robust under DP); ``"moments"``: from the mean
        and second moment; ``"auto"`` (default): ``"moments"`` for non-private fits (exact moments), else ``"zeros"``.
        Non-private fits also skip the caps and clips (they exist only to bound sensitivities). See
        :func:`~scdpsynth.generators._count_marginals.marginals_from_moments`.
    neighbouring
        ``"add_remove"`` (default) or ``"replace"`` (doubles every sensitivity).
    weights
        Budget shares of the releases ``counts``, ``donors``, ``mean``, ``second_moment``, ``nonzero``, ``library``,
        ``copula`` and ``pilot`` (gene tiers only).
    size_factors
        Model a per-cell size factor (library size) shared by all genes; ``False`` draws genes with fixed means.
    n_size_levels
        Number of equally likely size-factor levels per cell type (quantiles of the released library histogram).
    denoise
        Empirical-Bayes posterior means for the released per-type moments and the thresholded library histogram
        (post-processing, see above). With one clip, on the simulated cohort below (donor level, eps=100) it lifts
        iLISI from 0.03 to 0.21; on Kang's 12k control PBMCs (sample level) at eps=10 from 0.709 to 0.749.
    gene_tiers
        Gene tiers per cell type for the moment releases (1: one clip for all genes). ``None`` (default): 5 for
        private fits, 1 otherwise (a public choice). iLISI, denoised one clip -> 5 tiers: simulated cohort (392
        training donors x 130 cells x 2,000 genes, donor level) eps=30 0.00 -> 0.16, eps=100 0.21 -> 0.77 (eps=10:
        0 either way); Kang's 12k control PBMCs (sample level, not tuned on) eps=1 / 10 / 100 0.016 / 0.749 / 0.795
        -> 0.206 / 0.824 / 0.834. With a large budget the top genes pay for the tiers' smaller clips (see
        ``tests/test_denoise_tiers.py``).
    tier_clip_scale
        Multiplier of the Poisson rule that sets each tier's clip from the pilot means (1.0 beat 0.5, 0.7, 1.5 and
        2.5 on the simulated cohort at eps=30 and 100).
    """

    name = "copula"
    data = "counts"
    units = ("sample", "donor")
    supports_public_reference = True
    streams_input = True

    def __init__(
        self,
        *,
        eps: float | None = None,
        delta: float = 1e-5,
        random_state=None,
        unit: str = "sample",
        n_copula_genes: int | None = None,
        max_cells_per_donor: int = 256,
        donor_aggregation: str = "mean",
        count_cap: int = 50,
        mean_cap: float | None = None,
        clip_mean: float = 150.0,
        clip_sq: float = 6000.0,
        clip_nonzero: float = 25.0,
        score_clip: float = 1.5,
        families: tuple[str, ...] = FAMILIES,
        dispersion: str = "auto",
        neighbouring: str = "add_remove",
        weights: dict | None = None,
        size_factors: bool = True,
        n_size_levels: int = 12,
        denoise: bool = True,
        gene_tiers: int | None = None,
        tier_clip_scale: float = 1.0,
    ):
        super().__init__(eps=eps, delta=delta, random_state=random_state, unit="sample" if unit == "cell" else unit)
        if int(n_size_levels) < 1:
            raise ValueError(f"n_size_levels must be >= 1, got {n_size_levels!r}.")
        self.size_factors, self.n_size_levels = bool(size_factors), int(n_size_levels)
        self.denoise = bool(denoise)
        if gene_tiers is None:  # a public default that depends only on whether the fit is private
            gene_tiers = 5 if self.private else 1
        if int(gene_tiers) < 1:
            raise ValueError(f"gene_tiers must be >= 1 (1: one clip for all genes), got {gene_tiers!r}.")
        if not tier_clip_scale > 0:
            raise ValueError(f"tier_clip_scale must be > 0, got {tier_clip_scale!r}.")
        self.gene_tiers, self.tier_clip_scale = int(gene_tiers), float(tier_clip_scale)
        if n_copula_genes is None:  # a public default that depends only on whether the fit is private
            n_copula_genes = 100 if self.private else 500
        if int(n_copula_genes) < 0:
            raise ValueError(f"n_copula_genes must be >= 0, got {n_copula_genes!r}.")
        for nm, v in (("count_cap", count_cap), ("clip_mean", clip_mean), ("clip_sq", clip_sq),
                      ("clip_nonzero", clip_nonzero), ("score_clip", score_clip)):  # fmt: skip
            if not v > 0:
                raise ValueError(f"{nm} must be > 0, got {v!r}.")
        self.n_copula_genes = int(n_copula_genes)
        self.max_cells_per_donor = int(max_cells_per_donor)
        if donor_aggregation not in ("mean", "sum"):
            raise ValueError(f"donor_aggregation must be 'mean' or 'sum', got {donor_aggregation!r}.")
        self.donor_aggregation = donor_aggregation
        self.count_cap = int(count_cap)
        self.clip_mean, self.clip_sq, self.clip_nonzero = float(clip_mean), float(clip_sq), float(clip_nonzero)
        self.score_clip = float(score_clip)
        self.families = tuple(families)
        if dispersion not in ("zeros", "moments", "auto"):
            raise ValueError(f"dispersion must be 'zeros', 'moments' or 'auto', got {dispersion!r}.")
        self.dispersion = dispersion
        if mean_cap is not None and not mean_cap > 0:
            raise ValueError(f"mean_cap must be > 0 or None, got {mean_cap!r}.")
        self.mean_cap = mean_cap
        self.neighbouring = self.ledger.neighbouring = _check_neighbouring(neighbouring)
        self.weights = {"counts": 0.05, "donors": 0.05, "mean": 0.3, "second_moment": 0.2, "nonzero": 0.15,
                        "library": 0.05, "copula": 0.25, "pilot": 0.1}  # fmt: skip
        if weights is not None:
            unknown = set(weights) - set(self.weights)
            if unknown:
                raise ValueError(f"Unknown weights {sorted(unknown)}; allowed keys: {sorted(self.weights)}.")
            self.weights.update(weights)
        bad = {k: v for k, v in self.weights.items() if not (np.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"weights must be finite numbers > 0, got {bad}; lower a share instead of zeroing it.")
        self.m_ = contribution_bound(self.unit, self.max_cells_per_donor)

    def params(self) -> dict:
        return {
            "n_copula_genes": self.n_copula_genes,
            "max_cells_per_donor": self.max_cells_per_donor if self.unit == "donor" else "None",
            "donor_aggregation": self.donor_aggregation if self.unit == "donor" else "None",
            "count_cap": self.count_cap,
            "mean_cap": "None" if self.mean_cap is None else self.mean_cap,
            "clip_mean": self.clip_mean,
            "clip_sq": self.clip_sq,
            "clip_nonzero": self.clip_nonzero,
            "score_clip": self.score_clip,
            "families": list(self.families),
            "dispersion": self.dispersion,
            "neighbouring": self.neighbouring,
            "size_factors": self.size_factors,
            "n_size_levels": self.n_size_levels,
            "denoise": self.denoise,
            "gene_tiers": self.gene_tiers,
            "tier_clip_scale": self.tier_clip_scale,
        }

    # ------------------------------------------------------------------ fitting
    def _rho(self) -> dict[str, float]:
        w = {k: v for k, v in self.weights.items() if k != "copula" or self.n_copula_genes >= 2}
        if not self.size_factors:
            w.pop("library")
        if not self._donor_means:
            w.pop("donors")
        if self.gene_tiers == 1 or self._public or not self.private:
            w.pop("pilot")
        if self._public:  # marginals and library sizes come from public reference data: nothing to release
            for k in ("mean", "second_moment", "nonzero", "library"):
                w.pop(k, None)
        if not self.private:
            return {k: np.inf for k in w}
        return {k: r * _SAFETY for k, r in self.budget.split(**w).items()}

    _public = False  # set by fit(): marginals from public reference data

    @property
    def _donor_means(self) -> bool:
        return self.unit == "donor" and self.donor_aggregation == "mean"

    def _bound(self, X, y, donors):
        """Rows kept after the donor cap (all rows for ``unit="sample"``), and the donors of the kept rows."""
        if self.unit == "donor":
            if donors is None:
                raise ValueError("unit='donor' needs donors= (integer donor codes per cell) in fit().")
            donors = np.asarray(donors)
            if donors.shape[0] != X.shape[0]:
                raise ValueError(f"donors has {donors.shape[0]} entries for {X.shape[0]} cells.")
            keep = self.rows_used(donors)  # the per-donor cap (a no-op on rows tl.generate already selected)
            self.scope.append(
                f"donor-level DP: at most {self.m_} cells per donor used (random subsample), per-cell clipping"
                + (", per-type donor means" if self._donor_means else "")
            )
            return load_rows(X, keep), y[keep], donors[keep]  # out-of-core X: only the kept rows are read
        return X, y, None

    def fit(self, X, y, *, n_classes: int, donors=None, reference=None):
        """Fit on raw counts ``X`` with labels ``y``.

        ``reference``: optional ``(X_ref, y_ref)`` of *public* raw counts with the same genes and labels (e.g. a
        public atlas of the same tissue). The marginals and library sizes are then estimated from it without noise,
        and the budget goes to what remains private: the cell-type counts (and donors per type) and the copula.
        """
        if is_in_memory(X):  # out-of-core X is checked block by block as it is read
            X = _check_counts_matrix(X)
        y = np.asarray(y, dtype=np.int64)
        self.scope = []
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} cells.")
        K, d = int(n_classes), X.shape[1]
        self.n_genes_ = d
        self._public = reference is not None
        if self._public:
            Xr, yr = _check_counts_matrix(reference[0]), np.asarray(reference[1], dtype=np.int64)
            if Xr.shape[1] != d or yr.shape[0] != Xr.shape[0]:
                raise ValueError(f"reference must be (X_ref, y_ref) with {d} genes and one label per row.")
            missing = np.setdiff1d(np.arange(K), yr)
            if missing.size:
                raise ValueError(f"reference has no cells of classes {missing.tolist()}; it needs every class.")
        rho = self._rho()
        X, y, donors = self._bound(X, y, donors)
        # donor means: cell weights 1 / n_dk and the multiplier sqrt(min(K, m)) in place of m in every sensitivity
        self._w = donor_type_weights(donors, y, K) if self._donor_means else None
        self._mult = donor_mean_multiplier(self.m_, K) if self._donor_means else self.m_
        clips = {"mean": self.clip_mean, "second_moment": self.clip_sq, "nonzero": self.clip_nonzero}
        mean_cap = self.count_cap if self.mean_cap is None else self.mean_cap
        if not self.private:
            clips, mean_cap = dict.fromkeys(clips, np.inf), np.inf
        pilot = None
        if "pilot" in rho:  # gene tiers: ranks and clips per type from a pilot release of the per-type means
            pilot = {"n_tiers": self.gene_tiers, "scale": self.tier_clip_scale, "rho": rho["pilot"]}
            self.scope.append(
                f"{self.gene_tiers} gene tiers per cell type and their clips derived from a DP pilot release of the "
                "per-type gene means"
            )
        released, st = dp_count_moments(
            X, y, K, m=self.m_, neighbouring=self.neighbouring,
            count_cap=self.count_cap if self.private else np.inf, clips={} if self._public else clips, rho=rho,
            ledger=self.ledger, rng=self.rng, mean_cap=mean_cap, cell_weights=self._w, m_weighted=self._mult,
            denoise=self.denoise, pilot=pilot,
        )  # fmt: skip
        self.tiers_ = st.pop("tiers")  # per-type [(genes, clips), ...] (None without gene tiers)
        exact = self._public or not self.private
        if self._public:  # exact moments of the public reference (no privacy needed, nothing released)
            exact_rho = dict.fromkeys(("counts", "mean", "second_moment", "nonzero"), np.inf)
            _, ref_st = dp_count_moments(Xr, yr, K, m=1, neighbouring=self.neighbouring, count_cap=np.inf,
                                         clips=dict.fromkeys(clips, np.inf), rho=exact_rho, ledger=None, rng=None,
                                         mean_cap=np.inf)  # fmt: skip
            st.update({k: v for k, v in ref_st.items() if k not in ("denominator", "library", "tiers")})
            self.scope.append(
                "public reference data (public_reference=...) supplied the per-type marginals and library sizes; "
                "the budget covers the cell-type counts and the copula"
            )
        dispersion = self.dispersion if self.dispersion != "auto" else ("moments" if exact else "zeros")
        self.class_counts_ = released  # DP per-type cell counts (of the cells kept after the donor cap)
        self.n_released_ = st.pop("denominator")  # noisy cells (or donors, for donor means) per type, >= 1
        lib = st.pop("library")  # per-cell library sizes, read with the moments
        if self.size_factors:
            if self._public:
                hist = grouped_sums(library_onehot(np.asarray(Xr.sum(axis=1), dtype=np.float64).ravel()), yr, K)
            else:
                lib_sens = sum_sensitivity(1.0, self._mult, neighbouring=self.neighbouring)
                hist = release(grouped_sums(_weighted(library_onehot(lib), self._w), y, K), sensitivity=lib_sens,
                               rho=rho["library"], name="library", ledger=self.ledger, rng=self.rng)  # fmt: skip
                if self.private and self.denoise:  # empty public bins hold only noise: zero them (post-processing)
                    hist = threshold_histogram(hist, gaussian_sigma_for_rho(rho["library"], lib_sens))
            self.size_levels_ = size_factor_levels(hist, self.n_size_levels)  # (K, L), post-processing
            # each real cell's level (for its copula scores): nearest level to its library size over the type's
            # released mean library size -- a function of the cell's own data and released statistics only
            centres = 10.0 ** (0.5 * (LIB_EDGES[:-1] + LIB_EDGES[1:]))
            p = np.maximum(hist, 0.0) + 1e-9
            mean_lib = (p * centres).sum(axis=1) / p.sum(axis=1)
            s_cell = lib / mean_lib[y]
            self._cell_level = np.argmin(np.abs(np.log(s_cell[:, None]) - np.log(self.size_levels_[y])), axis=1)
            self.scope.append("library-size bins are fixed public hyper-parameters (not data-derived)")
        else:
            self.size_levels_ = np.ones((K, 1))
            self._cell_level = np.zeros(X.shape[0], dtype=np.int64)
        self.marginals_ = marginals_from_moments(
            st["mean"], st["second_moment"], 1.0 - st["nonzero"], families=self.families, dispersion=dispersion,
            size_factors=self.size_levels_[:, None, :] if self.size_factors else None,
        )  # fmt: skip
        self.copula_genes_, self.corr_ = [], []
        p = min(self.n_copula_genes, d)
        if p >= 2:
            self._fit_copula(X, y, K, p, rho["copula"])
        else:
            self.copula_genes_ = [np.zeros(0, dtype=np.int64)] * K
            self.corr_ = [np.zeros((0, 0))] * K
        self._samplers = {}  # (type, level) -> TableSampler, built lazily (post-processing)
        self.scope.append(
            f"count_cap={self.count_cap} and clipping norms are fixed hyper-parameters (not data-derived)"
        )
        self._w = None  # per-cell weights are not kept past the fit
        self.fitted_ = True
        return self

    def _level_marginals(self, k: int, level: int, genes=None) -> CountMarginals:
        """Marginals of type ``k`` for a cell at size-factor level ``level`` (means scaled by the level)."""
        m = self.marginals_[k] if genes is None else self.marginals_[k, genes]
        return CountMarginals(m.family, m.mu * self.size_levels_[k, level], m.size, m.pi)

    def _fit_copula(self, X, y, K, p, rho):
        genes = [np.sort(np.argsort(-self.marginals_.mean[k], kind="stable")[:p]) for k in range(K)]
        clip = self.score_clip * np.sqrt(p)
        gram = np.zeros((K, p, p))
        # each type's cells on its copula genes only (n x p, read block by block: X itself is never held whole)
        parts = [[] for _ in range(K)]
        for start, _, block in iter_row_blocks(X, CHUNK_ROWS):
            yb = y[start : start + block.shape[0]]
            for k in range(K):
                parts[k].append(sparse.csr_matrix(block[yb == k])[:, genes[k]])
        for k in range(K):
            Xk = sparse.vstack(parts[k], format="csr")
            parts[k] = None
            in_k = np.flatnonzero(y == k)  # row i of Xk is cell in_k[i]
            for lv in range(self.size_levels_.shape[1]):
                sel = np.flatnonzero(self._cell_level[in_k] == lv)
                if sel.size == 0:
                    continue
                rows = in_k[sel]
                marg = self._level_marginals(k, lv, genes[k])
                Z = clip_rows_l2(_scores_direct(Xk[sel].toarray(), marg, self.rng), clip)
                gram[k] += Z.T @ (Z if self._w is None else Z * self._w[rows, None])
        gram = release(gram, sensitivity=sum_sensitivity(clip, self._mult, neighbouring=self.neighbouring, power=2),
                       rho=rho, name="copula", ledger=self.ledger, rng=self.rng, symmetric=True)  # fmt: skip
        self.copula_genes_ = genes
        self.corr_ = [nearest_correlation(gram[k] / self.n_released_[k]) for k in range(K)]

    # ------------------------------------------------------------------ sampling
    def sample(self, class_counts) -> sparse.csr_matrix:
        """Integer CSR counts, ``class_counts[k]`` cells of type ``k`` stacked in type order."""
        self._check_fitted()
        class_counts = np.asarray(class_counts, dtype=np.int64)
        blocks = []
        chunk = max(1000, min(_CHUNK, 20_000_000 // max(self.n_genes_, 1)))  # ~160 MB of uniforms per block
        for k, nk in enumerate(class_counts):
            for start in range(0, int(nk), chunk):
                blocks.append(self._sample_type(k, min(chunk, int(nk) - start)))
            # one type's CDF tables (n_size_levels of them, genes x support) can take a few hundred MB at 5,000
            # genes: keep only the current type's (at 640k x 5,000 this cut sampling's peak RSS by about 2 GB)
            self._samplers = {key: s for key, s in self._samplers.items() if key[0] != k}
        if not blocks:
            return sparse.csr_matrix((0, self.n_genes_), dtype=np.int32)
        return sparse.vstack(blocks, format="csr")

    def _sampler(self, k: int, level: int) -> TableSampler:
        if (k, level) not in self._samplers:
            self._samplers[k, level] = TableSampler(self._level_marginals(k, level))
        return self._samplers[k, level]

    def _sample_type(self, k: int, n: int) -> sparse.csr_matrix:
        g = self.copula_genes_[k]
        u = None
        if g.size >= 2:
            L = np.linalg.cholesky(self.corr_[k])
            u = special.ndtr(self.rng.standard_normal((n, g.size)) @ L.T)
        n_lv = self.size_levels_.shape[1]
        level = self.rng.integers(n_lv, size=n)  # each cell's size-factor level (equally likely)
        out = [None] * n_lv
        for lv in range(n_lv):
            rows = np.flatnonzero(level == lv)
            if u is None:
                out[lv] = self._sampler(k, lv).sample(self.rng, rows.size)
            else:
                out[lv] = self._sampler(k, lv).sample(self.rng, rows.size, fixed_cols=g, fixed_u=u[rows])
        return sparse.vstack(out, format="csr")[np.argsort(np.argsort(level, kind="stable"), kind="stable")]
