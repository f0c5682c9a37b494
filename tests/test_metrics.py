"""Known-answer, statistical and property tests of the reference-study metrics (AnnData-free)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scdpsynth.metrics import registry
from scdpsynth.metrics._base import TIDY_COLUMNS, EvalData
from scdpsynth.metrics.coexpression import (
    coexpression,
    coexpression_edges,
    group_fold_changes,
    leiden_modules,
    pearson_pvalues,
)
from scdpsynth.metrics.de_genes import de_genes, de_masks, pairwise_ranksum
from scdpsynth.metrics.distance import knn_distance, knn_distances
from scdpsynth.metrics.ml_efficacy import ml_efficacy
from scdpsynth.metrics.overlap import histogram_intersection, histogram_overlap

CLASSES = ["a", "b", "c"]


def _row(df, variant, group="all"):
    sel = df[(df["variant"] == variant) & (df["group"] == group)]
    assert len(sel) == 1, f"expected one row {variant!r}/{group!r}, got {len(sel)}"
    return sel.iloc[0]


def _labelled(n_per_class=60, d=30, shift=1.5, seed=0, n_de=5):
    """Gaussian classes: class k shifts genes [k*n_de, (k+1)*n_de) up by ``shift``."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    X = rng.normal(size=(y.size, d))
    for k in range(3):
        X[y == k, k * n_de : (k + 1) * n_de] += shift
    return EvalData(X=X, y=y, classes=CLASSES)


# ---------------------------------------------------------------- registry / contract


def test_registry_entries_and_tidy_contract():
    real, hold = _labelled(seed=0), _labelled(seed=1)
    syn = _labelled(seed=2)
    for name in ["ml_efficacy", "histogram_overlap", "knn_distance", "de_genes", "coexpression"]:
        info = registry.info(name)
        assert {"needs_holdout", "needs_labels", "higher_is_better"} <= set(info)
        kwargs = {"min_module_size": 3} if name == "coexpression" else {}
        df = registry.get(name)(real, syn, holdout=hold, **kwargs)
        assert list(df.columns[:5]) == TIDY_COLUMNS
        assert (df["metric"] == name).all()
        assert df["variant"].map(type).eq(str).all() and df["group"].map(type).eq(str).all()


# ---------------------------------------------------------------- histogram overlap


def test_histogram_intersection_hand_computed():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # scaled 0, 1/3, 2/3, 1 -> bins (2): [0, 0, 1, 1]
    assert histogram_intersection(real, np.zeros((4, 1)), bins=2)[0] == pytest.approx(0.5)
    # out of the real range: no overlap at all, even though values are identical to each other
    assert histogram_intersection(real, np.full((3, 1), 5.0), bins=2)[0] == 0.0
    # 3 bins: real [0, 1, 2, 2]; syn [0, 0, 2, 2] -> min(1/4, 2/4) + min(1/4, 0) + min(2/4, 2/4) = 3/4
    syn = np.array([[0.0], [0.5], [3.0], [2.9]])
    assert histogram_intersection(real, syn, bins=3)[0] == pytest.approx(0.75)
    # constant real gene: width 1, everything within [min, min + 1/bins) shares the first bin
    const = np.full((4, 1), 2.0)
    assert histogram_intersection(const, np.array([[2.0], [2.0], [9.0], [2.1]]), bins=4)[0] == pytest.approx(0.75)


def test_histogram_overlap_identical_and_shuffled_genes():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=np.arange(40) * 3.0, scale=1.0, size=(300, 40))
    real = EvalData(X=X)
    df = histogram_overlap(real, EvalData(X=X.copy()))
    assert df["variant"].tolist() == ["bins=25", "bins=50", "bins=100"]
    np.testing.assert_allclose(df["value"], 1.0)
    assert df["reference"].isna().all()
    shuffled = EvalData(X=X[:, rng.permutation(40)])  # genes swapped: marginals in the wrong place
    assert (histogram_overlap(real, shuffled)["value"] < 0.15).all()
    # a fresh sample of the same distribution: high but below 1; finer bins give lower overlap
    fresh = EvalData(X=rng.normal(loc=np.arange(40) * 3.0, scale=1.0, size=(300, 40)))
    v = histogram_overlap(real, fresh, holdout=fresh)
    assert 0.75 < v["value"].iloc[0] < 1.0
    assert v["value"].is_monotonic_decreasing
    np.testing.assert_allclose(v["value"], v["reference"])


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(2, 20), st.integers(1, 5)), elements=st.floats(-50, 50)),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(5)), elements=st.floats(-50, 50)),
    st.sampled_from([1, 3, 25]),
)
def test_histogram_intersection_properties(real, other, bins):
    other = other[:, : real.shape[1]]
    h = histogram_intersection(real, other, bins)
    assert h.shape == (real.shape[1],)
    assert np.all(h >= -1e-12) and np.all(h <= 1 + 1e-12)
    np.testing.assert_allclose(histogram_intersection(real, real, bins), 1.0)
    # order of the rows does not matter
    np.testing.assert_allclose(histogram_intersection(real, other[::-1], bins), h)


