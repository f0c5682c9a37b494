"""tl.evaluate and tl.benchmark: AnnData plumbing, known answers on real data, serialisation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scdpsynth as sd
from scdpsynth._registry import _Entry
from scdpsynth.generators import BaseGenerator
from scdpsynth.generators import registry as generators
from scdpsynth.metrics import registry as metrics_registry
from scdpsynth.tl._evaluate import _log_normalise

OURS = ["coexpression", "de_genes", "histogram_overlap", "knn_distance", "ml_efficacy"]
FAST = {"coexpression": {"min_module_size": 3}}


def _as_synthetic(adata, groupby="cell_type"):
    """A 'synthetic' AnnData that is a copy of the real rows, carrying tl.generate-style metadata."""
    syn = ad.AnnData(X=adata.X.copy(), obs=adata.obs[[groupby]].copy(), var=pd.DataFrame(index=adata.var_names))
    syn.uns["scdpsynth"] = {"method": "copy", "params": {"groupby": groupby}}
    return syn


def _row(df, metric, variant, group="all"):
    sel = df[(df["metric"] == metric) & (df["variant"] == variant) & (df["group"] == group)]
    assert len(sel) == 1
    return sel.iloc[0]


@pytest.fixture
def split(kang_small):
    return sd.pp.train_holdout_split(kang_small, holdout_size=0.25, stratify="cell_type", random_state=0)


def test_evaluate_copy_of_training_data_gets_perfect_scores(split):
    train, hold = split
    before = train.copy()
    syn = _as_synthetic(train)
    df = sd.tl.evaluate(train, syn, holdout=hold, metrics=OURS, metric_kwargs=FAST)
    assert sorted(df["metric"].unique()) == OURS
    assert syn.uns["scdpsynth_eval"] is df
    np.testing.assert_allclose(df.loc[df["metric"] == "histogram_overlap", "value"], 1.0)
    assert _row(df, "de_genes", "tpr")["value"] == 1.0 and _row(df, "de_genes", "fpr")["value"] == 0.0
    assert _row(df, "knn_distance", "dcr_to_train")["value"] == 0.0
    assert _row(df, "knn_distance", "share_closer_to_train")["value"] == 1.0
    # the privacy figure beside every row gives the copy away
    assert (df["privacy_dcr_auroc"] == 1.0).all()
    acc = _row(df, "ml_efficacy", "accuracy")
    assert acc["value"] == acc["reference"] > 0.6  # the same training set gives the same model; chance 0.2
    for thr in ("0", "0.7"):
        assert _row(df, "coexpression", f"r>{thr}:spurious")["value"] == 0
        assert _row(df, "coexpression", f"r>{thr}:recall")["value"] == 1.0
    # the real data are untouched
    assert (train.X != before.X).nnz == 0 and train.obs.equals(before.obs) and not train.uns


def test_evaluate_real_holdout_as_synthetic_matches_references(split):
    """Fresh real data in place of synthetic ones score like the real references (no memorisation)."""
    train, hold = split
    tr2, other = sd.pp.train_holdout_split(train, holdout_size=0.3, stratify="cell_type", random_state=1)
    df = sd.tl.evaluate(tr2, _as_synthetic(other), holdout=hold, metrics=["histogram_overlap", "knn_distance"])
    knn = _row(df, "knn_distance", "knn_to_holdout")
    assert knn["value"] == pytest.approx(knn["reference"], rel=0.1)
    share = _row(df, "knn_distance", "share_closer_to_train")
    assert abs(share["value"] - share["reference"]) < 0.15  # 68 samples, exchangeable: sd ~0.06


def test_evaluate_shuffled_is_bad(split):
    train, hold = split
    rng = np.random.default_rng(0)
    syn = _as_synthetic(train)
    syn.obs["cell_type"] = pd.Categorical(rng.permutation(syn.obs["cell_type"].to_numpy()))
    df = sd.tl.evaluate(train, syn, holdout=hold, metrics=["ml_efficacy", "de_genes"])
    acc = _row(df, "ml_efficacy", "balanced_accuracy")
    assert acc["value"] < 0.45 < 0.6 < acc["reference"]  # 5 classes: chance 0.2
    assert _row(df, "de_genes", "tpr")["value"] < 0.3 < _row(df, "de_genes", "tpr")["reference"]


def test_evaluate_aligns_genes_and_classes_by_name(split):
    train, hold = split
    syn = _as_synthetic(train)
    ref = sd.tl.evaluate(train, syn, holdout=hold, metrics=["histogram_overlap", "de_genes"])
    perm = np.random.default_rng(1).permutation(train.n_vars)
    syn2 = syn[::-1, perm].copy()
    syn2.obs["cell_type"] = pd.Categorical(
        syn2.obs["cell_type"].astype(str), categories=sorted(syn2.obs["cell_type"].astype(str).unique(), reverse=True)
    )
    out = sd.tl.evaluate(train, syn2, holdout=hold, metrics=["histogram_overlap", "de_genes"])
    pd.testing.assert_frame_equal(ref, out)


def test_evaluate_errors_name_the_fix(split):
    train, hold = split
    syn = _as_synthetic(train)
    with pytest.raises(ValueError, match="different genes"):
        sd.tl.evaluate(train, syn[:, :150].copy(), holdout=hold)
    bad = syn.copy()
    bad.obs["cell_type"] = pd.Categorical(["alien"] * bad.n_obs)
    with pytest.raises(ValueError, match="classes not in adata_real"):
        sd.tl.evaluate(train, bad, holdout=hold)
    with pytest.raises(ValueError, match="needs a real holdout"):
        sd.tl.evaluate(train, syn, metrics=["ml_efficacy"])
    with pytest.raises(ValueError, match="Did you mean"):
        sd.tl.evaluate(train, syn, holdout=hold, metrics=["de_gene"])
    with pytest.raises(KeyError, match="groupby"):
        sd.tl.evaluate(train, syn, holdout=hold, groupby="celltype")
    neg = syn.copy()
    neg.X = neg.X.toarray() - 1.0
    with pytest.raises(ValueError, match="negative"):
        sd.tl.evaluate(train, neg, metrics=["histogram_overlap"])


def test_evaluate_without_holdout_or_labels_skips(split, caplog, monkeypatch):
    train, _ = split
    syn = _as_synthetic(train)
    # "all" = every registered metric; restrict the registry to this module's metrics for a self-contained test
    monkeypatch.setattr(metrics_registry, "_entries", {k: metrics_registry._entries[k] for k in OURS})
    mine = ["coexpression", "de_genes", "histogram_overlap"]
    with caplog.at_level("INFO", logger="scdpsynth"):
        df = sd.tl.evaluate(train, syn, metric_kwargs=FAST)
    assert set(df["metric"]) == set(mine)
    assert "needs a real holdout" in caplog.text
    del syn.uns["scdpsynth"]  # no groupby recorded -> no labels
    df = sd.tl.evaluate(train, syn, metrics=["coexpression", "histogram_overlap"], metric_kwargs=FAST)
    assert set(df["metric"]) == {"coexpression", "histogram_overlap"}
    assert not df["variant"].str.startswith("gfc").any()  # no labels, no group fold changes
    with pytest.raises(ValueError, match="needs class labels"):
        sd.tl.evaluate(train, syn, metrics=["de_genes"])


def test_evaluate_h5ad_round_trip_and_copy(split, tmp_path):
    train, hold = split
    syn = _as_synthetic(train)
    out = sd.tl.evaluate(train, syn, holdout=hold, metrics=OURS, metric_kwargs=FAST, copy=True)
    assert "scdpsynth_eval" not in syn.uns
    df = out.uns["scdpsynth_eval"]
    assert df.dtypes[["metric", "variant", "group"]].eq(object).all()
    assert df[["metric", "variant", "group"]].map(lambda v: isinstance(v, str)).all().all()
    assert df.dtypes[["value", "reference"]].eq(np.float64).all()
    out.write_h5ad(tmp_path / "syn.h5ad")
    back = ad.read_h5ad(tmp_path / "syn.h5ad").uns["scdpsynth_eval"]
    pd.testing.assert_frame_equal(back.reset_index(drop=True), df, check_dtype=False, check_index_type=False)


def test_log_normalise_matches_scanpy(kang_small):
    import scanpy as sc

    a = kang_small.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    np.testing.assert_allclose(_log_normalise(kang_small.X), a.X.toarray(), rtol=1e-6)


def test_evaluate_bulk_log_data_used_as_is(bioc_all_small):
    a = bioc_all_small
    train, hold = sd.pp.train_holdout_split(a, holdout_size=0.3, stratify="lineage", random_state=0)
    syn = _as_synthetic(train, groupby="lineage")
    df = sd.tl.evaluate(train, syn, holdout=hold, metrics=["ml_efficacy", "knn_distance"])
    assert _row(df, "ml_efficacy", "accuracy")["reference"] > 0.9  # B vs T lineage is easy on expression
    assert _row(df, "knn_distance", "dcr_to_train")["value"] == 0.0


def test_evaluate_ron_gauss_end_to_end(split):
    train, hold = split
    syn = sd.tl.generate(train, "ron_gauss", eps=2.0, groupby="cell_type", random_state=0)
    df = sd.tl.evaluate(train, syn, holdout=hold, metrics=OURS, metric_kwargs=FAST)
    assert set(OURS) == set(df["metric"])
    assert np.isfinite(df.loc[df["metric"].isin(["ml_efficacy", "histogram_overlap"]), "value"]).all()
    again = sd.tl.evaluate(train, syn, holdout=hold, metrics=OURS, metric_kwargs=FAST)
    pd.testing.assert_frame_equal(df, again)  # deterministic


class _CopyGenerator(BaseGenerator):
    """Test-only, non-private: replays the training rows of each class (a worst case for privacy)."""

    name = "copy_rows"

    def fit(self, X, y, *, n_classes, donors=None):
        self.rows_ = [np.asarray(X)[y == k] for k in range(n_classes)]
        self.class_counts_ = np.bincount(y, minlength=n_classes).astype(float)  # exact: the worst case
        self.fitted_ = True
        return self

    def sample(self, class_counts):
        self._check_fitted()
        return np.vstack([np.resize(r, (int(c), r.shape[1])) for r, c in zip(self.rows_, class_counts, strict=True)])


@pytest.fixture
def copy_generator(monkeypatch):
    monkeypatch.setitem(generators._entries, "copy_rows", _Entry("copy_rows", f"{__name__}:_CopyGenerator", "test"))
    return "copy_rows"


def test_benchmark_grid_with_known_answers(kang_small, copy_generator):
    methods = ["ron_gauss", copy_generator]
    res = sd.tl.benchmark(
        kang_small,
        methods=methods,
        eps_grid=[1.0, None],
        seeds=[0, 1],
        groupby="cell_type",
        metrics=["histogram_overlap", "knn_distance"],
        method_kwargs={copy_generator: {}},
    )
    assert list(res.columns[:4]) == ["method", "eps", "seed", "generation_seed"]
    combos = res[["method", "eps", "seed"]].drop_duplicates()
    assert len(combos) == 2 * 2 * 2
    copies = res[(res["method"] == copy_generator) & res["eps"].isna()]
    assert (copies.loc[copies["variant"] == "dcr_to_train", "value"] == 0).all()
    ov = copies.loc[copies["variant"] == "bins=25", "value"]
    assert (ov > 0.99).all()  # the training rows themselves, log1p-normalised the same way
    ron = res[(res["method"] == "ron_gauss") & (res["eps"] == 1.0)]
    assert (ron["eps_spent"] <= 1.0 + 1e-9).all()
    assert res.loc[res["eps"].isna() & (res["method"] == "ron_gauss"), "eps_spent"].eq(np.inf).all()


def test_benchmark_validates_input(kang_small):
    with pytest.raises(ValueError, match="Did you mean"):
        sd.tl.benchmark(kang_small, methods=["ron_gaus"], eps_grid=[1.0], seeds=[0], groupby="cell_type")
    with pytest.raises(ValueError, match="eps"):
        sd.tl.benchmark(kang_small, methods=["ron_gauss"], eps_grid=[-1.0], seeds=[0], groupby="cell_type")
    with pytest.raises(ValueError, match="seeds"):
        sd.tl.benchmark(kang_small, methods=["ron_gauss"], eps_grid=[1.0], seeds=[], groupby="cell_type")
    with pytest.raises(ValueError, match="generation_seeds"):
        sd.tl.benchmark(kang_small, methods="ron_gauss", eps_grid=1.0, generation_seeds=[1, 1], groupby="cell_type")
    with pytest.raises(ValueError, match="method_kwargs"):
        sd.tl.benchmark(
            kang_small, methods="ron_gauss", eps_grid=1.0, seeds=0, groupby="cell_type", method_kwargs={"dp_vae": {}}
        )


def test_metrics_registry_lists_ours():
    listed = sd.tl.list_metrics()
    assert set(OURS) <= set(listed["name"])
    assert set(OURS) <= set(metrics_registry.names())


# ---------------------------------------------------------------- references that cannot flatter


@pytest.fixture(scope="module")
def three_way():
    """Embedded Kang data (300 highest-count genes) split into train (498), a large holdout (746) and a fresh real
    sample (312) from the same population, all stratified by cell type."""
    a = sd.datasets.kang_example()
    genes = np.argsort(-np.asarray(a.X.sum(axis=0)).ravel())[:300]
    a = a[:, np.sort(genes)].copy()
    rest, fresh = sd.pp.train_holdout_split(a, holdout_size=0.2, stratify="cell_type", random_state=1)
    train, hold = sd.pp.train_holdout_split(rest, holdout_size=0.6, stratify="cell_type", random_state=2)
    syn = _as_synthetic(fresh)
    syn.obs["group_id"] = fresh.obs["group_id"].to_numpy()
    df = sd.tl.evaluate(train, syn, holdout=hold, condition="group_id", metric_kwargs=FAST)
    return train, hold, fresh, df


# |value - reference| allowed for a fresh real sample: abs + rel * |reference| (one draw of 312 cells each; counts of
# edges above r=0.7 vary most: the genes form modules, so edges cross the threshold together, and two samples of
# this size gave 65 and 115 spurious edges)
_TOL = {"coexpression": (0.15, 0.5), "knn_distance": (0.1, 0.05), "histogram_overlap": (0.03, 0),
        "de_condition": (0.15, 0)}  # fmt: skip


def test_fresh_real_sample_scores_about_the_reference_on_every_metric(three_way):
    _, _, fresh, df = three_way
    # "all" is the general suite: every registered metric outside a named preset (the CAMDA set); with condition=
    # that includes de_condition
    assert set(df["metric"]) == {n for n in metrics_registry.names() if not metrics_registry.info(n).get("preset")}
    rows = df[(df["group"] == "all") & df["reference"].notna()]
    assert len(rows) >= 30
    for _, r in rows.iterrows():
        a, rel = _TOL.get(r["metric"], (0.05, 0))
        assert abs(r["value"] - r["reference"]) <= a + rel * abs(r["reference"]), (r["metric"], r["variant"], r)
    # every sample-based reference is as large as the synthetic set and says where it came from
    sampled = df[df["metric"] != "knn_distance"]
    assert (sampled["reference_n"] == fresh.n_obs).all()
    how = df.drop_duplicates("metric").set_index("metric")["reference_how"]
    assert how["de_genes"].startswith("holdout rows") and "312 = synthetic size" in how["de_genes"]
    assert how["ml_efficacy"].startswith("real training rows")
    # fresh data know nothing of the training records: privacy figure 0.5 (498 vs 746 records: sd 0.017)
    assert abs(df["privacy_dcr_auroc"].iloc[0] - 0.5) < 0.06


def test_reference_on_the_whole_holdout_would_flatter(three_way):
    # the old reference (DE rates of the whole 746-cell holdout) finds more real DE genes than any 312-cell sample:
    # compared with it, real data of the synthetic set's size look worse than "real"
    from scdpsynth.metrics.de_genes import de_genes

    train, hold, _, df = three_way
    classes = pd.Index(train.obs["cell_type"].cat.categories)
    kw = {"counts_input": True, "groupby": "cell_type", "classes": classes}
    ev = [sd.tl._evaluate._eval_data(x, train.var_names, None, "x", **kw) for x in (train, hold)]
    whole = _row(de_genes(ev[0], ev[1]), "de_genes", "tpr")["value"]
    matched = _row(df, "de_genes", "tpr")
    assert whole > matched["reference"] + 0.05 and whole > matched["value"] + 0.05


def test_reference_sample_is_stratified_and_bootstraps_only_when_needed():
    from scdpsynth.metrics import EvalData
    from scdpsynth.tl._evaluate import reference_sample

    pool = EvalData(X=np.arange(100.0)[:, None], y=np.r_[np.zeros(80, int), np.ones(20, int)], classes=["a", "b"])
    s, boot = reference_sample(pool, 50, seed=0)
    assert not boot and np.bincount(s.y).tolist() == [40, 10] and np.unique(s.X).size == 50
    s2, boot2 = reference_sample(pool, 250, seed=0)
    assert boot2 and np.bincount(s2.y).tolist() == [200, 50] and np.unique(s2.X).size <= 100
    np.testing.assert_array_equal(reference_sample(pool, 50, seed=0)[0].X, s.X)  # reproducible


def test_evaluate_chance_columns(split):
    train, hold = split
    syn = _as_synthetic(train)
    df = sd.tl.evaluate(train, syn, holdout=hold, metrics=["ml_efficacy", "celltype_rf_auc", "histogram_overlap"])
    shares = hold.obs["cell_type"].value_counts(normalize=True)
    assert _row(df, "ml_efficacy", "accuracy")["chance"] == pytest.approx(shares.max())
    assert _row(df, "ml_efficacy", "balanced_accuracy")["chance"] == pytest.approx(1 / len(shares))
    assert _row(df, "celltype_rf_auc", "roc_auc_ovr")["chance"] == 0.5
    assert df.loc[df["metric"] == "histogram_overlap", "chance"].isna().all()


def test_single_class_generator_scores_chance(split):
    # a generator that emits only the majority class: accuracy = its holdout share = the chance column
    train, hold = split
    syn = _as_synthetic(train)
    major = hold.obs["cell_type"].value_counts().idxmax()
    syn = syn[syn.obs["cell_type"] == major].copy()
    df = sd.tl.evaluate(train, syn, holdout=hold, metrics=["ml_efficacy"])
    acc, bal = _row(df, "ml_efficacy", "accuracy"), _row(df, "ml_efficacy", "balanced_accuracy")
    assert acc["value"] == pytest.approx(acc["chance"]) and bal["value"] == pytest.approx(bal["chance"])
    assert acc["reference"] > acc["chance"] + 0.3  # a real sample of the same size does learn the classes


# ---------------------------------------------------------------- tl.benchmark: seeds, holdout, summary


def test_benchmark_equals_split_generate_evaluate_per_seed(kang_small, copy_generator):
    # each split seed's rows are exactly what the documented pipeline gives: split with that seed, fit, evaluate
    # against that split's holdout (catches a benchmark that ignores the seed or evaluates against the training data)
    metrics = ["histogram_overlap", "knn_distance", "ml_efficacy"]
    res = sd.tl.benchmark(
        kang_small, methods=copy_generator, eps_grid=None, seeds=[3, 4], groupby="cell_type", metrics=metrics
    )
    for seed in (3, 4):
        train, hold = sd.pp.train_holdout_split(kang_small, holdout_size=0.2, stratify="cell_type", random_state=seed)
        syn = sd.tl.generate(train, copy_generator, eps=None, groupby="cell_type", random_state=0)
        want = sd.tl.evaluate(train, syn, holdout=hold, metrics=metrics, groupby="cell_type", random_state=seed)
        got = res[res["seed"] == seed].reset_index(drop=True)
        assert len(got) == len(want)
        for col in ("value", "reference", "chance", "reference_n", "privacy_dcr_auroc"):
            np.testing.assert_allclose(got[col], want[col], err_msg=col)
        # a copy of the training rows is at distance 0 from train and not from the holdout
        assert _row(got, "knn_distance", "dcr_to_train")["value"] == 0
        assert _row(got, "knn_distance", "dcr_to_holdout")["value"] > 1
    # different split seeds hold out different cells: the holdout-based references differ
    ref = res[res["variant"] == "knn_to_holdout"].set_index("seed")["reference"]
    assert ref[3] != ref[4]


def test_benchmark_two_by_two_seeds_mean_and_sd(kang_small):
    kw = {"methods": "ron_gauss", "eps_grid": [1.0], "groupby": "cell_type", "metrics": ["histogram_overlap"]}
    runs = sd.tl.benchmark(kang_small, seeds=[0, 1], generation_seeds=[0, 1], **kw)
    assert len(runs[["seed", "generation_seed"]].drop_duplicates()) == 4
    # generation seeds change the synthetic data under one split, split seeds change the reference
    v = runs[runs["variant"] == "bins=25"].set_index(["seed", "generation_seed"])
    assert v.loc[(0, 0), "value"] != v.loc[(0, 1), "value"]
    assert v.loc[(0, 0), "reference"] == v.loc[(0, 1), "reference"] != v.loc[(1, 0), "reference"]
    summary = sd.tl.benchmark(kang_small, seeds=[0, 1], generation_seeds=[0, 1], summarize=True, **kw)
    row = summary[summary["variant"] == "bins=25"].iloc[0]
    assert row["n_runs"] == 4
    assert row["value_mean"] == pytest.approx(v["value"].mean())
    assert row["value_sd"] == pytest.approx(v["value"].std(ddof=1)) and row["value_sd"] > 0
    assert row["reference_sd"] == pytest.approx(v["reference"].std(ddof=1))
