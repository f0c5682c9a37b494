"""Membership-inference attacks: scoring, each attack's behaviour and the tl.attack layer."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import scdpsynth as sd
from scdpsynth.attacks import registry
from scdpsynth.attacks._base import aggregate_scores, auroc, roc_curve, score_attack, tpr_at_fpr
from scdpsynth.attacks.distance import dcr, dcr_calibrated, min_distance
from scdpsynth.attacks.mahalanobis import GaussianCopula, mahalanobis
from scdpsynth.attacks.pseudobulk_rf import pseudobulk_rf
from scdpsynth.attacks.whitebox_vae import whitebox_vae

RECORD_ATTACKS = ["dcr", "dcr_calibrated", "domias", "logan", "mahalanobis", "mahalanobis_ref"]


def _lognorm(X):
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
    return np.log1p(X / X.sum(1, keepdims=True) * 1e4)


@pytest.fixture
def kang_parts(kang_small):
    """Log-normalised real cells split in three disjoint parts: members (100), non-members (100), other (100)."""
    X = _lognorm(kang_small.X)
    idx = np.random.default_rng(1).permutation(X.shape[0])
    return X[idx[:100]], X[idx[100:200]], X[idx[200:]]


# ---------------------------------------------------------------- scoring: known answers and properties


def test_roc_auroc_tpr_known_answer():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    member = np.array([1, 0, 1, 0, 0], bool)
    fpr, tpr, thr = roc_curve(scores, member)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1, 1])
    assert thr[0] == np.inf
    # members 0.9 and 0.7 beat 3 and 2 of the 3 non-members: 5/6
    assert auroc(scores, member) == pytest.approx(5 / 6)
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.5
    assert tpr_at_fpr(fpr, tpr, 0.34) == 1.0
    res = score_attack("x", "sample", np.arange(5), scores, member)
    assert res.row()["n_members"] == 2 and res.row()["n_nonmembers"] == 3
    assert res.tpr_at_1pct_fpr == 0.5 and res.tpr_at_01pct_fpr == 0.5


def test_roc_ties_count_half():
    # one member and one non-member with the same score: AUROC 0.5, one ROC step
    fpr, tpr, _ = roc_curve([1.0, 1.0], [True, False])
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    assert auroc([1.0, 1.0], [True, False]) == 0.5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=2, max_size=30),
    st.lists(st.integers(0, 6), min_size=2, max_size=30),
)
def test_auroc_equals_mann_whitney(pos, neg):
    scores = np.r_[pos, neg].astype(float)
    member = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    u = stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert auroc(scores, member) == pytest.approx(u / (len(pos) * len(neg)))
    assert auroc(-scores, member) == pytest.approx(1 - u / (len(pos) * len(neg)))
    assert auroc(np.exp(scores), member) == pytest.approx(auroc(scores, member))


def test_roc_errors():
    with pytest.raises(ValueError, match="both members and non-members"):
        roc_curve([1, 2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        roc_curve([np.nan, 1], [True, False])


def test_aggregate_scores_mean_per_group():
    groups, means = aggregate_scores([1.0, 3.0, 10.0, 5.0], ["b", "b", "a", "c"])
    assert list(groups) == ["a", "b", "c"]
    np.testing.assert_allclose(means, [10.0, 2.0, 5.0])


# ---------------------------------------------------------------- attacks on arrays


def test_dcr_known_answer():
    syn = np.array([[0.0, 0.0], [3.0, 4.0]])
    targets = np.array([[0.0, 1.0], [3.0, 4.0]])
    np.testing.assert_allclose(dcr(syn, targets), [-1.0, 0.0])
    ref = np.array([[0.0, 3.0]])
    np.testing.assert_allclose(dcr_calibrated(syn, targets, reference=ref), [2.0 - 1.0, np.sqrt(10.0)])
    np.testing.assert_allclose(min_distance(syn, targets, chunk_elements=1), [1.0, 0.0])


def test_copula_normal_scores_mid_ranks():
    # sorted column [0, 0, 1, 2]: x=0 has 0 below and 2 equal -> (0 + 1 + 0.5) / 5 = 0.3; x=5 -> (4 + 0.5) / 5
    cop = GaussianCopula.fit(np.array([[0.0], [1.0], [0.0], [2.0]]))
    z = cop.normal_scores(np.array([[0.0], [5.0]]))
    np.testing.assert_allclose(z[:, 0], special.ndtri([0.3, 0.9]))


def test_mahalanobis_matches_gaussian_when_marginals_exact():
    # with many synthetic records the copula score of a point at the centre beats one in the tail
    rng = np.random.default_rng(0)
    syn = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=4000)
    s = mahalanobis(syn, np.array([[0.0, 0.0], [1.0, -1.0], [1.0, 1.0]]))
    # (1, -1) goes against the correlation: far larger distance than (1, 1)
    assert s[0] > s[2] > s[1]
    assert -s[2] == pytest.approx(2 / 1.8, rel=0.15)  # z^T Sigma^-1 z for z=(1,1), rho=0.8


@pytest.mark.parametrize("name", RECORD_ATTACKS)
def test_attack_detects_memorising_generator(kang_parts, name):
    members, nonmembers, other = kang_parts
    rng = np.random.default_rng(2)
    syn = members + rng.normal(0, 0.05, members.shape)  # a generator that copies its training records
    targets = np.vstack([members, nonmembers])
    member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    fn = registry.get(name)
    kw = {"reference": other} if registry.info(name)["needs_reference"] else {}
    s = fn(syn, targets, random_state=0, **kw)
    assert s.shape == (200,)
    assert auroc(s, member) > 0.85


@pytest.mark.parametrize("name", RECORD_ATTACKS)
def test_attack_near_chance_on_independent_data(kang_parts, name):
    # synthetic data = real cells independent of both members and non-members: no attack can beat chance;
    # with 100 + 100 targets the AUROC standard error is ~0.04, tolerance 0.15
    members, nonmembers, other = kang_parts
    syn, ref = other[:50], other[50:]
    targets = np.vstack([members, nonmembers])
    member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    fn = registry.get(name)
    kw = {"reference": ref} if registry.info(name)["needs_reference"] else {}
    assert abs(auroc(fn(syn, targets, random_state=0, **kw), member) - 0.5) < 0.15


def test_attack_input_errors(kang_parts):
    members, nonmembers, _ = kang_parts
    with pytest.raises(ValueError, match="same genes"):
        dcr(members, nonmembers[:, :10])
    with pytest.raises(ValueError, match="reference="):
        registry.get("domias")(members, nonmembers, reference=None)
    with pytest.raises(ValueError, match="NaN"):
        dcr(members, np.full((2, members.shape[1]), np.nan))


def test_seeded_attacks_are_deterministic(kang_parts):
    members, nonmembers, other = kang_parts
    a = registry.get("logan")(members, nonmembers, reference=other, n_estimators=30, random_state=3)
    b = registry.get("logan")(members, nonmembers, reference=other, n_estimators=30, random_state=3)
    np.testing.assert_array_equal(a, b)


class _LossModel:
    """Stand-in for a fitted DP-VAE: loss = squared distance to the closest training record (memorises)."""

    def __init__(self, train):
        self.train = train

    def per_sample_loss(self, X, y):
        assert y.shape == (X.shape[0],)
        return min_distance(self.train, X) ** 2 + y


def test_whitebox_vae_with_stand_in(kang_parts):
    members, nonmembers, _ = kang_parts
    model = _LossModel(members)
    targets = np.vstack([members, nonmembers])
    s = whitebox_vae(model, targets)
    np.testing.assert_allclose(s[:100], 0.0)
    assert auroc(s, np.r_[np.ones(100, bool), np.zeros(100, bool)]) == 1.0
    # class codes reach the model
    np.testing.assert_allclose(whitebox_vae(model, members[:3], y=[0, 1, 2]), [0.0, -1.0, -2.0])
    with pytest.raises(TypeError, match="per_sample_loss"):
        whitebox_vae(object(), targets)


def _memorising_shadow(X, donor_codes, n_out, rng):
    """Shadow 'generator' that copies its training records (with small noise)."""
    idx = rng.integers(0, X.shape[0], n_out)
    return X[idx] + rng.normal(0, 0.05, (n_out, X.shape[1]))


def _independent_shadow(X, donor_codes, n_out, rng):
    """Shadow 'generator' drawing from a Gaussian with the data's mean and per-gene sd (no memorisation)."""
    return rng.normal(X.mean(0), X.std(0) + 1e-9, (n_out, X.shape[1]))


