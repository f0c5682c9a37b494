"""DOMIAS: membership inference by the density ratio of synthetic to reference data.

van Breugel et al. (2023), "Membership inference attacks against synthetic data through overfitting detection",
AISTATS. A generator that overfits puts more synthetic density at its training records than the population has
there, so ``score(x) = log p_syn(x) - log p_ref(x)``. Both densities are Gaussian kernel density estimates (the
original uses a normalising flow) in the top ``n_components`` (default 100) principal components of the synthetic
data, each component scaled to unit variance in the synthetic data, with one isotropic bandwidth for both.

The bandwidth decides whether the attack sees overfitting at all: a rule of thumb such as Scott's
(``n^(-1/(k+4))`` standard deviations, about half a standard deviation here) smooths a memorised record into
its neighbours, and DOMIAS then missed an exact copy of the training data (AUROC 0.44 to 0.61). The default
chooses the bandwidth that maximises the leave-one-out likelihood of the attacker's own reference data, the scale
at which the population density is resolved, which is then small enough for a copied record to stand out.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._base import as_matrix, synthetic_pca

__all__ = ["domias", "kde_logpdf", "loo_bandwidth"]

#: bandwidth grid (in units of the synthetic standard deviation per component) searched by :func:`loo_bandwidth`
BANDWIDTH_GRID = np.exp(np.linspace(np.log(0.02), np.log(3.0), 40))


def _sq_dist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum(np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * A @ B.T, 0)


def kde_logpdf(data: np.ndarray, queries: np.ndarray, bandwidth: float, *, chunk_elements: int = 2**24) -> np.ndarray:
    """Log density at ``queries`` of an isotropic Gaussian KDE on ``data`` (n x k) with standard deviation
    ``bandwidth``: ``log(1/n sum_i N(q; x_i, h^2 I))``, in chunks of queries (memory ``O(chunk_elements)``).
    """
    data = np.asarray(data, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    h = float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth!r}.")
    k = data.shape[1]
    const = -np.log(data.shape[0]) - k * np.log(h * np.sqrt(2.0 * np.pi))
    step = max(1, chunk_elements // max(data.shape[0], 1))
    out = np.empty(queries.shape[0])
    for start in range(0, queries.shape[0], step):
        D = _sq_dist(queries[start : start + step], data)
        out[start : start + step] = logsumexp(-D / (2.0 * h * h), axis=1) + const
    return out


def loo_bandwidth(data: np.ndarray, grid=BANDWIDTH_GRID, *, max_rows: int = 2000) -> float:
    """Bandwidth of :func:`kde_logpdf` in ``grid`` maximising the leave-one-out log-likelihood of ``data``
    (the first ``max_rows`` rows; memory ``O(max_rows^2)``).
    """
    data = np.asarray(data, dtype=np.float64)[:max_rows]
    n, k = data.shape
    if n < 3:
        raise ValueError("A leave-one-out bandwidth needs at least 3 records.")
    D = _sq_dist(data, data)
    np.fill_diagonal(D, np.inf)
    ll = [
        float(np.mean(logsumexp(-D / (2.0 * h * h), axis=1)) - np.log(n - 1) - k * np.log(h * np.sqrt(2 * np.pi)))
        for h in grid
    ]
    return float(np.asarray(grid)[int(np.argmax(ll))])


def domias(
    syn, targets, *, reference, n_components: int = 100, bandwidth: float | str = "loo", random_state=0
) -> np.ndarray:
    """DOMIAS score ``log p_syn(x) - log p_ref(x)`` (higher = member).

    Parameters
    ----------
    syn
        Synthetic matrix (m x d).
    targets
        Records to score (n x d).
    reference
        Real records disjoint from the training data (m_ref x d); estimates the population density.
    n_components
        Principal components of the synthetic data the densities live in (capped at ``m - 1``), each scaled to
        unit synthetic variance. Few components let near neighbours hide a copied record: on the flu challenge
        data (17 subjects x ~15 time points, close samples per subject) an exact copy scored AUROC 0.73 with 20
        components, 0.95 with 50 and 1.0 with 100; fresh data stayed at 0.49-0.51.
    bandwidth
        ``"loo"`` (default): the leave-one-out maximum-likelihood bandwidth of the reference data
        (:func:`loo_bandwidth`); or a positive number, in units of the scaled components.
    random_state
        Unused (deterministic); accepted for a uniform interface.
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    if reference is None:
        raise ValueError("domias needs reference= real data disjoint from the training data.")
    reference = as_matrix(reference, "reference", syn.shape[1])
    if syn.shape[0] < 3 or reference.shape[0] < 3:
        raise ValueError("domias needs at least 3 synthetic and 3 reference records for the density estimates.")
    proj = synthetic_pca(syn, int(min(n_components, syn.shape[0] - 1)))
    s = proj(syn)
    scale = s.std(axis=0)
    keep = scale > 1e-12 * max(1.0, float(scale.max(initial=0.0)))
    if not keep.any():
        raise ValueError("The synthetic data have no variation; DOMIAS cannot estimate a density.")
    s, r, t = (A[:, keep] / scale[keep] for A in (s, proj(reference), proj(targets)))
    if isinstance(bandwidth, str):
        if bandwidth != "loo":
            raise ValueError(f"bandwidth must be 'loo' or a positive number, got {bandwidth!r}.")
        h = loo_bandwidth(r)
    else:
        h = float(bandwidth)
    return kde_logpdf(s, t, h) - kde_logpdf(r, t, h)
