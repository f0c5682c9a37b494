"""Differential-privacy building blocks: budgets, noise mechanisms and the privacy ledger.

Pure DP math: nothing here knows a generator. Every generator in :mod:`scdpsynth.generators` draws its noise through
a :class:`Ledger` (which records each release as drawn) and reports the (eps, delta) the ledger composes. The
end-to-end audit, which runs generators, lives above them (:func:`scdpsynth.tl.audit`).
"""

from .budget import DEFAULT_DELTA, Budget, check_delta, check_eps
from .ledger import Ledger, eps_from_mu, mu_from_eps
from .mechanisms import (
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    classical_gaussian_sigma,
    gaussian_sigma_for_rho,
    laplace_scale,
)

__all__ = [
    "DEFAULT_DELTA",
    "Budget",
    "Ledger",
    "analytic_gaussian_delta",
    "analytic_gaussian_sigma",
    "check_delta",
    "check_eps",
    "classical_gaussian_sigma",
    "eps_from_mu",
    "gaussian_sigma_for_rho",
    "laplace_scale",
    "mu_from_eps",
]
