"""MST-style generator: a DP spanning tree of gene-gene scores, label-conditioned copula along the tree."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest
from scipy import stats

import scdpsynth as sd
from scdpsynth._utils import KnownSeedWarning
from scdpsynth.generators import registry
from scdpsynth.generators._discretize import public_discretization
from scdpsynth.generators.mst import (
    SELECTION_SENSITIVITY,
    MSTGenerator,
    bin_scores,
    edge_cross_products,
    selection_scores,
    selection_sensitivity,
    spanning_tree,
)
from scdpsynth.privacy import Budget, Ledger, gaussian_sigma_for_rho


@functools.cache
def _modules(n: int = 400, d: int = 40, seed: int = 0):
    """Two classes; genes in 4 co-expressed modules of 10 (latent factor + noise), log2-like values in (0, 16)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    f = rng.standard_normal((n, 4))
    X = 8.0 + 1.5 * y[:, None] + np.repeat(f, d // 4, axis=1) + 0.4 * rng.standard_normal((n, d))
    return np.clip(X, 0.0, 16.0), y.astype(np.int64)


def _fit(eps, seed=0, keep=False, **kw):
    X, y = _modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnownSeedWarning)
        g = MSTGenerator(eps=eps, random_state=seed, **kw)
    if keep:
        g.ledger = Ledger(keep_values=True)
    return g.fit(X, y, n_classes=2)


def test_registered_and_runs_through_tl_generate(bioc_all_small):
    assert "mst" in registry
    syn = sd.tl.generate(bioc_all_small, "mst", eps=10.0, groupby="lineage")
    assert syn.shape[1] == bioc_all_small.n_vars and np.isfinite(syn.X).all()
    priv = syn.uns["scdpsynth"]["privacy"]
    assert priv["eps_spent"] <= 10.0 + 1e-9


def test_nonprivate_tree_recovers_modules_and_synthetic_data_keep_them():
    X, y = _modules()
    g = _fit(None)
    assert len(g.edges_) == X.shape[1] - 1 and len(g.ledger) == 0
    module = np.arange(X.shape[1]) // 10
    assert (module[g.edges_[:, 0]] == module[g.edges_[:, 1]]).sum() == X.shape[1] - 4  # 9 in-module edges each
    counts = np.bincount(y)
    S = g.sample(counts)
    R, Rs = np.corrcoef(X.T), np.corrcoef(S.T)
    same = module[:, None] == module[None, :]
    off = ~np.eye(len(R), dtype=bool)
    assert Rs[same & off].mean() > 0.6 * R[same & off].mean()  # co-expression within modules is kept
    assert abs(Rs[~same].mean() - R[~same].mean()) < 0.15


def test_within_bin_draws_follow_the_latent_quantile_and_keep_edge_correlations():
    # along a tree edge the synthetic correlation should match the real one; with independent within-bin draws it
    # was attenuated (8 bins: median 0.91 of the real edge correlation; drawn at the latent quantile: 0.98)
    X, y = _modules()
    g = _fit(None)
    S = g.sample(np.bincount(y) * 5)
    R, Rs = np.corrcoef(X.T), np.corrcoef(S.T)
    a, b = g.edges_[:, 0], g.edges_[:, 1]
    ratio = np.median(Rs[a, b] / R[a, b])
    assert 0.95 < ratio < 1.05
    # the marginals are unchanged: each gene's synthetic quantiles match the real ones (two-sample KS per gene)
    pvals = [stats.ks_2samp(X[:, j], S[:, j]).pvalue for j in range(X.shape[1])]
    assert np.mean(np.asarray(pvals) < 0.01) < 0.1


def test_inverse_transform_positions_place_values_inside_their_bins():
    X, _ = _modules()
    disc = public_discretization(X, 4)
    codes = disc.transform(X)
    rng = np.random.default_rng(0)
    lo = disc.inverse_transform(codes, rng, positions=np.zeros(codes.shape))
    hi = disc.inverse_transform(codes, rng, positions=np.ones(codes.shape))
    mid = disc.inverse_transform(codes, rng, positions=np.full(codes.shape, 0.5))
    assert (lo <= mid + 1e-12).all() and (mid <= hi + 1e-12).all()
    assert (disc.transform(mid) == codes).all()  # a draw stays in its bin
    with pytest.raises(ValueError, match="positions must have the shape"):
        disc.inverse_transform(codes, rng, positions=np.zeros((2, 2)))


def test_private_fit_spends_the_budget_and_keeps_modules_at_large_eps():
    g = _fit(50.0, seed=1)
    rep = g.privacy_report()
    assert rep["eps_spent"] <= 50.0 and rep["eps_spent"] == pytest.approx(50.0, rel=1e-6)
    names = [e["name"] for e in g.ledger.entries]
    assert names == [
        "dp_quantile_histogram",
        "gene-gene scores",
        "label_marginal",
        "gene_label_marginals",
        "edge score cross-products",
    ]
    module = np.arange(40) // 10
    assert (module[g.edges_[:, 0]] == module[g.edges_[:, 1]]).mean() > 0.8
    assert g.class_counts_.shape == (2,) and not np.array_equal(g.class_counts_, np.bincount(_modules()[1]))


