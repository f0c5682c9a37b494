"""How a latent standard normal shows in a gene's centred bin scores (arrays only; used by ``mst``).

A Gaussian copula couples genes through latent normals that are cut into bins by each gene's class-conditional bin
probabilities. The bin scores are a step function of the latent variable, so their cross-products understate the
latent correlation (within a class a gene may occupy only a few bins). Mehler's expansion gives the cross-products
as a power series in the latent correlation whose coefficients depend only on the bins: :func:`hermite_scales`
computes them, :func:`latent_correlation` inverts the series, :func:`latent_scales` is the first (polyserial,
Pearson-Olsson) term. Only released quantities (the DP marginals) enter: post-processing.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["hermite_scales", "latent_scales", "latent_correlation"]


def hermite_scales(cond: np.ndarray, class_counts: np.ndarray, order: int = 4) -> np.ndarray:
    """How a latent standard normal shows in the centred bin score: ``(order, d, K)`` Hermite terms.

    ``cond`` ``(d, B, K)`` holds each gene's class-conditional bin probabilities; the bins are the intervals of ``z``
    between the normal quantiles ``t_b`` of the cumulative probabilities. For latent correlation ``r`` between two
    genes, the within-class covariance of their scores is ``sum_j r^j a_j b_j / j!`` (Mehler's expansion) with
    ``a_j = E[s(z) He_j(z)] = sum_b s_b (He_{j-1}(t_{b-1}) phi(t_{b-1}) - He_{j-1}(t_b) phi(t_b))``. Entry
    ``[j - 1, g, k]`` is ``sqrt(n_k / j!) a_j``, so the score cross-products summed over classes are
    ``sum_j r^j (H_j H_j^T)_ab``. The first term alone is the polyserial (Pearson-Olsson) attenuation.
    """
    from numpy.polynomial.hermite_e import hermeval
    from scipy.special import ndtri

    cond = np.asarray(cond, dtype=float)
    d, B, K = cond.shape
    score = (2.0 * np.arange(B) - (B - 1)) / (B - 1)
    cum = np.clip(np.cumsum(cond, axis=1)[:, :-1, :], 1e-12, 1.0 - 1e-12)  # (d, B - 1, K) interior levels
    t = ndtri(cum)
    phi = np.exp(-0.5 * t**2) / math.sqrt(2.0 * math.pi)
    n_k = np.maximum(np.asarray(class_counts, dtype=float), 0.0)
    out = np.empty((order, d, K))
    for j in range(1, order + 1):
        coef = np.zeros(j)
        coef[j - 1] = 1.0  # He_{j-1}
        edge = hermeval(t, coef) * phi  # at the interior thresholds; zero at -inf and +inf
        edge = np.concatenate([np.zeros((d, 1, K)), edge, np.zeros((d, 1, K))], axis=1)
        a_j = (score[None, :, None] * (edge[:, :-1, :] - edge[:, 1:, :])).sum(1)  # (d, K)
        out[j - 1] = a_j * np.sqrt(n_k / math.factorial(j))[None, :]
    return out


def latent_scales(cond: np.ndarray, class_counts: np.ndarray) -> np.ndarray:
    """The first Hermite term of :func:`hermite_scales`, ``(d, K)``: ``sqrt(n_k) cov(s, z)`` per gene and class."""
    return hermite_scales(cond, class_counts, order=1)[0]


def latent_correlation(cross: np.ndarray, terms: np.ndarray, *, max_abs: float = 0.99, n_iter: int = 30) -> np.ndarray:
    """Solve ``sum_j r^j terms[j - 1] = cross`` for ``r`` in ``[-max_abs, max_abs]``, elementwise (Newton).

    ``terms`` ``(order, ...)`` are the per-pair Hermite products (``(H_j H_j^T)_ab`` of :func:`hermite_scales`);
    ``cross`` the within-class score cross-products of the same pairs. The polynomial is increasing on ``[-1, 1]``
    where the first term dominates (monotone bins); the result is clipped to the interval.
    """
    cross = np.asarray(cross, dtype=float)
    P1 = np.where(np.abs(terms[0]) > 1e-12, terms[0], 1e-12)
    r = np.clip(cross / P1, -max_abs, max_abs)
    powers = np.arange(1, terms.shape[0] + 1)
    for _ in range(n_iter):
        f = sum(r**p * terms[p - 1] for p in powers) - cross
        df = sum(p * r ** (p - 1) * terms[p - 1] for p in powers)
        step = f / np.where(np.abs(df) > 1e-12, df, 1e-12)
        r = np.clip(r - step, -max_abs, max_abs)
        if np.max(np.abs(step), initial=0.0) < 1e-8:
            break
    return r
