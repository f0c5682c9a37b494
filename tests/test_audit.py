"""End-to-end DP audit (tl.audit): bounds, neighbours and canary, every generator, and power against broken ones."""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.stats import binomtest

import scdpsynth as sd
from scdpsynth._utils import KnownSeedWarning
from scdpsynth.generators import BaseGenerator, registry
from scdpsynth.generators.ron_gauss import RONGauss
from scdpsynth.tl._audit import (
    ATTACKS,
    _best_threshold,
    clopper_pearson_upper,
    default_canary,
    eps_lower_bound,
)

#: runtime choice for the DP-SGD generators in audits (every trial is two fits): short, full-batch training
DEEP = {"epochs": 2, "batch_size": 4096}
#: vine_nmf's default n_hvg=200 needs more than 200 genes (it fails on fewer; reported)
GENES = {"vine_nmf": 210}


def _subsample(a, n_cells: int = 200, n_genes: int = 50, seed: int = 0):
    """Random cells and the highest-total genes of the embedded Kang data (raw int32 counts, CSR)."""
    rng = np.random.default_rng(seed)
    cells = np.sort(rng.choice(a.n_obs, n_cells, replace=False))
    genes = np.sort(np.argsort(-np.asarray(a.X.sum(axis=0)).ravel())[:n_genes])
    return a[cells][:, genes].copy()


@pytest.fixture
def kang200(kang_example):
    return _subsample(kang_example)


@pytest.fixture
def kang_log(kang_example):
    """Continuous schema: log1p counts as dense float32 (transform 'auto' -> 'none')."""
    a = _subsample(kang_example)
    a.X = np.log1p(a.X.toarray()).astype(np.float32)
    return a


# ---------------------------------------------------------------- test-only generators (registered per test)
class DPMean(BaseGenerator):
    """Toy Gaussian mechanism: per class, the noisy sum of L2-clipped records / 100; every synthetic row = it.

    Add/remove one record changes the per-class sums by at most ``clip`` in L2 (one class only). ``noise_factor``
    < 1 is a broken twin that states the calibrated sigma in the ledger but draws less noise; ``fixed_seed`` one that
    ignores ``random_state`` and seeds every fit with 0 (the old default: the same noise on D and D').
    """

    name = "audit_dp_mean"
    seen: ClassVar[list] = []  # (n rows, donors, first uniform of the fit's rng) per fit, for the tests

    def __init__(self, *, clip: float = 10.0, noise_factor: float = 1.0, fixed_seed: bool = False, **kwargs):
        if fixed_seed:
            kwargs["random_state"] = np.random.default_rng(0)
        super().__init__(**kwargs)
        self.clip, self.noise_factor = float(clip), float(noise_factor)

    def fit(self, X, y, *, n_classes, donors=None):
        DPMean.seen.append((X.shape[0], donors, float(self.rng.random())))
        X = np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=float)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Xc = X * np.minimum(1.0, self.clip / np.maximum(norms, 1e-300))
        sums = np.stack([Xc[y == k].sum(axis=0) for k in range(n_classes)])
        rho = self.budget.split(counts=1.0, sums=3.0)
        self._release_class_counts(y, n_classes, rho["counts"])  # class_counts_: DP sizes
        sigma = self.clip / math.sqrt(2.0 * rho["sums"])
        sums = sums + self.rng.normal(0.0, sigma * self.noise_factor, sums.shape)
        self.ledger.add_gaussian(name="sums", sensitivity=self.clip, sigma=sigma)  # the stated (claimed) noise
        self.mu_ = sums / 100.0  # a public scale, so that the noise of the DP counts does not blur the rows
        self.fitted_ = True
        return self

    def sample(self, class_counts):
        return np.repeat(self.mu_, np.asarray(class_counts, dtype=np.int64), axis=0)


