"""pp.train_holdout_split: disjoint, stratified within each class, donors kept whole, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scdpsynth as sd


def test_split_disjoint_complete_and_copies(kang_example):
    train, hold = sd.pp.train_holdout_split(kang_example, holdout_size=0.25, random_state=0)
    assert set(train.obs_names).isdisjoint(hold.obs_names)
    assert sorted(np.r_[train.obs_names, hold.obs_names]) == sorted(kang_example.obs_names)
    assert hold.n_obs == round(0.25 * kang_example.n_obs)
    assert not train.is_view and not hold.is_view


def test_split_stratified_within_each_class(kang_example):
    # every class is split in the holdout proportion on its own: its holdout count is round(0.3 * class size)
    a = kang_example
    sizes = a.obs["cell_type"].value_counts()
    for seed in range(3):
        train, hold = sd.pp.train_holdout_split(a, holdout_size=0.3, stratify="cell_type", random_state=seed)
        got = hold.obs["cell_type"].value_counts()
        for c, n in sizes.items():
            assert got[c] == round(0.3 * n), (seed, c, got[c], n)
            assert (train.obs["cell_type"] == c).sum() == n - got[c]


def test_split_stratified_small_classes_on_both_sides():
    # a class of 2 gets one record on each side; a class of 1 stays in training
    import anndata as ad

    obs = pd.DataFrame({"c": pd.Categorical(["a"] * 20 + ["b"] * 2 + ["z"])}, index=[f"r{i}" for i in range(23)])
    a = ad.AnnData(np.arange(23.0)[:, None], obs=obs)
    train, hold = sd.pp.train_holdout_split(a, holdout_size=0.1, stratify="c", random_state=0)
    assert [(hold.obs["c"] == c).sum() for c in "abz"] == [2, 1, 0]
    assert "z" in set(train.obs["c"])


def test_split_keeps_donors_whole(kang_pbmc):
    train, hold = sd.pp.train_holdout_split(kang_pbmc, holdout_size=0.25, donor_key="donor_id", random_state=0)
    d_train, d_hold = set(train.obs["donor_id"]), set(hold.obs["donor_id"])
    assert d_train.isdisjoint(d_hold)
    assert len(d_hold) == 2 and len(d_train) == 6  # round(0.25 * 8) donors held out
    counts = kang_pbmc.obs["donor_id"].value_counts()
    assert hold.n_obs == counts[list(d_hold)].sum()


def test_split_reproducible_and_seed_dependent(kang_example):
    kw = {"holdout_size": 0.2, "stratify": "cell_type"}
    a1 = sd.pp.train_holdout_split(kang_example, random_state=7, **kw)[1].obs_names
    a2 = sd.pp.train_holdout_split(kang_example, random_state=7, **kw)[1].obs_names
    b = sd.pp.train_holdout_split(kang_example, random_state=8, **kw)[1].obs_names
    assert list(a1) == list(a2)
    assert len(set(a1) & set(b)) < 0.5 * len(a1)  # expected overlap 20%
    g = sd.pp.train_holdout_split(kang_example, random_state=np.random.default_rng(7), **kw)[1].obs_names
    assert list(g) == list(a1)  # an int seed and a Generator from it give the same split


def test_split_errors(kang_example):
    with pytest.raises(ValueError, match="holdout_size"):
        sd.pp.train_holdout_split(kang_example, holdout_size=1.0)
