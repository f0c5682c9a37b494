"""Additive noise mechanisms and their calibration.

Every mechanism is stated for a query with a known sensitivity:

* :func:`analytic_gaussian_sigma` calibrates the Gaussian mechanism to exact (eps, delta)-DP for an L2
  sensitivity ``sensitivity`` (Balle & Wang, 2018, "Improving the Gaussian mechanism for differential privacy",
  Theorem 8), which is tighter than the classical ``sqrt(2 ln(1.25/delta)) / eps`` bound and valid for any eps > 0.
* :func:`gaussian_sigma_for_rho` calibrates the Gaussian mechanism to rho-zCDP: ``rho = sensitivity**2 / (2 sigma**2)``
  (Bun & Steinke, 2016, Proposition 1.6).
* :func:`laplace_scale` calibrates the Laplace mechanism to pure eps-DP for an L1 sensitivity.

The functions here know nothing of data: callers bound the sensitivity (clipping, normalisation, contribution caps)
and pass it in.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

__all__ = [
    "analytic_gaussian_delta",
    "analytic_gaussian_sigma",
    "classical_gaussian_sigma",
    "gaussian_sigma_for_rho",
    "laplace_scale",
    "gaussian_noise",
    "laplace_noise",
]


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return value


def analytic_gaussian_delta(sigma: float, eps: float, sensitivity: float = 1.0) -> float:
    """Exact delta of the Gaussian mechanism with noise ``sigma`` at privacy level ``eps``.

    ``delta = Phi(D/(2s) - eps*s/D) - exp(eps) * Phi(-D/(2s) - eps*s/D)`` (Balle & Wang 2018, Theorem 8).
    """
    sigma = _check_positive("sigma", sigma)
    eps = float(eps)
    sensitivity = _check_positive("sensitivity", sensitivity)
    a = sensitivity / (2.0 * sigma)
    b = eps * sigma / sensitivity
    first = special.ndtr(a - b)
    # exp(eps) * Phi(-a - b), computed in log space to avoid overflow for large eps
    second = math.exp(eps + special.log_ndtr(-a - b))
    return max(float(first - second), 0.0)


def analytic_gaussian_sigma(eps: float, delta: float, sensitivity: float = 1.0) -> float:
    """Smallest Gaussian noise standard deviation giving (eps, delta)-DP for L2 sensitivity ``sensitivity``.

    Solves ``analytic_gaussian_delta(sigma, eps, sensitivity) = delta`` by bracketing root finding; the delta of
    the mechanism decreases monotonically in sigma.
    """
    eps = _check_positive("eps", eps)
    delta = _check_positive("delta", delta)
    if delta >= 1:
        raise ValueError(f"delta must be < 1, got {delta}.")
    sensitivity = _check_positive("sensitivity", sensitivity)

    def f(log_sigma: float) -> float:
        return analytic_gaussian_delta(math.exp(log_sigma), eps, sensitivity) - delta

    lo, hi = math.log(sensitivity) - 10.0, math.log(sensitivity) + 10.0
    while f(lo) < 0:
        lo -= 10.0
    while f(hi) > 0:
        hi += 10.0
    log_sigma = optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=500)
    sigma = math.exp(log_sigma)
    # brentq may stop a hair below the root: step up until the guarantee holds exactly
    while analytic_gaussian_delta(sigma, eps, sensitivity) > delta:
        sigma *= 1.0 + 1e-12
    return sigma


def classical_gaussian_sigma(eps: float, delta: float, sensitivity: float = 1.0) -> float:
    """Classical calibration ``sqrt(2 ln(1.25/delta)) * sensitivity / eps`` (Dwork & Roth 2014, Thm. A.1; eps < 1)."""
    eps = _check_positive("eps", eps)
    delta = _check_positive("delta", delta)
    return math.sqrt(2.0 * math.log(1.25 / delta)) * _check_positive("sensitivity", sensitivity) / eps


def gaussian_sigma_for_rho(rho: float, sensitivity: float = 1.0) -> float:
    """Noise standard deviation giving rho-zCDP for L2 sensitivity ``sensitivity``: ``sigma = D / sqrt(2 rho)``."""
    rho = _check_positive("rho", rho)
    return _check_positive("sensitivity", sensitivity) / math.sqrt(2.0 * rho)


def laplace_scale(eps: float, sensitivity: float = 1.0) -> float:
    """Laplace scale ``b = sensitivity / eps`` for pure eps-DP with L1 sensitivity ``sensitivity``."""
    return _check_positive("sensitivity", sensitivity) / _check_positive("eps", eps)


def gaussian_noise(rng: np.random.Generator, sigma: float, size) -> np.ndarray:
    """Draw i.i.d. ``N(0, sigma^2)`` noise of the given shape."""
    return rng.normal(0.0, sigma, size=size)


def laplace_noise(rng: np.random.Generator, scale: float, size) -> np.ndarray:
    """Draw i.i.d. ``Laplace(0, scale)`` noise of the given shape."""
    return rng.laplace(0.0, scale, size=size)
