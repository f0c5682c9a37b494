"""Differential-privacy building blocks: budgets, noise mechanisms and accountants.

Every generator in :mod:`scdpsynth.generators` spends a :class:`Budget` through these mechanisms and reports the
(eps, delta) that its accountant says it spent.
"""

from ._audit import AuditResult, audit, clopper_pearson_upper, eps_lower_bound
from .accountants import (
    DEFAULT_RDP_ORDERS,
    RDPAccountant,
    ZCDPAccountant,
    eps_from_rdp,
    eps_from_zcdp,
    zcdp_from_eps,
)
from .budget import Budget, check_delta, check_eps, default_delta
from .mechanisms import (
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    classical_gaussian_sigma,
    gaussian_noise,
    gaussian_sigma_for_rho,
    laplace_noise,
    laplace_scale,
)

__all__ = [
    "AuditResult",
    "Budget",
    "DEFAULT_RDP_ORDERS",
    "RDPAccountant",
    "ZCDPAccountant",
    "analytic_gaussian_delta",
    "analytic_gaussian_sigma",
    "audit",
    "check_delta",
    "check_eps",
    "classical_gaussian_sigma",
    "clopper_pearson_upper",
    "default_delta",
    "eps_from_rdp",
    "eps_from_zcdp",
    "eps_lower_bound",
    "gaussian_noise",
    "gaussian_sigma_for_rho",
    "laplace_noise",
    "laplace_scale",
    "zcdp_from_eps",
]
