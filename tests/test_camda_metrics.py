"""CAMDA challenge metrics: building blocks against scanpy / independent computations, and known answers."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from scipy import sparse, stats
from scipy.sparse.csgraph import dijkstra

from scdpsynth.metrics import PRESETS, registry
from scdpsynth.metrics import camda as C
from scdpsynth.metrics._base import TIDY_COLUMNS, EvalData
from scdpsynth.metrics._camda_prep import combat, filter_cells_genes, prepare_pair, seurat_hvg


# --------------------------------------------------------------------------- fixtures
@functools.cache
def _kang():
    """Embedded Kang counts in three random thirds (same distribution) and a gene-permuted 'shifted' copy."""
    import scdpsynth as sd

    a = sd.datasets.kang_example()
    X = sparse.csr_matrix(a.X)
    y = a.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    perm = rng.permutation(a.n_obs)
    n = a.n_obs // 3
    parts = [np.sort(perm[i * n : (i + 1) * n]) for i in range(3)]
    shifted = X[parts[1]][:, rng.permutation(X.shape[1])]
    return X, y, parts, shifted


def _eval(X, y):
    return EvalData(X=None, y=y, counts=X)


@pytest.fixture
def thirds():
    X, y, (a, b, c), shifted = _kang()
    return _eval(X[a], y[a]), _eval(X[b], y[b]), _eval(X[c], y[c]), _eval(shifted.copy(), y[b])


def _random_counts(n=120, g=40, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.8, 2.0, size=(1, g)) * rng.gamma(5, 0.2, size=(n, 1))
    return rng.poisson(mu).astype(np.float64)


# --------------------------------------------------------------------------- registry and preset
def test_registered_and_preset():
    assert PRESETS["camda"] == C.CAMDA_METRICS
    for name in C.CAMDA_METRICS:
        assert name in registry
        assert registry.info(name)["preset"] == "camda"
        assert registry.get(name) is getattr(C, name)
    assert "rf_auc" not in registry and "celltype_rf_auc" in registry


# --------------------------------------------------------------------------- preprocessing vs scanpy
def test_filter_matches_scanpy():
    import anndata as ad
    import scanpy as sc

    X = _random_counts(150, 60, seed=1)
    X[:5] = 0  # empty cells
    X[:, :4] = 0  # undetected genes
    X[5:7, 0] = 1  # a gene in only 2 cells
    a = ad.AnnData(X.copy())
    sc.pp.filter_cells(a, min_counts=10)
    sc.pp.filter_genes(a, min_cells=3)
    rows, cols = filter_cells_genes(X, min_counts=10, min_cells=3)
    assert rows.size == a.n_obs and cols.size == a.n_vars
    np.testing.assert_allclose(X[rows][:, cols], a.X)


@pytest.mark.parametrize("n_top", [10, 25, 1000])
def test_seurat_hvg_matches_scanpy(n_top):
    import anndata as ad
    import scanpy as sc

    X = _random_counts(200, 80, seed=2)
    a = ad.AnnData(X.copy())
    sc.pp.normalize_total(a, target_sum=1e4)
    norm = a.X.copy()
    sc.pp.log1p(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_top_genes > n_genes: scanpy warns and keeps all
        sc.pp.highly_variable_genes(a, flavor="seurat", n_top_genes=n_top)
    ours = seurat_hvg(sparse.csr_matrix(norm), n_top_genes=n_top)
    blocks = [sparse.csr_matrix(norm[:37]), sparse.csr_matrix(norm[37:])]  # row blocks: the same genes, unstacked
    np.testing.assert_array_equal(seurat_hvg(blocks, n_top_genes=n_top), ours)
    np.testing.assert_array_equal(ours, a.var["highly_variable"].to_numpy())


def test_combat_matches_scanpy():
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(3)
    X = np.log1p(_random_counts(160, 30, seed=3))
    b = np.repeat([0, 1], 80)
    X[b == 1] = X[b == 1] * 1.3 + 0.2
    keep = np.all([X[b == k].var(axis=0) > 0 for k in (0, 1)], axis=0)  # scanpy is ill-defined on constant genes
    X = X[:, keep] + rng.normal(0, 1e-3, size=(160, keep.sum()))
    a = ad.AnnData(X.copy())
    a.obs["src"] = b.astype(str)
    sc.pp.combat(a, key="src")
    np.testing.assert_allclose(combat(X, b), a.X, atol=1e-10)
    shuffled = np.random.default_rng(0).permutation(160)  # batches interleaved, read in blocks of 7 rows
    np.testing.assert_allclose(combat(X[shuffled], b[shuffled], chunk=7), a.X[shuffled], atol=1e-10)
    assert combat(X.astype(np.float32), b).dtype == np.float32


def test_combat_shifts_zeros_per_batch():
    """Why the kit's discriminator separates real from real: ComBat maps the zeros of each batch to its own value."""
    X = np.log1p(_random_counts(200, 20, seed=4))
    b = np.repeat([0, 1], 100)
    Z = combat(X, b)
    j = int(np.argmax(((X[b == 0] == 0).any(axis=0)) & ((X[b == 1] == 0).any(axis=0))))
    z0 = np.unique(Z[(b == 0) & (X[:, j] == 0), j])
    z1 = np.unique(Z[(b == 1) & (X[:, j] == 0), j])
    assert z0.size == 1 and z1.size == 1 and z0[0] != z1[0]