def test_pseudobulk_rf_donor_level(kang_small):
    # 60 pseudo-donors of 5 real cells each: 20 member donors, 20 non-member donors, 20 reference donors
    X = _lognorm(kang_small.X)
    rng = np.random.default_rng(0)
    donors = rng.permutation(np.repeat(np.arange(60), 5))
    mem, non, ref = donors < 20, (donors >= 20) & (donors < 40), donors >= 40
    targets = np.vstack([X[mem], X[non]])
    tgroups = np.r_[donors[mem], donors[non]]
    member_donor = np.arange(40) < 20
    syn_memo = _memorising_shadow(X[mem], None, 200, np.random.default_rng(1))
    s = pseudobulk_rf(
        syn_memo,
        targets,
        reference=X[ref],
        target_groups=tgroups,
        reference_groups=donors[ref],
        shadow=_memorising_shadow,
        n_shadow=3,
        random_state=0,
    )
    assert s.shape == (40,)
    assert auroc(s, member_donor) > 0.9
    syn_ind = _independent_shadow(X[mem], None, 200, np.random.default_rng(1))
    s0 = pseudobulk_rf(
        syn_ind,
        targets,
        reference=X[ref],
        target_groups=tgroups,
        reference_groups=donors[ref],
        shadow=_independent_shadow,
        n_shadow=3,
        random_state=0,
    )
    assert abs(auroc(s0, member_donor) - 0.5) < 0.25  # 20 vs 20 donors: AUROC sd ~0.09
    with pytest.raises(ValueError, match="at least 4 reference donors"):
        pseudobulk_rf(
            syn_memo,
            targets,
            reference=X[ref][:3],
            target_groups=tgroups,
            reference_groups=[0, 1, 2],
            shadow=_memorising_shadow,
        )