class ExactSizeRONGauss(RONGauss):
    """Broken RON-Gauss: releases the exact class counts as its 'DP' counts (the synthetic sizes leak n)."""

    def fit(self, X, y, *, n_classes, donors=None):
        super().fit(X, y, n_classes=n_classes, donors=donors)
        self.class_counts_ = np.bincount(y, minlength=n_classes).astype(float)
        return self


class LeakyParamsRONGauss(RONGauss):
    """Broken RON-Gauss: writes the exact number of training records into its hyper-parameters (so into uns)."""

    def fit(self, X, y, *, n_classes, donors=None):
        self.n_fit_ = int(X.shape[0])
        return super().fit(X, y, n_classes=n_classes, donors=donors)

    def params(self):
        return {**super().params(), "n_fit": getattr(self, "n_fit_", -1)}


class FixedSeedRONGauss(RONGauss):
    """The old default: every private fit seeded with 0, so D and D' get the same noise."""

    def __init__(self, **kwargs):
        kwargs["random_state"] = np.random.default_rng(0)
        super().__init__(**kwargs)


@pytest.fixture
def register():
    """Register test-only generators in the method registry for one test."""
    added = []

    def _register(cls, *, data="continuous", units="sample"):
        name = f"test_{cls.__name__.lower()}"
        registry.register(name, f"{cls.__module__}:{cls.__qualname__}", "test-only generator", data=data, units=units)
        added.append(name)
        return name

    yield _register
    for name in added:
        registry._entries.pop(name, None)


# ---------------------------------------------------------------- bounds: known answers


def test_clopper_pearson_known_values():
    assert clopper_pearson_upper(0, 100, 0.025) == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-10)
    assert clopper_pearson_upper(7, 7, 0.05) == 1.0
    for k, n in [(3, 20), (10, 50), (49, 50)]:
        # exact (Clopper-Pearson) two-sided 90% interval: its upper end is the one-sided 95% upper bound
        upper = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact").high
        assert clopper_pearson_upper(k, n, 0.05) == pytest.approx(upper, rel=1e-9)
    with pytest.raises(ValueError):
        clopper_pearson_upper(5, 4, 0.05)


def test_clopper_pearson_coverage():
    rng = np.random.default_rng(0)
    p, n = 0.2, 40
    ks = rng.binomial(n, p, size=2000)
    ub = {k: clopper_pearson_upper(int(k), n, 0.05) for k in np.unique(ks)}
    assert np.mean([ub[k] >= p for k in ks]) >= 0.95 - 0.01  # Monte-Carlo sd ~0.005


def test_eps_lower_bound_known_answer():
    # perfect separation in 100 + 100 trials at alpha=0.05: FPR_ub = FNR_ub = 1 - 0.025^(1/100) = 0.036217
    out = eps_lower_bound(0, 100, 0, 100, alpha=0.05, delta=1e-5)
    ub = 1 - 0.025 ** (1 / 100)
    assert out["fpr_ub"] == pytest.approx(ub) and out["fnr_ub"] == pytest.approx(ub)
    assert out["eps_lb"] == pytest.approx(math.log((1 - 1e-5 - ub) / ub))
    assert out["eps_lb"] == pytest.approx(3.2813, abs=1e-4)
    assert eps_lower_bound(100, 100, 0, 100)["eps_lb"] == 0.0  # a useless attack shows nothing
    assert eps_lower_bound(0, 1000, 0, 1000)["eps_lb"] > out["eps_lb"]
    with pytest.raises(ValueError):
        eps_lower_bound(3, 2, 0, 10)


def test_best_threshold_takes_the_middle_of_the_gap():
    thr, b = _best_threshold(np.arange(20.0), np.arange(30.0, 50.0), 0.05, 0.0)
    assert thr == 24.5 and b == pytest.approx(eps_lower_bound(0, 20, 0, 20)["eps_lb"]) and b > 1


# ---------------------------------------------------------------- canary and neighbours


