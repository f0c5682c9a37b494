"""Every registered attack detects an exact copy of its training data and is at chance on fresh real data.

For each data set the real records are split (fixed seed) into four disjoint parts: members (the training data,
1/2), non-member targets (1/4), the attacker's reference (1/8) and a fresh real sample (1/8). The "synthetic" data
are either an exact copy of the members (every attack must reach AUROC >= 0.95) or the fresh real sample, which
knows nothing of the members (AUROC within a tolerance of 0.5 stated per data set from the number of non-members).
Attacks run through ``tl.attack`` with ``reference=`` so that the scoring the user sees is the one tested.
"""

from __future__ import annotations

import functools
import warnings

import anndata as ad
import numpy as np
import pytest

import scdpsynth as sd
from scdpsynth.attacks import registry
from scdpsynth.attacks.distance import min_distance

ATTACKS = registry.names()


class _FittedOn:
    """White-box stand-in of a fitted model: per-record loss = squared distance to its closest training record."""

    def __init__(self, X):
        self.X = X

    def per_sample_loss(self, X, y):
        return min_distance(self.X, X) ** 2


def _pool_shadow(pool):
    """Shadow 'generator' for pseudobulk_rf that behaves like the attacked one: copy (pool None) or fresh rows."""

    def shadow(X, donor_codes, n_out, rng):
        src = X if pool is None else pool
        return src[rng.integers(0, src.shape[0], n_out)]

    return shadow


@functools.cache
def _parts(name):
    if name == "kang":
        a = sd.datasets.kang_example()
    elif name == "bulk_all":  # ALL microarray, log2 values used as they are; the 2,000 most variable probes keep
        a = sd.datasets.bioc_all()  # the test fast (all probes and the other bulk sets: the slow test below)
        a = a[:, np.sort(np.argsort(-np.asarray(a.X).var(axis=0))[:2000])]
    else:
        a = {"all_full": sd.datasets.bioc_all, "flu": sd.datasets.flu_challenge, "geuvadis": sd.datasets.geuvadis_sex}[
            name
        ]()
    a = ad.AnnData(a.X, obs=a.obs[[]].copy(), var=a.var[[]].copy())
    n = a.n_obs
    idx = np.random.default_rng(0).permutation(n)
    cuts = [0, n // 2, n // 2 + n // 4, n // 2 + n // 4 + n // 8, n]
    return [a[np.sort(idx[cuts[i] : cuts[i + 1]])].copy() for i in range(4)]


def _run(name, attack, syn_kind):
    train, hold, ref, fresh = _parts(name)
    syn = (train if syn_kind == "copy" else fresh).copy()
    Xsyn = np.asarray(syn.X.toarray() if hasattr(syn.X, "toarray") else syn.X, dtype=float)
    counts = name in ("kang", "geuvadis")
    scale = np.log1p(Xsyn) if counts else Xsyn  # the white-box model sees what tl.generate fits: log1p counts
    kw = {}
    if attack == "whitebox_vae":
        kw["generator"] = _FittedOn(scale)
    if attack == "pseudobulk_rf":
        fresh_log = sd._transforms.log_normalise(fresh.X) if counts else fresh.X
        pool = None if syn_kind == "copy" else np.asarray(fresh_log, dtype=float)
        kw.update(shadow=_pool_shadow(pool), attack_kwargs={"pseudobulk_rf": {"n_estimators": 100, "n_shadow": 2}})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only .* non-member", category=UserWarning)
        res = sd.tl.attack(train, hold, syn, method=attack, reference=ref, random_state=0, **kw)
    row = res["results"].iloc[0]
    assert row["n_members"] == train.n_obs and row["n_nonmembers"] == hold.n_obs
    return row


# tolerance of |AUROC - 0.5| on fresh data: ~3.5 standard errors (sd of the AUROC of an uninformative score with
# n1 members and n0 non-members is sqrt((n1 + n0 + 1) / (12 n1 n0)): kang 778/389 -> 0.018, ALL 64/32 -> 0.063,
# flu 126/63 -> 0.044, GEUVADIS 42/21 -> 0.077)
TOLERANCE = {"kang": 0.07, "bulk_all": 0.2, "all_full": 0.2, "flu": 0.15, "geuvadis": 0.25}


@pytest.mark.parametrize("data", ["kang", "bulk_all"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_detects_exact_copy_and_not_fresh_data(data, attack):
    copy = _run(data, attack, "copy")
    assert copy["auroc"] >= 0.95, f"{attack} misses an exact copy of the training data on {data}: {copy['auroc']}"
    assert copy["auroc_ci_low"] <= copy["auroc"] <= copy["auroc_ci_high"]
    fresh = _run(data, attack, "fresh")
    assert abs(fresh["auroc"] - 0.5) < TOLERANCE[data], f"{attack} on fresh real data: {fresh['auroc']}"
    assert fresh["auroc_ci_low"] < 0.5 + TOLERANCE[data] and fresh["auroc_ci_high"] > 0.5 - TOLERANCE[data]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["all_full", "flu", "geuvadis"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_detects_exact_copy_on_every_bulk_set(data, attack):
    """The same on all probes of ALL, the flu challenge (252 x 4,147) and GEUVADIS counts (85 x 10,101)."""
    test_attack_detects_exact_copy_and_not_fresh_data(data, attack)


def test_all_registered_attacks_are_covered():
    assert len(ATTACKS) == 8 and set(ATTACKS) >= {"dcr", "domias", "pseudobulk_rf", "whitebox_vae"}
