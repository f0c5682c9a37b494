"""The privacy budget a generator may spend."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .accountants import zcdp_from_eps

__all__ = ["Budget", "check_eps", "check_delta", "default_delta"]


def check_eps(eps) -> float | None:
    """Validate a user-facing ``eps``: ``None`` (non-private) or a finite number > 0."""
    if eps is None:
        return None
    if isinstance(eps, bool):
        raise TypeError("eps must be a number > 0 or None (non-private), got a bool.")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a number > 0 or None (non-private), got {eps!r}.") from None
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(
            f"eps must be a finite number > 0, got {eps!r}. Use eps=None for a non-private fit; typical DP values "
            "are 0.1 to 10."
        )
    return eps


def check_delta(delta) -> float:
    """Validate ``delta``: a number in (0, 1)."""
    try:
        delta = float(delta)
    except (TypeError, ValueError):
        raise TypeError(f"delta must be a number in (0, 1), got {delta!r}.") from None
    if not (0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}; a common choice is 1e-5 or smaller than 1/n.")
    return delta


def default_delta(n_units: int) -> float:
    """Default delta: ``min(1e-5, 0.1 / n_units)``, so that delta stays well below 1/n for the privacy unit."""
    return min(1e-5, 0.1 / max(int(n_units), 1))


@dataclass(frozen=True)
class Budget:
    """An (eps, delta) budget. ``eps=None`` means non-private (nothing is charged, no noise is added).

    Generators compose their releases under zCDP: :attr:`rho` is the largest rho whose zCDP guarantee converts to
    (eps, delta)-DP, and :meth:`split` hands out shares of it.
    """

    eps: float | None
    delta: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_eps(self.eps))
        object.__setattr__(self, "delta", check_delta(self.delta))

    @property
    def private(self) -> bool:
        return self.eps is not None

    @property
    def rho(self) -> float:
        if self.eps is None:
            return math.inf
        return zcdp_from_eps(self.eps, self.delta)

    def split(self, **weights: float) -> dict[str, float]:
        """Split :attr:`rho` in proportion to ``weights`` (rho adds up under composition)."""
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
