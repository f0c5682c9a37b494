"""Backed, dask-backed and sparse AnnData inputs give the same results as in-memory ones (same seed)."""

import warnings

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import scdpsynth as sd
from scdpsynth._chunks import iter_row_blocks, load_matrix, load_rows

KW = {"groupby": "cell_type", "unit": "donor", "donor_key": "donor_id", "random_state": 0}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    path = tmp_path_factory.mktemp("cohort") / "cohort.h5ad"
    adata = sd.datasets.simulate_cohort(12, 150, 200, random_state=0, path=path)
    return adata, path


def _generate(adata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fixed seed with eps: reproducible on purpose
        return sd.tl.generate(adata, "copula", eps=10, n_copula_genes=20, **KW)


def test_load_matrix_reads_chunks_and_keeps_sparse(cohort):
    adata, path = cohort
    backed = ad.read_h5ad(path, backed="r")
    X = load_matrix(backed.X, chunk_rows=257)
    assert sparse.isspmatrix_csr(X) and (X != adata.X).nnz == 0
    blocks = list(iter_row_blocks(backed.X, chunk_rows=500))
    assert [b[0] for b in blocks] == list(range(0, adata.n_obs, 500)) and all(sparse.issparse(b[2]) for b in blocks)
    dense = np.arange(12.0).reshape(4, 3)
    assert load_matrix(dense) is dense


def test_backed_and_csc_inputs_match_in_memory(cohort):
    adata, path = cohort
    ref = _generate(adata)
    backed = ad.read_h5ad(path, backed="r")
    out = _generate(backed)
    assert out.shape == ref.shape and (out.X != ref.X).nnz == 0
    led, led_ref = out.uns["scdpsynth"]["privacy"]["ledger"], ref.uns["scdpsynth"]["privacy"]["ledger"]
    assert set(led) == set(led_ref) and all(np.array_equal(led[k], led_ref[k]) for k in led)
    csc = adata.copy()
    csc.X = sparse.csc_matrix(csc.X)
    assert (_generate(csc).X != ref.X).nnz == 0
    res = sd.tl.evaluate(backed, out, metrics=["camda_scc"])
    np.testing.assert_allclose(res["value"], sd.tl.evaluate(adata, ref, metrics=["camda_scc"])["value"])


def test_dask_input_on_a_local_cluster_matches_in_memory(cohort):
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    adata, _ = cohort
    ref = _generate(adata)
    lazy = adata.copy()
    lazy.X = da.from_array(adata.X, chunks=(400, adata.n_vars))  # sparse chunks
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with distributed.Client(lc) as client:
            out = _generate(lazy)
            assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) >= 0  # cluster in use
    assert (out.X != ref.X).nnz == 0
    dense = adata.copy()
    dense.X = da.from_array(adata.X.toarray(), chunks=(500, adata.n_vars))
    out_dense = _generate(dense).X  # dense input, dense output (the input's format)
    assert isinstance(out_dense, np.ndarray) and np.array_equal(out_dense, ref.X.toarray())


def test_load_rows_streams_only_the_selected_rows(cohort):
    adata, path = cohort
    backed = ad.read_h5ad(path, backed="r")
    rows = np.sort(np.random.default_rng(0).choice(adata.n_obs, 301, replace=False))
    X = load_rows(backed.X, rows, chunk_rows=257)  # selected rows straddle chunk borders
    assert sparse.isspmatrix_csr(X) and (X != adata.X[rows]).nnz == 0
    dense = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(load_rows(dense, np.array([1, 3])), dense[[1, 3]])
    for bad in (np.array([2, 1]), np.array([1, 1]), np.array([], int), np.array([0, 4])):
        with pytest.raises(ValueError, match="sorted"):
            load_rows(dense, bad)


def test_evaluate_max_cells_subsamples_backed_inputs_and_says_so(cohort):
    """max_cells caps every input at a uniform sample (the same one for backed and in-memory input, same seed), the
    result names what was subsampled, the user's AnnData keep every cell, and the lazy dense matrix is never built
    for count-based metrics."""
    adata, path = cohort
    syn = _generate(adata)
    backed = ad.read_h5ad(path, backed="r")
    kw = {"metrics": ["camda_scc", "camda_pcc"], "groupby": "cell_type", "random_state": 3}
    res = sd.tl.evaluate(backed, syn, max_cells=500, **kw)
    mem = sd.tl.evaluate(adata, syn, max_cells=500, **kw)
    np.testing.assert_allclose(res["value"], mem["value"])
    note = f"adata_real: 500 of {adata.n_obs:,} cells; adata_syn: 500 of {syn.n_obs:,} cells"
    assert (res["subsampled"] == note).all()
    assert (res["n_cells"] <= 500).all() and syn.n_obs > 500 and backed.n_obs == adata.n_obs
    full = sd.tl.evaluate(adata, syn, max_cells=None, **kw)
    assert (full["subsampled"] == "").all() and (full["n_cells"] > 500).all()
    assert not np.allclose(full["value"], res["value"])  # a different (larger) set of cells
    assert sd.tl.evaluate(adata, syn, **kw)["subsampled"].eq("").all()  # "auto": 50,000 cells, none cut here
    for bad in ("all", 1, 2.5, True):
        with pytest.raises(ValueError, match="max_cells"):
            sd.tl.evaluate(adata, syn, max_cells=bad, **kw)