# ---------------------------------------------------------------- tl.attack


@pytest.fixture
def split_small(kang_small):
    a = kang_small
    a.obs["donor"] = pd.Categorical([f"d{i}" for i in np.random.default_rng(0).integers(0, 30, a.n_obs)])
    train, hold = sd.pp.train_holdout_split(a, holdout_size=0.5, donor_key="donor", random_state=0)
    leak = ad.AnnData(train.X.copy(), var=pd.DataFrame(index=train.var_names.copy()))  # copies the training data
    return train, hold, leak


def test_tl_attack_results_and_roundtrip(split_small, tmp_path):
    train, hold, leak = split_small
    train_before, hold_before = train.copy(), hold.copy()
    res = sd.tl.attack(train, hold, leak, method=["dcr", "domias", "mahalanobis"], random_state=0)
    df = res["results"]
    assert list(df.columns) == [
        "attack",
        "unit",
        "auroc",
        "tpr_at_1pct_fpr",
        "tpr_at_0.1pct_fpr",
        "n_members",
        "n_nonmembers",
        "auroc_ci_low",
        "auroc_ci_high",
        "tpr_at_1pct_fpr_ci_low",
        "tpr_at_1pct_fpr_ci_high",
    ]
    assert list(df["attack"]) == ["dcr", "domias", "mahalanobis"]
    assert (df["n_members"] == train.n_obs).all()
    # half of the holdout donors became the reference set
    assert (df["n_nonmembers"] + res["params"]["n_reference"] == hold.n_obs).all()
    assert df.set_index("attack").loc["dcr", "auroc"] == 1.0  # exact copies: distance 0
    roc = res["roc"]["dcr"]
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1 and np.all(np.diff(roc["fpr"]) >= 0)
    sc = res["scores"]["dcr"]
    assert sc["member"].sum() == train.n_obs and set(sc["id"][sc["member"]]) == set(train.obs_names)
    # the real inputs are untouched, the synthetic AnnData carries the results
    np.testing.assert_array_equal(train.X.toarray(), train_before.X.toarray())
    assert hold.obs.equals(hold_before.obs) and "scdpsynth_attack" not in train.uns
    path = tmp_path / "syn.h5ad"
    leak.write_h5ad(path)
    back = ad.read_h5ad(path).uns["scdpsynth_attack"]
    pd.testing.assert_frame_equal(back["results"].reset_index(drop=True), df, check_dtype=False)
    np.testing.assert_allclose(back["roc"]["domias"]["tpr"], res["roc"]["domias"]["tpr"])


