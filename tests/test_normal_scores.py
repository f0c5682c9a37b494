"""Normal scores and calibrated marginals of the deep generators (``standardize="quantile"``, ``calibrate``): the
maps, their DP releases, and the fits."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from scdpsynth._utils import KnownSeedWarning
from scdpsynth.generators._calibration import fit_calibration
from scdpsynth.generators._normal_scores import Z_BOUND, dp_normal_scores, exact_normal_scores
from scdpsynth.privacy import Ledger

pytest.importorskip("torch")
pytest.importorskip("opacus")

from scdpsynth.generators.dp_gan import DPGAN
from scdpsynth.generators.dp_vae import DPVAE

TINY = dict(hidden_dim=16, latent_dim=4, epochs=2, batch_size=32, num_threads=1)


def _skewed(n=400, seed=0):
    """Three features: log-normal (skewed), a two-component mixture (bimodal), and one with 30 % zeros."""
    rng = np.random.default_rng(seed)
    a = np.exp(rng.normal(1.0, 0.6, n))
    b = np.where(rng.random(n) < 0.4, rng.normal(3.0, 0.3, n), rng.normal(8.0, 0.5, n))
    c = np.where(rng.random(n) < 0.3, 0.0, rng.gamma(4.0, 1.5, n))
    return np.column_stack([a, b, c])


def test_exact_scores_are_mid_rank_normal_quantiles_and_invert():
    X = np.array([[3.0, 0.0], [1.0, 0.0], [2.0, 5.0], [4.0, 0.0]])
    ns = exact_normal_scores(X)
    Z = ns.transform(X)
    # column 0: ranks 3, 1, 2, 4 of 4 -> levels (r - 0.5) / 4; column 1: three tied zeros share level 1.5 / 4
    np.testing.assert_allclose(Z[:, 0], stats.norm.ppf((np.array([3, 1, 2, 4]) - 0.5) / 4))
    np.testing.assert_allclose(Z[[0, 1, 3], 1], stats.norm.ppf(1.5 / 4))
    np.testing.assert_allclose(Z[2, 1], stats.norm.ppf(3.5 / 4))
    np.testing.assert_allclose(ns.inverse_transform(Z), X)  # the data points map back to themselves
    # between two values seen once the inverse interpolates; the three zeros hold the levels [0.5, 2.5] / 4 flat;
    # far tails stop at the extreme data values
    levels = np.array([[0.5, 0.1], [0.5, 0.5], [0.5, 0.7]])
    back = ns.inverse_transform(stats.norm.ppf(levels))
    np.testing.assert_allclose(back[:, 0], 2.5)
    np.testing.assert_allclose(back[:, 1], [0.0, 0.0, 5.0 * (0.7 - 0.625) / (0.875 - 0.625)])
    np.testing.assert_allclose(ns.inverse_transform(np.array([[-9.0, 9.0]])), [[1.0, 5.0]])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 60))
def test_exact_scores_are_monotone_bounded_and_round_trip(seed, n):
    rng = np.random.default_rng(seed)
    X = np.round(rng.gamma(0.7, 2.0, (n, 3)), 1)  # ties and zeros
    ns = exact_normal_scores(X)
    Z = ns.transform(X)
    assert np.all(np.abs(Z) <= Z_BOUND)
    for g in range(3):
        order = np.argsort(X[:, g], kind="stable")
        assert np.all(np.diff(Z[order, g]) >= -1e-12)  # monotone in x
    np.testing.assert_allclose(ns.inverse_transform(Z), X, atol=1e-9)
    grid = np.linspace(-5, 5, 41)[:, None].repeat(3, 1)
    back = ns.inverse_transform(grid)
    assert np.all(np.diff(back, axis=0) >= -1e-12)
    assert np.all((back >= X.min(0) - 1e-12) & (back <= X.max(0) + 1e-12))


def test_dp_scores_release_one_histogram_with_sensitivity_sqrt_d():
    X = _skewed()
    ledger = Ledger()
    rho = 0.5
    ns = dp_normal_scores(X, rho=rho, bounds=(0.0, 16.0), grid_size=32, rng=np.random.default_rng(0), ledger=ledger)
    (entry,) = ledger.entries
    assert entry["name"] == "dp_quantile_histogram"
    assert entry["sensitivity"] == pytest.approx(math.sqrt(3))
    assert entry["noise"] == pytest.approx(math.sqrt(3) / math.sqrt(2 * rho))
    assert ns.x_knots.shape == (3, 33) and np.all(np.diff(ns.u_knots, axis=1) >= 0)


def test_dp_scores_recover_the_marginals_at_a_large_budget():
    """At rho=50 on 4,000 rows the DP CDF is close to the data's: values drawn through the inverse map from standard
    normals pass a two-sample KS test against the data (each feature, p > 0.01), and the zeros of the third feature
    come back as an atom of about their share."""
    X = _skewed(4000, seed=1)
    ns = dp_normal_scores(X, rho=50.0, bounds=(0.0, 16.0), grid_size=64, rng=np.random.default_rng(1), ledger=Ledger())
    draws = ns.inverse_transform(np.random.default_rng(2).standard_normal((4000, 3)))
    for g in (0, 1):
        assert stats.ks_2samp(draws[:, g], X[:, g]).pvalue > 0.01
    assert np.mean(draws[:, 2] == 0.0) == pytest.approx(np.mean(X[:, 2] == 0.0), abs=0.03)
    # the atom maps to the middle of its mass: the real zeros' scores sit at Phi^-1(p0 / 2)
    p0 = np.mean(X[:, 2] == 0.0)
    z0 = ns.transform(X[X[:, 2] == 0.0])[:, 2]
    assert np.allclose(z0, z0[0]) and z0[0] == pytest.approx(stats.norm.ppf(p0 / 2), abs=0.1)


def test_quantile_vae_keeps_skewed_marginals_that_standardisation_loses():
    """Non-private, same data and seed, marginals not calibrated afterwards: the Gaussian decoder learns normal
    scores, and the skewed, bimodal and zero-inflated features come back with their shape (KS statistic against the
    data well below standardisation's)."""
    X = _skewed(600, seed=3)
    y = np.zeros(len(X), dtype=np.int64)
    ks = {}
    for mode in ("dp", "quantile"):
        g = DPVAE(eps=None, random_state=0, standardize=mode, epochs=60, num_threads=1, calibrate=False)
        g.fit(X, y, n_classes=1)
        syn = g.sample([600])
        ks[mode] = [stats.ks_2samp(syn[:, j], X[:, j]).statistic for j in range(3)]
    assert g.standardize_ == "quantile" and g.normal_scores_ is not None
    assert ks["quantile"][0] < 0.8 * ks["dp"][0], ks  # log-normal
    assert ks["quantile"][1] < 0.25 * ks["dp"][1] and ks["quantile"][1] < 0.06, ks  # bimodal
    assert ks["quantile"][2] < 0.5 * ks["dp"][2], ks  # 30 % zeros


@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_private_quantile_fit_records_the_histogram_and_stays_in_budget(bioc_all_small, cls):
    X = np.asarray(bioc_all_small.X, dtype=float)
    y = bioc_all_small.obs["lineage"].cat.codes.to_numpy().astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = cls(eps=5.0, standardize="quantile", **TINY).fit(X, y, n_classes=2)
    names = [e["name"] for e in g.ledger.entries]
    assert names[:2] == ["class_counts", "dp_quantile_histogram"] and names[2].startswith("dp-sgd")
    hist = g.ledger.entries[1]
    assert hist["sensitivity"] == pytest.approx(math.sqrt(X.shape[1]))
    assert hist["noise"] == pytest.approx(math.sqrt(X.shape[1]) / math.sqrt(2 * g.stats_share * g.budget.rho))
    assert g.privacy_report()["eps_spent"] <= 5.0 + 1e-9
    assert any("normal scores" in s and "DP histogram" in s for s in g.scope)
    assert g.params()["standardize"] == "quantile"
    syn = g.sample(np.array([30, 30]))
    assert syn.shape == (60, X.shape[1]) and np.all((syn >= 0.0) & (syn <= 16.0))


def test_quantile_fit_draws_follow_the_seed(bioc_all_small):
    X = np.asarray(bioc_all_small.X, dtype=float)
    y = bioc_all_small.obs["lineage"].cat.codes.to_numpy().astype(np.int64)

    def run(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KnownSeedWarning)
            g = DPVAE(eps=5.0, random_state=seed, standardize="quantile", **TINY)
        return g.fit(X, y, n_classes=2).sample(np.array([5, 5]))

    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_unknown_standardize_names_the_options():
    with pytest.raises(ValueError, match="'quantile'"):
        DPVAE(standardize="rank")


# ---- calibrated marginals (calibrate) --------------------------------------------------------------------------


def _xy(adata):
    X = np.asarray(adata.X, dtype=float)
    return X, adata.obs["lineage"].cat.codes.to_numpy().astype(np.int64)


def test_calibration_maps_a_model_marginal_onto_the_target_and_keeps_ranks():
    """Model output N(0, 1) per feature, target the skewed data's exact CDFs: fresh model draws, calibrated, pass a
    two-sample KS test against the data (p > 0.01) for the continuous features, carry the zero atom at its share
    (within 0.03), and keep every rank (output non-decreasing in the input; ties only at the atom and beyond the
    reference's extremes)."""
    rng = np.random.default_rng(0)
    X = _skewed(3000, seed=1)
    cal = fit_calibration(rng.standard_normal((4096, 3)), exact_normal_scores(X), n_levels=512)
    draws = rng.standard_normal((3000, 3))
    out = cal.apply(draws)
    for g in (0, 1):
        assert stats.ks_2samp(out[:, g], X[:, g]).pvalue > 0.01
        assert np.all(np.diff(out[np.argsort(draws[:, g]), g]) >= 0)  # ranks kept (ties only beyond the tails)
        assert stats.spearmanr(draws[:, g], out[:, g]).statistic > 0.99999
    assert np.mean(out[:, 2] == 0.0) == pytest.approx(np.mean(X[:, 2] == 0.0), abs=0.03)
    # the model's median goes to the data's median; values beyond the model's range stop at the data's quantiles
    # of the outermost levels 0.5 / 512 and 1 - 0.5 / 512
    mid = cal.apply(np.zeros((1, 3)))[0]
    np.testing.assert_allclose(mid[:2], np.median(X[:, :2], axis=0), rtol=0.03)
    far = cal.apply(np.array([[-50.0] * 3, [50.0] * 3]))
    ends = [[np.quantile(X[:, g], lv, method="hazen") for g in range(3)] for lv in (0.5 / 512, 1 - 0.5 / 512)]
    np.testing.assert_allclose(far, ends, rtol=1e-6, atol=1e-9)  # mid-rank levels: hazen


def test_model_atoms_map_to_the_middle_of_their_levels():
    """A reference with 40 % of its values at one point (a clipping bound): that value sits at the middle of the
    atom's levels (0.2), values above it continue linearly, and the map is a step at the atom, never a jump back."""
    ref = np.concatenate([np.zeros(400), np.linspace(0.01, 1.0, 600)])[:, None]
    target = exact_normal_scores(np.linspace(0.0, 1.0, 1001)[:, None])  # uniform target: level = value
    cal = fit_calibration(ref, target, n_levels=100)
    u = cal.model_levels(np.array([[-1.0], [0.0], [0.5], [2.0]]))[:, 0]
    assert u[0] == pytest.approx(cal.levels[0])
    assert u[1] == pytest.approx(0.2, abs=0.01)
    assert u[2] == pytest.approx(0.4 + 0.6 * (0.5 - 0.01) / 0.99, abs=0.01)
    assert u[3] == pytest.approx(cal.levels[-1])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 64))
