"""Privacy accountants: zero-concentrated DP (zCDP) and Renyi DP (RDP) composition.

Both accountants keep a ledger of every release a generator makes and convert the composed guarantee to
(eps, delta)-DP with the conversion of Canonne, Kamath & Steinke (2020, Proposition 12) / Balle et al. (2020,
Theorem 21), which for an RDP curve ``r(alpha)`` reads::

    eps(delta) = min_alpha  r(alpha) + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)

For rho-zCDP the curve is ``r(alpha) = alpha * rho`` for every alpha > 1 and the minimum is found numerically over a
continuous alpha; the RDP accountant minimises over a fixed grid of orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .mechanisms import _check_positive

__all__ = [
    "ZCDPAccountant",
    "RDPAccountant",
    "eps_from_rdp",
    "eps_from_zcdp",
    "zcdp_from_eps",
    "DEFAULT_RDP_ORDERS",
]

DEFAULT_RDP_ORDERS = np.concatenate([np.linspace(1.01, 8, 100), np.arange(8, 64, 0.5), np.arange(64, 1025, 8.0)])


def eps_from_rdp(rdp: np.ndarray, orders: np.ndarray, delta: float) -> tuple[float, float]:
    """Convert an RDP curve to (eps, delta)-DP. Returns ``(eps, best_order)``."""
    delta = _check_positive("delta", delta)
    orders = np.asarray(orders, dtype=float)
    rdp = np.asarray(rdp, dtype=float)
    eps = rdp + np.log1p(-1.0 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1.0)
    i = int(np.nanargmin(eps))
    return max(float(eps[i]), 0.0), float(orders[i])


def eps_from_zcdp(rho: float, delta: float) -> float:
    """(eps, delta)-DP implied by rho-zCDP (Canonne, Kamath & Steinke 2020, Proposition 12)."""
    if rho == 0:
        return 0.0
    rho = _check_positive("rho", rho)
    delta = _check_positive("delta", delta)
    log_delta = math.log(delta)

    def eps_at(alpha: float) -> float:
        return alpha * rho + math.log1p(-1.0 / alpha) - (log_delta + math.log(alpha)) / (alpha - 1.0)

    # the objective is convex in alpha on (1, inf); the classical bound's optimum sqrt(log(1/delta)/rho) + 1 bounds it
    upper = max(2.0, 2.0 * (math.sqrt(-log_delta / rho) + 2.0))
    res = optimize.minimize_scalar(eps_at, bounds=(1.0 + 1e-9, upper), method="bounded", options={"xatol": 1e-10})
    best = min(float(res.fun), rho + 2.0 * math.sqrt(rho * -log_delta))
    return max(best, 0.0)


def zcdp_from_eps(eps: float, delta: float) -> float:
    """Largest rho such that rho-zCDP implies (eps, delta)-DP (inverse of :func:`eps_from_zcdp`)."""
    eps = _check_positive("eps", eps)
    delta = _check_positive("delta", delta)
    # aim a hair (1e-9 relative) below eps so that floating-point round trips (rho -> sigma -> rho, sums of shares)
    # can never push the accountant's eps above the budget
    target = eps * (1.0 - 1e-9)
    hi = eps
    while eps_from_zcdp(hi, delta) < target:
        hi *= 2.0
    rho = optimize.brentq(lambda r: eps_from_zcdp(r, delta) - target, 1e-15, hi, xtol=1e-15, rtol=1e-12)
    while eps_from_zcdp(rho, delta) > target:
        rho *= 1.0 - 1e-10
    return rho


@dataclass
class ZCDPAccountant:
    """Ledger of Gaussian releases composed under zCDP.

    Each entry records the name of the release, its L2 sensitivity, the noise standard deviation and the
    resulting ``rho = count * sensitivity**2 / (2 sigma**2)``; rho adds up under composition.
    """

    ledger: list[dict] = field(default_factory=list)

    @property
    def rho(self) -> float:
        return float(sum(e["rho"] for e in self.ledger))

    def add_gaussian(self, *, name: str, sensitivity: float, sigma: float, count: int = 1) -> float:
        """Record ``count`` Gaussian releases with the given L2 sensitivity and noise; return their rho."""
        sensitivity = _check_positive("sensitivity", sensitivity)
        sigma = _check_positive("sigma", sigma)
        rho = count * sensitivity**2 / (2.0 * sigma**2)
        self.ledger.append(
            {
                "name": name,
                "mechanism": "gaussian",
                "sensitivity": sensitivity,
                "sigma": sigma,
                "count": int(count),
                "rho": rho,
            }
        )
        return rho

    def add_rho(self, *, name: str, rho: float, mechanism: str = "zcdp") -> float:
        """Record a release already stated as rho-zCDP (e.g. eps-DP gives rho = eps**2/2)."""
        rho = float(rho)
        if rho < 0 or not math.isfinite(rho):
            raise ValueError(f"rho must be a finite number >= 0, got {rho!r}.")
        self.ledger.append({"name": name, "mechanism": mechanism, "rho": rho})
        return rho

    def get_epsilon(self, delta: float) -> float:
        return eps_from_zcdp(self.rho, delta)

    def to_dict(self, delta: float | None = None) -> dict:
        """h5ad-serialisable summary."""
        out = {
            "accountant": "zcdp",
            "rho": self.rho,
            "releases": [e["name"] for e in self.ledger],
            "release_rho": np.array([e["rho"] for e in self.ledger], dtype=float),
            "release_sigma": np.array([e.get("sigma", np.nan) for e in self.ledger], dtype=float),
            "release_sensitivity": np.array([e.get("sensitivity", np.nan) for e in self.ledger], dtype=float),
        }
        if delta is not None:
            out["eps_spent"] = self.get_epsilon(delta)
        return out


@dataclass
class RDPAccountant:
    """Renyi-DP accountant over a fixed grid of orders (Mironov 2017)."""

    orders: np.ndarray = field(default_factory=lambda: DEFAULT_RDP_ORDERS.copy())
    ledger: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.orders = np.asarray(self.orders, dtype=float)
        if np.any(self.orders <= 1):
            raise ValueError("RDP orders must all be > 1.")
        self._rdp = np.zeros_like(self.orders)

    @property
    def rdp(self) -> np.ndarray:
        return self._rdp.copy()

    def add_gaussian(self, *, name: str, sensitivity: float, sigma: float, count: int = 1) -> None:
        """Gaussian mechanism: ``r(alpha) = alpha * D**2 / (2 sigma**2)`` per release (Mironov 2017, Prop. 7)."""
        sensitivity = _check_positive("sensitivity", sensitivity)
        sigma = _check_positive("sigma", sigma)
        self._add(name, "gaussian", count * self.orders * sensitivity**2 / (2.0 * sigma**2))

    def add_laplace(self, *, name: str, sensitivity: float, scale: float, count: int = 1) -> None:
        """Laplace mechanism RDP (Mironov 2017, Proposition 6), ``lam = scale / sensitivity``."""
        lam = _check_positive("scale", scale) / _check_positive("sensitivity", sensitivity)
        a = self.orders
        with np.errstate(over="ignore"):
            terms = np.logaddexp(np.log(a / (2 * a - 1)) + (a - 1) / lam, np.log((a - 1) / (2 * a - 1)) - a / lam)
        self._add(name, "laplace", count * terms / (a - 1))

    def add_rdp(self, *, name: str, rdp: np.ndarray, mechanism: str = "rdp") -> None:
        rdp = np.asarray(rdp, dtype=float)
        if rdp.shape != self.orders.shape:
            raise ValueError(f"rdp must have one value per order ({self.orders.shape[0]}), got shape {rdp.shape}.")
        self._add(name, mechanism, rdp)

    def _add(self, name: str, mechanism: str, rdp: np.ndarray) -> None:
        self._rdp = self._rdp + rdp
        self.ledger.append({"name": name, "mechanism": mechanism})

    def get_epsilon(self, delta: float) -> float:
        return eps_from_rdp(self._rdp, self.orders, delta)[0]

    def to_dict(self, delta: float | None = None) -> dict:
        out = {"accountant": "rdp", "releases": [e["name"] for e in self.ledger]}
        if delta is not None:
            out["eps_spent"], out["best_order"] = eps_from_rdp(self._rdp, self.orders, delta)
        return out