def test_umap_connectivities_match_scanpy():
    import anndata as ad
    import scanpy as sc

    rng = np.random.default_rng(5)
    P = np.vstack([rng.normal(0, 1, (80, 6)), rng.normal(3, 1, (70, 6))])
    a = ad.AnnData(np.zeros((P.shape[0], 1)))
    a.obsm["X_rep"] = P
    sc.pp.neighbors(a, n_neighbors=10, use_rep="X_rep", method="umap")
    dist, idx = C._knn(P, 10, 0)
    ours = C.umap_connectivities(dist, idx)
    np.testing.assert_allclose(ours.toarray(), a.obsp["connectivities"].toarray(), atol=1e-5)


# --------------------------------------------------------------------------- graph LISI vs an independent reference
def _reference_lisi(G, labels, k0, perplexity):
    """Straightforward scib-style LISI: all shortest paths, k0 nearest, scalar bisection, inverse Simpson."""
    D = dijkstra(G, directed=False)
    out = []
    for i in range(G.shape[0]):
        d = D[i].copy()
        d[i] = np.inf
        order = np.argsort(d, kind="stable")[:k0]
        if not np.isfinite(d[order]).all():
            out.append(1.0)
            continue
        Di, beta, lo, hi = d[order], 1.0, -np.inf, np.inf

        def hb(beta, Di=Di):
            P = np.exp(-Di * beta)
            H = np.log(P.sum()) + beta * (Di * P).sum() / P.sum()
            return H, P / P.sum()

        H, P = hb(beta)
        tries = 0
        while abs(H - np.log(perplexity)) > 1e-5 and tries < 50:
            if H > np.log(perplexity):
                lo = beta
                beta = beta * 2 if np.isinf(hi) else (beta + hi) / 2
            else:
                hi = beta
                beta = beta / 2 if np.isinf(lo) else (beta + lo) / 2
            H, P = hb(beta)
            tries += 1
        simpson = sum(P[labels[order] == b].sum() ** 2 for b in np.unique(labels))
        out.append(1.0 / simpson)
    return np.array(out)


