"""A latent factor copula from one DP release of the bin-score Gram matrix (arrays only; used by ``mst``).

A tree holds ``d - 1`` direct gene-gene dependencies, so co-expression modules (dozens of genes that rise and fall
together) keep only path products of their correlations. The factor model keeps them: the within-class correlation
of the genes' centred bin scores is estimated from one Gaussian release of ``sum_i v_i v_i^T`` (the strict upper
triangle; ``v`` are each record's bin scores scaled by a public constant and norm-clipped), its top eigen-components
above the noise edge become the loadings ``L`` of ``z = L f + sqrt(1 - h) e`` (``f`` standard normal factors,
``h = diag(L L^T)`` the communalities), and the sampler maps ``z`` to bins through the class-conditional CDFs as the
tree does. How a latent correlation shows in binned scores (the attenuation this corrects) is in
:mod:`~scdpsynth.generators._latent`.

Two kinds of record scores (:data:`GRAM_SCORES`): ``"bins"``, the centred bin scores in ``[-1, 1]`` clipped to a
public radius, and ``"binary"``, the signs of each gene's median split of the bins divided by ``sqrt(d)``. Binary rows
all have norm exactly 1, so nothing is clipped and the noise is sized for the radius every record uses. The bin
scores' public radius needs slack over their expected norm, and the norms vary: on the bulk sets (500 genes, 8 DP
bins) the median record's norm is 0.71-0.76 of the radius (0-3.5 % of records clipped), so the noise is sized for a
squared norm about 1.8x what most records have. For equal bins of a normal variable, the first Hermite term per gene
and unit squared radius is ``(2 phi(0))^2 = 0.64`` for binary scores against ``0.40 / 0.67 = 0.59`` for 8 bins at the
1.25 slack. Binary scores carry less detail about strong correlations, which matters only without noise.

Privacy: ``||triu(v v^T, 1)||_F = sqrt((||v||^4 - sum v^4) / 2) <= ||v||^2 / sqrt(2) <= 1 / sqrt(2)`` when
``||v|| <= 1``, which the clipping (or the binary scaling) guarantees whatever the data. Everything after the
release (class means, within variances from the DP marginals, eigen-decomposition, the number of factors) is
post-processing.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "GRAM_SCORES",
    "score_clip",
    "clipped_scores",
    "binary_scores",
    "score_gram",
    "collapse_to_halves",
    "within_cross_products",
    "factor_loadings",
]

#: the per-record scores behind the Gram: centred bin scores (clipped), or the sign of the median split
GRAM_SCORES = ("bins", "binary")
#: clip radius over the expected score norm of uniformly occupied bins (public; few records exceed it)
CLIP_SLACK = 1.25
#: communalities are capped here, so every gene keeps some unique variance
MAX_COMMUNALITY = 0.98


def score_clip(n_genes: int, n_bins: int) -> float:
    """Public clip radius for a record's score vector: ``1.25 sqrt(d E[s^2])``, ``E[s^2] = (B + 1) / (3 (B - 1))``.

    ``E[s^2]`` is the mean squared centred score of ``B`` equally occupied bins (DP quantile bins are about that).
    """
    return CLIP_SLACK * math.sqrt(n_genes * (n_bins + 1) / (3.0 * (n_bins - 1)))


def clipped_scores(codes: np.ndarray, n_bins: int, clip: float) -> np.ndarray:
    """Centred bin scores ``s`` in ``[-1, 1]`` divided by ``max(||s||, clip)``: rows of norm at most 1."""
    s = (2.0 * np.asarray(codes, dtype=float) - (n_bins - 1)) / (n_bins - 1)
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    return s / np.maximum(norm, clip)


def binary_scores(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Signs of the median split of the bins, ``+1`` for the upper ``n_bins - n_bins // 2`` bins and ``-1`` below,
    divided by ``sqrt(d)``: every row has norm exactly 1, so nothing is clipped.
    """
    codes = np.asarray(codes)
    return np.where(codes >= n_bins // 2, 1.0, -1.0) / math.sqrt(codes.shape[1])


def collapse_to_halves(cond: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin probabilities ``(d, n_bins, K)`` summed into the two halves of :func:`binary_scores`: ``(d, 2, K)``."""
    half = n_bins // 2
    return np.stack([cond[:, :half].sum(1), cond[:, half:].sum(1)], axis=1)


def score_gram(codes: np.ndarray, n_bins: int, clip: float, scores: str = "bins") -> np.ndarray:
    """The released statistic: strict upper triangle of ``sum_i v_i v_i^T`` (``v``: :func:`clipped_scores` with
    radius ``clip``, or :func:`binary_scores`, whose radius is ``sqrt(d)`` and ``clip`` unused).
    """
    v = binary_scores(codes, n_bins) if scores == "binary" else clipped_scores(codes, n_bins, clip)
    return np.triu(v.T @ v, 1)


def within_cross_products(
    gram: np.ndarray, clip: float, class_means: np.ndarray, class_counts: np.ndarray
) -> np.ndarray:
    """Within-class score cross-products from the (noisy) upper-triangular score Gram; post-processing.

    ``clip^2 (G + G^T)`` estimates ``sum_i s_i s_i^T`` off the diagonal (exactly, for records inside the clip);
    subtracting ``sum_k n_k mu_k mu_k^T`` (``class_means`` ``(d, K)`` of the scores) leaves the within-class
    cross-products. The diagonal is zero (not released).
    """
    G = np.triu(gram, 1)
    M = clip**2 * (G + G.T)
    n_k = np.maximum(np.asarray(class_counts, dtype=float), 0.0)
    M -= (class_means * n_k[None, :]) @ class_means.T
    np.fill_diagonal(M, 0.0)
    return M


def factor_loadings(
    M: np.ndarray, scales: np.ndarray, *, noise_sd: float, n: float, max_factors: int, n_iter: int = 30
) -> np.ndarray:
    """Loadings ``(d, k)`` of the latent factor model behind the within-class score cross-products ``M``.

    ``M_ab`` is about ``r_ab a_a a_b`` off the diagonal for latent correlation ``r`` (``a_g = ||scales_g||``,
    :func:`~scdpsynth.generators._latent.latent_scales`), with Gaussian noise of standard deviation ``noise_sd`` on
    every entry; its diagonal is not used. The number of factors ``k`` (at most ``max_factors``) counts the eigenvalues
    of the zero-diagonal ``M`` above both edges: the DP noise edge ``2 sigma sqrt(d) (1 + d^(-2/3))`` (the spectral norm
    of a symmetric matrix of independent ``N(0, sigma^2)`` entries, plus two Tracy-Widom scales) and the sampling edge
    ``((1 + sqrt(d / n))^2 - 1) median(a^2)`` of independent genes' sample cross-products. The loadings come from
    iterated principal-axis factoring: the diagonal is replaced by the communalities of the rank-``k`` fit until they
    settle, with kept eigenvalues shrunk to the spike ``l`` with ``l + sigma^2 d / l`` equal to them (spiked Wigner
    model). Communalities are capped at :data:`MAX_COMMUNALITY` (in latent units).
    """
    from scipy.linalg import eigh

    d = M.shape[0]
    a2 = np.maximum((np.asarray(scales, dtype=float) ** 2).sum(1), 1e-12)
    W = np.array(M, dtype=float)
    np.fill_diagonal(W, 0.0)
    sigma = float(noise_sd)
    dp_edge = 2.0 * sigma * math.sqrt(d) * (1.0 + d ** (-2.0 / 3.0))
    sampling_edge = ((1.0 + math.sqrt(d / max(n, 1.0))) ** 2 - 1.0) * float(np.median(a2))
    vals = np.linalg.eigvalsh(W)
    k = int(min(max_factors, np.sum(vals > max(dp_edge, sampling_edge))))
    if k == 0:
        return np.zeros((d, 0))
    h = np.zeros(d)
    for _ in range(n_iter):
        np.fill_diagonal(W, h)
        vals, vecs = eigh(W, subset_by_index=[d - k, d - 1])  # the top k only
        lam, V = vals[::-1], vecs[:, ::-1]
        if sigma > 0:
            lam = 0.5 * (lam + np.sqrt(np.maximum(lam**2 - 4.0 * sigma**2 * d, 0.0)))
        lam = np.maximum(lam, 0.0)
        h_new = np.minimum((V**2 * lam).sum(1), MAX_COMMUNALITY * a2)
        if np.max(np.abs(h_new - h) / a2) < 1e-4:
            h = h_new
            break
        h = h_new
    L = V * np.sqrt(lam) / np.sqrt(a2)[:, None]  # latent correlation units
    hl = (L**2).sum(1)
    scale = np.where(hl > MAX_COMMUNALITY, np.sqrt(MAX_COMMUNALITY / np.maximum(hl, 1e-12)), 1.0)
    return L * scale[:, None]
