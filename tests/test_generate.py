"""tl.generate on real data: AnnData conventions, metadata, errors, determinism, h5ad round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scdpsynth as sd
from scdpsynth._utils import KnownSeedWarning


def test_counts_in_counts_out(kang_small):
    syn = sd.tl.generate(kang_small, "ron_gauss", eps=5.0, groupby="cell_type")
    assert sparse.issparse(syn.X) and syn.X.dtype == kang_small.X.dtype
    assert syn.X.min() >= 0
    np.testing.assert_array_equal(syn.X.data, np.round(syn.X.data))
    assert list(syn.var_names) == list(kang_small.var_names)
    assert set(syn.obs["cell_type"].cat.categories) == set(kang_small.obs["cell_type"].cat.categories)
    assert syn.uns["scdpsynth"]["params"]["transform"] == "log1p"


def test_metadata(kang_small):
    with pytest.warns(KnownSeedWarning):
        syn = sd.tl.generate(kang_small, "ron_gauss", eps=2.0, delta=1e-6, groupby="cell_type", random_state=3)
    meta = syn.uns["scdpsynth"]
    assert meta["method"] == "ron_gauss" and meta["version"] == sd.__version__
    assert "seed" not in meta  # a private run never writes its seed
    priv = meta["privacy"]
    assert priv["private"] and priv["eps"] == 2.0 and priv["delta"] == 1e-6
    assert 0.999 * 2.0 <= priv["eps_spent"] <= 2.0 and priv["unit"] == "sample"
    assert priv["accountant"].startswith("gdp") and priv["neighbouring"] == "add_remove"
    assert priv["delta_source"] == "given"
    ledger = priv["ledger"]
    assert "class_counts" in ledger["release"] and len(ledger["noise"]) == len(ledger["release"])


def test_default_delta_is_a_public_constant(kang_small):
    small = sd.tl.generate(kang_small[:100].copy(), "ron_gauss", eps=2.0, groupby="cell_type")
    big = sd.tl.generate(kang_small, "ron_gauss", eps=2.0, groupby="cell_type")
    for syn in (small, big):
        assert syn.uns["scdpsynth"]["privacy"]["delta"] == 1e-5
        assert syn.uns["scdpsynth"]["privacy"]["delta_source"] == "default public constant 1e-5"


METHODS_FAST = [
    ("ron_gauss", {}),
    ("privsyn", {}),
    ("private_pgm", {}),
    ("copula", {"n_copula_genes": 10}),
    ("vine_nmf", {"n_factors": 4, "n_hvg": 30}),
]


@pytest.mark.parametrize(("method", "kw"), METHODS_FAST)
def test_default_private_runs_are_fresh_and_leak_no_size(kang_small, method, kw):
    a = sd.tl.generate(kang_small, method, eps=2.0, groupby="cell_type", **kw)
    b = sd.tl.generate(kang_small, method, eps=2.0, groupby="cell_type", **kw)
    assert a.shape != b.shape or (a.X != b.X).nnz > 0  # fresh OS entropy: two default runs differ
    for syn in (a, b):
        meta = syn.uns["scdpsynth"]
        text = repr(meta)
        assert "seed" not in meta and "n_donors" not in text and "n_units" not in text
        # with default arguments the scope lists only public things: nothing derived from the data
        assert not any(w in s for s in meta["privacy"]["scope"] for w in ("treated as public (", "observed", "exact"))
    # class sizes come from DP counts (or, for the marginal methods, the model fitted to the noisy marginals):
    # near the real 60 per type (count noise sd <= 9 at eps=2), but not the exact sizes in both runs
    for syn in (a, b):
        assert np.all(np.abs(syn.obs["cell_type"].value_counts().to_numpy() - 60) < 60)
    assert not (a.obs["cell_type"].value_counts().eq(60).all() and b.obs["cell_type"].value_counts().eq(60).all())


def test_non_private_default_is_deterministic_and_records_seed(kang_small):
    a = sd.tl.generate(kang_small, "ron_gauss", eps=None, groupby="cell_type")
    b = sd.tl.generate(kang_small, "ron_gauss", eps=None, groupby="cell_type")
    assert (a.X != b.X).nnz == 0 and a.uns["scdpsynth"]["seed"] == 0
    assert a.obs["cell_type"].value_counts().eq(60).all()  # non-private: exact class sizes


def test_int_seed_with_eps_warns_and_is_reproducible(kang_small):
    with pytest.warns(KnownSeedWarning, match="known seed"):
        a = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=1)
    with pytest.warns(KnownSeedWarning):
        b = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=1)
    with pytest.warns(KnownSeedWarning):
        c = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=2)
    assert a.shape == b.shape and (a.X != b.X).nnz == 0
    assert a.shape != c.shape or (a.X != c.X).nnz > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Generator is the caller's own secret state: no warning
        sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=np.random.default_rng(5))


def test_class_sizes_options(kang_small):
    public = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", class_sizes="public")
    assert public.obs["cell_type"].value_counts().eq(60).all()
    assert any("class_sizes='public'" in s for s in public.uns["scdpsynth"]["privacy"]["scope"])
    given = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", class_sizes={"B cells": 7})
    assert given.obs["cell_type"].value_counts().to_dict() == {
        "B cells": 7, "CD14+ Monocytes": 0, "CD4 T cells": 0, "CD8 T cells": 0, "FCGR3A+ Monocytes": 0
    }  # fmt: skip
    assert any("given by the user" in s for s in given.uns["scdpsynth"]["privacy"]["scope"])
    # n_obs fixes the total; the proportions are DP (at eps=10 the count noise has sd ~1.6 on 60 per type)
    split = sd.tl.generate(kang_small, "ron_gauss", eps=10.0, groupby="cell_type", n_obs=1000)
    assert split.n_obs == 1000 and split.obs["cell_type"].value_counts().between(150, 250).all()
    with pytest.raises(ValueError, match="class_sizes"):
        sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", class_sizes=[1, 2])
    with pytest.raises(ValueError, match="unknown classes"):
        sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", class_sizes={"NK": 3})


def test_dp_class_sizes_are_unbiased(kang_small):
    # the sizes are noisy counts (sensitivity 1, Gaussian): their mean over fits approaches the real sizes
    sizes = np.array(
        [
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type", random_state=np.random.default_rng(s))
            .obs["cell_type"].value_counts().sort_index().to_numpy()
            for s in range(40)
        ]
    )  # fmt: skip
    mean, sd_ = sizes.mean(axis=0), sizes.std(axis=0)
    assert np.all(np.abs(mean - 60) < 4 * sd_ / np.sqrt(40) + 0.5)
    assert np.all(sd_ > 1)  # really noisy: the exact sizes never leave


def test_transform_from_schema_not_values(kang_small):
    floats = kang_small.copy()
    floats.X = floats.X.astype(np.float32)
    a = sd.tl.generate(floats, "ron_gauss", eps=None, groupby="cell_type")
    floats.X[0, 0] = 2.5  # one value that is not a count must not change what is released
    b = sd.tl.generate(floats, "ron_gauss", eps=None, groupby="cell_type")
    assert a.uns["scdpsynth"]["params"]["transform"] == b.uns["scdpsynth"]["params"]["transform"] == "none"
    assert a.X.dtype == b.X.dtype == np.float32
    counts_layer = kang_small.copy()
    counts_layer.layers["counts"] = counts_layer.X.astype(np.float32)
    c = sd.tl.generate(counts_layer, "ron_gauss", eps=None, groupby="cell_type", layer="counts")
    assert c.uns["scdpsynth"]["params"]["transform"] == "log1p"
    d = sd.tl.generate(floats, "ron_gauss", eps=None, groupby="cell_type", transform="log1p")
    assert d.uns["scdpsynth"]["params"]["transform"] == "log1p" and d.X.dtype == np.float32
    np.testing.assert_array_equal(d.X.data, np.round(d.X.data))
    with pytest.raises(ValueError, match="transform must be one of"):
        sd.tl.generate(floats, "ron_gauss", eps=None, transform="log2")


def test_groupby_several_columns(kang_example):
    syn = sd.tl.generate(kang_example, "ron_gauss", eps=None, groupby=["cell_type", "group_id"])
    assert list(syn.obs.columns) == ["cell_type", "group_id"]
    real = kang_example.obs.groupby(["cell_type", "group_id"], observed=True).size()
    got = syn.obs.groupby(["cell_type", "group_id"], observed=True).size()
    pd.testing.assert_series_equal(got.sort_index(), real.sort_index(), check_names=False)


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
    # values stay inside the public default bounds (0, 16), whatever the data
    assert syn.X.min() >= 0 and syn.X.max() <= 16 + 1e-4


def test_n_obs_split_by_class_proportions(bioc_all_small):
    syn = sd.tl.generate(bioc_all_small, "ron_gauss", eps=None, groupby="lineage", n_obs=64)
    counts = syn.obs["lineage"].value_counts()
    real = bioc_all_small.obs["lineage"].value_counts()  # 95 B, 33 T -> 47.5 / 16.5 -> 48 / 16 or 47 / 17
    assert counts.sum() == 64
    assert abs(counts["B"] - 64 * real["B"] / real.sum()) < 1


def test_no_groupby_single_class(bioc_all_small):
    syn = sd.tl.generate(bioc_all_small, "ron_gauss", eps=None)
    assert syn.n_obs == bioc_all_small.n_obs and syn.obs.shape[1] == 0
    private = sd.tl.generate(bioc_all_small, "ron_gauss", eps=1.0, random_state=np.random.default_rng(0))
    assert abs(private.n_obs - bioc_all_small.n_obs) < 60 and private.obs.shape[1] == 0


def test_h5ad_round_trip(kang_small, tmp_path):
    import anndata as ad

    syn = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="cell_type")
    syn.write_h5ad(tmp_path / "syn.h5ad")
    back = ad.read_h5ad(tmp_path / "syn.h5ad")
    assert (back.X != syn.X).nnz == 0
    p, q = back.uns["scdpsynth"]["privacy"], syn.uns["scdpsynth"]["privacy"]
    assert p["eps_spent"] == q["eps_spent"] and list(p["scope"]) == list(q["scope"])
    np.testing.assert_allclose(p["ledger"]["noise"], q["ledger"]["noise"])
    assert list(p["ledger"]["release"]) == list(q["ledger"]["release"])


def test_non_private_round_trip(kang_small, tmp_path):
    import anndata as ad

    syn = sd.tl.generate(kang_small, "ron_gauss", eps=None, groupby="cell_type")
    syn.write_h5ad(tmp_path / "syn.h5ad")
    priv = ad.read_h5ad(tmp_path / "syn.h5ad").uns["scdpsynth"]["privacy"]
    assert not priv["private"] and np.isinf(priv["eps_spent"])


def test_layer_added_aligns_labels(kang_small):
    real = kang_small.copy()
    syn = sd.tl.generate(real, "ron_gauss", eps=1.0, groupby="cell_type", class_sizes="public", layer_added="syn")
    assert real.layers["syn"].shape == real.shape
    # row i of the layer is a synthetic cell of real row i's type: compare per-type totals
    for ct in real.obs["cell_type"].cat.categories:
        a = real.layers["syn"][(real.obs["cell_type"] == ct).to_numpy()].sum()
        b = syn.X[(syn.obs["cell_type"] == ct).to_numpy()].sum()
        assert a == b
    with pytest.raises(ValueError, match="class_sizes='public'"):
        sd.tl.generate(real, "ron_gauss", eps=1.0, layer_added="x")


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

    def test_tiny_group_is_no_error(self, kang_small):
        # an error that depends on a class's size would leak it: a singleton class is generated like any other
        kang_small.obs["ct"] = kang_small.obs["cell_type"].astype(str)
        kang_small.obs.iloc[0, kang_small.obs.columns.get_loc("ct")] = "singleton"
        syn = sd.tl.generate(kang_small, "ron_gauss", eps=1.0, groupby="ct", n_obs=100)
        assert "singleton" in syn.obs["ct"].cat.categories

    def test_nan_text_label_warns(self, kang_small):
        kang_small.obs["ct"] = kang_small.obs["cell_type"].astype(str)
        kang_small.obs.iloc[0, kang_small.obs.columns.get_loc("ct")] = "nan"
        with pytest.warns(UserWarning, match="missing value"):
            sd.tl.generate(kang_small, "ron_gauss", eps=None, groupby="ct")

    def test_duplicate_genes(self, kang_small):
        names = list(kang_small.var_names)
        names[1] = names[0]
        kang_small.var_names = names
        with pytest.raises(ValueError, match=r"duplicate names.*var_names_make_unique"):
            sd.tl.generate(kang_small, "ron_gauss", eps=1.0)

    @pytest.mark.parametrize("eps", ["1", b"1", True])
    def test_eps_of_wrong_type(self, kang_small, eps):
        with pytest.raises(TypeError, match="eps must be a number"):
            sd.tl.generate(kang_small, "ron_gauss", eps=eps)

    def test_validation_before_heavy_imports(self, kang_small, tmp_path):
        import subprocess
        import sys

        path = tmp_path / "a.h5ad"
        kang_small.write_h5ad(path)
        code = (
            "import sys, anndata, scdpsynth as sd\n"
            f"a = anndata.read_h5ad({str(path)!r})\n"
            "try:\n    sd.tl.generate(a, 'dp_vae', eps='1')\nexcept TypeError:\n    pass\n"
            "print('torch' in sys.modules)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["False"]

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
