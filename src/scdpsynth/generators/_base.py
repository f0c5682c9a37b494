"""The contract every generator follows (AnnData-free: arrays in, arrays out)."""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import numpy as np

from .._utils import check_random_state
from ..privacy import Budget, ZCDPAccountant

__all__ = ["BaseGenerator"]


class BaseGenerator(abc.ABC):
    """Base class of all synthetic-data generators.

    Subclasses implement :meth:`fit` and :meth:`sample`, spend their budget only through mechanisms recorded in
    ``self.accountant`` and list in ``self.scope`` every quantity derived from private data that is *not* covered
    by the budget (e.g. "class counts treated as public").

    Parameters
    ----------
    eps
        Privacy budget; ``None`` fits without privacy (no noise).
    delta
        Privacy parameter delta.
    random_state
        Seed or :class:`numpy.random.Generator`; the only source of randomness.
    unit
        Privacy unit: ``"sample"`` (one row) or ``"donor"`` (all rows of one donor). Only generators that list
        ``"donor"`` in :attr:`units` accept it.
    """

    #: registry name
    name: ClassVar[str] = ""
    #: "continuous" (real-valued, e.g. log expression) or "counts" (raw integer counts in and out)
    data: ClassVar[str] = "continuous"
    #: privacy units the generator can bound
    units: ClassVar[tuple[str, ...]] = ("sample",)

    def __init__(self, *, eps: float | None = None, delta: float = 1e-5, random_state=0, unit: str = "sample"):
        self.budget = Budget(eps, delta)
        self.rng = check_random_state(random_state)
        if unit not in self.units:
            raise ValueError(
                f"{type(self).__name__} supports privacy unit(s) {list(self.units)}, got unit={unit!r}."
                + (" Donor-level privacy needs a generator with donor support." if unit == "donor" else "")
            )
        self.unit = unit
        self.accountant = ZCDPAccountant()
        self.scope: list[str] = []
        self.fitted_ = False

    @property
    def private(self) -> bool:
        return self.budget.private

    @abc.abstractmethod
    def fit(self, X, y: np.ndarray, *, n_classes: int, donors: np.ndarray | None = None):
        """Fit to ``X`` (n x d; dense or scipy sparse) with integer class codes ``y`` in ``[0, n_classes)``.

        ``donors`` holds integer donor codes when ``unit == "donor"``. Returns ``self``.
        """

    @abc.abstractmethod
    def sample(self, class_counts):
        """Draw ``class_counts[k]`` rows of class ``k`` for each k, stacked in class order.

        Returns a dense float array for ``data == "continuous"`` and integer counts (dense, or scipy CSR for sparse
        single-cell output) for ``data == "counts"``.
        """

    def params(self) -> dict:
        """Hyper-parameters (h5ad-serialisable), recorded in ``uns['scdpsynth']['params']``."""
        return {}

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit() before sample().")

    def privacy_report(self) -> dict:
        """What was spent, by which accountant, for which unit, and what lies outside the DP guarantee."""
        if not self.private:
            return {
                "private": False,
                "eps": math.inf,
                "delta": 0.0,
                "eps_spent": math.inf,
                "accountant": "none",
                "unit": self.unit,
                "scope": ["non-private fit (eps=None): no differential privacy guarantee", *self.scope],
            }
        eps_spent = self.accountant.get_epsilon(self.budget.delta)
        details = self.accountant.to_dict(self.budget.delta)
        return {
            "private": True,
            "eps": self.budget.eps,
            "delta": self.budget.delta,
            "eps_spent": eps_spent,
            "accountant": details["accountant"],
            "accountant_details": details,
            "unit": self.unit,
            "scope": list(self.scope),
        }
