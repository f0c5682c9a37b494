"""DP statistics the deep generators release before DP-SGD: feature standardisation and per-class scalar moments.

Every release is drawn through the fit's :class:`~scdpsynth.privacy.Ledger` (its ``gaussian`` method), so the
recorded sensitivity and noise are those of the noise in the output. A release given a zCDP share ``rho`` gets
``sigma = sensitivity / sqrt(2 rho)``. Neighbouring data sets differ by adding or removing one row. The denominators
(row count, class sizes) are DP estimates passed in by the caller (released class counts), never the exact sizes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["clipped_class_sums", "clipped_feature_sums", "dp_class_stats", "dp_feature_stats", "sigma_for_rho"]


def sigma_for_rho(sensitivity: float, rho: float) -> float:
    """Gaussian noise scale of a release with L2 ``sensitivity`` and zCDP share ``rho``: ``D / sqrt(2 rho)``."""
    return float(sensitivity) / math.sqrt(2.0 * float(rho))


def _centre(value_range) -> tuple[float, float, float, float]:
    lo, hi = float(value_range[0]), float(value_range[1])
    return lo, hi, 0.5 * (lo + hi), 0.5 * (hi - lo)


def clipped_feature_sums(X: np.ndarray, value_range) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The two sums released by :func:`dp_feature_stats` and their L2 sensitivities (add/remove one row).

    With values clipped into ``value_range`` and centred at its midpoint ``c`` (half-width ``h``), over ``d``
    features: ``S1 = sum_i (x_i - c)`` (coordinates in ``[-h, h]``, sensitivity ``h sqrt(d)``) and
    ``S2 = sum_i ((x_i - c)^2 - h^2 / 2)`` (coordinates in ``[-h^2/2, h^2/2]``, sensitivity ``h^2 sqrt(d) / 2``).
    """
    lo, hi, c, h = _centre(value_range)
    Xc = np.clip(X, lo, hi) - c
    d = X.shape[1]
    return Xc.sum(0), (Xc**2 - h**2 / 2.0).sum(0), (h * math.sqrt(d), h**2 * math.sqrt(d) / 2.0)


def dp_feature_stats(
    X: np.ndarray,
    *,
    value_range: tuple[float, float],
    rho: float | None,
    n: float,
    rng: np.random.Generator,
    ledger,
    min_std_frac: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation, with the Gaussian mechanism when ``rho`` is given.

    The two sums of :func:`clipped_feature_sums` are released through ``ledger``, each with half of the zCDP share
    ``rho``. ``n`` is the row count they are divided by: a DP estimate (e.g. the sum of the released class counts),
    never the exact count. Mean and variance follow by post-processing and are clipped into ``value_range`` and
    ``[min_std_frac * h, h]``. With ``rho=None`` (non-private) the exact mean and standard deviation of the unclipped
    data are returned (standard deviation 1 for constant features); nothing is recorded.
    """
    if rho is None:
        std = X.std(0)
        return X.mean(0), np.where(std > 0, std, 1.0)
    s1, s2, (sens1, sens2) = clipped_feature_sums(X, value_range)
    rho_each = 0.5 * float(rho)
    s1 = ledger.gaussian(
        s1, sensitivity=sens1, sigma=sigma_for_rho(sens1, rho_each), rng=rng, name="feature sums (standardisation mean)"
    )
    s2 = ledger.gaussian(
        s2,
        sensitivity=sens2,
        sigma=sigma_for_rho(sens2, rho_each),
        rng=rng,
        name="feature sums of squares (standardisation std)",
    )
    _, _, c, h = _centre(value_range)
    n = max(float(n), 1.0)
    mean = np.clip(s1 / n, -h, h)
    m2 = s2 / n + h**2 / 2.0
    std = np.sqrt(np.clip(m2 - mean**2, (min_std_frac * h) ** 2, h**2))
    return mean + c, std


def clipped_class_sums(
    v: np.ndarray, y: np.ndarray, n_classes: int, value_range
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The per-class sums released by :func:`dp_class_stats` and their L2 sensitivities (add/remove one row).

    A row adds to one class only: the vector of per-class sums of ``v - c`` (clipped into ``value_range``, centred,
    half-width ``h``) has sensitivity ``h``, the per-class sums of ``(v - c)^2 - h^2 / 2`` have ``h^2 / 2``.
    """
    lo, hi, c, h = _centre(value_range)
    vc = np.clip(v, lo, hi) - c
    s1 = np.bincount(y, weights=vc, minlength=n_classes).astype(np.float64)
    s2 = np.bincount(y, weights=vc**2 - h**2 / 2, minlength=n_classes).astype(np.float64)
    return s1, s2, (h, h**2 / 2)


def dp_class_stats(
    v: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    value_range: tuple[float, float],
    rho: float | None,
    counts,
    rng: np.random.Generator,
    ledger,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and standard deviation of a scalar ``v`` (e.g. log library size), DP via the Gaussian mechanism.

    The two per-class sums of :func:`clipped_class_sums` are released through ``ledger``, each with half of the zCDP
    share ``rho``, and divided by ``counts`` (the released DP class counts; ``max(count, 1)`` so that an empty or
    negative class gets a clipped noise value). Results are clipped into ``value_range`` and ``[0.01 h, h]``. With
    ``rho=None`` (non-private) the exact statistics of the unclipped values are returned; nothing is recorded.
    """
    if rho is None:
        exact = np.bincount(y, minlength=n_classes).astype(float)
        mean = np.bincount(y, weights=v, minlength=n_classes) / np.maximum(exact, 1)
        var = np.bincount(y, weights=(v - mean[y]) ** 2, minlength=n_classes) / np.maximum(exact, 1)
        return mean, np.sqrt(np.maximum(var, 1e-12))
    s1, s2, (sens1, sens2) = clipped_class_sums(v, y, n_classes, value_range)
    rho_each = 0.5 * float(rho)
    s1 = ledger.gaussian(
        s1, sensitivity=sens1, sigma=sigma_for_rho(sens1, rho_each), rng=rng, name=f"per-class sums of {name}"
    )
    s2 = ledger.gaussian(
        s2,
        sensitivity=sens2,
        sigma=sigma_for_rho(sens2, rho_each),
        rng=rng,
        name=f"per-class sums of squares of {name}",
    )
    _, _, c, h = _centre(value_range)
    denom = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    mean = np.clip(s1 / denom, -h, h)
    var = s2 / denom + h**2 / 2 - mean**2
    return mean + c, np.sqrt(np.clip(var, (0.01 * h) ** 2, h**2))
