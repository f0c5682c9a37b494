"""sd.datasets.simulate_cohort: shapes, reproducibility, and donor effects of the size fitted to Kang."""

import numpy as np
import pytest
from scipy import sparse

import scdpsynth as sd


def test_shapes_types_and_reproducibility(tmp_path):
    a = sd.datasets.simulate_cohort(6, 200, 300, random_state=1, path=tmp_path / "c.h5ad")
    assert a.shape == (1200, 300) and sparse.isspmatrix_csr(a.X) and a.X.dtype == np.int32
    assert a.obs["donor_id"].nunique() == 6 and (a.obs["donor_id"].value_counts() == 200).all()
    assert set(a.obs["cell_type"].cat.categories) >= {"CD4 T cells", "B cells", "CD14+ Monocytes"}
    b = sd.datasets.simulate_cohort(6, 200, 300, random_state=1)
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs)
    c = sd.datasets.simulate_cohort(6, 200, 300, random_state=2)
    assert (a.X != c.X).nnz > 0
    import anndata as ad

    backed = ad.read_h5ad(tmp_path / "c.h5ad", backed="r")
    assert backed.shape == a.shape
    more = sd.datasets.simulate_cohort(2, 50, 2000)
    assert more.n_vars == 2000 and more.var_names[-1] == "sim-gene-712"
    assert more.uns["simulated"]["extra_genes_resampled"]


def test_library_sizes_and_composition_match_kang():
    a = sd.datasets.simulate_cohort(40, 300, 1287, random_state=0)
    lib = np.asarray(a.X.sum(axis=1)).ravel()
    assert 700 < np.median(lib) < 1400  # Kang control PBMCs: median 993 UMIs per cell
    share = a.obs["cell_type"].value_counts(normalize=True)
    assert 0.35 < share["CD4 T cells"] < 0.5 and share["Megakaryocytes"] < 0.03  # Kang: 0.42, 0.008


def test_donors_differ_more_than_sampling_noise():
    """Between-donor variance of pseudobulk log expression exceeds what Poisson sampling alone gives."""
    a = sd.datasets.simulate_cohort(30, 400, 400, random_state=3)
    cd4 = (a.obs["cell_type"] == "CD4 T cells").to_numpy()
    donors = a.obs["donor_id"].cat.codes.to_numpy()
    X = a.X[cd4]
    d = donors[cd4]
    tot = np.vstack([np.asarray(X[d == j].sum(axis=0)).ravel() for j in range(30)]) + 0.5
    lib = tot.sum(axis=1, keepdims=True)
    logs = np.log(tot / lib)
    expressed = tot.min(axis=0) > 50  # genes with enough counts everywhere for the Poisson approximation
    observed = logs[:, expressed].var(axis=0, ddof=1)
    sampling = np.mean(1.0 / tot[:, expressed], axis=0)
    ratio = np.median(observed / sampling)
    assert ratio > 2.0, ratio  # donor shifts (median sd 0.11) on top of sampling noise
    # and the composition varies between donors more than multinomial sampling would
    comp = np.array([np.mean(a.obs["cell_type"].to_numpy()[donors == j] == "CD4 T cells") for j in range(30)])
    assert comp.var(ddof=1) > 1.5 * comp.mean() * (1 - comp.mean()) / 400


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="positive integer"):
        sd.datasets.simulate_cohort(bad, 10, 10)