# ---------------------------------------------------------------- ML efficacy


def test_ml_efficacy_identical_equals_reference_and_separable_is_perfect():
    real, hold = _labelled(shift=6.0, seed=0), _labelled(shift=6.0, seed=1)
    df = ml_efficacy(real, EvalData(X=real.X.copy(), y=real.y.copy(), classes=CLASSES), holdout=hold)
    for v in ["accuracy", "balanced_accuracy", "macro_f1"]:
        r = _row(df, v)
        assert r["value"] == r["reference"] == 1.0
    assert sorted(df.loc[df["variant"] == "f1", "group"]) == CLASSES


def test_ml_efficacy_shuffled_labels_near_chance():
    real, hold = _labelled(shift=2.0, seed=0), _labelled(shift=2.0, seed=1)
    rng = np.random.default_rng(3)
    syn = EvalData(X=real.X, y=rng.permutation(real.y), classes=CLASSES)
    df = ml_efficacy(real, syn, holdout=hold)
    acc = _row(df, "accuracy")
    assert acc["reference"] > 0.9
    # 180 test samples, 3 classes: chance 1/3, binomial sd ~0.035; generous 4-sd band
    assert abs(acc["value"] - 1 / 3) < 0.15


def test_ml_efficacy_single_class_synthetic_hand_computed():
    real = _labelled(n_per_class=10, seed=0)
    syn = EvalData(X=real.X[:5], y=np.zeros(5, dtype=np.int64), classes=CLASSES)
    hold = EvalData(X=np.zeros((4, real.X.shape[1])), y=np.array([0, 0, 0, 1]), classes=CLASSES)
    df = ml_efficacy(real, syn, holdout=hold)  # constant prediction "a"
    assert _row(df, "accuracy")["value"] == pytest.approx(0.75)
    assert _row(df, "balanced_accuracy")["value"] == pytest.approx(0.5)  # recall 1 and 0 over present classes
    assert _row(df, "macro_f1")["value"] == pytest.approx((2 * 0.75 / 1.75 + 0.0) / 2)
    assert _row(df, "f1", "a")["value"] == pytest.approx(2 * 0.75 / 1.75)


def test_ml_efficacy_unscaled_default_is_robust_to_near_constant_synthetic_genes():
    """A gene a generator renders nearly constant must not dominate the real predictions (why standardize=False)."""
    real, hold = _labelled(shift=3.0, seed=0), _labelled(shift=3.0, seed=1)
    rng = np.random.default_rng(5)
    junk = 1e-3 * real.y + 1e-4 * rng.normal(size=real.y.size)  # tiny-variance, class-coded in synthetic only
    syn = EvalData(X=np.column_stack([real.X, junk]), y=real.y, classes=CLASSES)
    real2 = EvalData(X=np.column_stack([real.X, rng.normal(size=real.y.size)]), y=real.y, classes=CLASSES)
    hold2 = EvalData(X=np.column_stack([hold.X, rng.normal(size=hold.y.size)]), y=hold.y, classes=CLASSES)
    assert _row(ml_efficacy(real2, syn, holdout=hold2), "accuracy")["value"] == 1.0
    scaled = _row(ml_efficacy(real2, syn, holdout=hold2, standardize=True), "accuracy")
    assert scaled["value"] < 0.5 < scaled["reference"]  # real-trained reference unaffected


def test_ml_efficacy_needs_holdout_and_labels():
    d = _labelled()
    with pytest.raises(ValueError, match="holdout"):
        ml_efficacy(d, d)
    with pytest.raises(ValueError, match="groupby"):
        ml_efficacy(d, EvalData(X=d.X), holdout=d)


# ---------------------------------------------------------------- kNN distance


