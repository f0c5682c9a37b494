"""RON-Gauss: random orthonormal projection with a DP Gaussian model per class.

Chanyaswad, Liu & Mittal (2019), "RON-Gauss: Enhancing utility in non-interactive private data release", PoPETs;
applied per class (the supervised "GMM" variant) as in the DP gene-expression benchmark this package follows.

For each class ``c`` with ``n_c`` records:

1. **Scale** each gene to ``[0, 1]`` with bounds ``(lo, hi)`` (public: user-given, or the observed range, which is then
   listed in the privacy scope) and clip.
2. **Normalise** each record ``u_i`` to unit L2 norm, ``v_i = u_i / ||u_i||``. All ``v_i`` lie on the unit sphere in the
   non-negative orthant, so ``||v_i - v_j|| <= sqrt(2)``.
3. **DP mean** ``mu = mean(v_i) + N(0, s^2 I)``; L2 sensitivity under replacing one record ``sqrt(2) / n_c``.
4. **Re-centre** ``v_i - mu`` and **project** with a data-independent random orthonormal matrix ``W`` (p x d):
   ``w_i = W (v_i - mu)``; then **re-normalise** ``y_i = w_i / ||w_i||``.
5. **DP covariance** ``S = mean(y_i y_i^T)`` plus symmetric Gaussian noise on its upper triangle (diagonal included);
   ``||y y^T - y' y'^T||_F <= sqrt(2)`` for unit vectors, so the L2 sensitivity of the upper triangle is
   ``sqrt(2) / n_c``. The noisy matrix is projected onto the PSD cone (negative eigenvalues set to 0).
6. **DP scales** for the way back: the mean record norm ``||u_i||`` (clipped to ``[0, sqrt(d)]``, sensitivity
   ``sqrt(d) / n_c``) and the mean projected norm ``||w_i||`` (clipped to ``[0, 1 + ||mu||]``, sensitivity
   ``(1 + ||mu||) / n_c``).
7. **Sample** ``z ~ N(0, S)``, **back-project** ``v = mu + r W^T z``, rescale by the mean norm, undo the gene scaling
   and clip to the bounds.

Privacy: the four releases of a class compose under zCDP; classes hold disjoint records and class sizes are public,
so classes compose in parallel (the spent budget is that of one class). Neighbouring data sets differ in the
expression values of one record.
"""

from __future__ import annotations

import math

import numpy as np

from ..privacy import gaussian_sigma_for_rho
from ._base import BaseGenerator

__all__ = ["RONGauss", "mean_direction", "projected_statistics", "random_orthonormal", "sensitivities"]

_SHARES = {"mean": 0.35, "covariance": 0.45, "record_norm": 0.1, "projected_norm": 0.1}


def random_orthonormal(d: int, p: int, rng: np.random.Generator) -> np.ndarray:
    """A p x d matrix with orthonormal rows, uniformly distributed (QR of a Gaussian matrix with sign fix)."""
    if not 1 <= p <= d:
        raise ValueError(f"n_components must be between 1 and the number of genes ({d}), got {p}.")
    q, r = np.linalg.qr(rng.standard_normal((d, p)))
    q *= np.sign(np.diag(r))
    return q.T