def test_evaldata_x_is_built_only_when_read():
    from scdpsynth.metrics._base import EvalData, subset

    calls = []

    def build():
        calls.append(1)
        return np.arange(6.0).reshape(3, 2)

    data = EvalData(X=build, counts=sparse.csr_matrix(np.ones((3, 2))))
    part = subset(data, np.array([0, 2]))
    assert data.n_obs == 3 and part.n_obs == 2 and calls == []
    np.testing.assert_array_equal(part.X, [[0.0, 1.0], [4.0, 5.0]])
    assert calls == [1]
    data.X  # noqa: B018 - built once, then kept
    assert calls == [1]


@pytest.mark.parametrize("method", ["copula", "vine_nmf"])
def test_donor_cap_is_drawn_first_and_only_kept_rows_are_read(cohort, method):
    """With a binding cap (50 of 150 cells per donor), ``tl.generate`` reads only the kept rows; the result equals
    the in-memory path's and a plain ``fit`` on all rows with the same seed (the cap is idempotent)."""
    adata, path = cohort
    kw = {"max_cells_per_donor": 50, **({"n_copula_genes": 20} if method == "copula" else {"n_hvg": 50})}
    cls = sd.generators.registry.get(method)
    y = adata.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    donors = adata.obs["donor_id"].cat.codes.to_numpy()
    K = adata.obs["cell_type"].cat.categories.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = cls(eps=10, unit="donor", random_state=0, **kw)
        rows = gen.rows_used(donors)
        assert rows.size == 12 * 50 and np.all(np.diff(rows) > 0)
        assert np.all(np.bincount(donors[rows]) == 50)
        gen.fit(adata.X[rows], y[rows], n_classes=K, donors=donors[rows])
        plain = cls(eps=10, unit="donor", random_state=0, **kw).fit(adata.X, y, n_classes=K, donors=donors)
        assert cls(eps=10, unit="sample", random_state=0, **kw).rows_used(donors) is None
        np.testing.assert_array_equal(gen.class_counts_, plain.class_counts_)  # same noise, same draws after
        led, led_plain = gen.ledger.to_dict(1e-5), plain.ledger.to_dict(1e-5)
        assert set(led) == set(led_plain) and all(np.array_equal(led[k], led_plain[k]) for k in led)
        assert (gen.sample([30] * K) != plain.sample([30] * K)).nnz == 0
        in_memory = sd.tl.generate(adata, method, eps=10, **kw, **KW)
        backed = sd.tl.generate(ad.read_h5ad(path, backed="r"), method, eps=10, **kw, **KW)
    assert backed.shape == in_memory.shape and (backed.X != in_memory.X).nnz == 0


class _Recorder:
    """An out-of-core matrix stand-in: CSR row slices only, recording the largest read."""

    def __init__(self, X):
        self.X, self.shape, self.dtype, self.largest = sparse.csr_matrix(X), X.shape, X.dtype, 0

    def __getitem__(self, idx):
        assert isinstance(idx, slice), "only row slices may be read"
        block = self.X[idx]
        self.largest = max(self.largest, block.shape[0])
        return block


@pytest.mark.parametrize("method", ["copula", "vine_nmf"])
def test_sample_level_fit_streams_blocks_and_matches_in_memory(cohort, monkeypatch, method):
    adata, path = cohort
    y = adata.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    K = adata.obs["cell_type"].cat.categories.size
    for module in ("copula", "vine_nmf"):  # several blocks on this small cohort
        monkeypatch.setattr(f"scdpsynth.generators.{module}.CHUNK_ROWS", 256)
    cls = sd.generators.registry.get(method)
    kw = {"n_copula_genes": 20} if method == "copula" else {"n_hvg": 50}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for eps in (10, None):
            ref = cls(eps=eps, random_state=0, **kw).fit(adata.X, y, n_classes=K)
            rec = _Recorder(adata.X)
            gen = cls(eps=eps, random_state=0, **kw).fit(rec, y, n_classes=K)
            assert 0 < rec.largest <= 256 < adata.n_obs  # never more than one block at a time
            np.testing.assert_array_equal(gen.class_counts_, ref.class_counts_)
            np.testing.assert_array_equal(gen.marginals_.mu, ref.marginals_.mu)
            assert (gen.sample([40] * K) != ref.sample([40] * K)).nnz == 0  # same fit, same draws
        gen_kw = {"groupby": "cell_type", "random_state": 0, **kw}
        in_memory = sd.tl.generate(adata, method, eps=10, **gen_kw)
        backed = sd.tl.generate(ad.read_h5ad(path, backed="r"), method, eps=10, **gen_kw)
    assert sparse.issparse(backed.X) and (backed.X != in_memory.X).nnz == 0
    da = pytest.importorskip("dask.array")
    lazy = adata.copy()
    lazy.X = da.from_array(adata.X, chunks=(400, adata.n_vars))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (sd.tl.generate(lazy, method, eps=10, **gen_kw).X != in_memory.X).nnz == 0
    bad = adata.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data[0] = 0.5
    bad_path = path.parent / f"bad_{method}.h5ad"
    bad.write_h5ad(bad_path)
    with pytest.raises(ValueError, match="raw non-negative integer counts"):
        sd.tl.generate(ad.read_h5ad(bad_path, backed="r"), method, eps=10, groupby="cell_type")