def test_knn_distances_hand_computed():
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    q = np.array([[0.5, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(knn_distances(q, ref, k=2), [[0.5, 0.5], [3.0, 4.0]])
    np.testing.assert_array_equal(knn_distances(ref, ref, k=1), 0.0)  # exact zeros for identical records
    with pytest.raises(ValueError, match="k must be"):
        knn_distances(q, ref, k=5)


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 15), st.just(3)), elements=st.floats(-1e3, 1e3)),
    hnp.arrays(np.float64, st.tuples(st.integers(3, 15), st.just(3)), elements=st.floats(-1e3, 1e3)),
    st.integers(1, 3),
)
def test_knn_distances_match_brute_force(q, ref, k):
    from scipy.spatial.distance import cdist

    expected = np.sort(cdist(q, ref), axis=1)[:, :k]
    np.testing.assert_allclose(knn_distances(q, ref, k, chunk_size=4), expected, rtol=1e-9, atol=1e-9)


def test_knn_distance_copies_fresh_and_shifted():
    rng = np.random.default_rng(0)
    train, hold = EvalData(X=rng.normal(size=(200, 10))), EvalData(X=rng.normal(size=(100, 10)))
    copies = knn_distance(train, EvalData(X=train.X[:80].copy()), holdout=hold)
    assert _row(copies, "dcr_to_train")["value"] == 0.0
    assert _row(copies, "share_closer_to_train")["value"] == 1.0
    assert _row(copies, "share_closer_to_train")["reference"] == pytest.approx(200 / 300)
    fresh = knn_distance(train, EvalData(X=rng.normal(size=(300, 10))), holdout=hold)
    for v in ["knn_to_holdout", "knn_to_train"]:
        r = _row(fresh, v)
        assert r["value"] == pytest.approx(r["reference"], rel=0.08)
    # 300 exchangeable samples: share ~ Binomial-ish around 2/3 (sd ~0.03); 4-sd band
    assert abs(_row(fresh, "share_closer_to_train")["value"] - 2 / 3) < 0.12
    shifted = knn_distance(train, EvalData(X=rng.normal(size=(100, 10)) + 5.0), holdout=hold)
    r = _row(shifted, "knn_to_holdout")
    assert r["value"] > 2 * r["reference"]


# ---------------------------------------------------------------- DE genes


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 4),
    st.integers(6, 40),
    st.integers(1, 6),
    st.integers(0, 2**16),
    st.sampled_from([1, 3, 1000]),
)
def test_pairwise_ranksum_matches_scipy(n_classes, n, d, seed, n_values):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
    X = rng.integers(0, n_values, size=(n, d)).astype(np.float64)  # many ties for small n_values
    U, p = pairwise_ranksum(X, y, n_classes, max_block=n_classes * n * 2)  # several gene blocks
    for a in range(n_classes):
        for b in range(n_classes):
            if a == b:
                continue
            res = ss.mannwhitneyu(X[y == a], X[y == b], axis=0, method="asymptotic")
            np.testing.assert_allclose(U[a, b], res.statistic, rtol=1e-12)
            np.testing.assert_allclose(p[a, b], np.nan_to_num(res.pvalue, nan=1.0), rtol=1e-9, atol=1e-12)


def test_de_genes_hand_computed_case():
    # classes a, b with 10 samples each; gene 0 up in a, gene 1 equal in distribution, gene 2 down in a
    base = np.arange(10, dtype=np.float64)
    y = np.repeat([0, 1], 10)
    real = EvalData(
        X=np.column_stack([np.r_[base + 20, base], np.r_[base, base], np.r_[base, base + 20]]), y=y, classes=["a", "b"]
    )
    # synthetic: gene 0 up (correct), gene 1 up (false positive), gene 2 not DE (missed down gene)
    syn = EvalData(
        X=np.column_stack([np.r_[base + 20, base], np.r_[base + 20, base], np.r_[base, base]]), y=y, classes=["a", "b"]
    )
    df = de_genes(real, syn)
    assert _row(df, "tpr_up", "a vs b")["value"] == 1.0
    assert _row(df, "fpr_up", "a vs b")["value"] == 0.5  # gene 1 of the two non-up genes
    assert _row(df, "tpr_down", "a vs b")["value"] == 0.0
    assert _row(df, "fpr_down", "a vs b")["value"] == 0.0
    assert _row(df, "tpr")["value"] == pytest.approx(0.5)
    assert _row(df, "fpr")["value"] == pytest.approx(0.25)
    assert np.isnan(_row(df, "tpr")["reference"])