def test_tl_attack_donor_aggregation(split_small):
    train, hold, leak = split_small
    cell = sd.tl.attack(train, hold, leak, method="dcr", key_added="cell")
    donor = sd.tl.attack(train, hold, leak, method="dcr", unit="donor", donor_key="donor", key_added="donor")
    donors = np.r_[train.obs["donor"].astype(str), hold.obs["donor"].astype(str)]
    order = np.r_[train.obs_names, hold.obs_names]
    cell_scores = pd.Series(cell["scores"]["dcr"]["score"], index=cell["scores"]["dcr"]["id"]).loc[order]
    expected = pd.Series(cell_scores.to_numpy()).groupby(donors).mean()
    got = pd.Series(donor["scores"]["dcr"]["score"], index=donor["scores"]["dcr"]["id"])
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    row = donor["results"].iloc[0]
    assert row["unit"] == "donor"
    assert row["n_members"] == train.obs["donor"].nunique() and row["n_nonmembers"] == hold.obs["donor"].nunique()
    assert set(leak.uns) >= {"cell", "donor"}


def test_tl_attack_on_dp_generator_near_chance(split_small):
    train, hold, _ = split_small
    syn = sd.tl.generate(train, "ron_gauss", eps=1.0, groupby="cell_type", random_state=0)
    res = sd.tl.attack(train, hold, syn, method=["dcr", "dcr_calibrated", "mahalanobis_ref"], random_state=0)
    # ~150 members vs ~75 non-members: AUROC sd ~0.04; a DP generator must not be distinguishable beyond 0.15
    assert (res["results"]["auroc"].sub(0.5).abs() < 0.15).all()


def test_tl_attack_whitebox_and_all(split_small):
    train, hold, leak = split_small
    model = _LossModel(np.log1p(train.X.toarray()))  # tl.attack gives the model log1p counts, as tl.generate fits
    fast = {"logan": {"n_estimators": 40}, "pseudobulk_rf": {"n_estimators": 40, "n_shadow": 2}}
    res = sd.tl.attack(
        train,
        hold,
        leak,
        method="all",
        generator=model,
        attack_kwargs=fast,
        shadow=_memorising_shadow,
        unit="donor",
        donor_key="donor",
        random_state=0,
    )
    df = res["results"].set_index("attack")
    assert set(df.index) == set(registry.names())
    assert df.loc["whitebox_vae", "auroc"] == 1.0
    from scdpsynth.tl._attack import _methods

    assert _methods("all", registry, None) == [n for n in registry.names() if n != "whitebox_vae"]


def test_tl_attack_errors(split_small):
    train, hold, leak = split_small
    with pytest.raises(ValueError, match="Did you mean 'domias'"):
        sd.tl.attack(train, hold, leak, method="domia")
    with pytest.raises(ValueError, match="donor_key"):
        sd.tl.attack(train, hold, leak, unit="donor")
    with pytest.raises(ValueError, match="generator="):
        sd.tl.attack(train, hold, leak, method="whitebox_vae")
    overlap = hold.copy()
    donor = overlap.obs["donor"].astype(str).to_numpy()
    donor[0] = str(train.obs["donor"].iloc[0])
    overlap.obs["donor"] = pd.Categorical(donor)
    with pytest.raises(ValueError, match="appear in both"):
        sd.tl.attack(train, overlap, leak, unit="donor", donor_key="donor")
    logged = ad.AnnData(np.log1p(leak.X.toarray()), var=pd.DataFrame(index=leak.var_names))
    with pytest.raises(ValueError, match="mix raw counts"):
        sd.tl.attack(train, hold, logged)
    no_genes = ad.AnnData(leak.X.copy(), var=pd.DataFrame(index=[f"g{i}" for i in range(leak.n_vars)]))
    with pytest.raises(ValueError, match="share no genes"):
        sd.tl.attack(train, hold, no_genes)
    with pytest.raises(ValueError, match="shadow="):
        sd.tl.attack(train, hold, leak, method="pseudobulk_rf")


