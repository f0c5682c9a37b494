"""Preservation of differentially expressed genes (pairwise Wilcoxon rank-sum tests between classes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from ._base import EvalData, cached, tidy

__all__ = ["pairwise_ranksum", "de_masks", "de_genes"]


def pairwise_ranksum(
    X: np.ndarray, y: np.ndarray, n_classes: int, *, max_block: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) tests of every class pair, for all genes at once.

    Equivalent to ``scipy.stats.mannwhitneyu(X[y == a], X[y == b], method="asymptotic", use_continuity=True)``
    (normal approximation with tie correction and continuity correction) for every pair ``a < b``, but each gene
    is sorted once for all pairs: with ``M_b(i)`` = number of class-``b`` values below ``x_i`` plus half the
    number equal to it, ``U_ab = sum_{i in a} M_b(i)``; the tie term ``sum (t^3 - t)`` over the tie groups of
    ``a u b`` follows from the per-group class counts ``D_c`` as ``sum (D_a + D_b)^3 - n_a - n_b``. Genes with all
    values tied (zero variance) get p = 1.

    Parameters
    ----------
    X
        ``n x d`` data.
    y
        Integer class codes in ``[0, n_classes)``.
    n_classes
        Number of classes (classes without samples give p = 1).
    max_block
        Upper bound on ``n_classes * n * genes`` processed per block (memory).

    Returns
    -------
    ``U`` and ``p``: arrays ``(n_classes, n_classes, d)``; ``U[a, b]`` is the U statistic of ``a`` against ``b``
    (``U[a, b] > n_a n_b / 2`` means ``a`` tends to be higher), ``p[a, b] = p[b, a]`` the two-sided p-value
    (NaN on the diagonal).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n, d = X.shape
    C = int(n_classes)
    nc = np.bincount(y, minlength=C).astype(np.float64)
    U = np.empty((C, C, d))
    P = np.empty((C, C, d))  # P[a, b] = sum over tie groups of D_a^2 D_b
    step = max(1, int(max_block // max(1, C * n)))
    for g0 in range(0, d, step):
        Xc = X[:, g0 : g0 + step]
        G = Xc.shape[1]
        order = np.argsort(Xc, axis=0, kind="stable")
        Xs = np.take_along_axis(Xc, order, axis=0)
        L = y[order]
        new = np.ones((n, G), dtype=bool)  # first element of a tie group
        new[1:] = Xs[1:] != Xs[:-1]
        last = np.ones((n, G), dtype=bool)  # last element of a tie group
        last[:-1] = new[1:]
        below = np.empty((C, n, G), dtype=np.int32)  # class-c values strictly below each element
        D = np.empty((C, n, G), dtype=np.int32)  # class-c values in each element's tie group
        d_self = np.zeros((n, G), dtype=np.int32)  # D of the element's own class
        for c in range(C):
            is_c = L == c
            incl = np.cumsum(is_c, axis=0, dtype=np.int32)
            # counts are non-decreasing along the sort, so the group-start value propagates by a running max
            np.maximum.accumulate(np.where(new, incl - is_c, 0), axis=0, out=below[c])
            upto = np.minimum.accumulate(np.where(last, incl, n)[::-1], axis=0)[::-1]
            np.subtract(upto, below[c], out=D[c])
            np.copyto(d_self, D[c], where=is_c)
        key = (L * G + np.arange(G)).ravel()
        for b in range(C):
            w_u = (below[b] + 0.5 * D[b]).ravel()
            U[:, b, g0 : g0 + G] = np.bincount(key, weights=w_u, minlength=C * G).reshape(C, G)
            w_p = (d_self.astype(np.float64) * D[b]).ravel()  # float: D_a * D_b can exceed int32
            P[:, b, g0 : g0 + G] = np.bincount(key, weights=w_p, minlength=C * G).reshape(C, G)
    diagP = np.einsum("aag->ag", P)
    na, nb = nc[:, None, None], nc[None, :, None]
    N = na + nb
    ties = diagP[:, None, :] + diagP[None, :, :] + 3 * (P + P.transpose(1, 0, 2)) - N
    with np.errstate(divide="ignore", invalid="ignore"):
        var = na * nb / 12.0 * ((N + 1) - ties / (N * (N - 1)))
        mu = na * nb / 2.0
        z = (np.maximum(U, na * nb - U) - mu - 0.5) / np.sqrt(var)
        p = np.clip(2.0 * special.ndtr(-z), 0.0, 1.0)
    p[~(var > 0)] = 1.0
    idx = np.arange(C)
    p[idx, idx] = np.nan
    return U, p


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along the last axis."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1) * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1]
    out = np.empty_like(p)
    np.put_along_axis(out, order, np.minimum(ranked, 1.0), axis=-1)
    return out


def de_masks(X: np.ndarray, y: np.ndarray, n_classes: int, *, alpha: float = 0.05, correction: str | None = None):
    """Up- and down-regulated genes of every class pair: boolean arrays ``(n_classes, n_classes, d)``.

    ``up[a, b, g]`` is True when gene ``g`` is significantly (``p <= alpha``) higher in ``a`` than in ``b``;
    ``down[a, b] = up[b, a]``. ``correction="bh"`` applies Benjamini-Hochberg over genes per pair.
    """
    U, p = pairwise_ranksum(X, y, n_classes)
    if correction == "bh":
        p = _bh(np.nan_to_num(p, nan=1.0))
    elif correction is not None:
        raise ValueError(f"correction must be None or 'bh', got {correction!r}.")
    nc = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    mu = (nc[:, None] * nc[None, :] / 2.0)[..., None]
    sig = p <= alpha
    return sig & (U > mu), sig & (U < mu)


def _rates(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    n_true = truth.sum()
    n_false = truth.size - n_true
    tpr = (truth & pred).sum() / n_true if n_true else np.nan
    fpr = (~truth & pred).sum() / n_false if n_false else np.nan
    return float(tpr), float(fpr)


def de_genes(
    real: EvalData,
    syn: EvalData,
    *,
    holdout: EvalData | None = None,
    alpha: float = 0.05,
    correction: str | None = None,
) -> pd.DataFrame:
    """DE-gene preservation: TPR and FPR of the synthetic DE genes against the real ones (TPR up, FPR down).

    For every pair of classes ``(a, b)``, genes are tested with a two-sided Wilcoxon rank-sum test
    (:func:`pairwise_ranksum`) in the real training data and in the synthetic data; a gene is DE "up" if
    ``p <= alpha`` and higher in ``a``, "down" if ``p <= alpha`` and lower. Per pair and direction,
    ``TPR = |syn DE & real DE| / |real DE|`` and ``FPR = |syn DE & not real DE| / |not real DE|``. Rows
    ``tpr``/``fpr`` (``group="all"``) are the means over pairs and directions (undefined rates, e.g. no real DE
    gene, are left out of the mean); per-pair rows have ``group="<a> vs <b>"`` and variants ``tpr_up``,
    ``tpr_down``, ``fpr_up``, ``fpr_down``. The ``reference`` is the same rate for the real holdout (NaN without
    one); :func:`scdpsynth.tl.evaluate` replaces it by the rate of a real holdout sample as large as the synthetic
    set (test power grows with the sample size, so a smaller reference would flatter the synthetic data). A class
    missing in the synthetic data gives no synthetic DE genes for its pairs.
    """
    if real.y is None or syn.y is None:
        raise ValueError("de_genes needs class labels for real and synthetic data. Pass groupby= to tl.evaluate.")
    C = len(real.classes) if real.classes else int(max(real.y.max(), syn.y.max())) + 1
    if C < 2:
        raise ValueError("de_genes needs at least two classes.")
    names = real.classes or [str(c) for c in range(C)]
    r_up, r_down = cached(
        real,
        ("de_genes:masks", C, alpha, correction),
        lambda: de_masks(real.X, real.y, C, alpha=alpha, correction=correction),
    )
    s_up, s_down = de_masks(syn.X, syn.y, C, alpha=alpha, correction=correction)
    h_up = h_down = None
    if holdout is not None and holdout.y is not None:
        h_up, h_down = de_masks(holdout.X, holdout.y, C, alpha=alpha, correction=correction)
    rows, per = [], {"tpr": ([], []), "fpr": ([], [])}
    for a in range(C):
        for b in range(a + 1, C):
            group = f"{names[a]} vs {names[b]}"
            for direction, R, S, H in (("up", r_up, s_up, h_up), ("down", r_down, s_down, h_down)):
                tpr, fpr = _rates(R[a, b], S[a, b])
                ref_tpr, ref_fpr = _rates(R[a, b], H[a, b]) if H is not None else (np.nan, np.nan)
                for kind, v, r in (("tpr", tpr, ref_tpr), ("fpr", fpr, ref_fpr)):
                    rows.append({"variant": f"{kind}_{direction}", "group": group, "value": v, "reference": r})
                    per[kind][0].append(v)
                    per[kind][1].append(r)
    summary = [
        {"variant": kind, "group": "all", "value": _nanmean(v), "reference": _nanmean(r)}
        for kind, (v, r) in per.items()
    ]
    out = tidy([{"metric": "de_genes", **row} for row in summary + rows])
    return out


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else np.nan