def _psd(S: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((S + S.T) / 2)
    return (vecs * np.clip(vals, 0, None)) @ vecs.T


def _unit_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(A, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return A / safe[:, None], norms


def mean_direction(U: np.ndarray) -> np.ndarray:
    """Exact mean of the unit-normalised records (release 3, before noise)."""
    return _unit_rows(U)[0].mean(axis=0)


def projected_statistics(U: np.ndarray, mu: np.ndarray, W: np.ndarray) -> dict:
    """Exact statistics released after the (already noisy) mean ``mu`` (releases 5 and 6, before noise)."""
    V, norms_u = _unit_rows(U)
    Y, norms_w = _unit_rows((V - mu) @ W.T)
    d = U.shape[1]
    return {
        "covariance": Y.T @ Y / U.shape[0],
        "record_norm": float(np.clip(norms_u, 0, math.sqrt(d)).mean()),
        "projected_norm": float(np.clip(norms_w, 0, 1.0 + float(np.linalg.norm(mu))).mean()),
    }


def sensitivities(n_c: int, d: int, mu: np.ndarray) -> dict[str, float]:
    """L2 sensitivities of the four releases of a class of ``n_c`` records under replacing one record."""
    return {
        "mean": math.sqrt(2) / n_c,
        "covariance": math.sqrt(2) / n_c,
        "record_norm": math.sqrt(d) / n_c,
        "projected_norm": (1.0 + float(np.linalg.norm(mu))) / n_c,
    }


class RONGauss(BaseGenerator):
    """RON-Gauss generator (see the module docstring for the algorithm and its sensitivities).

    Parameters
    ----------
    eps, delta, random_state, unit
        See :class:`~scdpsynth.generators.BaseGenerator`.
    n_components
        Dimension ``p`` of the random orthonormal projection (capped at the number of genes).
    bounds
        ``"data"`` (per-gene observed min/max, treated as public and stated in the privacy scope) or a pair
        ``(lo, hi)`` of scalars or per-gene arrays known independently of the data (e.g. ``(0, 16)`` for log2
        microarray intensities), which costs no privacy.
    """

    name = "ron_gauss"
    data = "continuous"

    def __init__(self, *, n_components: int = 10, bounds="data", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n_components, int | np.integer) or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
        self.n_components = int(n_components)
        if not (isinstance(bounds, str) and bounds == "data") and not (
            isinstance(bounds, tuple | list) and len(bounds) == 2
        ):
            raise ValueError(f"bounds must be 'data' or a (lo, hi) pair, got {bounds!r}.")
        self.bounds = bounds

    def params(self) -> dict:
        bounds = "data" if isinstance(self.bounds, str) else "given"
        return {"n_components": self.n_components, "bounds": bounds, "budget_shares": dict(_SHARES)}

    def _bounds(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = X.shape[1]
        if isinstance(self.bounds, str):
            lo, hi = X.min(axis=0), X.max(axis=0)
            self.scope.append("per-gene minimum and maximum of the real data treated as public (bounds='data')")
        else:
            lo = np.broadcast_to(np.asarray(self.bounds[0], dtype=float), (d,)).copy()
            hi = np.broadcast_to(np.asarray(self.bounds[1], dtype=float), (d,)).copy()
            if np.any(hi < lo):
                raise ValueError("bounds: every hi must be >= lo.")
        return lo, hi

    def fit(self, X, y, *, n_classes: int, donors=None):
        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be 2-D with one row per label; got X {X.shape}, y {y.shape}.")
        d = X.shape[1]
        p = min(self.n_components, d)
        self.lo_, self.hi_ = self._bounds(X)
        span = np.where(self.hi_ > self.lo_, self.hi_ - self.lo_, 1.0)
        U = np.clip((X - self.lo_) / span, 0.0, 1.0)
        self.W_ = random_orthonormal(d, p, self.rng)
        rho = self.budget.split(**_SHARES) if self.private else None

        self.classes_ = []
        sens_max = dict.fromkeys(_SHARES, 0.0)
        for c in range(n_classes):
            Uc = U[y == c]
            if Uc.shape[0] == 0:
                raise ValueError(f"class {c} has no records; drop empty classes before fitting.")
            mu = mean_direction(Uc)
            sens = sensitivities(Uc.shape[0], d, mu)  # the mean's sensitivity does not depend on mu
            if self.private:
                mu = mu + self.rng.normal(0, gaussian_sigma_for_rho(rho["mean"], sens["mean"]), d)
                sens = sensitivities(Uc.shape[0], d, mu)
            stats = projected_statistics(Uc, mu, self.W_)
            S, s_mean, r_mean = stats["covariance"], stats["record_norm"], stats["projected_norm"]
            if self.private:
                iu = np.triu_indices(p)
                noise = np.zeros((p, p))
                noise[iu] = self.rng.normal(
                    0, gaussian_sigma_for_rho(rho["covariance"], sens["covariance"]), len(iu[0])
                )
                S = S + noise + np.triu(noise, 1).T
                s_mean += self.rng.normal(0, gaussian_sigma_for_rho(rho["record_norm"], sens["record_norm"]))
                r_mean += self.rng.normal(0, gaussian_sigma_for_rho(rho["projected_norm"], sens["projected_norm"]))
            for k in sens_max:
                sens_max[k] = max(sens_max[k], sens[k])
            self.classes_.append(
                {
                    "mu": mu,
                    "cov": _psd(S),
                    "record_norm": float(np.clip(s_mean, 0, math.sqrt(d))),
                    "projected_norm": float(np.clip(r_mean, 0, 1.0 + float(np.linalg.norm(mu)))),
                }
            )
        if self.private:
            for k, share in rho.items():
                # every class spends the same rho on disjoint records: parallel composition, so charged once
                self.accountant.add_gaussian(
                    name=f"{k} (per class, parallel over {n_classes} classes)",
                    sensitivity=sens_max[k],
                    sigma=gaussian_sigma_for_rho(share, sens_max[k]),
                )
        self.fitted_ = True
        return self

    def sample(self, class_counts) -> np.ndarray:
        self._check_fitted()
        class_counts = np.asarray(class_counts, dtype=np.int64)
        if class_counts.shape != (len(self.classes_),) or np.any(class_counts < 0):
            raise ValueError(f"class_counts must be {len(self.classes_)} non-negative integers, got {class_counts}.")
        span = np.where(self.hi_ > self.lo_, self.hi_ - self.lo_, 1.0)
        out = []
        for m, params in zip(class_counts, self.classes_, strict=True):
            p = params["cov"].shape[0]
            Z = self.rng.multivariate_normal(np.zeros(p), params["cov"], size=int(m), method="eigh")
            V = params["mu"] + params["projected_norm"] * (Z @ self.W_)
            U = np.clip(V * params["record_norm"], 0.0, 1.0)
            out.append(self.lo_ + U * span)
        return np.vstack(out) if out else np.empty((0, self.W_.shape[1]))
