"""RON-Gauss: random orthonormal projection with a DP Gaussian model per class.

Chanyaswad, Liu & Mittal (2019), "RON-Gauss: Enhancing utility in non-interactive private data release", PoPETs;
applied per class (the supervised "GMM" variant) as in the DP gene-expression benchmark this package follows.

For each class ``c`` (add/remove-one neighbouring: one record added or removed):

1. **Scale** each gene to ``[0, 1]`` with public bounds ``(lo, hi)`` (default :data:`DEFAULT_BOUNDS`, or user-given
   scalars or per-gene arrays known independently of the data) and clip.
2. **Normalise** each record ``u_i`` to unit L2 norm, ``v_i = u_i / ||u_i||``.
3. **DP count** of every class (one release of the class-count vector, sensitivity 1): the noisy ``n_c`` divides
   the noisy sums below and sizes the synthetic classes.
4. **DP mean direction** ``mu = (sum_c v_i + N(0, s^2 I)) / n_c``: the sum of unit vectors has L2 sensitivity 1;
   ``mu`` is projected into the unit ball (post-processing).
5. **Re-centre** ``v_i - mu`` and **project** with a data-independent random orthonormal matrix ``W`` (p x d):
   ``w_i = W (v_i - mu)``; then **re-normalise** ``y_i = w_i / ||w_i||``.
6. **DP covariance** ``S = sum_c y_i y_i^T / n_c`` with symmetric Gaussian noise on the upper triangle of the sum
   (diagonal included): ``||y y^T||_F = 1`` for a unit vector, so the L2 sensitivity is 1. The noisy matrix is
   projected onto the PSD cone (negative eigenvalues set to 0).
7. **DP scales** for the way back: the sums of the record norms ``||u_i||`` (clipped to ``[0, sqrt(d)]``,
   sensitivity ``sqrt(d)``) and of the projected norms ``||w_i||`` (clipped to ``[0, 2]``, since
   ``||v_i - mu|| <= 1 + ||mu|| <= 2``; sensitivity 2), divided by the noisy ``n_c``.
8. **Sample** ``z ~ N(0, S)``, **back-project** ``v = mu + r W^T z``, rescale by the mean norm, undo the gene scaling
   and clip to the bounds.

Privacy: one record lies in one class, so the releases of different classes compose in parallel (the ledger charges
the worst class once); the class counts are one more release. Nothing about the data's size leaves unpaid.

"""

from __future__ import annotations

import math

import numpy as np

from ..privacy import gaussian_sigma_for_rho
from ._base import BaseGenerator
from ._bounds import DEFAULT_BOUNDS, check_bounds, warn_clipped

__all__ = ["RONGauss", "direction_sum", "projected_sums", "random_orthonormal", "sensitivities"]

_SHARES = {"class_counts": 0.05, "mean": 0.35, "covariance": 0.4, "record_norm": 0.1, "projected_norm": 0.1}
#: upper clip of the projected norms ``||W (v_i - mu)||`` (``||v_i|| = 1`` and ``||mu|| <= 1``)
_MAX_PROJECTED_NORM = 2.0


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
    """Rows scaled to unit L2 norm (rows of norm below 1e-12 become zero: dividing by a subnormal norm is inexact
    and could leave a norm above 1, breaking the sensitivity bound), and the original norms.
    """
    norms = np.linalg.norm(A, axis=1)
    tiny = norms <= 1e-12
    return np.where(tiny[:, None], 0.0, A) / np.where(tiny, 1.0, norms)[:, None], norms


def direction_sum(U: np.ndarray) -> np.ndarray:
    """Exact sum of the unit-normalised records (release 4, before noise)."""
    return _unit_rows(U)[0].sum(axis=0)


def projected_sums(U: np.ndarray, mu: np.ndarray, W: np.ndarray) -> dict:
    """Exact sums released after the (already noisy) mean ``mu`` (releases 6 and 7, before noise)."""
    V, norms_u = _unit_rows(U)
    Y, norms_w = _unit_rows((V - mu) @ W.T)
    d = U.shape[1]
    return {
        "covariance": Y.T @ Y,
        "record_norm": float(np.clip(norms_u, 0, math.sqrt(d)).sum()),
        "projected_norm": float(np.clip(norms_w, 0, _MAX_PROJECTED_NORM).sum()),
    }


def sensitivities(d: int) -> dict[str, float]:
    """L2 sensitivities of the releases of a class under adding or removing one record (independent of its size)."""
    return {"class_counts": 1.0, "mean": 1.0, "covariance": 1.0, "record_norm": math.sqrt(d),
            "projected_norm": _MAX_PROJECTED_NORM}  # fmt: skip