def test_graph_lisi_matches_reference_computation():
    rng = np.random.default_rng(6)
    P = np.vstack([rng.normal(0, 1, (40, 4)), rng.normal(1.0, 1, (40, 4))])
    labels = np.repeat([0, 1], 40)
    rng.shuffle(labels[20:60])  # partly mixed
    dist, idx = C._knn(P, 10, 0)
    G = C.umap_connectivities(dist, idx)
    ours = C.graph_lisi(G, labels, k0=30)
    ref = _reference_lisi(G, labels, 30, 10.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert 1.0 <= ours.min() and ours.max() <= 2.0


def test_ilisi_scaling_known_answers():
    assert C.scaled_ilisi(np.full(10, 2.0), 2) == pytest.approx(1.0)
    assert C.scaled_ilisi(np.full(10, 1.0), 2) == pytest.approx(0.0)
    assert C.scaled_ilisi(np.array([1.0, 2.0, 3.0]), 3) == pytest.approx(0.5)  # (median - 1) / (n_batches - 1)
    # two disconnected components, one per batch: every neighbourhood is pure -> LISI 1 -> scaled 0
    rng = np.random.default_rng(7)
    P = np.vstack([rng.normal(0, 1, (60, 5)), rng.normal(50, 1, (60, 5))])
    G = C.umap_connectivities(*C._knn(P, 10, 0))
    lab = np.repeat([0, 1], 60)
    assert C.scaled_ilisi(C.graph_lisi(G, lab, k0=30), 2) == pytest.approx(0.0)
    # a cloud with alternating labels (perfectly mixed): every neighbourhood ~half/half -> scaled near 1
    Q = rng.normal(0, 1, (200, 5))
    G = C.umap_connectivities(*C._knn(Q, 10, 0))
    assert C.scaled_ilisi(C.graph_lisi(G, np.arange(200) % 2, k0=90), 2) > 0.9


# --------------------------------------------------------------------------- small building blocks
def test_mmd_emd_corr_known_answers():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(50, 6))
    Y = rng.normal(size=(40, 6))
    from sklearn.metrics.pairwise import rbf_kernel

    want = (
        rbf_kernel(X, X, gamma=0.3).mean() + rbf_kernel(Y, Y, gamma=0.3).mean() - 2 * rbf_kernel(X, Y, gamma=0.3).mean()
    )
    assert C.mmd_rbf(X, Y, gamma=0.3, chunk=7) == pytest.approx(want)
    assert C.mmd_rbf(X, X, gamma=0.3) == pytest.approx(0.0, abs=1e-12)
    assert C.mean_wasserstein(X, X) == 0.0
    Z = rng.normal(size=(50, 6))
    scipy_w = np.mean([stats.wasserstein_distance(X[:, j], Z[:, j]) for j in range(6)])
    assert C.mean_wasserstein(X, Z) == pytest.approx(scipy_w)  # equal sizes: closed form
    assert C.mean_wasserstein(X, Z, block=4) == pytest.approx(scipy_w)  # genes in blocks
    scipy_w = np.mean([stats.wasserstein_distance(X[:, j], Y[:, j]) for j in range(6)])
    assert C.mean_wasserstein(X, Y) == pytest.approx(scipy_w)
    W = rng.normal(size=(80, 12))
    assert C.corr_of_corr(W, W) == pytest.approx(1.0)
    assert C.corr_of_corr(W, W[::-1].copy()) == pytest.approx(1.0)  # row order does not matter
    # the blocked float32 Spearman matrix equals scipy's (ties, a constant column, blocks not dividing the genes)
    P = rng.poisson(0.4, size=(300, 23)).astype(np.float32)
    P[:, 4] = 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.corrcoef(stats.rankdata(P, axis=0), rowvar=False)
    got = C._spearman_matrix(P, block=5)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=1e-6)


def test_prepare_pair_shapes_and_hvg_cap():
    X = _random_counts(100, 50, seed=9)
    pr = prepare_pair(X[:50], X[50:], n_hvgs=20)
    assert pr.real.shape[1] == pr.other.shape[1] == 20 == pr.genes.size
    shared = np.intersect1d(filter_cells_genes(X[:50])[1], filter_cells_genes(X[50:])[1])  # normalised on these
    R = X[:50][pr.real_rows][:, shared]
    want = np.log1p(R / R.sum(1, keepdims=True) * 1e4)[:, np.searchsorted(shared, pr.genes)]
    np.testing.assert_allclose(pr.real, want, rtol=1e-5)
    with pytest.raises(ValueError, match="too little"):
        prepare_pair(X[:1], X[50:])


# --------------------------------------------------------------------------- known answers on real data
FAST = {"camda_discriminator_auc": {"n_estimators": 50}}
SMALL = 200  # cells per side: keeps the known-answer tests to a few seconds


def _run(name, real, syn, hold, **kw):
    df = getattr(C, name)(real, syn, holdout=hold, max_cells=SMALL, **FAST.get(name, {}), **kw)
    assert list(df.columns[:5]) == TIDY_COLUMNS and (df["metric"] == name).all()
    return df.set_index("variant")


