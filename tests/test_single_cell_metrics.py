"""Single-cell metrics: SCC, LISI mixing, random-forest ROC-AUC."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scdpsynth.metrics import registry
from scdpsynth.metrics._base import TIDY_COLUMNS, EvalData
from scdpsynth.metrics.single_cell import celltype_rf_auc, lisi, lisi_scores, scc


def _lognorm(X):
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
    lib = np.maximum(X.sum(axis=1, keepdims=True), 1.0)
    return np.log1p(X / lib * 1e4)


@functools.cache
def _kang_eval():
    """Embedded Kang data, log-normalised, split in two halves of the same cells' distribution (stratified)."""
    import scdpsynth as sd

    a = sd.datasets.kang_example()
    X = _lognorm(a.X)
    y = a.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    classes = [str(c) for c in a.obs["cell_type"].cat.categories]
    rng = np.random.default_rng(0)
    half = np.zeros(len(y), bool)
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        half[rng.choice(idx, idx.size // 2, replace=False)] = True
    A = EvalData(X=X[half], y=y[half], classes=classes)
    B = EvalData(X=X[~half], y=y[~half], classes=classes)
    return A, B


@pytest.fixture
def halves():
    A, B = _kang_eval()
    return (EvalData(X=A.X.copy(), y=A.y.copy(), classes=list(A.classes)),
            EvalData(X=B.X.copy(), y=B.y.copy(), classes=list(B.classes)))  # fmt: skip


def test_registered():
    for name in ("scc", "lisi", "celltype_rf_auc"):
        assert name in registry
        assert registry.info(name)["higher_is_better"] is True
    assert registry.info("celltype_rf_auc")["needs_holdout"] is True
    assert registry.get("scc") is scc


# --------------------------------------------------------------------------- SCC
def test_scc_identical_is_one_and_reversed_is_minus_one():
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 1.0, size=(50, 8)) + 10.0 * np.arange(8)  # strictly increasing gene means
    d = EvalData(X=X, y=np.repeat([0, 1], 25), classes=["a", "b"])
    df = scc(d, d)
    assert list(df.columns[:5]) == TIDY_COLUMNS
    np.testing.assert_allclose(df["value"], 1.0)
    assert set(df["group"]) == {"all", "a", "b"}
    # synthetic means in the reverse order of the real ones: Spearman -1 (hand-computed)
    rev = EvalData(X=X[:, ::-1].copy())
    out = scc(EvalData(X=X), rev)
    assert out.loc[out.variant == "mean", "value"].item() == pytest.approx(-1.0)


def test_scc_real_halves_high_and_shuffled_genes_low(halves):
    A, B = halves
    df = scc(A, B)
    allrow = df[(df.group == "all")].set_index("variant")["value"]
    assert allrow["mean"] > 0.95 and allrow["correlation"] > 0.8
    rng = np.random.default_rng(1)
    C = EvalData(X=A.X[:, rng.permutation(A.X.shape[1])], y=A.y, classes=A.classes)
    bad = scc(B, C)
    assert bad.loc[(bad.group == "all") & (bad.variant == "mean"), "value"].item() < 0.3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, (12, 5), elements=st.floats(0, 10)), arrays(np.float64, (9, 5), elements=st.floats(0, 10)))
def test_scc_bounded(a, b):
    df = scc(EvalData(X=a), EvalData(X=b))
    v = df["value"].to_numpy()
    assert np.all(np.isnan(v) | ((v >= -1 - 1e-12) & (v <= 1 + 1e-12)))


# --------------------------------------------------------------------------- LISI
def test_lisi_scores_known_answers():
    # unit square, labels a b / a b by column: each point's 2 nearest neighbours (distance 1) differ in label -> 2
    # (self excluded); with both neighbours of the other label ([0, 1, 1, 0]) the index is 1
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(lisi_scores(X, np.array([0, 1, 0, 1]), perplexity=2, n_neighbors=2), 2.0)
    np.testing.assert_allclose(lisi_scores(X, np.array([0, 1, 1, 0]), perplexity=2, n_neighbors=2), 1.0)
    # a single label everywhere: 1
    np.testing.assert_allclose(lisi_scores(X, np.zeros(4), perplexity=2, n_neighbors=2), 1.0)
    # two far-apart clusters, one label each: 1
    rng = np.random.default_rng(0)
    Y = np.vstack([rng.normal(0, 1, (100, 3)), rng.normal(100, 1, (100, 3))])
    np.testing.assert_allclose(lisi_scores(Y, np.repeat([0, 1], 100), perplexity=10), 1.0, atol=1e-9)


def test_lisi_scores_perplexity_calibration():
    """Random labels on i.i.d. points: LISI ~ 2 - small; with perplexity P the Simpson index is ~ 1/2 + 1/(2P)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5))
    s = lisi_scores(X, rng.integers(0, 2, 3000), perplexity=30)
    assert 1.8 < np.median(s) < 2.0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, (30, 3), elements=st.floats(-5, 5)), st.integers(1, 3), st.integers(0, 2**16))
def test_lisi_scores_between_one_and_number_of_labels(X, n_labels, seed):
    labels = np.random.default_rng(seed).integers(0, n_labels, X.shape[0])
    s = lisi_scores(X, labels, perplexity=5)
    assert np.all(s >= 1 - 1e-9) and np.all(s <= n_labels + 1e-9)


def test_lisi_mixing_real_vs_real_high_and_shifted_low(halves):
    A, B = halves
    df = lisi(A, B, n_pcs=20, n_genes=300)
    assert df.loc[df.group == "all", "value"].item() > 0.8
    assert ((df["value"] >= 0) & (df["value"] <= 1)).all()
    shifted = EvalData(X=B.X + 3.0 * (B.X.std(axis=0) + 0.5), y=B.y, classes=B.classes)
    assert lisi(A, shifted, n_pcs=20, n_genes=300).loc[lambda d: d.group == "all", "value"].item() < 0.1


# --------------------------------------------------------------------------- RF ROC-AUC
def test_celltype_rf_auc_real_as_synthetic_matches_reference(halves):
    A, B = halves
    df = celltype_rf_auc(A, A, holdout=B, n_estimators=50, n_genes=200)
    row = df[df.group == "all"].iloc[0]
    assert row["value"] > 0.9
    assert row["value"] == pytest.approx(row["reference"], abs=0.02)
    assert set(df.group) - {"all"} <= set(A.classes)


def test_celltype_rf_auc_shuffled_labels_near_chance(halves):
    A, B = halves
    rng = np.random.default_rng(0)
    noise = EvalData(X=A.X, y=rng.permutation(A.y), classes=A.classes)
    df = celltype_rf_auc(A, noise, holdout=B, n_estimators=50, n_genes=200)
    assert abs(df.loc[df.group == "all", "value"].item() - 0.5) < 0.1


def test_celltype_rf_auc_missing_class_and_errors(halves):
    A, B = halves
    keep = A.y != 0
    partial = EvalData(X=A.X[keep], y=A.y[keep], classes=A.classes)
    df = celltype_rf_auc(A, partial, holdout=B, n_estimators=20, n_genes=100)
    assert df.loc[df.group == A.classes[0], "value"].item() == pytest.approx(0.5)  # constant score 0 -> AUC 0.5
    with pytest.raises(ValueError, match="holdout"):
        celltype_rf_auc(A, A)
    with pytest.raises(ValueError, match="labels"):
        celltype_rf_auc(A, EvalData(X=A.X), holdout=B)