def test_de_genes_identical_perfect_and_shuffled_labels_bad():
    real = _labelled(n_per_class=40, d=60, shift=1.5, seed=0, n_de=8)
    hold = _labelled(n_per_class=40, d=60, shift=1.5, seed=1, n_de=8)
    df = de_genes(real, EvalData(X=real.X.copy(), y=real.y.copy(), classes=CLASSES), holdout=hold)
    assert _row(df, "tpr")["value"] == 1.0 and _row(df, "fpr")["value"] == 0.0
    assert 0.5 < _row(df, "tpr")["reference"] <= 1.0
    rng = np.random.default_rng(1)
    shuffled = EvalData(X=real.X, y=rng.permutation(real.y), classes=CLASSES)
    bad = de_genes(real, shuffled)
    # with labels shuffled, a gene is called DE by chance: ~alpha / 2 per direction; planted DE genes are lost
    assert _row(bad, "tpr")["value"] < 0.2
    assert _row(bad, "fpr")["value"] < 0.08


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 4), st.sampled_from([2, 5, 1000]))
def test_de_genes_properties(seed, n_classes, n_values):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.repeat(np.arange(n_classes), 3), rng.integers(0, n_classes, 20)])
    X = rng.integers(0, n_values, size=(y.size, 12)).astype(np.float64)
    X[y == 0, :4] += n_values  # planted DE genes
    names = [str(c) for c in range(n_classes)]
    real = EvalData(X=X, y=y, classes=names)
    same = de_genes(real, EvalData(X=X.copy(), y=y.copy(), classes=names))
    rates = same.loc[same["group"] != "all"]
    assert np.all(rates.loc[rates["variant"].str.startswith("tpr"), "value"].dropna() == 1.0)
    assert np.all(rates.loc[rates["variant"].str.startswith("fpr"), "value"].dropna() == 0.0)
    other = de_genes(real, EvalData(X=rng.permutation(X), y=y, classes=names))
    v = other["value"].dropna()
    assert ((v >= 0) & (v <= 1)).all()
    # up in (a, b) is down in (b, a): the masks are antisymmetric
    up, down = de_masks(X, y, n_classes)
    np.testing.assert_array_equal(up, down.transpose(1, 0, 2))


def test_de_masks_bh_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    real = _labelled(n_per_class=20, d=50, shift=1.0, seed=4)
    _, p = pairwise_ranksum(real.X, real.y, 3)
    up, down = de_masks(real.X, real.y, 3, alpha=0.05, correction="bh")
    rej = multipletests(p[0, 1], alpha=0.05, method="fdr_bh")[0]
    np.testing.assert_array_equal(up[0, 1] | down[0, 1], rej)
    with pytest.raises(ValueError, match="correction"):
        de_masks(real.X, real.y, 3, correction="bonferonni")


# ---------------------------------------------------------------- co-expression


def test_pearson_pvalues_match_scipy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    X[:, 1] += X[:, 0]
    X = np.column_stack([X, np.ones(30)])  # a constant gene
    r, p = pearson_pvalues(X)
    for i in range(4):
        for j in range(4):
            if i != j:
                res = ss.pearsonr(X[:, i], X[:, j])
                assert r[i, j] == pytest.approx(res.statistic, abs=1e-12)
                assert p[i, j] == pytest.approx(res.pvalue, rel=1e-8, abs=1e-300)
    assert (r[4, :4] == 0).all() and (p[4] == 1).all()


def test_coexpression_edges_hand_computed():
    g1 = np.arange(1.0, 9.0)
    alt = np.array([1.0, -1, 1, -1, 1, -1, 1, -1])
    real = np.column_stack([g1, 2 * g1, alt])  # edges: (0, 1) with r = 1
    syn = np.column_stack([g1, g1[::-1], g1 + alt * 0.01])  # (0, 2) r ~ 1 and (1, 2) r ~ -1
    e_real = coexpression_edges(*pearson_pvalues(real), threshold=0.7)
    e_syn = coexpression_edges(*pearson_pvalues(syn), threshold=0.7)
    np.testing.assert_array_equal(e_real, [True, False, False])  # pairs (0,1), (0,2), (1,2)
    np.testing.assert_array_equal(e_syn, [False, True, False])
    df = coexpression(EvalData(X=real), EvalData(X=syn), thresholds=(0.7,), min_module_size=2)
    assert _row(df, "r>0.7:correct")["value"] == 0
    assert _row(df, "r>0.7:spurious")["value"] == 1
    assert _row(df, "r>0.7:n_real")["value"] == 1
    assert _row(df, "n_modules")["value"] == 1  # genes 0 and 1