def test_calibration_is_monotone_and_stays_in_the_target_range(seed, n_levels):
    rng = np.random.default_rng(seed)
    ref = np.round(rng.gamma(0.8, 1.0, (max(n_levels, 200), 2)), 1)  # ties and an atom at 0
    target_data = np.round(rng.lognormal(0.0, 1.0, (50, 2)), 2)
    cal = fit_calibration(ref, exact_normal_scores(target_data), n_levels=n_levels)
    grid = np.sort(rng.normal(1.0, 2.0, (300, 1)), axis=0).repeat(2, axis=1)
    out = cal.apply(grid)
    assert np.all(np.diff(out, axis=0) >= -1e-12)
    assert np.all(out >= target_data.min(0) - 1e-12) and np.all(out <= target_data.max(0) + 1e-12)


def test_fit_calibration_checks_its_input():
    target = exact_normal_scores(_skewed(50))
    with pytest.raises(ValueError, match="shape"):
        fit_calibration(np.zeros((600, 2)), target)
    with pytest.raises(ValueError, match="n_levels"):
        fit_calibration(np.zeros((100, 3)), target, n_levels=512)


def test_nonprivate_default_calibrates_and_restores_skewed_marginals():
    """Non-private, same data and seed: the default (``calibrate="auto"``) maps the Gaussian decoder's marginals
    onto the exact CDFs; the KS statistic of each skewed, bimodal or zero-inflated feature against the data is a
    fraction of the uncalibrated fit's, and under 0.06 (two samples of 600 from one law: about 0.05 at p = 0.5)."""
    X = _skewed(600, seed=3)
    y = np.zeros(len(X), dtype=np.int64)
    ks = {}
    for calibrate in ("auto", False):
        g = DPVAE(eps=None, random_state=0, epochs=60, num_threads=1, calibrate=calibrate).fit(X, y, n_classes=1)
        syn = g.sample([600])
        ks[calibrate] = [stats.ks_2samp(syn[:, j], X[:, j]).statistic for j in range(3)]
        assert g.params()["calibrate"] is (calibrate == "auto")
    for j in range(3):
        assert ks["auto"][j] < 0.06 and ks["auto"][j] < 0.5 * ks[False][j], ks


