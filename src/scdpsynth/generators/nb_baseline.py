"""The CAMDA Health Privacy Challenge's own baseline generator: per cell type, independent per-gene NB/Poisson draws.

A *reference floor*, not a private generator: it fits exact (non-private) moments and exists so that benchmarks can
show how far a model is above the challenge's baseline. It accepts only ``eps=None``.

Model (the kit's ``NegativeBinomialGenerator``): within each cell type, every gene is drawn independently with the
training mean ``m`` and variance ``v``: Poisson(``m``) where ``v <= m``, else a negative binomial with dispersion
``(v - m) / m^2`` clipped to ``[1e-3, 10]`` (NB size ``1 / dispersion``). No library-size model, no gene-gene
dependence.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._base import BaseGenerator
from .copula import _CHUNK, _check_counts_matrix

__all__ = ["NBBaseline"]


class NBBaseline(BaseGenerator):
    """CAMDA baseline (reference floor, **non-private only**): independent per-type, per-gene NB/Poisson counts.

    Parameters
    ----------
    eps
        Must be ``None``: the baseline fits exact moments and has no privacy guarantee.
    delta, random_state
        See :class:`~scdpsynth.generators.BaseGenerator`.
    min_dispersion, max_dispersion
        Clip of the NB dispersion ``(var - mean) / mean^2`` (the kit's ``[1e-3, 10]``).
    """

    name = "nb_baseline"
    data = "counts"
    units = ("sample",)

    def __init__(self, *, eps: float | None = None, delta: float = 1e-5, random_state=None, unit: str = "sample",
                 min_dispersion: float = 1e-3, max_dispersion: float = 10.0):  # fmt: skip
        if eps is not None:
            raise ValueError(
                "nb_baseline is the CAMDA challenge's non-private reference floor; it needs eps=None. "
                "Use method='copula' or 'vine_nmf' for differentially private count data."
            )
        super().__init__(eps=None, delta=delta, random_state=random_state, unit=unit)
        if not 0 < min_dispersion <= max_dispersion:
            raise ValueError(f"need 0 < min_dispersion <= max_dispersion, got {min_dispersion}, {max_dispersion}.")
        self.min_dispersion, self.max_dispersion = float(min_dispersion), float(max_dispersion)

    def params(self) -> dict:
        return {"min_dispersion": self.min_dispersion, "max_dispersion": self.max_dispersion}

    def fit(self, X, y, *, n_classes: int, donors=None):
        X = _check_counts_matrix(X).astype(np.float64)
        y = np.asarray(y, dtype=np.int64)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} cells.")
        K = int(n_classes)
        self.n_genes_ = X.shape[1]
        counts = np.bincount(y, minlength=K).astype(np.float64)
        self.class_counts_ = counts  # exact: non-private
        ind = sparse.csr_matrix((np.ones(y.size), (y, np.arange(y.size))), shape=(K, y.size))
        n = np.maximum(counts, 1.0)[:, None]
        mean = np.asarray((ind @ X).toarray()) / n
        var = np.asarray((ind @ X.multiply(X)).toarray()) / n - mean**2
        self.mean_ = mean
        self.poisson_ = var <= mean
        disp = np.clip((var - mean) / np.maximum(mean, 1e-12) ** 2, self.min_dispersion, self.max_dispersion)
        self.size_ = 1.0 / disp
        self.scope = ["reference floor: exact per-type means and variances of the training data"]
        self.fitted_ = True
        return self

    def sample(self, class_counts) -> sparse.csr_matrix:
        """Integer CSR counts, ``class_counts[k]`` cells of type ``k`` stacked in type order."""
        self._check_fitted()
        blocks = []
        for k, nk in enumerate(np.asarray(class_counts, dtype=np.int64)):
            mu, size, pois = self.mean_[k], self.size_[k], self.poisson_[k]
            for start in range(0, int(nk), _CHUNK):
                m = min(_CHUNK, int(nk) - start)
                gam = self.rng.gamma(np.broadcast_to(size, (m, mu.size)), 1.0) * (mu / size)
                rate = np.where(pois, mu, gam)
                blocks.append(sparse.csr_matrix(self.rng.poisson(rate).astype(np.int64)))
        if not blocks:
            return sparse.csr_matrix((0, self.n_genes_), dtype=np.int64)
        return sparse.vstack(blocks, format="csr")