def test_group_fold_changes_hand_computed():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [3.0, 5.0], [3.0, 7.0]])
    y = np.array([0, 0, 1, 1])
    # class means: c0 [1, 2], c1 [3, 6]; mean over classes [2, 4]; gene GFC c0 [-1, -2], c1 [1, 2]
    gfc = group_fold_changes(X, y, 3, [np.array([0, 1]), np.array([1])])  # class 2 has no samples
    np.testing.assert_allclose(gfc[:, :2], [[-1.5, 1.5], [-2.0, 2.0]])
    assert np.isnan(gfc[:, 2]).all()


def test_group_fold_changes_hcocena_hand_computed():
    linear = np.array([[1.0, 0.0], [3.0, 0.0], [6.0, 2.0], [6.0, 2.0]])
    y = np.array([0, 0, 1, 1])
    # gene 0: class means 2, 6, mean over classes 4 -> -4/2 = -2, 6/4 = 1.5
    # gene 1: class means 0, 2, mean 1 -> -1/0 = -inf clipped to -2, 2/1 = 2
    gfc = group_fold_changes(np.log1p(linear), y, 2, [np.array([0, 1]), np.array([1])], method="hcocena")
    np.testing.assert_allclose(gfc, [[-2.0, 1.75], [-2.0, 2.0]])
    gfc = group_fold_changes(np.log1p(linear), y, 2, [np.array([1])], method="hcocena", range_gfc=1.5)
    np.testing.assert_allclose(gfc, [[-1.5, 1.5]])
    with pytest.raises(ValueError, match="method"):
        group_fold_changes(linear, y, 2, [np.array([0])], method="ratio")


def test_leiden_modules_two_cliques_deterministic():
    d = 24
    r = np.zeros((d, d))
    r[:12, :12] = 0.9
    r[12:, 12:] = 0.8
    r[0, 12] = r[12, 0] = 0.75  # one bridge
    np.fill_diagonal(r, 1.0)
    edges = coexpression_edges(r, np.zeros_like(r), threshold=0.7)
    mods = leiden_modules(r, edges, min_size=5, seed=0)
    assert [m.tolist() for m in mods] == [list(range(12)), list(range(12, 24))]
    assert [m.tolist() for m in leiden_modules(r, edges, min_size=13, seed=0)] == []


