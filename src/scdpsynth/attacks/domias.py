"""DOMIAS: membership inference by the density ratio of synthetic to reference data.

van Breugel et al. (2023), "Membership inference attacks against synthetic data through overfitting detection",
AISTATS. A generator that overfits puts more synthetic density at its training records than the population has
there, so ``score(x) = log p_syn(x) - log p_ref(x)``. Both densities are Gaussian kernel density estimates
(Scott's bandwidth, full covariance; the original uses a normalising flow) in the top principal components of the
synthetic data, since kernel density estimation is unreliable in thousands of genes.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gaussian_kde

from ._base import as_matrix, synthetic_pca

__all__ = ["domias", "kde_logpdf"]


def kde_logpdf(data: np.ndarray, queries: np.ndarray, bw_method="scott") -> np.ndarray:
    """Log density of a Gaussian KDE (:class:`scipy.stats.gaussian_kde`) fit on ``data`` (n x k) at ``queries``."""
    cov = np.atleast_2d(np.cov(data, rowvar=False))
    if np.linalg.matrix_rank(cov) < cov.shape[0]:
        raise ValueError(
            "The projected data are degenerate (a principal component is constant); use fewer n_components."
        )
    return gaussian_kde(data.T, bw_method=bw_method).logpdf(queries.T)


def domias(syn, targets, *, reference, n_components: int = 5, bw_method="scott", random_state=0) -> np.ndarray:
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
        Principal components of the synthetic data the densities live in (capped at ``m - 1`` and the reference
        size minus 1).
    bw_method
        Bandwidth rule (``"scott"``, ``"silverman"``) or factor, as in :class:`scipy.stats.gaussian_kde`.
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
    k = int(min(n_components, syn.shape[0] - 2, reference.shape[0] - 2))
    proj = synthetic_pca(syn, k)
    s, r, t = proj(syn), proj(reference), proj(targets)
    return kde_logpdf(s, t, bw_method) - kde_logpdf(r, t, bw_method)
