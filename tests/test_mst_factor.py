"""mst's factor dependence (one DP release of the clipped bin-score Gram) and the DP discretisation's support mask."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from scdpsynth._utils import KnownSeedWarning
from scdpsynth.generators._discretize import dp_discretization, support_mask
from scdpsynth.generators._factor import (
    binary_scores,
    clipped_scores,
    collapse_to_halves,
    factor_loadings,
    score_clip,
    score_gram,
    within_cross_products,
)
from scdpsynth.generators._latent import hermite_scales, latent_correlation, latent_scales
from scdpsynth.generators.mst import SELECTION_SENSITIVITY, MSTGenerator, selection_sensitivity
from scdpsynth.privacy import Budget, Ledger, gaussian_sigma_for_rho


def _modules(n=400, d=40, seed=0, loading=0.9):
    """Two classes; 4 co-expressed modules of d/4 genes (one latent factor each, within-class latent correlation
    ``loading^2``), log2-like values in (0, 16)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    f = rng.standard_normal((n, 4))
    z = loading * np.repeat(f, d // 4, axis=1) + math.sqrt(1 - loading**2) * rng.standard_normal((n, d))
    X = 8.0 + 1.5 * y[:, None] + z
    return np.clip(X, 0.0, 16.0), y.astype(np.int64)


def _fit(eps, seed=0, keep=False, X=None, y=None, **kw):
    if X is None:
        X, y = _modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnownSeedWarning)
        g = MSTGenerator(eps=eps, random_state=seed, dependence="factor", **kw)
    if keep:
        g.ledger = Ledger(keep_values=True)
    return g.fit(X, y, n_classes=2)


def _within(A, y):
    A = np.array(A, dtype=float)
    for k in np.unique(y):
        A[y == k] -= A[y == k].mean(0)
    return np.corrcoef(A.T)