def test_default_canary_inside_public_bounds():
    rng = np.random.default_rng(0)
    ron, cop = RONGauss(eps=1.0, random_state=rng), registry.get("copula")(eps=1.0, random_state=rng)
    c = default_canary(50, rng, counts=True, generator=ron)
    assert set(np.unique(c)) == {0.0, 1000.0} and np.sum(c > 0) == 25  # log1p(1000) = 6.9 inside (0, 16)
    c = default_canary(51, rng, counts=True, generator=cop)
    assert set(np.unique(c)) == {0.0, float(cop.count_cap)} and np.sum(c > 0) == 26
    c = default_canary(10, rng, counts=False, generator=ron)
    assert set(np.unique(c)) == {0.0, 15.0}
    c = default_canary(10, rng, counts=False, generator=RONGauss(eps=1.0, bounds=(-4, 4), random_state=rng))
    assert set(np.unique(c)) == {-4.0, 3.5}


class DPMeanDonor(DPMean):
    units = ("sample", "donor")


@pytest.mark.parametrize(("unit", "expected"), [("sample", (200, 201)), ("donor", (200, 207))])
def test_audit_builds_neighbours_and_fresh_streams(kang200, register, unit, expected):
    name = register(DPMeanDonor, units="sample,donor")
    DPMean.seen.clear()
    kw = {"donor_key": "donor_id", "canary_size": 7} if unit == "donor" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", KnownSeedWarning)  # the audit never hands a fit an integer seed
        r = sd.tl.audit(kang200, name, eps=1.0, groupby="cell_type", n_trials=6, random_state=0, progress=False, **kw)
    assert [s[0] for s in DPMean.seen] == list(expected) * 6  # arm "out" = D, arm "in" = D + canary (record/donor)
    assert len({s[2] for s in DPMean.seen}) == 12  # every fit its own random stream
    if unit == "donor":
        assert len(np.unique(DPMean.seen[1][1])) == len(np.unique(DPMean.seen[0][1])) + 1
    assert r.unit == unit and r.neighbouring == "add_remove" and r.canary_size == (7 if unit == "donor" else 1)
    assert r.canary_class == "CD14+ Monocytes"  # default: the largest class


def test_audit_canary_in_the_input_schema(kang200):
    seen = []

    def spy(syn, canary):
        seen.append((syn.X.dtype, sparse.issparse(syn.X), canary.copy()))
        return 0.0

    r = sd.tl.audit(kang200, "ron_gauss", eps=1.0, groupby="cell_type", n_trials=2, attack=spy, random_state=0,
                    progress=False, class_sizes="public")  # fmt: skip
    assert r.output_schema == {"out": ["int32/csr"], "in": ["int32/csr"]}
    assert all(dt == np.int32 and sp for dt, sp, _ in seen)
    assert set(np.unique(seen[0][2])) == {0.0, 1000.0}
    assert r.attack == "spy" and set(r.attacks) == {"spy"}


def test_audit_replace_neighbouring_for_copula(kang200):
    r = sd.tl.audit(kang200, "copula", eps=1.0, groupby="cell_type", n_trials=2, neighbouring="replace",
                    random_state=0, progress=False, n_copula_genes=10)  # fmt: skip
    assert r.neighbouring == "replace" and r.n_trials == 2


def test_audit_errors(kang200):
    kw = {"n_trials": 2, "progress": False}
    with pytest.raises(ValueError, match="claimed eps"):
        sd.tl.audit(kang200, "ron_gauss", eps=None, **kw)
    with pytest.raises(ValueError, match="n_trials"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, n_trials=1)
    with pytest.raises(ValueError, match="Did you mean 'projection'"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, attack="projektion", **kw)
    with pytest.raises(ValueError, match="states its guarantee for 'add_remove'"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, neighbouring="replace", **kw)
    with pytest.raises(ValueError, match="donor_key"):
        sd.tl.audit(kang200, "copula", eps=1.0, unit="donor", **kw)
    with pytest.raises(ValueError, match="canary must hold 50"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, canary=np.ones(3), **kw)
    with pytest.raises(ValueError, match="layer_added"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, layer_added="syn", **kw)
    with pytest.raises(ValueError, match="canary_class"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, groupby="cell_type", canary_class="NK", **kw)
    with pytest.raises(ValueError, match="record-level"):
        sd.tl.audit(kang200, "ron_gauss", eps=1.0, attack="pseudobulk_rf", **kw)
    with pytest.raises(ValueError, match="Unknown method"):
        sd.tl.audit(kang200, "ron_gaus", eps=1.0, **kw)