class RONGauss(BaseGenerator):
    """RON-Gauss generator (see the module docstring for the algorithm and its sensitivities).

    Parameters
    ----------
    eps, delta, random_state, unit
        See :class:`~scdpsynth.generators.BaseGenerator`.
    n_components
        Dimension ``p`` of the random orthonormal projection (capped at the number of genes).
    bounds
        Public ``(lo, hi)``: scalars or per-gene arrays known independently of the data; default
        :data:`~scdpsynth.generators._bounds.DEFAULT_BOUNDS` ``(0, 16)`` (log2 intensities, log1p counts).
        ``"data"`` (an explicit opt-in, listed in the privacy scope) uses the observed per-gene minimum and maximum.
    """

    name = "ron_gauss"
    data = "continuous"

    def __init__(self, *, n_components: int = 10, bounds=DEFAULT_BOUNDS, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n_components, int | np.integer) or n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
        self.n_components = int(n_components)
        if isinstance(bounds, str):
            if bounds != "data":
                raise ValueError(f"bounds must be a public (lo, hi) pair or 'data', got {bounds!r}.")
        elif not (isinstance(bounds, tuple | list) and len(bounds) == 2):
            raise ValueError(f"bounds must be a public (lo, hi) pair or 'data', got {bounds!r}.")
        elif np.ndim(bounds[0]) == 0 and np.ndim(bounds[1]) == 0:
            bounds = check_bounds(bounds)
        self.bounds = bounds

    def params(self) -> dict:
        if isinstance(self.bounds, str):
            bounds = "data"
        elif np.ndim(self.bounds[0]) == 0 and np.ndim(self.bounds[1]) == 0:
            bounds = [float(self.bounds[0]), float(self.bounds[1])]
        else:
            bounds = "given per gene"
        return {"n_components": self.n_components, "bounds": bounds, "budget_shares": dict(_SHARES)}

    def _bounds(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = X.shape[1]
        if isinstance(self.bounds, str):
            lo, hi = X.min(axis=0), X.max(axis=0)
            if self.private:
                self.scope.append("per-gene minimum and maximum of the real data treated as public (bounds='data')")
        else:
            lo = np.broadcast_to(np.asarray(self.bounds[0], dtype=float), (d,)).copy()
            hi = np.broadcast_to(np.asarray(self.bounds[1], dtype=float), (d,)).copy()
            if np.any(hi < lo):
                raise ValueError("bounds: every hi must be >= lo.")
            if self.private:
                warn_clipped(X, (lo, hi), "bounds")
        return lo, hi

    def fit(self, X, y, *, n_classes: int, donors=None):
        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be 2-D with one row per label; got X {X.shape}, y {y.shape}.")
        d = X.shape[1]
        p = min(self.n_components, d)
        self.scope = []
        self.lo_, self.hi_ = self._bounds(X)
        span = np.where(self.hi_ > self.lo_, self.hi_ - self.lo_, 1.0)
        U = np.clip((X - self.lo_) / span, 0.0, 1.0)
        self.W_ = random_orthonormal(d, p, self.rng)
        rho = self.budget.split(**_SHARES) if self.private else None
        sens = sensitivities(d)

        def noisy(values, key, c, symmetric=False):
            if not self.private:
                return np.asarray(values, dtype=float)
            sigma = gaussian_sigma_for_rho(rho[key], sens[key])
            return self.ledger.gaussian(values, sensitivity=sens[key], sigma=sigma, rng=self.rng, name=key,
                                        symmetric=symmetric, partition=("class", c))  # fmt: skip

        n_hat = self._release_class_counts(y, n_classes, rho["class_counts"] if self.private else math.inf)
        n_hat = np.maximum(n_hat, 1.0)
        self.classes_ = []
        for c in range(n_classes):
            Uc = U[y == c]
            mu = noisy(direction_sum(Uc), "mean", c) / n_hat[c]
            mu = mu / max(1.0, float(np.linalg.norm(mu)))  # the true mean lies in the unit ball
            sums = projected_sums(Uc, mu, self.W_)
            S = noisy(sums["covariance"], "covariance", c, symmetric=True) / n_hat[c]
            s_mean = float(noisy(sums["record_norm"], "record_norm", c)) / n_hat[c]
            r_mean = float(noisy(sums["projected_norm"], "projected_norm", c)) / n_hat[c]
            self.classes_.append(
                {
                    "mu": mu,
                    "cov": _psd(S),
                    "record_norm": float(np.clip(s_mean, 0, math.sqrt(d))),
                    "projected_norm": float(np.clip(r_mean, 0, _MAX_PROJECTED_NORM)),
                }
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
