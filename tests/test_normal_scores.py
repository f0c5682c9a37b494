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
from scdpsynth.generators._calibration import (
    MarginalCalibration,
    empirical_quantiles,
    quantile_levels,
)
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


def _calibration(reference, target, n_levels):
    levels = quantile_levels(n_levels)
    return MarginalCalibration(
        model_knots=empirical_quantiles(reference, levels)[None],
        target_knots=empirical_quantiles(target, levels)[None],
        levels=levels,
    )


def test_calibration_maps_a_model_marginal_onto_the_target_and_keeps_ranks():
    """Model output N(0, 1) per feature, target the skewed data's exact quantiles: fresh model draws, calibrated,
    pass a two-sample KS test against the data (p > 0.01) for the continuous features, carry the zero atom at its
    share (within 0.03), and keep every rank (output non-decreasing in the input; ties only at the atom and beyond
    the reference's extremes)."""
    rng = np.random.default_rng(0)
    X = _skewed(3000, seed=1)
    cal = _calibration(rng.standard_normal((4096, 3)), X, 512)
    draws = rng.standard_normal((3000, 3))
    out = cal.apply(draws)
    for g in (0, 1):
        assert stats.ks_2samp(out[:, g], X[:, g]).pvalue > 0.01
        assert np.all(np.diff(out[np.argsort(draws[:, g]), g]) >= 0)
        assert stats.spearmanr(draws[:, g], out[:, g]).statistic > 0.99999
    assert np.mean(out[:, 2] == 0.0) == pytest.approx(np.mean(X[:, 2] == 0.0), abs=0.03)
    # the model's median goes to the data's median; values beyond the model's range stop at the data's quantiles
    # of the outermost levels 0.5 / 512 and 1 - 0.5 / 512 (mid-rank, "hazen")
    mid = cal.apply(np.zeros((1, 3)))[0]
    np.testing.assert_allclose(mid[:2], np.median(X[:, :2], axis=0), rtol=0.03)
    far = cal.apply(np.array([[-50.0] * 3, [50.0] * 3]))
    ends = [[np.quantile(X[:, g], lv, method="hazen") for g in range(3)] for lv in (0.5 / 512, 1 - 0.5 / 512)]
    np.testing.assert_allclose(far, ends, rtol=1e-9, atol=1e-12)


def test_model_atoms_map_to_the_middle_of_their_levels():
    """A reference with 40 % of its values at one point (a clipping bound): that value sits at the middle of the
    atom's levels (0.2), values above it continue linearly, and values outside stop at the outermost levels."""
    ref = np.concatenate([np.zeros(400), np.linspace(0.01, 1.0, 600)])[:, None]
    cal = _calibration(ref, np.linspace(0.0, 1.0, 1001)[:, None], 100)  # uniform target: level = value
    u = cal.model_levels(np.array([[-1.0], [0.0], [0.5], [2.0]]))[:, 0]
    assert u[0] == pytest.approx(cal.levels[0])
    assert u[1] == pytest.approx(0.2, abs=0.01)
    assert u[2] == pytest.approx(0.4 + 0.6 * (0.5 - 0.01) / 0.99, abs=0.01)
    assert u[3] == pytest.approx(cal.levels[-1])
    np.testing.assert_allclose(cal.apply(np.array([[0.5]])), u[2], atol=0.002)


def test_parts_map_rows_onto_their_own_targets():
    """Two parts with different targets (N(0, 1) and N(10, 2)): the same model values land on each part's target
    quantiles; rows need their part when there are several."""
    rng = np.random.default_rng(3)
    levels = quantile_levels(128)
    ref = rng.standard_normal((4096, 1))
    t0, t1 = rng.normal(0.0, 1.0, (4000, 1)), rng.normal(10.0, 2.0, (4000, 1))
    model = empirical_quantiles(ref, levels)
    cal = MarginalCalibration(
        model_knots=np.stack([model, model]),
        target_knots=np.stack([empirical_quantiles(t0, levels), empirical_quantiles(t1, levels)]),
        levels=levels,
    )
    x = rng.standard_normal((2000, 1))
    parts = np.repeat([0, 1], 1000)
    out = cal.apply(x, parts)
    assert stats.ks_2samp(out[:1000, 0], t0[:, 0]).pvalue > 0.01
    assert stats.ks_2samp(out[1000:, 0], t1[:, 0]).pvalue > 0.01
    with pytest.raises(ValueError, match="pass each row's part"):
        cal.apply(x)
    with pytest.raises(ValueError, match="integers in \\[0, 2\\)"):
        cal.apply(x, np.full(2000, 2))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 64))
def test_calibration_is_monotone_and_stays_in_the_target_range(seed, n_levels):
    rng = np.random.default_rng(seed)
    ref = np.round(rng.gamma(0.8, 1.0, (200, 2)), 1)  # ties and an atom at 0
    target_data = np.round(rng.lognormal(0.0, 1.0, (50, 2)), 2)
    cal = _calibration(ref, target_data, n_levels)
    grid = np.sort(rng.normal(1.0, 2.0, (300, 1)), axis=0).repeat(2, axis=1)
    out = cal.apply(grid)
    assert np.all(np.diff(out, axis=0) >= -1e-12)
    assert np.all(out >= target_data.min(0) - 1e-12) and np.all(out <= target_data.max(0) + 1e-12)