# ---------------------------------------------------------------- smoke audits of every generator (CI)

_METHODS = sd.tl.list_methods()
SMOKE = [(m, {}) for m in _METHODS.loc[_METHODS["private"] == "yes", "name"]] + [("dp_vae", {"likelihood": "nb"})]


def _audit_kwargs(method, extra):
    kw = dict(extra)
    if method in ("dp_vae", "dp_gan"):
        kw.update(DEEP)
    return kw


def _check_sane(r, method, n_eval):
    assert r.method == method and r.eps_claimed == 1.0 and r.delta == 1e-5
    assert set(r.attacks) == set(ATTACKS)
    assert 0.0 <= r.eps_lb == max(a.eps_lb for a in r.attacks.values())
    assert np.isfinite(r.eps_lb)
    for a in r.attacks.values():
        assert a.n_neg == a.n_pos == n_eval and a.alpha == pytest.approx(0.05 / 3)
        assert a.scores_in.shape == a.scores_out.shape == (2 * n_eval,)
    assert r.output_schema == {"out": ["int32/csr"], "in": ["int32/csr"]}  # what users get: counts, sparse
    assert r.n_errors == {"out": 0, "in": 0}
    res = r.results
    assert list(res["attack"]) == list(ATTACKS) and res["eps_lb"].max() == r.eps_lb
    assert r.attacks["metadata"].feature  # the size/schema/uns attack ran and names what it looked at
    d = r.to_dict()
    assert d["violated"] == r.violated and set(d["attacks"]) == set(ATTACKS)