def test_tl_attack_gene_alignment_and_reference(split_small):
    train, hold, leak = split_small
    shuffled = leak[:, leak.var_names[::-1]].copy()  # same genes, reversed order
    a = sd.tl.attack(train, hold, leak, method="dcr", key_added="a")
    b = sd.tl.attack(train, hold, shuffled, method="dcr", key_added="b")
    np.testing.assert_allclose(a["scores"]["dcr"]["score"], b["scores"]["dcr"]["score"])
    # explicit reference: the whole holdout stays a target
    ref, rest = hold[: hold.n_obs // 2].copy(), hold[hold.n_obs // 2 :].copy()
    rest.obs["donor"] = rest.obs["donor"].astype(str)
    ref.obs["donor"] = "ref-" + ref.obs["donor"].astype(str)
    r = sd.tl.attack(train, rest, leak, method="domias", reference=ref, donor_key="donor")
    assert r["results"].loc[0, "n_nonmembers"] == rest.n_obs and r["params"]["reference"] == "given"


@pytest.mark.slow
def test_whitebox_attack_on_real_dp_vae(bioc_all_small):
    # ~1-4 min on 2 cores: a non-private VAE fitted long on 64 samples memorises them; DP-SGD at eps=1 does not
    pytest.importorskip("torch")
    dp_vae = pytest.importorskip("scdpsynth.generators.dp_vae")
    X = np.asarray(bioc_all_small.X, dtype=float)[:, :100]
    idx = np.random.default_rng(0).permutation(X.shape[0])
    train, hold = X[idx[:64]], X[idx[64:]]
    member = np.r_[np.ones(64, bool), np.zeros(hold.shape[0], bool)]
    kw = {"batch_size": 16, "hidden_dim": 128, "latent_dim": 8, "random_state": 0, "device": "cpu"}
    overfit = dp_vae.DPVAE(eps=None, epochs=200, **kw).fit(train, np.zeros(64, int), n_classes=1)
    assert auroc(whitebox_vae(overfit, np.vstack([train, hold])), member) > 0.8
    private = dp_vae.DPVAE(eps=1.0, epochs=30, **kw).fit(train, np.zeros(64, int), n_classes=1)
    # 64 vs 64 targets: AUROC sd ~0.05
    assert abs(auroc(whitebox_vae(private, np.vstack([train, hold])), member) - 0.5) < 0.15


def test_tl_attack_seed_does_not_depend_on_other_attacks(split_small):
    train, hold, leak = split_small
    kw = {"logan": {"n_estimators": 20}}
    a = sd.tl.attack(train, hold, leak, method="logan", attack_kwargs=kw, key_added="a", random_state=5)
    b = sd.tl.attack(train, hold, leak, method=["dcr", "logan"], attack_kwargs=kw, key_added="b", random_state=5)
    np.testing.assert_array_equal(a["scores"]["logan"]["score"], b["scores"]["logan"]["score"])


def test_tl_attack_shadow_from_generate_metadata(split_small):
    # pseudobulk_rf rebuilds the shadow generator from uns["scdpsynth"] (method, eps, delta) written by tl.generate
    train, hold, _ = split_small
    syn = sd.tl.generate(train, "ron_gauss", eps=1.0, random_state=0)
    res = sd.tl.attack(
        train,
        hold,
        syn,
        method="pseudobulk_rf",
        unit="donor",
        donor_key="donor",
        attack_kwargs={"pseudobulk_rf": {"n_shadow": 2, "n_estimators": 30}},
        random_state=0,
    )
    row = res["results"].iloc[0]
    assert row["unit"] == "donor" and row["n_members"] == train.obs["donor"].nunique()
    assert (
        0.0 <= row["auroc"] <= 1.0
        and len(res["scores"]["pseudobulk_rf"]["score"]) == row["n_members"] + row["n_nonmembers"]
    )


def test_tl_attack_sample_level_allows_shared_donors(kang_small):
    # sample-level DP: train and holdout may share donors; donor_key then only shapes the reference split
    train, hold = sd.pp.train_holdout_split(kang_small, holdout_size=0.5, random_state=0)
    leak = ad.AnnData(train.X.copy(), var=pd.DataFrame(index=train.var_names.copy()))
    res = sd.tl.attack(train, hold, leak, method="dcr_calibrated", donor_key="donor_id")
    n_ref = res["params"]["n_reference"]
    ref_donor = set(hold.obs["donor_id"].astype(str)) - set(
        hold.obs_names[np.isin(hold.obs_names, res["scores"]["dcr_calibrated"]["id"])].map(hold.obs["donor_id"])
    )
    assert n_ref == int(hold.obs["donor_id"].astype(str).isin(ref_donor).sum())
    with pytest.raises(ValueError, match="appear in both"):
        sd.tl.attack(train, hold, leak, unit="donor", donor_key="donor_id")


# ---------------------------------------------------------------- the number tl.attack reports


def test_tl_attack_reports_ties_as_half():
    # every target is the same record, so every attack score ties: AUROC 0.5 whatever the attack (not 1.0)
    X = np.tile(np.arange(1.0, 7.0), (6, 1))
    var = pd.DataFrame(index=[f"g{j}" for j in range(6)])
    train = ad.AnnData(X[:3].copy(), var=var)
    train.obs_names = ["t0", "t1", "t2"]
    hold = ad.AnnData(X[3:].copy(), var=var)
    hold.obs_names = ["h0", "h1", "h2"]
    syn = ad.AnnData(np.array([[9.0, 1, 1, 1, 1, 1], [1, 9.0, 1, 1, 1, 1]]), var=var)
    with pytest.warns(UserWarning, match="non-member"):
        res = sd.tl.attack(train, hold, syn, method=["dcr", "dcr_calibrated"], reference=syn.copy())
    df = res["results"].set_index("attack")
    np.testing.assert_allclose(df["auroc"], 0.5)
    assert score_attack("x", "sample", np.arange(4), [1.0, 1.0, 1.0, 1.0], [True, True, False, False]).auroc == 0.5


def test_score_attack_auroc_is_auroc_and_ci_covers_it():
    rng = np.random.default_rng(0)
    member = np.r_[np.ones(200, bool), np.zeros(300, bool)]
    scores = rng.normal(size=500) + 0.8 * member
    res = score_attack("x", "sample", np.arange(500), np.round(scores, 1), member)  # rounding makes ties
    assert res.auroc == auroc(np.round(scores, 1), member)
    row = res.row()
    assert row["auroc_ci_low"] < res.auroc < row["auroc_ci_high"]
    # the bootstrap interval has about the width of the normal approximation (Hanley-McNeil, binormal: sd ~0.021)
    assert 0.06 < row["auroc_ci_high"] - row["auroc_ci_low"] < 0.11
    assert row["tpr_at_1pct_fpr_ci_low"] <= res.tpr_at_1pct_fpr <= row["tpr_at_1pct_fpr_ci_high"]


def test_default_reference_leaves_enough_nonmembers():
    from scdpsynth.tl._attack import _reference_size

    assert _reference_size(400, None, 10) == 200  # half of a large holdout
    assert _reference_size(150, None, 10) == 50  # keep 100 non-members
    assert _reference_size(38, None, 10) == 10  # small holdout: at least 10 reference records, 28 targets
    assert _reference_size(12, None, 10) == 6  # tiny: half
    assert _reference_size(400, 0.5, 10) == 200 and _reference_size(10, 0.3, 10) == 3
