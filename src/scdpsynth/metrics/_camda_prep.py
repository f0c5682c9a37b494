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

    ``norm`` holds the *normalised, un-logged* values (``expm1`` of log1p data, as scanpy computes it). Per gene:
    mean and variance (ddof=1); dispersion ``var / mean`` (log, zero dispersion -> NaN); genes binned by
    ``log1p(mean)`` into ``n_bins`` equal-width bins; dispersions z-scored within their bin (a bin holding one gene:
    mean 0, sd = its dispersion, as scanpy does); the ``n_top_genes`` highest normalised dispersions are kept
    (all genes with a finite one if there are fewer).
    """
    norm = _csr(norm)
    n = norm.shape[0]
    mean = np.asarray(norm.mean(axis=0)).ravel()
    sq = np.asarray(norm.multiply(norm).mean(axis=0)).ravel()
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
    hvg = np.flatnonzero(seurat_hvg(sparse.vstack([Rn, On]).tocsr(), n_top_genes=n_hvgs))
    if counts:
        Xr, Xo = _dense_log(Rn, hvg), _dense_log(On, hvg)
        rcounts, ocounts = Rc[:, hvg], Oc[:, hvg]
    else:
        Xr, Xo = Rc[:, hvg].toarray().astype(np.float32), Oc[:, hvg].toarray().astype(np.float32)
        rcounts = ocounts = None
    return CamdaPair(Xr, Xo, rr, ro, shared[hvg], rcounts, ocounts)


def combat(X: np.ndarray, batch: np.ndarray, *, tol: float = 1e-4, max_iter: int = 1000) -> np.ndarray:
    """ComBat batch correction (Johnson et al. 2007, parametric empirical Bayes), as scanpy's ``pp.combat``.

    ``X`` is cells x genes, ``batch`` the batch label per cell; no other covariates. Genes are standardised by the
    pooled within-batch variance around the size-weighted grand mean, per-batch location/scale are shrunk towards
    their across-gene priors (normal prior on the means, inverse-gamma on the variances, fixed-point iteration to
    relative change < ``tol``, NaN stopping early as in scanpy), removed, and the data put back on the gene's
    scale. Genes with zero pooled variance enter the priors with standardised value 0 (as scanpy); entries that come
    out non-finite are returned unchanged.
    """
    X = np.asarray(X, dtype=np.float64)
    codes, uniq = pd.factorize(np.asarray(batch))
    nb = uniq.size
    if nb < 2:
        return X.copy()
    design = np.eye(nb)[codes]
    n_b = design.sum(axis=0)
    beta = np.linalg.lstsq(design, X, rcond=None)[0]  # per-batch gene means
    grand = (n_b / X.shape[0]) @ beta
    var_pooled = ((X - design @ beta) ** 2).mean(axis=0)
    sd = np.sqrt(var_pooled)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.where(var_pooled == 0, 0.0, (X - grand) / sd)
    gamma_hat = np.stack([S[codes == b].mean(axis=0) for b in range(nb)])
    delta_hat = np.stack([S[codes == b].var(axis=0, ddof=1) for b in range(nb)])
    gamma_bar = gamma_hat.mean(axis=1)
    t2 = gamma_hat.var(axis=1)  # ddof=0 over genes, as scanpy
    m, s2 = delta_hat.mean(axis=1), delta_hat.var(axis=1, ddof=1)
    a_prior = (2 * s2 + m**2) / s2
    b_prior = (m * s2 + m**3) / s2
    gamma_star, delta_star = np.empty_like(gamma_hat), np.empty_like(delta_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in range(nb):
            Sb, nbb = S[codes == b], n_b[b]
            g_old, d_old = gamma_hat[b].copy(), delta_hat[b].copy()
            for _ in range(max_iter):
                g_new = (t2[b] * nbb * gamma_hat[b] + d_old * gamma_bar[b]) / (t2[b] * nbb + d_old)
                ssq = ((Sb - g_new) ** 2).sum(axis=0)
                d_new = (0.5 * ssq + b_prior[b]) / (nbb / 2.0 + a_prior[b] - 1.0)
                # relative change as scanpy computes it (signed denominator; a NaN ends the loop, as there)
                change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
                g_old, d_old = g_new, d_new
                if not change > tol:
                    break
            gamma_star[b], delta_star[b] = g_old, d_old
        adj = (S - gamma_star[codes]) / np.sqrt(delta_star[codes])
    out = adj * sd + grand
    return np.where(np.isfinite(out), out, X)