@pytest.mark.parametrize(("method", "extra"), SMOKE, ids=[m + ("-nb" if e else "") for m, e in SMOKE])
def test_smoke_audit_every_generator(kang_example, method, extra):
    a = _subsample(kang_example, n_genes=GENES.get(method, 50))
    n_trials = 2 if method in ("dp_vae", "dp_gan") else 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", KnownSeedWarning)
        r = sd.tl.audit(a, method, eps=1.0, groupby="cell_type", n_trials=n_trials, random_state=0, progress=False,
                        **_audit_kwargs(method, extra))  # fmt: skip
    _check_sane(r, method, n_trials // 2)
    assert r.unit == "sample" and r.neighbouring == "add_remove"


@pytest.mark.parametrize("method", ["copula", "vine_nmf"])
def test_smoke_audit_donor_unit(kang_example, method):
    a = _subsample(kang_example, n_genes=GENES.get(method, 50))
    r = sd.tl.audit(a, method, eps=1.0, groupby="cell_type", donor_key="donor_id", n_trials=4, random_state=0,
                    progress=False)  # fmt: skip
    _check_sane(r, method, 2)
    assert r.unit == "donor" and r.canary_size == 256  # the generator's per-donor cap


# ---------------------------------------------------------------- power: the audit catches broken mechanisms


def test_audit_sound_toy_mechanism_holds(kang_log, register):
    name = register(DPMean)
    r = sd.tl.audit(kang_log, name, eps=1.0, groupby="cell_type", n_trials=100, random_state=1, progress=False)
    assert r.output_schema == {"out": ["float32/dense"], "in": ["float32/dense"]}
    assert r.eps_lb <= 1.0 and not r.violated


def test_audit_catches_too_little_noise(kang_log, register):
    # 50x too little noise on the sums (the ledger states the calibrated sigma): GDP mu ~12 instead of 0.23 (true eps
    # ~116). At 10x (mu 2.3, true eps 12) the best test still errs ~12% per side: showing eps > 1 needs more trials.
    name = register(DPMean)
    r = sd.tl.audit(kang_log, name, eps=1.0, groupby="cell_type", n_trials=100, random_state=1, progress=False,
                    noise_factor=0.02)  # fmt: skip
    assert r.violated and r.eps_lb > 1.5
    assert r.attack in ("dcr", "projection")


def test_audit_catches_the_known_seed_problem(kang_log, register):
    # the old default: a known seed for every fit, so D and D' get the same noise and it cancels
    name = register(DPMean)
    r = sd.tl.audit(kang_log, name, eps=1.0, groupby="cell_type", n_trials=60, random_state=1, progress=False,
                    fixed_seed=True)  # fmt: skip
    assert r.eps_lb > 1.5 and r.attacks["projection"].fp == r.attacks["projection"].fn == 0


def test_audit_catches_known_seed_in_ron_gauss(kang200, register):
    name = register(FixedSeedRONGauss)
    r = sd.tl.audit(kang200, name, eps=1.0, groupby="cell_type", n_trials=60, random_state=0, progress=False)
    assert r.eps_lb > 1.5


@pytest.mark.parametrize("broken", ["class_sizes_public", "exact_class_counts"])
def test_audit_size_attack_catches_exact_sizes(kang200, register, broken):
    # exact synthetic sizes under add/remove neighbouring: n_obs tells whether the canary is in
    if broken == "class_sizes_public":
        method, kw = "ron_gauss", {"class_sizes": "public"}
    else:
        method, kw = register(ExactSizeRONGauss), {}
    r = sd.tl.audit(kang200, method, eps=1.0, groupby="cell_type", n_trials=100, random_state=0, progress=False, **kw)
    m = r.attacks["metadata"]
    assert m.fp == m.fn == 0 and m.eps_lb > 2.0 and r.eps_lb == m.eps_lb
    assert m.feature.startswith(("n_obs", "canary class share"))


def test_audit_metadata_attack_reads_uns(kang200, register):
    name = register(LeakyParamsRONGauss)
    r = sd.tl.audit(kang200, name, eps=1.0, groupby="cell_type", n_trials=60, attack="metadata", random_state=0,
                    progress=False, n_obs=200)  # fmt: skip
    assert r.eps_lb > 1.5 and "n_fit" in r.attacks["metadata"].feature


# ---------------------------------------------------------------- full audits (slow): the default guarantee holds

FULL = [  # trials per arm: a meaningful bound (>= 20 counted per arm can show eps > 1) in ~12 min for all
    ("ron_gauss", "sample", 200),
    ("private_pgm", "sample", 100),
    ("privsyn", "sample", 200),
    ("mst", "sample", 100),
    ("copula", "sample", 80),
    ("vine_nmf", "sample", 50),
    ("dp_vae", "sample", 40),
    ("dp_vae-nb", "sample", 40),
    ("dp_gan", "sample", 40),
    ("copula", "donor", 50),
    ("vine_nmf", "donor", 40),
]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "unit", "n_trials"), FULL, ids=[f"{c}-{u}" for c, u, _ in FULL])
def test_full_audit_default_arguments(kang_example, config, unit, n_trials):
    method, extra = (config.removesuffix("-nb"), {"likelihood": "nb"}) if config.endswith("-nb") else (config, {})
    a = _subsample(kang_example, n_genes=GENES.get(method, 50))
    kw = {"donor_key": "donor_id"} if unit == "donor" else {}
    r = sd.tl.audit(a, method, eps=1.0, groupby="cell_type", n_trials=n_trials, random_state=2024, progress=False,
                    **kw, **_audit_kwargs(method, extra))  # fmt: skip
    table = r.results[["attack", "eps_lb", "fp", "n_neg", "fn", "n_pos", "feature"]]
    print(
        f"\n{config} ({unit}): eps_lb={r.eps_lb:.3f} [{r.attack}] {n_trials}/arm {r.seconds:.0f}s {r.n_errors}\n{table}"
    )
    assert r.eps_lb <= 1.0, pd.DataFrame(table).to_string()
