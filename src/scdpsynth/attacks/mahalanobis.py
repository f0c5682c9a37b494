"""Mahalanobis attack under a shadow Gaussian copula (MAMA-MIA style).

Golob et al. (2024), "Privacy vulnerabilities in marginals-based synthetic data" (MAMA-MIA) fit a shadow model of
the generator to the released synthetic data and score targets by its density. Here the shadow model is a
Gaussian copula fitted to the synthetic data:

1. each gene's empirical CDF ``F_j`` from the synthetic records, with mid-ranks for ties (zeros of count data)
   ``F_j(x) = (#{s < x} + #{s == x} / 2 + 1/2) / (m + 1)``, maps a record to normal scores
   ``z_j = Phi^-1(F_j(x_j))``;
2. the correlation of the normal scores is estimated with Ledoit-Wolf shrinkage (well conditioned when genes
   outnumber records);
3. without auxiliary data the score is minus the squared Mahalanobis distance ``z^T Sigma^-1 z`` (records where the
   shadow model is dense); with auxiliary reference data a second copula is fitted to it and the score is the
   log-density ratio of the two copulas, ``(d2_ref - d2_syn + logdet_ref - logdet_syn) / 2``, which discounts
   records that are merely typical of the population.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, special
from sklearn.covariance import LedoitWolf

from ._base import as_matrix

__all__ = ["GaussianCopula", "mahalanobis", "mahalanobis_ref"]


@dataclass
class GaussianCopula:
    """Gaussian copula with empirical marginals: sorted marginal samples and the Cholesky factor of the shrunk
    normal-score covariance.
    """

    sorted_cols: np.ndarray
    chol: np.ndarray
    logdet: float

    @classmethod
    def fit(cls, X: np.ndarray) -> GaussianCopula:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] < 2:
            raise ValueError("A Gaussian copula needs at least 2 records.")
        sorted_cols = np.sort(X, axis=0)
        Z = _normal_scores(sorted_cols, X)
        cov = LedoitWolf(assume_centered=True, store_precision=False).fit(Z).covariance_
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(
                "The shrunk normal-score covariance is singular; the data have too little variation."
            ) from None
        return cls(sorted_cols=sorted_cols, chol=chol, logdet=float(2.0 * np.log(np.diag(chol)).sum()))

    def normal_scores(self, X: np.ndarray) -> np.ndarray:
        return _normal_scores(self.sorted_cols, X)

    def sq_mahalanobis(self, X: np.ndarray) -> np.ndarray:
        W = linalg.solve_triangular(self.chol, self.normal_scores(X).T, lower=True)
        return np.sum(W * W, axis=0)


def _normal_scores(sorted_cols: np.ndarray, X: np.ndarray) -> np.ndarray:
    m = sorted_cols.shape[0]
    U = np.empty(X.shape, dtype=np.float64)
    for j in range(X.shape[1]):
        lo = np.searchsorted(sorted_cols[:, j], X[:, j], side="left")
        hi = np.searchsorted(sorted_cols[:, j], X[:, j], side="right")
        U[:, j] = (lo + 0.5 * (hi - lo) + 0.5) / (m + 1)
    return special.ndtri(U)


def _genes(syn: np.ndarray, n_genes: int | None) -> np.ndarray:
    if n_genes is None or n_genes >= syn.shape[1]:
        return np.arange(syn.shape[1])
    if not isinstance(n_genes, int | np.integer) or n_genes < 1:
        raise ValueError(f"n_genes must be a positive integer or None, got {n_genes!r}.")
    return np.sort(np.argsort(-syn.var(axis=0), kind="stable")[:n_genes])


def mahalanobis(syn, targets, *, reference=None, n_genes: int | None = 500, random_state=0) -> np.ndarray:
    """Minus the squared Mahalanobis distance of each target under a Gaussian copula fitted to ``syn``.

    Parameters
    ----------
    syn
        Synthetic matrix (m x d).
    targets
        Records to score (n x d).
    reference
        Ignored (this variant uses no auxiliary data; see :func:`mahalanobis_ref`).
    n_genes
        Use the ``n_genes`` genes most variable in the synthetic data (``None``: all genes).
    random_state
        Unused (deterministic).
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    genes = _genes(syn, n_genes)
    return -GaussianCopula.fit(syn[:, genes]).sq_mahalanobis(targets[:, genes])


def mahalanobis_ref(syn, targets, *, reference, n_genes: int | None = 1000, random_state=0) -> np.ndarray:
    """Log-density ratio of Gaussian copulas fitted to ``syn`` and to real ``reference`` data.

    Parameters
    ----------
    syn, targets, random_state
        As in :func:`mahalanobis`.
    n_genes
        Genes most variable in the synthetic data (``None``: all). More than for :func:`mahalanobis`: the
        reference copula's own noise hides the synthetic copula's overfit to copied records unless the copula has
        about as many genes as records (an exact copy of 778 Kang training cells: AUROC 0.66 with 200 genes, 0.86
        with 500, 1.0 with 1,000).
    reference
        Real records disjoint from the training data (m_ref x d).
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    if reference is None:
        raise ValueError("mahalanobis_ref needs reference= real data disjoint from the training data.")
    reference = as_matrix(reference, "reference", syn.shape[1])
    genes = _genes(syn, n_genes)
    cs = GaussianCopula.fit(syn[:, genes])
    cr = GaussianCopula.fit(reference[:, genes])
    t = targets[:, genes]
    return 0.5 * (cr.sq_mahalanobis(t) - cs.sq_mahalanobis(t) + cr.logdet - cs.logdet)
