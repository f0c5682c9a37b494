"""Preprocessing shared by the CAMDA metrics (AnnData-free re-implementations of the scanpy steps the kit uses).

The CAMDA Health Privacy Challenge kit (PMBio/Health-Privacy-Challenge, ``src/evaluation``) prepares every pair of
(real, synthetic) cell sets the same way: drop cells with fewer than 10 counts and genes detected in fewer than 3
cells (each set on its own), keep the shared genes, concatenate, ``normalize_total(1e4)`` + ``log1p``, and select
5,000 highly variable genes with scanpy's ``flavor="seurat"`` on the combined data. The discriminator also runs
ComBat with the source (real / synthetic) as batch. This module re-implements those steps on arrays so the metric
core needs neither AnnData nor scanpy; the tests check them against scanpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from .._transforms import TARGET_SUM

__all__ = ["CamdaPair", "combat", "filter_cells_genes", "prepare_pair", "seurat_hvg"]


def _csr(X) -> sparse.csr_matrix:
    return X.tocsr() if sparse.issparse(X) else sparse.csr_matrix(np.asarray(X))


def is_counts(X) -> bool:
    """True if ``X`` holds non-negative integers (raw counts)."""
    v = X.data if sparse.issparse(X) else np.asarray(X)
    return bool(v.size == 0 or (np.isfinite(v).all() and v.min() >= 0 and np.all(v == np.round(v))))


def filter_cells_genes(X, *, min_counts: int = 10, min_cells: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Rows with at least ``min_counts`` total counts, then columns non-zero in at least ``min_cells`` of those rows.

    The order of scanpy's ``filter_cells(min_counts=)`` followed by ``filter_genes(min_cells=)``. Returns the kept
    row and column indices.
    """
    X = _csr(X)
    rows = np.flatnonzero(np.asarray(X.sum(axis=1)).ravel() >= min_counts)
    sub = X[rows]
    detected = np.bincount(sub.indices[sub.data != 0], minlength=X.shape[1])
    cols = np.flatnonzero(detected >= min_cells)
    return rows, cols


def _normalise(X, target_sum: float = TARGET_SUM) -> sparse.csr_matrix:
    """Counts scaled to ``target_sum`` per row (empty rows stay 0), sparse float64."""
    X = _csr(X).astype(np.float64)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return sparse.csr_matrix(sparse.diags(scale) @ X)


def seurat_hvg(norm, n_top_genes: int = 5000, n_bins: int = 20) -> np.ndarray:
    """Boolean mask of scanpy's ``highly_variable_genes(flavor="seurat", n_top_genes=...)``.

    ``norm`` holds the *normalised, un-logged* values (``expm1`` of log1p data, as scanpy computes it), as one
    matrix or a list of row blocks (the rows of all blocks together; nothing is stacked). Per gene:
    mean and variance (ddof=1); dispersion ``var / mean`` (log, zero dispersion -> NaN); genes binned by
    ``log1p(mean)`` into ``n_bins`` equal-width bins; dispersions z-scored within their bin (a bin holding one gene:
    mean 0, sd = its dispersion, as scanpy does); the ``n_top_genes`` highest normalised dispersions are kept
    (all genes with a finite one if there are fewer).
    """
    parts = [_csr(m) for m in (norm if isinstance(norm, list | tuple) else [norm])]  # row blocks, never stacked
    for i, m in enumerate(parts):
        if not m.has_canonical_format:  # duplicate entries would square wrongly below
            parts[i] = m.copy()
            parts[i].sum_duplicates()
    n = sum(m.shape[0] for m in parts)
    mean = sum(np.asarray(m.sum(axis=0)).ravel() for m in parts) / n
    sq = sum(np.bincount(m.indices, weights=m.data.astype(np.float64) ** 2, minlength=m.shape[1]) for m in parts) / n
    var = (sq - mean**2) * (n / max(n - 1, 1))
    mean[mean == 0] = 1e-12
    disp = var / mean
    disp[disp == 0] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.log(disp)
    df = pd.DataFrame({"means": np.log1p(mean), "dispersions": disp})
    df["mean_bin"] = pd.cut(df["means"], bins=n_bins)
    stats = df.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    single = stats["dev"].isnull()
    stats.loc[single, "dev"] = stats.loc[single, "avg"]
    stats.loc[single, "avg"] = 0
    per_gene = stats.loc[df["mean_bin"]]
    dnorm = (df["dispersions"].to_numpy() - per_gene["avg"].to_numpy()) / per_gene["dev"].to_numpy()
    finite = dnorm[~np.isnan(dnorm)]
    if finite.size == 0:
        return np.zeros(norm.shape[1], dtype=bool)
    k = min(int(n_top_genes), finite.size)
    cutoff = np.sort(finite)[::-1][k - 1]
    return np.nan_to_num(dnorm, nan=-np.inf) >= cutoff