def test_calibration_checks_its_input():
    levels = quantile_levels(8)
    with pytest.raises(ValueError, match="n_levels"):
        quantile_levels(1)
    with pytest.raises(ValueError, match="non-empty"):
        empirical_quantiles(np.zeros((0, 3)), levels)
    knots = np.zeros((1, 3, 8))
    with pytest.raises(ValueError, match="levels"):
        MarginalCalibration(model_knots=knots, target_knots=knots, levels=quantile_levels(9))
    with pytest.raises(ValueError, match="shape"):
        MarginalCalibration(model_knots=knots, target_knots=knots, levels=levels).apply(np.zeros((5, 2)))


def test_nonprivate_default_calibrates_per_class_and_restores_skewed_marginals():
    """Non-private, same data and seed: the default (``calibrate="auto"``, per class) maps the Gaussian decoder's
    marginals onto each class's exact quantiles. Two classes with differently shaped features (the second class's
    values shifted by 6 and its zeros moved up): per class, the KS statistic of every feature against that class's
    data is under 0.08 (two samples of 300 from one law: about 0.07 at p = 0.5), and their sum is under half the
    uncalibrated fit's."""
    X0 = _skewed(300, seed=3)
    X1 = _skewed(300, seed=4) + 6.0
    X = np.vstack([X0, X1])
    y = np.repeat([0, 1], 300)
    ks = {}
    for calibrate in ("auto", False):
        g = DPVAE(eps=None, random_state=0, epochs=60, num_threads=1, calibrate=calibrate).fit(X, y, n_classes=2)
        syn = g.sample([300, 300])
        ks[calibrate] = [
            stats.ks_2samp(syn[300 * c : 300 * (c + 1), j], (X0, X1)[c][:, j]).statistic
            for c in range(2)
            for j in range(3)
        ]
        assert g.params()["calibrate"] == ("class" if calibrate == "auto" else False)
    assert max(ks["auto"]) < 0.08 and sum(ks["auto"]) < 0.5 * sum(ks[False]), ks


@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_private_default_does_not_calibrate_and_releases_nothing_more(bioc_all_small, cls):
    X, y = _xy(bioc_all_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = cls(eps=5.0, **TINY).fit(X, y, n_classes=2)
    assert g.calibrate_ is False and g.calibration_ is None
    assert "dp_quantile_histogram" not in [e["name"] for e in g.ledger.entries]


@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_private_class_calibration_releases_one_histogram_per_class_in_parallel(bioc_all_small, cls):
    """Under DP, per class: one histogram per class (sensitivity sqrt(d) each, the same noise), recorded as parts of
    one partition, so together they cost one stats_share: the ledger's mu^2 is what it would be with one of them."""
    X, y = _xy(bioc_all_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = cls(eps=5.0, calibrate="class", **TINY).fit(X, y, n_classes=2)
    hists = [e for e in g.ledger.entries if e["name"] == "dp_quantile_histogram"]
    assert [e["partition"] for e in hists] == [("calibration", 0), ("calibration", 1)]
    for e in hists:
        assert e["sensitivity"] == pytest.approx(math.sqrt(X.shape[1]))
        assert e["noise"] == pytest.approx(math.sqrt(X.shape[1]) / math.sqrt(2 * g.stats_share * g.budget.rho))
    names = [e["name"] for e in g.ledger.entries]
    assert max(i for i, n in enumerate(names) if n == "dp_quantile_histogram") < min(
        i for i, n in enumerate(names) if n.startswith("dp-sgd")
    )
    one = g.ledger._mu_squared([hists[0]])
    both = g.ledger._mu_squared(hists)
    assert both == pytest.approx(one) and one == pytest.approx(2 * g.stats_share * g.budget.rho)
    assert g.privacy_report()["eps_spent"] <= 5.0 + 1e-9
    assert sum("calibrated marginals, per class" in s and "DP histogram" in s for s in g.scope) == 1
    syn = g.sample(np.array([30, 30]))
    assert syn.shape == (60, X.shape[1]) and np.all((syn >= 0.0) & (syn <= 16.0))
    assert g.calibration_.model_knots.shape[:2] == (2, X.shape[1])


def test_private_pooled_calibration_reuses_quantile_standardisation(bioc_all_small):
    X, y = _xy(bioc_all_small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = DPVAE(eps=5.0, standardize="quantile", calibrate="pooled", **TINY).fit(X, y, n_classes=2)
        g2 = DPVAE(eps=5.0, calibrate="pooled", **TINY).fit(X, y, n_classes=2)
    assert [e["name"] for e in g.ledger.entries].count("dp_quantile_histogram") == 1  # the standardisation's
    assert [e["partition"] for e in g2.ledger.entries if e["name"] == "dp_quantile_histogram"] == [None]
    assert g.calibration_.model_knots.shape[0] == 1 and g2.privacy_report()["eps_spent"] <= 5.0 + 1e-9


def test_calibrated_draws_follow_the_seed(bioc_all_small):
    X, y = _xy(bioc_all_small)

    def run(seed):
        return DPVAE(eps=None, random_state=seed, **TINY).fit(X, y, n_classes=2).sample(np.array([5, 5]))

    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_bad_calibrate_arguments_name_the_fix(bioc_all_small):
    with pytest.raises(ValueError, match="'pooled'"):
        DPVAE(calibrate=True)
    with pytest.raises(ValueError, match="counts"):
        DPVAE(likelihood="nb", calibrate="class")
    with pytest.raises(ValueError, match="standardize='auto' for counts"):
        DPVAE(likelihood="zinb", standardize="quantile")  # was ignored silently
    X, y = _xy(bioc_all_small)
    g = DPVAE(eps=5.0, calibrate="class", stats_share=0.45, counts_share=0.1, **TINY)
    with pytest.raises(ValueError, match="2 \\* stats_share"):
        g.fit(X, y, n_classes=2)