def test_every_release_has_its_stated_sensitivity_and_calibrated_noise():
    """Each release's recorded sensitivity bounds the change from adding one record (worst case attained up to the
    stated bound), its values are the documented statistics, and its noise is sigma = sensitivity / sqrt(2 rho_share)
    (chi-square check of the noise actually drawn)."""
    X, _ = _modules()
    eps = 5.0
    g = _fit(eps, seed=3, keep=True)
    rho = Budget(eps).rho * (1 - 1e-9)
    rho_left = rho * (1 - g.discretization_share)
    rho_sel = g.selection_share * rho_left
    rho_marg = (rho_left - rho_sel) * g.marginal_share
    rho_edge = rho_left - rho_sel - rho_marg
    d, B = X.shape[1], g.n_bins
    codes = g.disc_.transform(X)
    children = np.flatnonzero(g.parent_ >= 0)
    n_edges = len(children)
    expected = {
        "dp_quantile_histogram": (math.sqrt(d), rho * g.discretization_share),
        "gene-gene scores": (SELECTION_SENSITIVITY, rho_sel),
        # the d + 1 marginals (joint sensitivity sqrt(d + 1)) are two releases at one noise level
        "label_marginal": (1.0, rho_marg / (d + 1)),
        "gene_label_marginals": (math.sqrt(d), rho_marg * d / (d + 1)),
        "edge score cross-products": (math.sqrt(n_edges), rho_edge),
    }
    for e, v, r in zip(g.ledger.entries, g.ledger.values, g.ledger.released, strict=True):
        sens, share = expected[e["name"]]
        assert e["sensitivity"] == pytest.approx(sens), e["name"]
        assert e["noise"] == pytest.approx(gaussian_sigma_for_rho(share, sens), rel=1e-6), e["name"]
        z = np.ravel(r - v) / e["noise"]
        lo, hi = stats.chi2.ppf([0.0005, 0.9995], z.size)
        assert lo < np.sum(z**2) < hi, e["name"]
    vals = {e["name"]: v for e, v in zip(g.ledger.entries, g.ledger.values, strict=True)}
    np.testing.assert_allclose(vals["gene-gene scores"], selection_scores(codes, B))
    np.testing.assert_allclose(vals["edge score cross-products"], edge_cross_products(codes, B, g.parent_, children))
    # neighbouring data: one record added, the same bins and tree (the releases' inputs besides the data)
    for new in (np.zeros(d, dtype=np.intp), np.full(d, B - 1), np.tile([0, B - 1], d // 2)):
        codes2 = np.vstack([codes, new])
        change = np.linalg.norm(selection_scores(codes2, B) - selection_scores(codes, B))
        assert change <= SELECTION_SENSITIVITY + 1e-9
        change = np.linalg.norm(
            edge_cross_products(codes2, B, g.parent_, children) - edge_cross_products(codes, B, g.parent_, children)
        )
        assert change <= math.sqrt(n_edges) + 1e-9 and change == pytest.approx(math.sqrt(n_edges))  # extreme bins


def test_selection_sensitivity_bound_holds_for_any_record():
    rng = np.random.default_rng(0)
    for B in (2, 4, 8):
        codes = rng.integers(0, B, (200, 30))
        v = bin_scores(codes, B)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
        per = selection_sensitivity(v)
        assert per.max() <= SELECTION_SENSITIVITY + 1e-12
        # the exact contribution of one record equals the formula
        one = np.triu(np.outer(v[0], v[0]), 1)
        assert np.linalg.norm(one) == pytest.approx(per[0])


def test_spanning_tree_is_maximal_and_spanning():
    rng = np.random.default_rng(1)
    W = rng.random((12, 12))
    W = W + W.T
    edges = spanning_tree(W)
    assert len(edges) == 11
    from scipy.sparse.csgraph import connected_components

    A = np.zeros((12, 12))
    A[edges[:, 0], edges[:, 1]] = 1
    assert connected_components(A, directed=False)[0] == 1
    # weight of the result equals the maximum spanning tree's (brute force via negated minimum spanning tree)
    from scipy.sparse.csgraph import minimum_spanning_tree

    best = -minimum_spanning_tree(-np.triu(W, 1)).sum()
    assert W[edges[:, 0], edges[:, 1]].sum() == pytest.approx(best)


def test_sample_shapes_and_class_order():
    g = _fit(None)
    S = g.sample(np.array([3, 5]))
    assert S.shape == (8, 40) and np.isfinite(S).all()
    assert g.sample(np.array([0, 0])).shape == (0, 40)
    with pytest.raises(ValueError, match="class_counts"):
        g.sample(np.array([1, 2, 3]))


@pytest.mark.parametrize("kw", [{"selection_share": 0.0}, {"marginal_share": 1.0}, {"smoothing": -1}])
def test_bad_parameters_raise(kw):
    with pytest.raises(ValueError):
        MSTGenerator(**kw)