@dataclass
class CamdaPair:
    """A (real, other) pair after the kit's preprocessing: dense log-normalised HVG matrices and kept rows."""

    real: np.ndarray  # (n_real_kept, n_hvg) float32, log1p(normalize_total 1e4), HVG columns
    other: np.ndarray  # (n_other_kept, n_hvg)
    real_rows: np.ndarray  # indices into the real input kept by the cell filter
    other_rows: np.ndarray
    genes: np.ndarray  # column indices into the input gene axis (shared genes, then HVGs)
    real_counts: sparse.csr_matrix | None = None  # raw counts on the HVGs (for the kit's raw-count MMD)
    other_counts: sparse.csr_matrix | None = None


def _dense_log(norm: sparse.csr_matrix, cols: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """log1p of the ``cols`` columns of a sparse matrix, densified in row chunks (never the full gene axis)."""
    out = np.empty((norm.shape[0], cols.size), dtype=np.float32)
    sub = norm[:, cols]
    for s in range(0, sub.shape[0], chunk):
        out[s : s + chunk] = np.log1p(sub[s : s + chunk].toarray())
    return out


def prepare_pair(
    real,
    other,
    *,
    n_hvgs: int = 5000,
    min_counts: int = 10,
    min_cells: int = 3,
    counts: bool = True,
) -> CamdaPair:
    """The kit's preprocessing of a (real, other) pair of cell x gene matrices with the same gene axis.

    ``counts=True`` (raw counts): filter cells/genes on each set, intersect genes, normalise to 1e4 per cell and
    log1p, HVGs (seurat, ``n_hvgs``) on the combined cells. ``counts=False`` (data already on a log scale, e.g.
    microarray): no filtering or normalisation; HVGs are chosen on ``expm1`` of the combined values the same way.
    """
    real, other = _csr(real), _csr(other)
    if real.shape[1] != other.shape[1]:
        raise ValueError(f"real and other have different numbers of genes ({real.shape[1]} vs {other.shape[1]}).")
    if counts:
        rr, cr = filter_cells_genes(real, min_counts=min_counts, min_cells=min_cells)
        ro, co = filter_cells_genes(other, min_counts=min_counts, min_cells=min_cells)
        shared = np.intersect1d(cr, co)
    else:
        rr, ro, shared = np.arange(real.shape[0]), np.arange(other.shape[0]), np.arange(real.shape[1])
    if rr.size < 2 or ro.size < 2 or shared.size < 2:
        raise ValueError(
            f"After filtering (cells >= {min_counts} counts, genes in >= {min_cells} cells) too little is left: "
            f"{rr.size} real cells, {ro.size} other cells, {shared.size} shared genes."
        )
    Rc, Oc = real[rr][:, shared], other[ro][:, shared]
    if counts:
        Rn, On = _normalise(Rc), _normalise(Oc)
    else:
        Rn = sparse.csr_matrix(np.expm1(Rc.toarray()))
        On = sparse.csr_matrix(np.expm1(Oc.toarray()))
    hvg = np.flatnonzero(seurat_hvg([Rn, On], n_top_genes=n_hvgs))
    if counts:
        Xr, Xo = _dense_log(Rn, hvg), _dense_log(On, hvg)
        rcounts, ocounts = Rc[:, hvg], Oc[:, hvg]
    else:
        Xr, Xo = Rc[:, hvg].toarray().astype(np.float32), Oc[:, hvg].toarray().astype(np.float32)
        rcounts = ocounts = None
    return CamdaPair(Xr, Xo, rr, ro, shared[hvg], rcounts, ocounts)


def combat(
    X: np.ndarray, batch: np.ndarray, *, tol: float = 1e-4, max_iter: int = 1000, chunk: int = 8192,
    inplace: bool = False,
) -> np.ndarray:  # fmt: skip
    """ComBat batch correction (Johnson et al. 2007, parametric empirical Bayes), as scanpy's ``pp.combat``.

    ``X`` is cells x genes, ``batch`` the batch label per cell; no other covariates. Genes are standardised by the
    pooled within-batch variance around the size-weighted grand mean, per-batch location/scale are shrunk towards
    their across-gene priors (normal prior on the means, inverse-gamma on the variances, fixed-point iteration to
    relative change < ``tol``, NaN stopping early as in scanpy), removed, and the data put back on the gene's
    scale. Genes with zero pooled variance enter the priors with standardised value 0 (as scanpy); entries that come
    out non-finite are returned unchanged.

    The per-batch moments of the standardised data have closed forms, so the data are read in float64 row blocks of
    ``chunk`` cells (twice for the moments, once for the output) and never copied whole; the result keeps a float32
    input's dtype (100,000 cells x 5,000 genes: 2 GB, where scanpy's float64 temporaries need about 20).
    ``inplace=True`` writes the result into ``X`` (a float32 or float64 array) and returns it.
    """
    X = np.asarray(X)
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    codes, uniq = pd.factorize(np.asarray(batch))
    nb, (n, g) = uniq.size, X.shape
    if nb < 2:
        return X.astype(dtype, copy=True)
    n_b = np.bincount(codes, minlength=nb).astype(np.float64)
    members = [np.flatnonzero(codes == b) for b in range(nb)]

    def blocks(rows):  # float64 row blocks: memory stays near one copy of X in its own dtype
        for s in range(0, rows.size, chunk):
            yield rows[s : s + chunk], X[rows[s : s + chunk]].astype(np.float64)

    beta = np.stack([sum(B.sum(axis=0) for _, B in blocks(r)) / r.size for r in members])  # per-batch gene means
    ss = np.stack([sum(((B - beta[b]) ** 2).sum(axis=0) for _, B in blocks(r)) for b, r in enumerate(members)])
    grand = (n_b / n) @ beta
    var_pooled = ss.sum(axis=0) / n
    sd = np.sqrt(var_pooled)
    zero = var_pooled == 0
    safe = np.where(zero, 1.0, sd)
    # standardised data S = (X - grand) / sd (0 for constant genes); its per-batch mean and variance in closed form
    gamma_hat = np.where(zero, 0.0, (beta - grand) / safe)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta_hat = np.where(zero, 0.0, ss / (n_b[:, None] - 1.0) / safe**2)
    gamma_bar = gamma_hat.mean(axis=1)
    t2 = gamma_hat.var(axis=1)  # ddof=0 over genes, as scanpy
    m, s2 = delta_hat.mean(axis=1), delta_hat.var(axis=1, ddof=1)
    a_prior = (2 * s2 + m**2) / s2
    b_prior = (m * s2 + m**3) / s2
    gamma_star, delta_star = np.empty_like(gamma_hat), np.empty_like(delta_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in range(nb):
            nbb = n_b[b]
            g_old, d_old = gamma_hat[b].copy(), delta_hat[b].copy()
            for _ in range(max_iter):
                g_new = (t2[b] * nbb * gamma_hat[b] + d_old * gamma_bar[b]) / (t2[b] * nbb + d_old)
                ssq = (nbb - 1.0) * delta_hat[b] + nbb * (gamma_hat[b] - g_new) ** 2  # sum over the batch of (S - g)^2
                d_new = (0.5 * ssq + b_prior[b]) / (nbb / 2.0 + a_prior[b] - 1.0)
                # relative change as scanpy computes it (signed denominator; a NaN ends the loop, as there)
                change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
                g_old, d_old = g_new, d_new
                if not change > tol:
                    break
            gamma_star[b], delta_star[b] = g_old, d_old
        if inplace and X.dtype != dtype:
            raise ValueError(f"inplace=True needs a float32 or float64 array, got {X.dtype}.")
        out = X if inplace else np.empty((n, g), dtype=dtype)
        for b, r in enumerate(members):  # each block is read before it is overwritten, so inplace is safe
            for rows, B in blocks(r):
                S = np.where(zero, 0.0, (B - grand) / safe)
                adj = ((S - gamma_star[b]) / np.sqrt(delta_star[b])) * sd + grand
                out[rows] = np.where(np.isfinite(adj), adj, B)
    return out
