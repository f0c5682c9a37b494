"""Empirical DP audit: Clopper-Pearson bounds, eps lower bounds, and audits of sound and broken generators."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import binomtest

from scdpsynth.generators import BaseGenerator
from scdpsynth.privacy import analytic_gaussian_delta, gaussian_sigma_for_rho, zcdp_from_eps
from scdpsynth.privacy._audit import audit, clopper_pearson_upper, default_canary, eps_lower_bound


class DPMean(BaseGenerator):
    """Tiny Gaussian-mechanism generator: the mean of L2-clipped records plus Gaussian noise, repeated.

    Sensitivity: records (or donor means, ``unit="donor"``, each a mean of clipped records) have norm <= ``clip``;
    replacing one changes the mean by at most ``2 clip / n`` in L2 (n records or donors, public). Noise is
    calibrated to the budget's rho-zCDP and recorded in the accountant. ``noise=False`` is the deliberately broken
    twin: same claimed eps, no noise.
    """

    units = ("sample", "donor")

    def __init__(self, *, clip: float = 1.0, noise: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.clip = clip
        self.noise = noise

    def fit(self, X, y, *, n_classes, donors=None):
        X = np.asarray(X, dtype=float)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Xc = X * np.minimum(1.0, self.clip / np.maximum(norms, 1e-300))
        if self.unit == "donor":
            _, inv = np.unique(donors, return_inverse=True)
            Xc = np.stack([Xc[inv == g].mean(axis=0) for g in range(inv.max() + 1)])
        sens = 2.0 * self.clip / Xc.shape[0]
        self.mu_ = Xc.mean(axis=0)
        if self.private and self.noise:
            sigma = gaussian_sigma_for_rho(self.budget.rho, sens)
            self.mu_ = self.mu_ + self.rng.normal(0.0, sigma, self.mu_.shape)
            self.accountant.add_gaussian(name="mean", sensitivity=sens, sigma=sigma)
        self.fitted_ = True
        return self

    def sample(self, class_counts):
        return np.tile(self.mu_, (int(np.sum(class_counts)), 1))


@pytest.fixture
def bulk5(bioc_all_small):
    """40 real ALL samples x 5 high-variance probes, standardised."""
    X = np.asarray(bioc_all_small.X, dtype=float)
    X = X[:40, np.argsort(-X.var(axis=0))[:5]]
    return (X - X.mean(axis=0)) / X.std(axis=0)


PARAMS = {"delta": 1e-5, "clip": 3.0}


# ---------------------------------------------------------------- bounds: known answers


def test_clopper_pearson_known_values():
    # 0 events in 100: upper bound 1 - (a)^(1/n)
    assert clopper_pearson_upper(0, 100, 0.025) == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-10)
    assert clopper_pearson_upper(7, 7, 0.05) == 1.0
    for k, n in [(3, 20), (10, 50), (49, 50)]:
        # exact (Clopper-Pearson) two-sided 90% interval: its upper end is the one-sided 95% upper bound
        upper = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact").high
        assert clopper_pearson_upper(k, n, 0.05) == pytest.approx(upper, rel=1e-9)
    with pytest.raises(ValueError):
        clopper_pearson_upper(5, 4, 0.05)


def test_clopper_pearson_coverage():
    # the one-sided 95% upper bound covers the true rate in >= 95% of binomial draws (conservative method)
    rng = np.random.default_rng(0)
    p, n = 0.2, 40
    ks = rng.binomial(n, p, size=2000)
    ub = {k: clopper_pearson_upper(int(k), n, 0.05) for k in np.unique(ks)}
    coverage = np.mean([ub[k] >= p for k in ks])
    assert coverage >= 0.95 - 0.01  # Monte-Carlo sd ~0.005


def test_eps_lower_bound_known_answer():
    # perfect separation in 100 + 100 trials at alpha=0.05: FPR_ub = FNR_ub = 1 - 0.025^(1/100) = 0.036217
    out = eps_lower_bound(0, 100, 0, 100, alpha=0.05, delta=1e-5)
    ub = 1 - 0.025 ** (1 / 100)
    assert out["fpr_ub"] == pytest.approx(ub) and out["fnr_ub"] == pytest.approx(ub)
    assert out["eps_lb"] == pytest.approx(math.log((1 - 1e-5 - ub) / ub))
    assert out["eps_lb"] == pytest.approx(3.2813, abs=1e-4)
    # a useless attack (all errors on one side) gives no evidence
    assert eps_lower_bound(100, 100, 0, 100)["eps_lb"] == 0.0
    # more trials, tighter bound
    assert eps_lower_bound(0, 1000, 0, 1000)["eps_lb"] > out["eps_lb"]


def test_default_canary_is_a_corner(bulk5):
    c = default_canary(bulk5, np.random.default_rng(0))
    assert np.all((c == bulk5.max(axis=0)) | (c == bulk5.min(axis=0)))
    assert np.sum(c == bulk5.max(axis=0)) == 3


# ---------------------------------------------------------------- audits


def test_audit_gaussian_generator_stays_below_claim(bulk5):
    r = audit(DPMean, bulk5, params={"eps": 1.0, **PARAMS}, n_trials=200, random_state=0)
    assert r.eps_claimed == 1.0 and r.n_pos == r.n_neg == 100
    assert r.eps_lb <= 1.0 and not r.violated


def test_audit_gaussian_generator_large_eps_has_power_but_holds(bulk5):
    # at eps=8 the attack finds real evidence (eps_lb > 0) yet never beats the claimed eps
    r = audit(DPMean, bulk5, params={"eps": 8.0, **PARAMS}, n_trials=200, random_state=0)
    assert 0.0 < r.eps_lb <= 8.0
    # tighter: the exact (eps, delta) curve of the Gaussian mechanism at the noise used (zCDP calibration is loose)
    sigma_over_sens = 1.0 / math.sqrt(2.0 * zcdp_from_eps(8.0, 1e-5))
    exact = brentq(lambda e: analytic_gaussian_delta(sigma_over_sens, e, 1.0) - 1e-5, 1e-6, 50.0)
    assert exact == pytest.approx(7.438, abs=1e-3)
    assert r.eps_lb <= exact


def test_audit_broken_generator_exceeds_claim(bulk5):
    r = audit(DPMean, bulk5, params={"eps": 1.0, "noise": False, **PARAMS}, n_trials=200, random_state=0)
    # noise-free: canary in/out are perfectly separated, eps_lb is the maximum 200 trials can show
    assert r.fp == 0 and r.fn == 0
    assert r.eps_lb == pytest.approx(3.2813, abs=1e-4)
    assert r.violated


def test_audit_donor_level(bulk5):
    donors = np.repeat(np.arange(10), 4)
    kw = {"donors": donors, "unit": "donor", "canary_size": 4, "n_trials": 100, "random_state": 1}
    ok = audit(DPMean, bulk5, params={"eps": 1.0, **PARAMS}, **kw)
    broken = audit(DPMean, bulk5, params={"eps": 1.0, "noise": False, **PARAMS}, **kw)
    assert ok.eps_lb <= 1.0 and ok.unit == "donor"
    assert broken.eps_lb > 1.0  # 50 + 50 evaluation trials, perfect separation: 2.56
    add = audit(DPMean, bulk5, params={"eps": 1.0, "noise": False, **PARAMS}, neighbouring="add", **kw)
    assert add.violated


@pytest.mark.parametrize("attack", ["dcr", "projection"])
def test_audit_ron_gauss_stays_below_claim(bioc_all_small, attack):
    X = np.asarray(bioc_all_small.X, dtype=float)[:60, :20]
    params = {"eps": 1.0, "n_components": 5, "bounds": (X.min(axis=0), X.max(axis=0))}  # test-given public bounds
    r = audit("ron_gauss", X, params=params, attack=attack, n_trials=150, random_state=0)
    assert r.eps_lb <= 1.0 and r.attack == attack


def test_audit_projection_attack(bulk5):
    broken = audit(DPMean, bulk5, params={"eps": 1.0, "noise": False, **PARAMS}, attack="projection", n_trials=100)
    assert broken.fp == broken.fn == 0 and broken.violated
    # the canary pulls the released mean towards itself: in-scores exceed out-scores by the clipped shift / n
    assert np.all(broken.scores_in > broken.scores_out)
    ok = audit(DPMean, bulk5, params={"eps": 8.0, **PARAMS}, attack="projection", n_trials=200, random_state=0)
    assert ok.eps_lb <= 8.0


def test_audit_attack_choices_and_determinism(bulk5):
    params = {"eps": 1.0, "noise": False, **PARAMS}
    a = audit(DPMean, bulk5, params=params, attack="dcr_calibrated", n_trials=40, random_state=3)
    b = audit(DPMean, bulk5, params=params, attack="dcr_calibrated", n_trials=40, random_state=3)
    np.testing.assert_array_equal(a.scores_in, b.scores_in)
    assert a.eps_lb == b.eps_lb > 0

    def projection(syn, canary):
        return float(syn.mean(axis=0) @ canary)

    c = audit(DPMean, bulk5, params=params, attack=projection, n_trials=40, threshold=0.0)
    assert c.attack == "projection" and c.n_pos == 40  # fixed threshold: every trial counts
    assert set(c.to_dict()) >= {"eps_lb", "fp", "fn", "scores_in", "scores_out"}


def test_audit_errors(bulk5):
    with pytest.raises(ValueError, match="claimed eps"):
        audit(DPMean, bulk5, params={"clip": 1.0})
    with pytest.raises(ValueError, match="n_trials"):
        audit(DPMean, bulk5, params={"eps": 1.0}, n_trials=5)
    with pytest.raises(ValueError, match="neighbouring"):
        audit(DPMean, bulk5, params={"eps": 1.0}, neighbouring="swap")
    with pytest.raises(ValueError, match="donors="):
        audit(DPMean, bulk5, params={"eps": 1.0}, unit="donor")
    with pytest.raises(ValueError, match="canary must have 5"):
        audit(DPMean, bulk5, params={"eps": 1.0}, canary=np.zeros(3))
    with pytest.raises(ValueError, match="record-level attack"):
        audit(DPMean, bulk5, params={"eps": 1.0}, attack="pseudobulk_rf")
