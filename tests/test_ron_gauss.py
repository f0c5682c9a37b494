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
    _SHARES,
    RONGauss,
    direction_sum,
    projected_sums,
    random_orthonormal,
    sensitivities,
)
from scdpsynth.privacy import Budget, Ledger, gaussian_sigma_for_rho


def test_random_orthonormal_rows():
    W = random_orthonormal(30, 7, np.random.default_rng(0))
    np.testing.assert_allclose(W @ W.T, np.eye(7), atol=1e-12)
    with pytest.raises(ValueError, match="n_components"):
        random_orthonormal(5, 6, np.random.default_rng(0))


unit_box = arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 6)), elements=st.floats(0, 1))


def _changes(U, U2, mu, W):
    """L2 change of every release between neighbouring class data ``U`` and ``U2`` (fixed earlier releases)."""
    a, b = projected_sums(U, mu, W), projected_sums(U2, mu, W)
    iu = np.triu_indices(W.shape[0])
    return {
        "mean": np.linalg.norm(direction_sum(U) - direction_sum(U2)),
        "covariance": np.linalg.norm(a["covariance"][iu] - b["covariance"][iu]),
        "record_norm": abs(a["record_norm"] - b["record_norm"]),
        "projected_norm": abs(a["projected_norm"] - b["projected_norm"]),
    }


@settings(max_examples=60, deadline=None)
@given(U=unit_box, new_row=arrays(np.float64, 6, elements=st.floats(0, 1)))
def test_adding_one_record_moves_each_release_by_at_most_its_sensitivity(U, new_row):
    """Empirical check of the stated L2 sensitivities on random add/remove neighbours in [0, 1]^d."""
    n, d = U.shape
    U2 = np.vstack([U, new_row[:d]])
    rng = np.random.default_rng(0)
    W = random_orthonormal(d, max(1, d - 1), rng)
    mu = direction_sum(U) / n + rng.normal(0, 0.1, d)  # later releases see the released (noisy) mean
    mu /= max(1.0, np.linalg.norm(mu))
    sens = sensitivities(d)
    for key, change in _changes(U, U2, mu, W).items():
        assert change <= sens[key] + 1e-12, key


@pytest.mark.parametrize("d", [2, 50, 200])
def test_sensitivities_are_attained_by_an_extreme_record(d):
    """The stated sensitivities are (nearly) attained by a record at the upper corner of the box, so none is stated
    too large; a release noised for a smaller sensitivity (e.g. the mean's, sqrt(d) times too small for the record
    norms) is caught by the noise-level test below."""
    rng = np.random.default_rng(1)
    U = rng.uniform(0.2, 0.4, (30, d))
    W = random_orthonormal(d, min(5, d), rng)
    mu = -direction_sum(U) / 30  # the corner record then points away from mu: its projected norm is large
    U2 = np.vstack([U, np.ones(d)])
    ch = _changes(U, U2, mu / np.linalg.norm(mu), W)
    sens = sensitivities(d)
    assert ch["mean"] == pytest.approx(sens["mean"]) and 0.5 < ch["covariance"] / sens["covariance"] <= 1.0 + 1e-12
    assert ch["record_norm"] == pytest.approx(math.sqrt(d)) and sens["record_norm"] == math.sqrt(d)
    assert 0 < ch["projected_norm"] <= sens["projected_norm"]  # 2 bounds ||v - mu|| before the projection


def test_sensitivity_known_answers():
    assert sensitivities(16) == {"class_counts": 1.0, "mean": 1.0, "covariance": 1.0, "record_norm": 4.0,
                                 "projected_norm": 2.0}  # fmt: skip


def _toy(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(2, 0.3, (n, d)), rng.normal(5, 0.3, (n, d))])
    X[:n, 0] += 2  # a class-specific gene
    return X, np.repeat([0, 1], n)


def _fit_kept(X, y, eps, seed, **kw):
    g = RONGauss(eps=eps, random_state=np.random.default_rng(seed), **kw)
    g.ledger = Ledger(keep_values=True)
    return g.fit(X, y, n_classes=2)


