"""RON-Gauss: sensitivities, calibrated noise, accounting, utility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from scdpsynth.generators.ron_gauss import (
    RONGauss,
    mean_direction,
    projected_statistics,
    random_orthonormal,
    sensitivities,
)
from scdpsynth.privacy import eps_from_zcdp, gaussian_sigma_for_rho, zcdp_from_eps


def test_random_orthonormal_rows():
    W = random_orthonormal(30, 7, np.random.default_rng(0))
    np.testing.assert_allclose(W @ W.T, np.eye(7), atol=1e-12)
    with pytest.raises(ValueError, match="n_components"):
        random_orthonormal(5, 6, np.random.default_rng(0))


unit_box = arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 6)), elements=st.floats(0, 1))


@settings(max_examples=60, deadline=None)
@given(U=unit_box, new_row=arrays(np.float64, 6, elements=st.floats(0, 1)), which=st.integers(0, 11))
def test_replace_one_record_moves_each_release_by_at_most_its_sensitivity(U, new_row, which):
    """Empirical check of the stated L2 sensitivities on random neighbouring data sets in [0, 1]^d."""
    n, d = U.shape
    U2 = U.copy()
    U2[which % n] = new_row[:d]
    rng = np.random.default_rng(0)
    W = random_orthonormal(d, max(1, d - 1), rng)
    mu = mean_direction(U) + rng.normal(0, 0.1, d)  # later releases see the released (noisy) mean
    sens = sensitivities(n, d, mu)
    assert np.linalg.norm(mean_direction(U) - mean_direction(U2)) <= sens["mean"] + 1e-12
    a, b = projected_statistics(U, mu, W), projected_statistics(U2, mu, W)
    iu = np.triu_indices(W.shape[0])
    assert np.linalg.norm(a["covariance"][iu] - b["covariance"][iu]) <= sens["covariance"] + 1e-12
    assert abs(a["record_norm"] - b["record_norm"]) <= sens["record_norm"] + 1e-12
    assert abs(a["projected_norm"] - b["projected_norm"]) <= sens["projected_norm"] + 1e-12


def test_sensitivity_known_answers():
    s = sensitivities(10, 16, np.array([0.6, 0.8]))  # ||mu|| = 1
    assert s == pytest.approx(
        {"mean": math.sqrt(2) / 10, "covariance": math.sqrt(2) / 10, "record_norm": 0.4, "projected_norm": 0.2}
    )


def _toy(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(2, 0.3, (n, d)), rng.normal(5, 0.3, (n, d))])
    X[:n, 0] += 2  # a class-specific gene
    return X, np.repeat([0, 1], n)


def test_released_mean_has_the_calibrated_noise():
    """Over 400 seeds, the released class mean scatters around the exact one with variance sigma^2 (chi-square)."""
    X, y = _toy()
    eps, delta = 2.0, 1e-5
    lo, hi = X.min(0), X.max(0)
    exact = mean_direction((X[y == 0] - lo) / (hi - lo))
    sigma = gaussian_sigma_for_rho(zcdp_from_eps(eps, delta) * 0.35, math.sqrt(2) / 40)
    dev = np.array(
        [
            RONGauss(eps=eps, delta=delta, random_state=s).fit(X, y, n_classes=2).classes_[0]["mu"] - exact
            for s in range(400)
        ]
    ).ravel()
    assert abs(dev.mean()) < 4 * sigma / math.sqrt(dev.size)
    stat = dev.size * dev.var() / sigma**2
    lo_q, hi_q = stats.chi2.ppf([0.0005, 0.9995], dev.size)
    assert lo_q < stat < hi_q


@pytest.mark.parametrize("eps", [0.5, 1.0, 10.0])
def test_eps_spent_from_accountant(eps):
    X, y = _toy()
    g = RONGauss(eps=eps, delta=1e-6, random_state=0).fit(X, y, n_classes=2)
    rep = g.privacy_report()
    assert rep["eps_spent"] <= eps
    assert rep["eps_spent"] == pytest.approx(eps, rel=1e-6)  # the whole budget is used, not more
    assert g.accountant.rho == pytest.approx(zcdp_from_eps(eps, 1e-6))
    assert eps_from_zcdp(g.accountant.rho, 1e-6) == pytest.approx(rep["eps_spent"])
    assert len(g.accountant.ledger) == 4  # classes compose in parallel: 4 releases charged once


def test_non_private_recovers_class_means_and_spread():
    X, y = _toy(n=400)
    g = RONGauss(eps=None, n_components=6, random_state=0).fit(X, y, n_classes=2)
    Xs = g.sample([400, 400])
    for c in (0, 1):
        real, syn = X[y == c], Xs[c * 400 : (c + 1) * 400]
        np.testing.assert_allclose(syn.mean(0), real.mean(0), atol=0.15)
    assert g.privacy_report()["private"] is False


def test_utility_degrades_gracefully_with_eps():
    """Distance of synthetic class means to the real ones shrinks as eps grows (average over 5 seeds)."""
    X, y = _toy(n=200, d=20)

    def err(eps):
        out = []
        for s in range(5):
            Xs = RONGauss(eps=eps, random_state=s).fit(X, y, n_classes=2).sample([200, 200])
            out.append(np.linalg.norm(Xs[:200].mean(0) - X[:200].mean(0)))
        return np.mean(out)

    e = [err(0.3), err(3.0), err(None)]
    assert e[0] > e[1] > e[2]


def test_bounds_given_costs_no_scope_and_clips():
    X, y = _toy()
    g = RONGauss(eps=1.0, bounds=(0.0, 8.0), random_state=0).fit(X, y, n_classes=2)
    assert not any("minimum and maximum" in s for s in g.scope)
    Xs = g.sample([10, 10])
    assert Xs.min() >= 0.0 and Xs.max() <= 8.0
    g2 = RONGauss(eps=1.0, random_state=0).fit(X, y, n_classes=2)
    assert any("minimum and maximum" in s for s in g2.scope)


def test_same_seed_same_output():
    X, y = _toy()
    a = RONGauss(eps=1.0, random_state=7).fit(X, y, n_classes=2).sample([5, 5])
    b = RONGauss(eps=1.0, random_state=7).fit(X, y, n_classes=2).sample([5, 5])
    c = RONGauss(eps=1.0, random_state=8).fit(X, y, n_classes=2).sample([5, 5])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_errors():
    X, y = _toy()
    with pytest.raises(ValueError, match="n_components"):
        RONGauss(n_components=0)
    with pytest.raises(ValueError, match="bounds"):
        RONGauss(bounds="minmax")
    with pytest.raises(RuntimeError, match="fit"):
        RONGauss().sample([1, 1])
    g = RONGauss().fit(X, y, n_classes=2)
    with pytest.raises(ValueError, match="class_counts"):
        g.sample([1])
    with pytest.raises(ValueError, match="unit"):
        RONGauss(unit="donor")
