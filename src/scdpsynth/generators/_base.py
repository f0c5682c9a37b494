"""The contract every generator follows (AnnData-free: arrays in, arrays out)."""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import numpy as np

from .._utils import fit_random_state
from ..privacy import DEFAULT_DELTA, Budget, Ledger
from ._contribution import cap_cells_per_donor

__all__ = ["BaseGenerator"]


class BaseGenerator(abc.ABC):
    """Base class of all synthetic-data generators.

    Subclasses implement :meth:`fit` and :meth:`sample`, draw every bit of noise through ``self.ledger`` (a
    :class:`~scdpsynth.privacy.Ledger`, which records each release as drawn), and list in ``self.scope`` every
    quantity derived from private data that is *not* covered by the budget. With default arguments the scope holds
    nothing derived from the data.

    Every fit also sets :attr:`class_counts_`: the number of records per class as released under DP (a noisy count
    charged to the ledger; exact for a non-private fit). :func:`scdpsynth.tl.generate` sizes the synthetic classes
    from it unless the user declares sizes.

    Parameters
    ----------
    eps
        Privacy budget; ``None`` fits without privacy (no noise).
    delta
        Privacy parameter delta.
    random_state
        Seed or :class:`numpy.random.Generator`; the only source of randomness. ``None`` (default): fresh OS entropy
        for a private fit (its noise must be secret), seed 0 for a non-private one. An integer seed with ``eps`` set
        warns (:class:`~scdpsynth._utils.KnownSeedWarning`).
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
    #: whether :meth:`fit` reads an out-of-core ``X`` (backed h5ad, dask) in row blocks itself, so that
    #: :func:`scdpsynth.tl.generate` passes it unread (and the generator checks its values)
    streams_input: ClassVar[bool] = False
    #: neighbouring relation of the stated sensitivities (one unit added/removed, or one unit's data replaced)
    neighbouring: ClassVar[str] = "add_remove"

    def __init__(self, *, eps: float | None = None, delta: float = DEFAULT_DELTA, random_state=None, unit="sample"):
        self.budget = Budget(eps, delta)
        self.rng = fit_random_state(random_state, private=self.budget.private, stacklevel=4)
        if unit not in self.units:
            raise ValueError(
                f"{type(self).__name__} supports privacy unit(s) {list(self.units)}, got unit={unit!r}."
                + (" Donor-level privacy needs a generator with donor support." if unit == "donor" else "")
            )
        self.unit = unit
        self.ledger = Ledger(neighbouring=self.neighbouring)
        self.scope: list[str] = []
        self.fitted_ = False
        self.class_counts_: np.ndarray | None = None

    def _release_class_counts(self, y: np.ndarray, n_classes: int, rho: float) -> np.ndarray:
        """Per-class record counts, released with the Gaussian mechanism (``rho`` of the budget), as
        :attr:`class_counts_`; exact when non-private.

        Add/remove one record changes one class count by one: L2 sensitivity 1 (``sqrt(2)`` under replace-one, where a
        record may change class). Returns the released counts (floats, possibly negative: post-process them).
        """
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=int(n_classes)).astype(np.float64)
        if self.private:
            sens = math.sqrt(2.0) if self.neighbouring == "replace" else 1.0
            counts = self.ledger.gaussian(counts, sensitivity=sens, sigma=sens / math.sqrt(2.0 * rho),
                                          rng=self.rng, name="class_counts")  # fmt: skip
        self.class_counts_ = counts
        return counts

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

    def rows_used(self, donors: np.ndarray | None = None) -> np.ndarray | None:
        """Sorted indices of the rows :meth:`fit` will use, or ``None`` when it uses them all.

        Generators that cap the cells per donor (``unit="donor"`` with an attribute ``m_``) draw the cap here, with
        their own randomness: :func:`scdpsynth.tl.generate` then reads only these rows of an out-of-core matrix and
        fits on them. The cap is idempotent (a donor with at most ``m_`` rows keeps them all, drawing nothing), so
        ``fit`` on the selected rows gives exactly what ``fit`` on all rows would have given with the same seed.
        """
        m = getattr(self, "m_", None)
        if self.unit != "donor" or donors is None or m is None:
            return None
        return cap_cells_per_donor(np.asarray(donors), m, self.rng)

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
                "neighbouring": self.neighbouring,
                "unit": self.unit,
                "scope": ["non-private fit (eps=None): no differential privacy guarantee", *self.scope],
            }
        ledger = self.ledger.to_dict(self.budget.delta)
        return {
            "private": True,
            "eps": self.budget.eps,
            "delta": self.budget.delta,
            "eps_spent": ledger.pop("eps_spent"),
            "accountant": ledger["accountant"],
            "neighbouring": self.neighbouring,
            "ledger": ledger,
            "unit": self.unit,
            "scope": list(self.scope),
        }