def test_every_release_has_its_stated_sensitivity_and_calibrated_noise():
    """The ledger records each release as drawn: its name, the sensitivity of *that* release, and noise
    sigma = sensitivity / sqrt(2 rho_share); the noise actually added matches the recorded sigma (pooled over seeds,
    chi-square test per release)."""
    X, y = _toy(d=50)
    eps = 2.0
    rho = Budget(eps).split(**_SHARES)
    sens = sensitivities(X.shape[1])
    dev = {}
    for seed in range(150):
        g = _fit_kept(X, y, eps, seed, bounds=(0.0, 8.0))
        names = [e["name"] for e in g.ledger.entries]
        assert sorted(names) == sorted(["class_counts"] + 2 * ["mean", "covariance", "record_norm", "projected_norm"])
        for e, v, r in zip(g.ledger.entries, g.ledger.values, g.ledger.released, strict=True):
            assert e["sensitivity"] == pytest.approx(sens[e["name"]])
            assert e["noise"] == pytest.approx(gaussian_sigma_for_rho(rho[e["name"]], sens[e["name"]]))
            assert (e["partition"] is None) == (e["name"] == "class_counts")
            noise = r - v
            if e["name"] == "covariance":
                noise = noise[np.triu_indices(noise.shape[0])]
            dev.setdefault(e["name"], []).append(np.ravel(noise) / e["noise"])
    for name, z in dev.items():
        z = np.concatenate(z)
        stat = np.sum(z**2)
        lo_q, hi_q = stats.chi2.ppf([0.0005, 0.9995], z.size)
        assert lo_q < stat < hi_q, name


def test_neighbouring_fits_change_first_releases_by_at_most_the_recorded_sensitivity():
    X, y = _toy(d=30)
    X2, y2 = np.vstack([X, np.full(30, 8.0)]), np.r_[y, 0]  # add a record at the top corner of the bounds
    a = _fit_kept(X, y, 1.0, 3, bounds=(0.0, 8.0))
    b = _fit_kept(X2, y2, 1.0, 3, bounds=(0.0, 8.0))
    for i in range(2):  # counts, then class 0's mean direction: both computed before any noise is used
        e = a.ledger.entries[i]
        change = np.linalg.norm(a.ledger.values[i] - b.ledger.values[i])
        assert change <= e["sensitivity"] + 1e-9 and change > 0.5 * e["sensitivity"], e["name"]


@pytest.mark.parametrize("eps", [0.5, 1.0, 10.0])
def test_eps_spent_from_ledger(eps):
    X, y = _toy()
    g = RONGauss(eps=eps, delta=1e-6, random_state=np.random.default_rng(0)).fit(X, y, n_classes=2)
    rep = g.privacy_report()
    assert rep["eps_spent"] <= eps
    assert rep["eps_spent"] == pytest.approx(eps, rel=1e-6)  # the whole budget is used, not more
    assert g.ledger.mu == pytest.approx(Budget(eps, 1e-6).mu, rel=1e-9)
    # classes compose in parallel: the 4 per-class releases are charged once, plus the class counts
    assert len(g.ledger) == 9 and rep["ledger"]["partition"].count("") == 1


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
            Xs = RONGauss(eps=eps, random_state=np.random.default_rng(s)).fit(X, y, n_classes=2).sample([200, 200])
            out.append(np.linalg.norm(Xs[:200].mean(0) - X[:200].mean(0)))
        return np.mean(out)

    e = [err(0.3), err(3.0), err(None)]
    assert e[0] > e[1] > e[2]


def test_bounds_public_by_default_data_only_as_opt_in():
    X, y = _toy()
    rng = np.random.default_rng(0)
    g = RONGauss(eps=1.0, bounds=(0.0, 8.0), random_state=rng).fit(X, y, n_classes=2)
    assert not g.scope
    Xs = g.sample([10, 10])
    assert Xs.min() >= 0.0 and Xs.max() <= 8.0
    default = RONGauss(eps=1.0, random_state=rng).fit(X, y, n_classes=2)
    assert not default.scope and default.params()["bounds"] == [0.0, 16.0]
    opt_in = RONGauss(eps=1.0, bounds="data", random_state=rng).fit(X, y, n_classes=2)
    assert any("minimum and maximum" in s for s in opt_in.scope)
    with pytest.warns(UserWarning, match="outside the public bounds"):
        RONGauss(eps=1.0, bounds=(0.0, 1.0), random_state=rng).fit(X, y, n_classes=2)


def test_same_seed_same_output():
    X, y = _toy()
    a = RONGauss(eps=None, random_state=7).fit(X, y, n_classes=2).sample([5, 5])
    b = RONGauss(eps=None, random_state=7).fit(X, y, n_classes=2).sample([5, 5])
    c = RONGauss(eps=None, random_state=8).fit(X, y, n_classes=2).sample([5, 5])
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