def _modular(n_per_class=60, seed=0, n_noise=10):
    """Two modules of 15 genes, each driven by a latent factor whose mean depends on the class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    f1 = rng.normal(size=y.size) + np.array([2.0, 0.0, -2.0])[y]
    f2 = rng.normal(size=y.size) + np.array([0.0, 1.5, 0.0])[y]
    X = np.column_stack(
        [
            f1[:, None] + 0.3 * rng.normal(size=(y.size, 15)),
            f2[:, None] + 0.3 * rng.normal(size=(y.size, 15)),
            rng.normal(size=(y.size, n_noise)),
        ]
    )
    return EvalData(X=X, y=y, classes=CLASSES)


def test_coexpression_identical_perfect_and_shuffled_bad():
    real, hold = _modular(seed=0), _modular(seed=1)
    df = coexpression(real, EvalData(X=real.X.copy(), y=real.y, classes=CLASSES), holdout=hold)
    assert _row(df, "n_modules")["value"] == 2
    for thr in ("0", "0.7"):
        assert _row(df, f"r>{thr}:correct")["value"] == _row(df, f"r>{thr}:n_real")["value"] > 0
        assert _row(df, f"r>{thr}:spurious")["value"] == 0
    assert _row(df, "gfc_pearson")["value"] == pytest.approx(1.0)
    assert _row(df, "gfc_mae")["value"] == 0.0
    assert _row(df, "gfc_pearson")["reference"] > 0.95  # fresh real data reproduce the module GFCs
    # module 1 (f1): GFC ~ +2 in class a, ~ -2 in class c (loading 1, noise 0.3)
    assert _row(df, "gfc:M1", "a")["reference"] == pytest.approx(2.0, abs=0.4)
    assert _row(df, "gfc:M1", "c")["reference"] == pytest.approx(-2.0, abs=0.4)

    rng = np.random.default_rng(2)
    shuffled = EvalData(X=rng.permuted(real.X, axis=0), y=real.y, classes=CLASSES)  # each gene permuted
    bad = coexpression(real, shuffled)
    assert _row(bad, "r>0.7:correct")["value"] == 0
    assert _row(bad, "r>0.7:recall")["value"] == 0.0
    assert _row(bad, "module_coherence")["value"] < 0.1 < 0.8 < _row(bad, "module_coherence")["reference"]
    assert abs(_row(bad, "gfc_mae")["value"]) > 0.8


def test_coexpression_recall_chance_is_what_random_edges_score():
    """A synthetic set in which every gene follows one factor calls (almost) every pair an edge: its recall is
    high, and so is its chance level (n_syn / pairs), which says it is no co-expression; precision's chance level
    is the real edge density. Random edge sets of that size score recall at the chance level on average."""
    from scdpsynth.metrics.coexpression import _edge_chance, _edge_counts

    real = _modular(seed=0)
    rng = np.random.default_rng(3)
    f = rng.normal(size=real.X.shape[0])
    flat = EvalData(X=f[:, None] + 0.2 * rng.normal(size=real.X.shape), y=real.y, classes=CLASSES)
    df = coexpression(real, flat)
    d = real.X.shape[1]
    pairs = d * (d - 1) / 2
    rec = _row(df, "r>0.7:recall")
    assert rec["value"] > 0.9 and rec["chance"] == pytest.approx(_row(df, "r>0.7:n_syn")["value"] / pairs)
    assert rec["chance"] > 0.9
    prec = _row(df, "r>0.7:precision")
    assert prec["chance"] == pytest.approx(_row(df, "r>0.7:n_real")["value"] / pairs)
    # Monte Carlo: random edge sets of a fixed size
    e_real = rng.random(2000) < 0.05
    recalls = []
    for _ in range(400):
        e_syn = np.zeros(2000, dtype=bool)
        e_syn[rng.choice(2000, 300, replace=False)] = True
        recalls.append(_edge_counts(e_real, e_syn)["recall"])
    chance = _edge_chance(_edge_counts(e_real, e_syn), 2000)["recall"]
    assert chance == pytest.approx(0.15) and np.mean(recalls) == pytest.approx(chance, abs=0.01)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16), st.integers(8, 40), st.integers(3, 10))
def test_coexpression_identical_properties(seed, n, d):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 1] = X[:, 0] + 0.1 * rng.normal(size=n)
    df = coexpression(EvalData(X=X), EvalData(X=X.copy()), min_module_size=2)
    for thr in ("0", "0.7"):
        assert _row(df, f"r>{thr}:spurious")["value"] == 0
        assert _row(df, f"r>{thr}:correct")["value"] == _row(df, f"r>{thr}:n_real")["value"]
    assert _row(df, "r>0.7:n_real")["value"] >= 1  # genes 0 and 1


def test_coexpression_top_genes_and_no_labels():
    real = _modular(seed=0, n_noise=40)
    df = coexpression(EvalData(X=real.X), EvalData(X=real.X), n_top_genes=30)
    assert _row(df, "r>0.7:n_real")["value"] == 2 * (15 * 14 / 2)  # the 30 module genes have the top variance
    assert not df["variant"].str.startswith("gfc").any()


@pytest.mark.slow  # pynndescent's numba compilation takes about a minute in a fresh environment
def test_knn_distances_approximate_matches_exact_on_real_data():
    """pynndescent search (used above EXACT_MAX_PAIRS) finds nearly all exact neighbours on log-normalised Kang:
    measured 99.75% of closest records and 99.4% of 10-NN distances identical (400 queries, 1,156 references)."""
    import scdpsynth as sd
    from scdpsynth._transforms import log_normalise
    from scdpsynth.metrics.distance import knn_distances

    a = sd.datasets.kang_example()
    X = log_normalise(a.X)[:, np.argsort(-np.asarray(a.X.sum(axis=0)).ravel())[:200]]
    query, ref = X[:400], X[400:]
    exact = knn_distances(query, ref, 10, method="exact")
    approx = knn_distances(query, ref, 10, method="approximate")
    assert np.all(approx >= exact - 1e-9)  # exact distances of true records: never closer than the true k-NN
    assert np.mean(approx[:, 0] == exact[:, 0]) > 0.99  # the closest record (DCR)
    assert np.mean(np.isclose(approx, exact)) > 0.98
    np.testing.assert_array_equal(knn_distances(query, ref, 10), exact)  # small: "auto" is exact
    with pytest.raises(ValueError, match="method must be"):
        knn_distances(query, ref, 10, method="fast")
