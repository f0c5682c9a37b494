"""The privacy budget a generator may spend."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .ledger import mu_from_eps

__all__ = ["Budget", "DEFAULT_DELTA", "check_eps", "check_delta"]

#: the default delta: a public constant (never derived from the data's size)
DEFAULT_DELTA = 1e-5


def check_eps(eps) -> float | None:
    """Validate a user-facing ``eps``: ``None`` (non-private) or a finite number > 0 (not a string or a bool)."""
    if eps is None:
        return None
    if isinstance(eps, bool) or isinstance(eps, str | bytes) or not hasattr(eps, "__float__"):
        raise TypeError(f"eps must be a number > 0 or None (non-private), got {eps!r}.")
    eps = float(eps)
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(
            f"eps must be a finite number > 0, got {eps!r}. Use eps=None for a non-private fit; typical DP values "
            "are 0.1 to 10."
        )
    return eps


def check_delta(delta) -> float:
    """Validate ``delta``: a number in (0, 1)."""
    if isinstance(delta, bool) or isinstance(delta, str | bytes) or not hasattr(delta, "__float__"):
        raise TypeError(f"delta must be a number in (0, 1), got {delta!r}.")
    delta = float(delta)
    if not (0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}; a common choice is 1e-5 or smaller than 1/n.")
    return delta


@dataclass(frozen=True)
class Budget:
    """An (eps, delta) budget. ``eps=None`` means non-private (nothing is charged, no noise is added).

    Generators calibrate Gaussian noise to the exact (eps, delta) curve of the Gaussian mechanism: :attr:`mu` is the
    largest GDP parameter that gives (eps, delta)-DP, and Gaussian releases with ``sum_i (D_i / sigma_i)^2 <= mu^2``
    compose to exactly that (see :mod:`scdpsynth.privacy.ledger`). :attr:`rho` ``= mu^2 / 2`` is the same budget in
    zCDP units (``sigma = D / sqrt(2 rho_i)`` per release, shares of ``rho`` add up), and :meth:`split` hands out
    shares of it.
    """

    eps: float | None
    delta: float = DEFAULT_DELTA

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps))
        object.__setattr__(self, "delta", check_delta(self.delta))

    @property
    def private(self) -> bool:
        return self.eps is not None

    @property
    def mu(self) -> float:
        if self.eps is None:
            return math.inf
        return mu_from_eps(self.eps, self.delta)

    @property
    def rho(self) -> float:
        return self.mu**2 / 2.0

    def split(self, **weights: float) -> dict[str, float]:
        """Split :attr:`rho` in proportion to ``weights`` (rho adds up under composition of Gaussian releases)."""
        if not weights:
            raise ValueError("split() needs at least one named weight.")
        if any(w <= 0 or not math.isfinite(w) for w in weights.values()):
            raise ValueError(f"split weights must be finite and > 0, got {weights}.")
        total = sum(weights.values())
        rho = self.rho
        shares = {k: rho * w / total for k, w in weights.items()}
        # floating-point rounding must never make the composed shares exceed the budget
        while sum(shares.values()) > rho:
            shares = {k: v * (1.0 - 1e-12) for k, v in shares.items()}
        return shares
