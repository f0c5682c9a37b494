"""de_condition: a condition contrast (stim vs ctrl) within each class, cell-level and pseudobulk."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scdpsynth as sd
from scdpsynth._transforms import log_normalise
from scdpsynth.metrics._base import EvalData
from scdpsynth.metrics.de_condition import condition_ranksum_masks, de_condition, pseudobulk_masks

N_GENES, DE_GENES = 300, 6  # genes 0..5 are up in level 1 of class 0, genes 6..11 down in level 1 of class 1


def _planted(seed, *, n_per=120, n_samples=4, effect=3.0):
    """Poisson counts: 2 classes x 2 levels x n_samples samples; a known set of condition-DE genes per class."""
    rng = np.random.default_rng(seed)
    rows, y, cond, samples = [], [], [], []
    for k in range(2):
        for lv in range(2):
            for s in range(n_samples):
                mu = np.full(N_GENES, 4.0)
                if lv == 1:
                    de = slice(0, DE_GENES) if k == 0 else slice(DE_GENES, 2 * DE_GENES)
                    mu[de] *= effect if k == 0 else 1.0 / effect
                    mu *= 4.0 * N_GENES / mu.sum()  # same library size: no compositional shift after normalising
                rows.append(rng.poisson(mu, size=(n_per, N_GENES)))
                y += [k] * n_per
                cond += [lv] * n_per
                samples += [f"d{s}_{lv}"] * n_per
    X = sparse.csr_matrix(np.vstack(rows).astype(np.float64))
    return X, np.array(y), np.array(cond), np.array(samples)


def _data(X, y, cond, samples=None):
    return EvalData(X=log_normalise(X), y=y, classes=["A", "B"], counts=X, donors=samples, condition=cond)


def test_ranksum_masks_recover_planted_genes():
    X, y, cond, _ = _planted(0)
    up, down, ok = condition_ranksum_masks(log_normalise(X), y, cond, 2)
    assert ok.all()
    truth_up0 = np.zeros(N_GENES, bool)
    truth_up0[:DE_GENES] = True
    truth_down1 = np.zeros(N_GENES, bool)
    truth_down1[DE_GENES : 2 * DE_GENES] = True
    assert up[0, :DE_GENES].all() and down[1, DE_GENES : 2 * DE_GENES].all()
    assert not down[0, :DE_GENES].any() and not up[1, DE_GENES : 2 * DE_GENES].any()
    # null genes: per-cell normalisation lets the planted genes' extra variance reach the others a little, so allow
    # a few calls, but far fewer than a test without multiple-testing control would make (5% of 588 ~ 29)
    false_calls = (up[0] & ~truth_up0).sum() + down[0].sum() + up[1].sum() + (down[1] & ~truth_down1).sum()
    assert false_calls <= 12


def test_pseudobulk_masks_recover_planted_genes_and_need_replicates():
    X, y, cond, samples = _planted(1)
    up, down, ok, n = pseudobulk_masks(X, y, cond, samples, 2)
    assert ok.all() and list(n) == [4, 4]
    assert up[0, :DE_GENES].all() and down[1, DE_GENES : 2 * DE_GENES].all()
    assert up[0, DE_GENES:].sum() + down[1, :DE_GENES].sum() + down[1, 2 * DE_GENES :].sum() <= 2  # BH at 5%
    keep = np.isin(samples, ["d0_0", "d1_0", "d0_1", "d1_1"])  # two samples per level: too few for a t-test
    _, _, ok2, n2 = pseudobulk_masks(X[keep], y[keep], cond[keep], samples[keep], 2)
    assert not ok2.any() and list(n2) == [2, 2]


def test_de_condition_known_answers():
    X, y, cond, samples = _planted(2)
    real = _data(X, y, cond, samples)
    # a fresh draw of the same model: the DE genes are found again
    X2, y2, c2, _ = _planted(3)
    res = de_condition(real, _data(X2, y2, c2)).set_index(["variant", "group"])["value"]
    # the planted contrasts (up in A, down in B) are found again; the summary averages in the directions whose
    # real DE sets hold only the few null calls, so it is checked on the planted rows
    assert res["tpr_up", "A"] == 1.0 and res["tpr_down", "B"] == 1.0 and res["fpr", "all"] <= 0.02
    assert res["pseudobulk_tpr_up", "A"] == 1.0 and res["pseudobulk_tpr_down", "B"] == 1.0
    # synthetic cells that lost the contrast (conditions shuffled within class): no DE gene is found
    rng = np.random.default_rng(0)
    shuffled = np.concatenate([rng.permutation(c2[y2 == k]) for k in range(2)])
    res = de_condition(real, _data(X2, y2, shuffled)).set_index(["variant", "group"])["value"]
    assert res["tpr_up", "A"] <= 0.2 and res["tpr_down", "B"] <= 0.2
    # without sample labels on the real side only the cell-level rows are reported
    res = de_condition(_data(X, y, cond), _data(X2, y2, c2))
    assert not res["variant"].str.startswith("pseudobulk").any()
    with pytest.raises(ValueError, match="condition="):
        de_condition(EvalData(X=log_normalise(X), y=y, classes=["A", "B"]), _data(X2, y2, c2))


def _adata(X, y, cond, samples):
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(np.array(["A", "B"])[y]),
            "group_id": pd.Categorical(np.array(["ctrl", "stim"])[cond]),
            "sample_id": samples,
        }
    )
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(X.shape[1])]))


def test_evaluate_condition_and_errors():
    real = _adata(*_planted(4))
    syn = _adata(*_planted(5))
    hold = _adata(*_planted(6))
    res = sd.tl.evaluate(real, syn, holdout=hold, metrics=["de_condition"], groupby="cell_type",
                         condition="group_id", donor_key="sample_id")  # fmt: skip
    assert (res["contrast"] == "stim vs ctrl").all()
    s = res.set_index(["variant", "group"])
    for key in (("tpr_up", "A"), ("tpr_down", "B")):
        assert s.loc[key, "value"] == 1.0
        assert s.loc[key, "reference"] == 1.0  # the holdout sample finds the same genes
    assert "de_condition" not in set(sd.tl.evaluate(real, syn, holdout=hold, groupby="cell_type")["metric"])
    with pytest.raises(ValueError, match="needs a two-level condition"):
        sd.tl.evaluate(real, syn, metrics=["de_condition"], groupby="cell_type")
    three = real.copy()
    three.obs["group_id"] = pd.Categorical(np.resize(["a", "b", "c"], three.n_obs))
    with pytest.raises(ValueError, match="exactly two levels"):
        sd.tl.evaluate(three, syn, metrics=["de_condition"], groupby="cell_type", condition="group_id")
    with pytest.raises(KeyError, match="condition='nope'"):
        sd.tl.evaluate(real, syn, metrics=["de_condition"], groupby="cell_type", condition="nope")


def test_cross_class_generation_keeps_the_contrast_and_sets_the_default_groupby():
    """groupby=[class, condition] in tl.generate: evaluate defaults to the first column; the contrast survives."""
    real = _adata(*_planted(7))
    syn = sd.tl.generate(real, "nb_baseline", eps=None, groupby=["cell_type", "group_id"], random_state=0)
    res = sd.tl.evaluate(real, syn, metrics=["de_condition"], condition="group_id").set_index(["variant", "group"])
    assert res.loc[("tpr_up", "A"), "value"] == 1.0 and res.loc[("tpr_down", "B"), "value"] == 1.0
    # one class only: the condition is lost, so no DE gene is found
    flat = sd.tl.generate(real, "nb_baseline", eps=None, groupby="cell_type", random_state=0)
    flat.obs["group_id"] = pd.Categorical(np.resize(["ctrl", "stim"], flat.n_obs))
    res = sd.tl.evaluate(real, flat, metrics=["de_condition"], condition="group_id").set_index(["variant", "group"])
    assert res.loc[("tpr_up", "A"), "value"] <= 0.2