@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_private_default_does_not_calibrate_and_releases_nothing_more(bioc_all_small, cls):
    X, y = _xy(bioc_all_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = cls(eps=5.0, **TINY).fit(X, y, n_classes=2)
    assert g.calibrate_ is False and g.calibration_ is None
    assert "dp_quantile_histogram" not in [e["name"] for e in g.ledger.entries]


@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_private_calibration_releases_one_histogram_and_stays_in_budget(bioc_all_small, cls):
    X, y = _xy(bioc_all_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = cls(eps=5.0, calibrate=True, **TINY).fit(X, y, n_classes=2)
    (hist,) = [e for e in g.ledger.entries if e["name"] == "dp_quantile_histogram"]
    assert hist["sensitivity"] == pytest.approx(math.sqrt(X.shape[1]))
    assert hist["noise"] == pytest.approx(math.sqrt(X.shape[1]) / math.sqrt(2 * g.stats_share * g.budget.rho))
    names = [e["name"] for e in g.ledger.entries]
    assert names.index("dp_quantile_histogram") < min(i for i, n in enumerate(names) if n.startswith("dp-sgd"))
    assert g.privacy_report()["eps_spent"] <= 5.0 + 1e-9
    assert any("calibrated marginals" in s and "DP histogram" in s for s in g.scope)
    syn = g.sample(np.array([30, 30]))
    assert syn.shape == (60, X.shape[1]) and np.all((syn >= 0.0) & (syn <= 16.0))
    # the DP grid's knots are the only values the inverse map interpolates between: within the public range
    assert g.calibration_.target is g.target_cdf_


def test_quantile_standardisation_reuses_its_cdfs_for_calibration(bioc_all_small):
    X, y = _xy(bioc_all_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = DPVAE(eps=5.0, standardize="quantile", calibrate=True, **TINY).fit(X, y, n_classes=2)
    assert [e["name"] for e in g.ledger.entries].count("dp_quantile_histogram") == 1
    assert g.target_cdf_ is g.normal_scores_


def test_calibrated_draws_follow_the_seed(bioc_all_small):
    X, y = _xy(bioc_all_small)

    def run(seed):
        return DPVAE(eps=None, random_state=seed, **TINY).fit(X, y, n_classes=2).sample(np.array([5, 5]))

    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_bad_calibrate_arguments_name_the_fix(bioc_all_small):
    with pytest.raises(ValueError, match="'auto'"):
        DPVAE(calibrate="yes")
    with pytest.raises(ValueError, match="counts"):
        DPVAE(likelihood="nb", calibrate=True)
    with pytest.raises(ValueError, match="standardize='auto' for counts"):
        DPVAE(likelihood="zinb", standardize="quantile")  # was ignored silently
    X, y = _xy(bioc_all_small)
    g = DPVAE(eps=5.0, calibrate=True, stats_share=0.45, counts_share=0.1, **TINY)
    with pytest.raises(ValueError, match="2 \\* stats_share"):
        g.fit(X, y, n_classes=2)
