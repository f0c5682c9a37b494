"""tl.generate on real data: AnnData conventions, metadata, errors, determinism, h5ad round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scdpsynth as sd


def test_counts_in_counts_out(kang_small):
    syn = sd.tl.generate(kang_small, "ron_gauss", eps=5.0, groupby="cell_type")
    assert sparse.issparse(syn.X) and syn.X.dtype == kang_small.X.dtype
    assert syn.X.min() >= 0
    np.testing.assert_array_equal(syn.X.data, np.round(syn.X.data))
    assert list(syn.var_names) == list(kang_small.var_names)
    assert (
        syn.obs["cell_type"].value_counts().sort_index().equals(kang_small.obs["cell_type"].value_counts().sort_index())
    )
    assert syn.uns["scdpsynth"]["params"]["transform"] == "log1p"


def test_metadata(kang_small):
    syn = sd.tl.generate(kang_small, "ron_gauss", eps=2.0, delta=1e-6, groupby="cell_type", random_state=3)
    meta = syn.uns["scdpsynth"]
    assert meta["method"] == "ron_gauss" and meta["seed"] == 3 and meta["version"] == sd.__version__
    priv = meta["privacy"]
    assert priv["private"] and priv["eps"] == 2.0 and priv["delta"] == 1e-6
    assert priv["eps_spent"] <= 2.0 and priv["accountant"] == "zcdp" and priv["unit"] == "sample"
    assert any("class counts" in s for s in priv["scope"])
    assert priv["delta_source"] == "given"


def test_default_delta_recorded(kang_small):
    syn = sd.tl.generate(kang_small, "ron_gauss", eps=2.0, groupby="cell_type")
    assert syn.uns["scdpsynth"]["privacy"]["delta"] == 1e-5
    assert "default" in syn.uns["scdpsynth"]["privacy"]["delta_source"]


def test_nothing_private_copied_and_input_untouched(kang_small):
    before = kang_small.copy()
    kang_small.uns["secret"] = {"a": 1}
    kang_small.obsm["X_pca"] = np.zeros((kang_small.n_obs, 2))
    syn = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type")
    assert set(syn.uns) == {"scdpsynth"} and len(syn.obsm) == 0 and syn.var.shape[1] == 0
    assert list(syn.obs.columns) == ["cell_type"]
    assert not set(syn.obs_names) & set(kang_small.obs_names)
    assert (kang_small.X != before.X).nnz == 0
    pd.testing.assert_frame_equal(kang_small.obs, before.obs)
    assert len(kang_small.layers) == 0


def test_bulk_continuous(bioc_all_small):
    syn = sd.tl.generate(bioc_all_small, "ron_gauss", eps=10.0, groupby="lineage")
    assert isinstance(syn.X, np.ndarray) and syn.X.dtype == np.float32
    assert syn.uns["scdpsynth"]["params"]["transform"] == "none"
    lo, hi = bioc_all_small.X.min(0), bioc_all_small.X.max(0)
    assert np.all(syn.X >= lo - 1e-4) and np.all(syn.X <= hi + 1e-4)


def test_n_obs_split_by_real_proportions(bioc_all_small):
    syn = sd.tl.generate(bioc_all_small, "ron_gauss", eps=None, groupby="lineage", n_obs=64)
    counts = syn.obs["lineage"].value_counts()
    real = bioc_all_small.obs["lineage"].value_counts()  # 95 B, 33 T -> 47.5 / 16.5 -> 48 / 16 or 47 / 17
    assert counts.sum() == 64
    assert abs(counts["B"] - 64 * real["B"] / real.sum()) < 1


def test_no_groupby_single_class(bioc_all_small):
    syn = sd.tl.generate(bioc_all_small, "ron_gauss", eps=1.0)
    assert syn.n_obs == bioc_all_small.n_obs and syn.obs.shape[1] == 0


def test_same_seed_same_output(kang_small):
    a = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=1)
    b = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=1)
    c = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=2)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0


def test_h5ad_round_trip(kang_small, tmp_path):
    import anndata as ad

    syn = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type")
    syn.write_h5ad(tmp_path / "syn.h5ad")
    back = ad.read_h5ad(tmp_path / "syn.h5ad")
    assert (back.X != syn.X).nnz == 0
    p, q = back.uns["scdpsynth"]["privacy"], syn.uns["scdpsynth"]["privacy"]
    assert p["eps_spent"] == q["eps_spent"] and list(p["scope"]) == list(q["scope"])
    np.testing.assert_allclose(p["accountant_details"]["release_sigma"], q["accountant_details"]["release_sigma"])


def test_non_private_round_trip(kang_small, tmp_path):
    import anndata as ad

    syn = sd.tl.generate(kang_small, "ron_gauss", eps=None, groupby="cell_type")
    syn.write_h5ad(tmp_path / "syn.h5ad")
    priv = ad.read_h5ad(tmp_path / "syn.h5ad").uns["scdpsynth"]["privacy"]
    assert not priv["private"] and np.isinf(priv["eps_spent"])


def test_layer_added_aligns_labels(kang_small):
    real = kang_small.copy()
    syn = sd.tl.generate(real, "ron_gauss", eps=1.0, groupby="cell_type", layer_added="synthetic")
    assert real.layers["synthetic"].shape == real.shape
    # row i of the layer is a synthetic cell of real row i's type: compare per-type totals
    for ct in real.obs["cell_type"].cat.categories:
        a = real.layers["synthetic"][(real.obs["cell_type"] == ct).to_numpy()].sum()
        b = syn.X[(syn.obs["cell_type"] == ct).to_numpy()].sum()
        assert a == b
    with pytest.raises(ValueError, match="n_obs"):
        sd.tl.generate(real, "ron_gauss", eps=1.0, n_obs=10, layer_added="x")


class TestErrors:
    def test_unknown_method_did_you_mean(self, kang_small):
        with pytest.raises(ValueError, match=r"Did you mean 'ron_gauss'\?.*Available"):
            sd.tl.generate(kang_small, "ron_gaus", eps=1.0)

    @pytest.mark.parametrize("eps", [0, -1.0, float("nan"), float("inf")])
    def test_bad_eps(self, kang_small, eps):
        with pytest.raises(ValueError, match="eps=None for a non-private fit"):
            sd.tl.generate(kang_small, "ron_gauss", eps=eps)

    def test_eps_is_required(self, kang_small):
        with pytest.raises(TypeError):
            sd.tl.generate(kang_small, "ron_gauss")

    def test_missing_groupby(self, kang_small):
        with pytest.raises(KeyError, match=r"Did you mean 'cell_type'\?"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="celltype")

    def test_missing_labels(self, kang_small):
        kang_small.obs["ct"] = kang_small.obs["cell_type"].astype(object)
        kang_small.obs.iloc[0, kang_small.obs.columns.get_loc("ct")] = None
        with pytest.raises(ValueError, match="missing labels"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="ct")

    def test_tiny_group(self, kang_small):
        kang_small.obs["ct"] = kang_small.obs["cell_type"].astype(str)
        kang_small.obs.iloc[0, kang_small.obs.columns.get_loc("ct")] = "singleton"
        with pytest.raises(ValueError, match=r"fewer than 2 observations.*singleton"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="ct")

    def test_nan(self, bioc_all_small):
        bioc_all_small.X[3, 4] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            sd.tl.generate(bioc_all_small, "ron_gauss", eps=1.0)

    def test_missing_layer(self, kang_small):
        with pytest.raises(KeyError, match="Layer 'counts' not found"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, layer="counts")

    def test_unknown_kwarg(self, kang_small):
        with pytest.raises(TypeError, match="n_comps"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, n_comps=3)

    def test_donor_unit_needs_key_and_support(self, kang_small):
        with pytest.raises(ValueError, match="donor_key"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, unit="donor")
        with pytest.raises(ValueError, match="supports privacy unit"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, donor_key="donor_id")

    def test_not_anndata(self):
        with pytest.raises(TypeError, match="AnnData"):
            sd.tl.generate(np.zeros((3, 3)), "ron_gauss", eps=1.0)


def test_list_methods():
    df = sd.tl.list_methods()
    assert "ron_gauss" in set(df["name"]) and {"name", "summary", "data", "units"} <= set(df.columns)


def test_registry_is_lazy():
    import subprocess
    import sys

    code = "import sys, scdpsynth; print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


class TestDatasets:
    def test_kang_example(self):
        a = sd.datasets.kang_example()
        assert a.shape == (1556, 1267) and sparse.issparse(a.X)
        assert a.obs["cell_type"].nunique() == 5 and a.obs["donor_id"].nunique() == 2
        assert np.issubdtype(a.X.dtype, np.integer)

    def test_kang_pbmc(self, kang_pbmc):
        assert kang_pbmc.shape == (12261, 1287)
        assert kang_pbmc.obs["cell_type"].nunique() == 8 and kang_pbmc.obs["donor_id"].nunique() == 8
        assert kang_pbmc.obs["donor_id"].value_counts().between(408, 2738).all()

    def test_bioc_all(self, bioc_all):
        assert bioc_all.shape == (128, 12625) and set(bioc_all.obs["lineage"]) == {"B", "T"}

    def test_missing_dir(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="kang_se_muscat"):
            sd.datasets.kang_pbmc(path=tmp_path)


def test_return_generator_draws_more(kang_small):
    syn, gen = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", return_generator=True)
    assert gen.fitted_ and gen.privacy_report()["eps_spent"] == syn.uns["scdpsynth"]["privacy"]["eps_spent"]
    assert gen.sample([2, 0, 1, 0, 0]).shape == (3, kang_small.n_vars)
