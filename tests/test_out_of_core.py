"""Backed, dask-backed and sparse AnnData inputs give the same results as in-memory ones (same seed)."""

import warnings

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import scdpsynth as sd
from scdpsynth._chunks import iter_row_blocks, load_matrix

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