# -- support mask ----------------------------------------------------------------------------------------------------
def test_support_mask_keeps_the_bulk_and_its_tails_and_drops_isolated_noise():
    hist = np.array(
        [
            [0, 0, 1, 30, 50, 20, 2, 0, 0, 4, 0],  # bulk in 3..5, tail cells 2 and 6, noise spike at 9 (< 3 sd)
            [0, 12, 0, 0, 0, 40, 0, 0, 0, 0, 0],  # two kept cells: everything between them stays
            [1, 2, 1, 0, 2, 1, 0, 0, 1, 2, 1],  # nothing above the threshold: keep all
        ],
        dtype=float,
    )
    m = support_mask(hist, sigma=3.0, z=3.0, pad=1)
    np.testing.assert_array_equal(m[0], [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(m[1], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    assert m[2].all()
    assert support_mask(hist, sigma=3.0, z=None).all() and support_mask(hist, sigma=0.0).all()


def test_dp_discretization_puts_no_mass_far_from_the_data():
    """500 genes of N(mu_g, 0.5), mu_g uniform on (3, 13), on the public range (0, 16) with noise of 4 counts per
    cell: without the support mask the shrinkage towards the pooled histogram and the projection spread mass over the
    whole range (measured: 8.2 % of each gene's mass more than 1 away from its data; a within-bin draw lands there);
    with it, 0.3 %."""
    rng = np.random.default_rng(0)
    X = rng.normal(rng.uniform(3.0, 13.0, 500), 0.5, (200, 500))
    far = []
    for z in (None, 3.0):
        disc = dp_discretization(
            X, 8, rho=500 / (2 * 4.0**2), bounds=(0.0, 16.0), rng=np.random.default_rng(1), ledger=Ledger(),
            support_z=z,
        )  # fmt: skip
        lo, hi = X.min(0) - 1.0, X.max(0) + 1.0
        below = np.array([np.interp(lo[g], disc.grid, disc.cdf[g]) for g in range(500)])
        above = 1.0 - np.array([np.interp(hi[g], disc.grid, disc.cdf[g]) for g in range(500)])
        far.append(float(np.mean(below + above)))
    assert far[0] > 0.05 and far[1] < 0.01, far
    # the bulk is kept: each gene's edges lie near its own quantiles (median error under half a grid cell)
    err = np.abs(disc.edges - np.quantile(X, np.arange(1, 8) / 8, axis=0).T)
    assert np.median(err) < 0.25, np.median(err)


# -- the release -----------------------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.integers(2, 10), st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_clipped_score_rows_have_norm_at_most_one_and_bounded_gram_contribution(B, d, seed):
    codes = np.random.default_rng(seed).integers(0, B, (20, d))
    v = clipped_scores(codes, B, score_clip(d, B))
    assert np.linalg.norm(v, axis=1).max() <= 1.0 + 1e-12
    assert selection_sensitivity(v).max() <= SELECTION_SENSITIVITY + 1e-12
    # one record's contribution to the released statistic is its strict upper triangle
    one = np.triu(np.outer(v[0], v[0]), 1)
    np.testing.assert_allclose(score_gram(codes, B, score_clip(d, B)) - score_gram(codes[1:], B, score_clip(d, B)),
                               one, atol=1e-12)  # fmt: skip


def test_factor_fit_ledger_sensitivities_noise_and_budget():
    eps = 20.0
    g = _fit(eps, seed=2, keep=True)
    X, _ = _modules()
    rho = Budget(eps).rho * (1 - 1e-9)
    rho_left = rho * (1 - g.discretization_share)
    rho_marg = (rho_left - g.selection_share * rho_left) * g.marginal_share
    d = X.shape[1]
    expected = {
        "dp_quantile_histogram": (math.sqrt(d), rho * g.discretization_share),
        "gene-gene score Gram": (SELECTION_SENSITIVITY, rho_left - rho_marg),
        "label_marginal": (1.0, rho_marg / (d + 1)),
        "gene_label_marginals": (math.sqrt(d), rho_marg * d / (d + 1)),
    }
    assert [e["name"] for e in g.ledger.entries] == list(expected)
    for e, v, r in zip(g.ledger.entries, g.ledger.values, g.ledger.released, strict=True):
        sens, share = expected[e["name"]]
        assert e["sensitivity"] == pytest.approx(sens), e["name"]
        assert e["noise"] == pytest.approx(gaussian_sigma_for_rho(share, sens), rel=1e-6), e["name"]
        z = np.ravel(r - v) / e["noise"]
        lo, hi = stats.chi2.ppf([0.0005, 0.9995], z.size)
        assert lo < np.sum(z**2) < hi, e["name"]
    assert g.privacy_report()["eps_spent"] == pytest.approx(eps, rel=1e-6)
    vals = {e["name"]: v for e, v in zip(g.ledger.entries, g.ledger.values, strict=True)}
    codes = g.disc_.transform(X)
    assert g.gram_scores_ == "binary" and g.params()["gram_scores"] == "binary"  # "auto" under DP
    np.testing.assert_allclose(vals["gene-gene score Gram"], score_gram(codes, g.n_bins, 0.0, scores="binary"))
    assert g.edges_.shape == (0, 2) and g.params()["dependence"] == "factor"
    # bin scores on request: the clipped statistic, same sensitivity and noise
    gb = _fit(eps, seed=2, keep=True, gram_scores="bins")
    (e,) = [e for e in gb.ledger.entries if e["name"] == "gene-gene score Gram"]
    assert e["sensitivity"] == pytest.approx(SELECTION_SENSITIVITY)
    assert e["noise"] == pytest.approx(gaussian_sigma_for_rho(rho_left - rho_marg, SELECTION_SENSITIVITY), rel=1e-6)
    v = gb.ledger.values[gb.ledger.entries.index(e)]
    np.testing.assert_allclose(v, score_gram(codes, gb.n_bins, score_clip(d, gb.n_bins)))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 12), st.integers(1, 60), st.integers(0, 10_000))
def test_binary_score_rows_have_norm_one_and_bounded_gram_contribution(B, d, seed):
    codes = np.random.default_rng(seed).integers(0, B, (5, d))
    v = binary_scores(codes, B)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    np.testing.assert_array_equal(np.sign(v), np.where(codes >= B // 2, 1, -1))
    assert selection_sensitivity(v).max() <= SELECTION_SENSITIVITY + 1e-12
    one = np.triu(np.outer(v[0], v[0]), 1)
    np.testing.assert_allclose(score_gram(codes, B, 0.0, "binary") - score_gram(codes[1:], B, 0.0, "binary"), one,
                               atol=1e-12)  # fmt: skip


def test_binary_gram_reads_the_latent_correlation_through_the_halves():
    """Exact statistics, one class: the binary within-class cross-products divided by the halves' first Hermite
    scales give the latent correlation to first order (``(2/pi) arcsin(r) / (2 phi(0))^2``: 0.80 -> 0.93, 0.3 ->
    0.305), and ``collapse_to_halves`` sums the lower and upper bins."""
    rng = np.random.default_rng(0)
    n, B = 200_000, 8
    for r in (0.8, 0.3):
        z = rng.standard_normal((n, 2))
        z[:, 1] = r * z[:, 0] + math.sqrt(1 - r * r) * z[:, 1]
        codes = np.minimum((stats.norm.cdf(z) * B).astype(int), B - 1)
        p = np.stack([np.bincount(codes[:, g], minlength=B) / n for g in range(2)])[:, :, None]
        p2 = collapse_to_halves(p, B)
        np.testing.assert_allclose(p2[:, 0, 0], p[:, : B // 2, 0].sum(1))
        M = within_cross_products(score_gram(codes, B, 0.0, "binary"), math.sqrt(2), (p2 * [[-1], [1]]).sum(1),
                                  np.array([n]))  # fmt: skip
        a = latent_scales(p2, np.array([n]))[:, 0]
        est = M[0, 1] / (a[0] * a[1])
        target = 2 / math.pi * math.asin(r) / (2 * stats.norm.pdf(0)) ** 2
        assert est == pytest.approx(target, abs=0.01), (r, est)


# -- post-processing -------------------------------------------------------------------------------------------------
def test_latent_scales_match_monte_carlo():
    """``cov(s, z)`` of a latent normal ``z`` and the centred score of its bin (bins from ``cond``): exact for two
    equal bins (``E|z| = sqrt(2 / pi)``), and within Monte Carlo error for random bin probabilities."""
    half = np.full((1, 2, 1), 0.5)
    np.testing.assert_allclose(latent_scales(half, np.array([4.0])), [[math.sqrt(2 / math.pi) * 2.0]])
    rng = np.random.default_rng(0)
    B, K = 8, 3
    cond = rng.dirichlet(np.ones(B), size=(5, K)).transpose(0, 2, 1)  # (d, B, K)
    A = latent_scales(cond, np.ones(K))
    z = rng.standard_normal(400_000)
    score = (2.0 * np.arange(B) - (B - 1)) / (B - 1)
    for g in range(5):
        for k in range(K):
            b = np.searchsorted(np.cumsum(cond[g, :, k])[:-1], stats.norm.cdf(z), side="right")
            s = score[b]
            assert A[g, k] == pytest.approx(np.mean((s - s.mean()) * z), abs=0.005)


@pytest.mark.parametrize("r", [0.3, 0.6, 0.85])
def test_hermite_terms_give_the_score_covariance_and_invert_to_the_latent_correlation(r):
    """Two genes with latent correlation r, binned by unequal class-conditional bins: the score covariance equals
    ``sum_j r^j a_j b_j / j!`` (4 terms) within Monte Carlo error, and :func:`latent_correlation` recovers r within
    0.02, at least as close as the first term alone (polyserial)."""
    rng = np.random.default_rng(1)
    B = 8
    cond = np.stack([rng.dirichlet(np.full(B, 2.0)), rng.dirichlet(np.full(B, 0.7))])[:, :, None]  # (2, B, 1)
    H = hermite_scales(cond, np.array([1.0]))
    np.testing.assert_allclose(H[0], latent_scales(cond, np.array([1.0])))
    terms = (H[:, 0, :] * H[:, 1, :]).sum(-1)  # (order,)
    z = rng.standard_normal((1_000_000, 2))
    z[:, 1] = r * z[:, 0] + math.sqrt(1 - r * r) * z[:, 1]
    score = (2.0 * np.arange(B) - (B - 1)) / (B - 1)
    s = [score[np.searchsorted(np.cumsum(cond[g, :, 0])[:-1], stats.norm.cdf(z[:, g]), side="right")] for g in (0, 1)]
    cov = np.cov(s[0], s[1])[0, 1]
    assert sum(r**j * terms[j - 1] for j in range(1, 5)) == pytest.approx(cov, abs=0.003)
    est = latent_correlation(np.array([cov]), terms[:, None])[0]
    assert est == pytest.approx(r, abs=0.02)
    first = cov / terms[0]  # the first term alone: off by up to 0.04 here (either way, with skewed bins)
    assert abs(est - r) <= abs(first - r) + 0.005


def test_factor_loadings_recover_a_known_factor_model_from_exact_statistics():
    """Exact (non-private) statistics of a 4-module model with within-class latent correlation 0.81: the implied
    latent correlations are within 0.1 of the truth on average, inside and across modules."""
    X, y = _modules(n=2000, loading=0.9)
    g = _fit(None, X=X, y=y)
    C = g.loadings_ @ g.loadings_.T
    module = np.arange(40) // 10
    same = (module[:, None] == module[None, :]) & ~np.eye(40, dtype=bool)
    assert g.n_factors_ == 4
    assert abs(C[same].mean() - 0.81) < 0.1 and abs(C[module[:, None] != module[None, :]]).mean() < 0.05


def test_factor_loadings_keep_nothing_below_the_noise_edge():
    rng = np.random.default_rng(0)
    d = 50
    A = np.ones((d, 1)) * 5.0
    noise = rng.standard_normal((d, d))
    M = np.triu(noise, 1)
    M = M + M.T  # pure noise, sd 1
    assert factor_loadings(M, A, noise_sd=1.0, n=1e6, max_factors=10).shape == (d, 0)
    # a spike well above the edge 2 sqrt(d) = 14 is kept and its size estimated
    u = np.ones(d) / math.sqrt(d)
    L = factor_loadings(M + 40.0 * np.outer(u, u), A, noise_sd=1.0, n=1e6, max_factors=10)
    assert L.shape == (d, 1)
    assert (L[:, 0] ** 2).sum() * 25.0 == pytest.approx(40.0, rel=0.15)  # eigenvalue in M units: l / a^2 per gene


def test_within_cross_products_subtract_the_class_means():
    rng = np.random.default_rng(0)
    B, d = 4, 6
    codes = rng.integers(0, B, (300, d))
    y = rng.integers(0, 2, 300)
    s = (2.0 * codes - (B - 1)) / (B - 1)
    clip = math.sqrt(d)  # no record clipped
    mu = np.stack([s[y == k].mean(0) for k in range(2)], axis=1)
    M = within_cross_products(score_gram(codes, B, clip), clip, mu, np.bincount(y).astype(float))
    R = s.copy()
    for k in range(2):
        R[y == k] -= mu[:, k]
    expected = R.T @ R
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(M, expected, atol=1e-9)


# -- end to end ------------------------------------------------------------------------------------------------------
def test_factor_keeps_dense_modules_that_a_tree_loses():
    """Within-module within-class correlation 0.81: the tree keeps only its edges (pairs two or more steps apart get
    products of correlations), the factor model keeps all pairs. Non-private, n = 400: measured 0.85 (factor) and
    0.62 (tree) mean within-module correlation in the synthetic data against 0.81 in the real."""
    X, y = _modules()
    module = np.arange(40) // 10
    same = (module[:, None] == module[None, :]) & ~np.eye(40, dtype=bool)
    real = _within(X, y)[same].mean()
    yy = np.repeat([0, 1], np.bincount(y))
    fac = _within(_fit(None).sample(np.bincount(y)), yy)[same].mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnownSeedWarning)
        tree = MSTGenerator(eps=None, random_state=0).fit(X, y, n_classes=2)
    tr = _within(tree.sample(np.bincount(y)), yy)[same].mean()
    assert abs(fac - real) < 0.06 and tr < fac - 0.15, (real, fac, tr)


def test_private_factor_fit_keeps_modules_at_large_eps_and_not_at_tiny_eps():
    _, y = _modules()
    module = np.arange(40) // 10
    same = (module[:, None] == module[None, :]) & ~np.eye(40, dtype=bool)
    yy = np.repeat([0, 1], np.bincount(y))
    big = _fit(50.0, seed=1)
    assert big.n_factors_ >= 1
    assert _within(big.sample(np.bincount(y)), yy)[same].mean() > 0.5
    tiny = _fit(0.1, seed=1)
    assert tiny.n_factors_ == 0  # below the noise edge: genes independent given the class
    r_tiny = _within(tiny.sample(np.bincount(y) * 3), np.repeat([0, 1], np.bincount(y) * 3))[same]
    assert abs(np.nanmean(r_tiny)) < 0.1  # (genes the DP bins collapse to one value have no correlation: nan)


@pytest.mark.parametrize(
    "kw", [{"dependence": "graph"}, {"max_factors": 0}, {"max_factors": 2.5}, {"gram_scores": "signs"}]
)
def test_bad_factor_parameters_raise(kw):
    with pytest.raises(ValueError):
        MSTGenerator(**kw)