def test_real_vs_real_and_shifted(thirds):
    R, S, H, shifted = thirds
    C.clear_cache()
    # the real sample in place of synthetic data: good scores, value ~ reference
    assert _run("camda_scc", R, S, H).loc["", "value"] > 0.9  # 200 cells per side: sampling noise
    assert _run("camda_pcc", R, S, H).loc["", "reference"] > 0.9
    il = _run("camda_ilisi", R, S, H)
    assert il.loc["", "value"] > 0.8 and il.loc["", "reference"] > 0.8
    mmd = _run("camda_mmd", R, S, H)
    n = mmd["n_cells"].iloc[0]
    assert mmd.loc["lognorm,gamma=1,sample=20000", "value"] == pytest.approx(2 / n, rel=0.05)  # kernel ~ identity
    assert mmd.loc["lognorm,gamma=median,sample=20000", "value"] < 0.02
    assert _run("camda_emd", R, S, H).loc["", "value"] < 0.1
    assert _run("camda_corr_of_corr", R, S, H).loc["", "value"] > 0.7
    auc = _run("camda_discriminator_auc", R, S, H)
    assert 0.35 < auc.loc["no_combat", "value"] < 0.65 and 0.35 < auc.loc["no_combat", "reference"] < 0.65
    assert auc.loc["combat", "reference"] > 0.9  # the kit's ComBat artifact, shown by the real-vs-real reference
    ari = _run("camda_ari", R, S, H)
    assert set(ari.index) == {"real_vs_synthetic", "celltype_vs_cluster"}
    assert ari.loc["celltype_vs_cluster", "value"] > 0.2
    # a clearly shifted synthetic set (genes permuted): separated and distinguishable
    assert _run("camda_ilisi", R, shifted, H).loc["", "value"] < 0.1
    assert _run("camda_discriminator_auc", R, shifted, H).loc["no_combat", "value"] > 0.95
    assert _run("camda_scc", R, shifted, H).loc["", "value"] < 0.3
    assert _run("camda_emd", R, shifted, H).loc["", "value"] > 0.3
    assert _run("camda_mmd", R, shifted, H).loc["lognorm,gamma=median,sample=20000", "value"] > 0.1


def test_reference_nan_without_holdout_and_size_matching(thirds):
    R, S, H, _ = thirds
    df = C.camda_scc(R, S)
    assert np.isnan(df["reference"]).all() and np.isfinite(df["value"]).all()
    small = EvalData(X=None, y=H.y[:100], counts=H.counts[:100])
    df = C.camda_emd(R, S, holdout=small)
    assert df["n_cells"].iloc[0] <= 100  # everything subsampled to the smaller comparison set
    df = C.camda_emd(R, S, holdout=H, max_cells=80)
    assert df["n_cells"].iloc[0] <= 80
    with pytest.raises(ValueError, match="on must be"):
        C.camda_mmd(R, S, on="raw")


def test_same_seed_same_result(thirds):
    R, S, H, _ = thirds
    C.clear_cache()
    a = C.camda_ilisi(R, S, holdout=H, random_state=3, max_cells=150)
    C.clear_cache()
    b = C.camda_ilisi(R, S, holdout=H, random_state=3, max_cells=150)
    np.testing.assert_array_equal(a["value"], b["value"])


def test_evaluate_camda_preset():
    import scdpsynth as sd

    a = sd.datasets.kang_example()
    train, hold = sd.pp.train_holdout_split(a, holdout_size=0.3, stratify="cell_type", random_state=0)
    syn = train[np.random.default_rng(0).permutation(train.n_obs)[: hold.n_obs]].copy()
    df = sd.tl.evaluate(
        train, syn, holdout=hold, metrics="camda", groupby="cell_type",
        metric_kwargs={"camda_discriminator_auc": {"n_estimators": 50}},
    )  # fmt: skip
    assert list(dict.fromkeys(df["metric"])) == C.CAMDA_METRICS
    assert np.isfinite(df["reference"]).all()
    assert not set(C.CAMDA_METRICS) & set(sd.tl._evaluate._select("all", has_holdout=True, has_labels=True))
    assert sd.tl._evaluate._select(["camda_scc"], has_holdout=False, has_labels=False) == ["camda_scc"]


def test_log_scale_input_skips_count_steps():
    """Non-count data (e.g. log2 microarray) are used as they are: no cell/gene filters, no normalisation."""
    rng = np.random.default_rng(10)
    X = rng.normal(5, 1, size=(90, 30))
    A, B = EvalData(X=X[:45], counts=X[:45]), EvalData(X=X[45:], counts=X[45:])
    df = C.camda_mmd(A, B, on="counts", n_pcs=5)
    assert set(df["variant"]) == {"lognorm,gamma=1,sample=20000", "lognorm,gamma=median,sample=20000"}
    pr = prepare_pair(X[:45], X[45:], counts=False, n_hvgs=10)
    assert pr.real.shape[0] == 45 and pr.real.shape[1] == pr.genes.size >= 10  # ties at the cutoff are kept (scanpy)
    np.testing.assert_allclose(pr.real, X[:45][:, pr.genes], rtol=1e-6)
    assert C.camda_emd(A, A)["value"].iloc[0] == 0.0
