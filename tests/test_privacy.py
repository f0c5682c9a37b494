"""Known-answer and statistical tests of the privacy building blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from scdpsynth.privacy import (
    Budget,
    RDPAccountant,
    ZCDPAccountant,
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    classical_gaussian_sigma,
    default_delta,
    eps_from_rdp,
    eps_from_zcdp,
    gaussian_sigma_for_rho,
    laplace_scale,
    zcdp_from_eps,
)


def _delta_by_integration(sigma: float, eps: float, sens: float) -> float:
    """delta(eps) = int max(0, p(x) - e^eps q(x)) dx for p = N(0, s^2), q = N(sens, s^2): the definition itself."""
    p = stats.norm(0, sigma).pdf
    q = stats.norm(sens, sigma).pdf
    # p > e^eps q  <=>  x < sens/2 - eps sigma^2/sens
    cut = sens / 2 - eps * sigma**2 / sens
    val, _ = integrate.quad(lambda x: p(x) - math.exp(eps) * q(x), -np.inf, cut, epsabs=1e-14, epsrel=1e-10)
    return val


class TestGaussianMechanism:
    def test_classical_known_answer(self):
        # sqrt(2 ln(1.25 / 1e-5)) = sqrt(2 * 11.73607) = 4.84481
        assert classical_gaussian_sigma(1.0, 1e-5) == pytest.approx(4.844805, abs=1e-5)
        assert classical_gaussian_sigma(0.5, 1e-5, sensitivity=2.0) == pytest.approx(4 * 4.844805, abs=1e-4)

    @pytest.mark.parametrize(("eps", "delta", "sens"), [(1.0, 1e-5, 1.0), (0.1, 1e-6, 2.0), (8.0, 1e-5, 0.3)])
    def test_analytic_delta_matches_definition(self, eps, delta, sens):
        sigma = analytic_gaussian_sigma(eps, delta, sens)
        assert _delta_by_integration(sigma, eps, sens) == pytest.approx(delta, rel=1e-5)
        assert analytic_gaussian_delta(sigma, eps, sens) <= delta

    def test_analytic_known_answer_and_tighter_than_classical(self):
        # Balle & Wang (2018), eps=1, delta=1e-5, sensitivity 1: sigma ~= 3.73 (classical: 4.84)
        sigma = analytic_gaussian_sigma(1.0, 1e-5)
        assert sigma == pytest.approx(3.7306, abs=1e-3)
        assert sigma < classical_gaussian_sigma(1.0, 1e-5)

    def test_analytic_scales_linearly_with_sensitivity(self):
        assert analytic_gaussian_sigma(2.0, 1e-5, 3.0) == pytest.approx(
            3 * analytic_gaussian_sigma(2.0, 1e-5), rel=1e-8
        )

    @pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
    def test_bad_inputs(self, bad):
        with pytest.raises(ValueError, match="eps"):
            analytic_gaussian_sigma(bad, 1e-5)
        with pytest.raises(ValueError, match="rho"):
            gaussian_sigma_for_rho(bad)

    def test_zcdp_sigma_known_answer(self):
        # rho = D^2 / (2 sigma^2): D = 2, rho = 0.5 -> sigma = 2
        assert gaussian_sigma_for_rho(0.5, 2.0) == pytest.approx(2.0)
        assert laplace_scale(0.5, 2.0) == pytest.approx(4.0)


class TestZCDP:
    def test_conversion_brute_force(self):
        # eps(delta) = min_alpha alpha*rho + log(1 - 1/alpha) - (log delta + log alpha) / (alpha - 1), on a fine grid
        rho, delta = 0.5, 1e-5
        alphas = np.linspace(1.001, 200, 400_000)
        brute = np.min(alphas * rho + np.log1p(-1 / alphas) - (np.log(delta) + np.log(alphas)) / (alphas - 1))
        assert eps_from_zcdp(rho, delta) == pytest.approx(brute, abs=1e-6)
        # and tighter than the classical rho + 2 sqrt(rho log(1/delta)) = 5.29852
        assert eps_from_zcdp(rho, delta) < 0.5 + 2 * math.sqrt(0.5 * math.log(1e5))

    @settings(max_examples=40, deadline=None)
    @given(eps=st.floats(0.01, 50), delta=st.floats(1e-10, 1e-2))
    def test_inverse_round_trip_never_overspends(self, eps, delta):
        rho = zcdp_from_eps(eps, delta)
        assert eps_from_zcdp(rho, delta) <= eps
        assert eps_from_zcdp(rho, delta) == pytest.approx(eps, rel=1e-6)

    def test_accountant_composes_additively(self):
        acc = ZCDPAccountant()
        acc.add_gaussian(name="a", sensitivity=1.0, sigma=1.0)  # rho 0.5
        acc.add_gaussian(name="b", sensitivity=2.0, sigma=4.0, count=3)  # 3 * 4/32 = 0.375
        assert acc.rho == pytest.approx(0.875)
        assert acc.get_epsilon(1e-5) == pytest.approx(eps_from_zcdp(0.875, 1e-5))
        d = acc.to_dict(1e-5)
        assert d["releases"] == ["a", "b"] and d["eps_spent"] == pytest.approx(acc.get_epsilon(1e-5))

    def test_rdp_accountant_agrees_with_zcdp_for_gaussian(self):
        acc = RDPAccountant()
        acc.add_gaussian(name="g", sensitivity=1.0, sigma=1.0)
        # the RDP grid can only be at least as large as the continuous optimum, and close to it
        z = eps_from_zcdp(0.5, 1e-5)
        assert z <= acc.get_epsilon(1e-5) <= z + 1e-3

    def test_rdp_laplace_known_answers(self):
        # alpha = 2: 1/(a-1) log(a/(2a-1) e^{(a-1)/l} + (a-1)/(2a-1) e^{-a/l}), l = scale / sensitivity = 1
        acc = RDPAccountant(orders=np.array([2.0, 1e6]))
        acc.add_laplace(name="lap", sensitivity=1.0, scale=1.0)
        expected_a2 = math.log(2 / 3 * math.e + 1 / 3 * math.exp(-2))
        assert acc.rdp[0] == pytest.approx(expected_a2, rel=1e-12)
        # alpha -> infinity: pure DP level sensitivity / scale = 1
        assert acc.rdp[1] == pytest.approx(1.0, abs=1e-5)

    def test_eps_from_rdp_picks_best_order(self):
        orders = np.array([2.0, 10.0, 100.0])
        eps, order = eps_from_rdp(orders * 0.01, orders, 1e-5)
        manual = orders * 0.01 + np.log1p(-1 / orders) - (np.log(1e-5) + np.log(orders)) / (orders - 1)
        assert eps == pytest.approx(manual.min()) and order == orders[np.argmin(manual)]


class TestBudget:
    def test_split_sums_to_total(self):
        b = Budget(2.0, 1e-6)
        parts = b.split(a=1, b=8)
        assert sum(parts.values()) == pytest.approx(b.rho)
        assert parts["b"] == pytest.approx(8 * parts["a"])

    @pytest.mark.parametrize("eps", [0, -0.5, math.inf, math.nan])
    def test_bad_eps(self, eps):
        with pytest.raises(ValueError, match="eps must be a finite number > 0"):
            Budget(eps)

    def test_bad_types_and_delta(self):
        with pytest.raises(TypeError):
            Budget(True)
        with pytest.raises(TypeError):
            Budget("one")
        with pytest.raises(ValueError, match="delta"):
            Budget(1.0, 0.0)
        with pytest.raises(ValueError, match="delta"):
            Budget(1.0, 1.5)

    @settings(max_examples=50, deadline=None)
    @given(
        eps=st.floats(0.05, 20),
        weights=st.lists(st.floats(0.01, 10), min_size=1, max_size=6),
    )
    def test_split_never_overspends(self, eps, weights):
        b = Budget(eps, 1e-6)
        parts = b.split(**{f"w{i}": w for i, w in enumerate(weights)})
        acc = ZCDPAccountant()
        for name, rho in parts.items():
            acc.add_gaussian(name=name, sensitivity=1.0, sigma=gaussian_sigma_for_rho(rho))
        assert acc.get_epsilon(1e-6) <= eps

    def test_non_private(self):
        b = Budget(None)
        assert not b.private and b.rho == math.inf

    def test_default_delta(self):
        assert default_delta(100) == 1e-5
        assert default_delta(1_000_000) == pytest.approx(1e-7)
