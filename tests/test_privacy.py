"""Known-answer and statistical tests of the privacy building blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from scdpsynth.privacy import (
    DEFAULT_DELTA,
    Budget,
    Ledger,
    analytic_gaussian_delta,
    analytic_gaussian_sigma,
    classical_gaussian_sigma,
    eps_from_mu,
    gaussian_sigma_for_rho,
    laplace_scale,
    mu_from_eps,
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


def _pld_eps(event, delta, interval=1e-4):
    from dp_accounting.pld import pld_privacy_accountant

    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=interval)
    acc.compose(event)
    return acc.get_epsilon(delta)


class TestLedger:
    def test_eps_from_mu_is_the_analytic_gaussian(self):
        # mu-GDP is the Gaussian mechanism with sigma = 1/mu: Balle & Wang's sigma 3.7306 at (1, 1e-5)
        assert eps_from_mu(1 / analytic_gaussian_sigma(1.0, 1e-5), 1e-5) == pytest.approx(1.0, abs=1e-6)
        assert eps_from_mu(0.0, 1e-5) == 0.0

    @settings(max_examples=40, deadline=None)
    @given(eps=st.floats(0.01, 50), delta=st.floats(1e-10, 1e-2))
    def test_mu_round_trip_never_overspends(self, eps, delta):
        mu = mu_from_eps(eps, delta)
        assert eps_from_mu(mu, delta) <= eps
        assert eps_from_mu(mu, delta) == pytest.approx(eps, rel=1e-6)

    def test_gaussian_composition_is_exact_and_matches_pld(self):
        # mu^2 adds up: (1/1)^2 + 3 (2/4)^2 = 1.75; PLD (pessimistic) agrees within its discretisation
        led = Ledger()
        led.add_gaussian(name="a", sensitivity=1.0, sigma=1.0)
        led.add_gaussian(name="b", sensitivity=2.0, sigma=4.0, count=3)
        assert led.mu == pytest.approx(math.sqrt(1.75))
        exact = led.get_epsilon(1e-5)
        assert exact == pytest.approx(eps_from_mu(math.sqrt(1.75), 1e-5))
        assert exact <= _pld_eps(led.dp_event(), 1e-5) <= exact + 2e-3
        d = led.to_dict(1e-5)
        assert d["release"] == ["a", "b"] and d["eps_spent"] == pytest.approx(exact)
        np.testing.assert_allclose(d["share"], [1 / 1.75, 0.75 / 1.75])

    def test_tighter_than_zcdp(self):
        # the numbers: rho = 0.030557 of Gaussian releases is eps 1.000 under the zCDP conversion; the exact
        # Gaussian curve of the same noise gives about 0.915
        led = Ledger()
        led.add_gaussian(name="g", sensitivity=1.0, sigma=1 / math.sqrt(2 * 0.030557))
        assert led.get_epsilon(1e-5) == pytest.approx(0.915, abs=2e-3)

    def test_gaussian_release_draws_the_recorded_noise(self):
        led = Ledger(keep_values=True)
        rng = np.random.default_rng(0)
        out = led.gaussian(np.zeros(200_000), sensitivity=2.0, sigma=3.0, rng=rng, name="x")
        assert out.std() == pytest.approx(3.0, rel=0.01)
        assert led.entries[0]["noise"] == 3.0 and led.entries[0]["sensitivity"] == 2.0
        np.testing.assert_array_equal(led.values[0], np.zeros(200_000))
        sym = led.gaussian(np.zeros((3, 4, 4)), sensitivity=1.0, sigma=1.0, rng=rng, name="s", symmetric=True)
        np.testing.assert_array_equal(sym, np.swapaxes(sym, -1, -2))

    def test_parallel_composition_charges_the_worst_part(self):
        led = Ledger()
        rng = np.random.default_rng(0)
        for k, sigma in enumerate([1.0, 2.0, 4.0]):
            for name in ("mean", "cov"):
                led.gaussian(np.zeros(3), sensitivity=1.0, sigma=sigma, rng=rng, name=name, partition=("class", k))
        led.gaussian(np.zeros(3), sensitivity=1.0, sigma=2.0, rng=rng, name="counts")
        # worst class: 2 releases at mu = 1 -> mu^2 = 2, plus the counts 1/4
        assert led.mu == pytest.approx(math.sqrt(2.25))

    def test_laplace_and_dpsgd_use_pld(self):
        import dp_accounting as dpa

        led = Ledger()
        led.laplace(np.zeros(2), sensitivity=1.0, scale=2.0, rng=np.random.default_rng(0), name="lap")
        assert led.get_epsilon(1e-5) == pytest.approx(_pld_eps(dpa.LaplaceDpEvent(2.0), 1e-5), rel=1e-6)
        # a pure Laplace release with scale b is (1/b)-DP: the PLD says so up to its pessimistic discretisation
        assert 0.5 - 1e-3 <= led.get_epsilon(1e-12) <= 0.5 + 2e-3
        sgd = Ledger()
        sgd.add_dpsgd(name="sgd", noise_multiplier=3.2656, sample_rate=0.02, steps=1000)
        sgd.add_dpsgd(name="sgd", noise_multiplier=3.2656, sample_rate=0.02, steps=500)  # merged: 1500 steps
        assert len(sgd.entries) == 1 and sgd.entries[0]["count"] == 1500
        # the DP-SGD case: RDP said 0.9985, PLD about 0.913
        assert sgd.get_epsilon(1e-5) <= 0.92

    def test_bad_inputs(self):
        led = Ledger()
        with pytest.raises(ValueError, match="sensitivity"):
            led.add_gaussian(name="a", sensitivity=0.0, sigma=1.0)
        with pytest.raises(ValueError, match="noise"):
            led.add_gaussian(name="a", sensitivity=1.0, sigma=-1.0)
        with pytest.raises(ValueError, match="neighbouring"):
            Ledger(neighbouring="swap")
        assert Ledger().get_epsilon(1e-5) == 0.0


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
        with pytest.raises(TypeError):
            Budget("1.0")  # a string is rejected, even one that parses
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
        led = Ledger()
        for name, rho in parts.items():
            led.add_gaussian(name=name, sensitivity=1.0, sigma=gaussian_sigma_for_rho(rho))
        assert led.get_epsilon(1e-6) <= eps
        assert led.get_epsilon(1e-6) == pytest.approx(eps, rel=1e-6)  # calibrated to the exact curve: no slack

    def test_non_private(self):
        b = Budget(None)
        assert not b.private and b.rho == math.inf

    def test_default_delta_is_a_public_constant(self):
        assert DEFAULT_DELTA == 1e-5 and Budget(1.0).delta == 1e-5


def test_ledger_caches_the_slow_pld_answer_until_a_new_release():
    led = Ledger()
    led.add_dpsgd(name="sgd", noise_multiplier=1.0, sample_rate=0.02, steps=200)
    first = led.get_epsilon(1e-5)
    assert led.get_epsilon(1e-5) == first and len(led._eps_cache) == 1
    led.add_gaussian(name="g", sensitivity=1.0, sigma=5.0)
    assert led.get_epsilon(1e-5) > first  # a new release is composed, not answered from the cache
