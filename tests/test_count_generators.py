"""Count generators (copula, vine_nmf): donor-level sensitivity, DP accounting, integer sparse output, fidelity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse, stats

import scdpsynth as sd
from scdpsynth._utils import KnownSeedWarning
from scdpsynth.generators import _contribution as C
from scdpsynth.generators import copula as copula_mod
from scdpsynth.generators import vine_nmf as vine_mod
from scdpsynth.generators._count_marginals import CountMarginals, marginals_from_moments
from scdpsynth.generators.copula import CopulaGenerator, nearest_correlation, normal_scores
from scdpsynth.generators.vine_nmf import (
    VineNMFGenerator,
    cvine_sample,
    frank_h,
    frank_hinv,
    frank_tau,
    frank_theta_from_tau,
)

GENERATORS = [CopulaGenerator, VineNMFGenerator]
SMALL_KW = {CopulaGenerator: {"n_copula_genes": 30}, VineNMFGenerator: {"n_factors": 4, "n_hvg": 60}}


def _arrays(adata):
    y = adata.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    donors = adata.obs["donor_id"].cat.codes.to_numpy().astype(np.int64)
    return sparse.csr_matrix(adata.X), y, donors, len(adata.obs["cell_type"].cat.categories)


# --------------------------------------------------------------------------- sensitivities: known answers
def test_contribution_bound_known_answers():
    assert C.contribution_bound("sample", None) == 1
    assert C.contribution_bound("sample", 50) == 1
    assert C.contribution_bound("donor", 7) == 7
    with pytest.raises(ValueError, match="max_cells_per_donor"):
        C.contribution_bound("donor", 0)
    with pytest.raises(ValueError, match="unit"):
        C.contribution_bound("patient", 3)


def test_sum_sensitivity_known_answers():
    # m cells of norm <= C: m * C (add/remove), 2 m C (replace); Gram sums: m * C^2
    assert C.sum_sensitivity(2.0, 3) == 6.0
    assert C.sum_sensitivity(2.0, 3, neighbouring="replace") == 12.0
    assert C.sum_sensitivity(1.5, 4, power=2) == 9.0
    assert C.sum_sensitivity(25.0, 1) == 25.0
    with pytest.raises(ValueError, match="neighbouring"):
        C.sum_sensitivity(1.0, 1, neighbouring="swap")


def test_clip_rows_l2_known_answer_dense_and_sparse():
    A = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    want = np.array([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_allclose(C.clip_rows_l2(A, 1.0), want)
    np.testing.assert_allclose(C.clip_rows_l2(sparse.csr_matrix(A), 1.0).toarray(), want)
    assert A[0, 0] == 3.0  # input untouched


def test_cap_cells_per_donor():
    donors = np.array([0] * 10 + [1] * 3 + [2] * 6)
    keep = C.cap_cells_per_donor(donors, 4, np.random.default_rng(0))
    assert np.all(np.diff(keep) > 0)
    assert np.bincount(donors[keep]).tolist() == [4, 3, 4]
    np.testing.assert_array_equal(keep[donors[keep] == 1], [10, 11, 12])  # small donors kept whole


def test_donor_type_weights_known_answer():
    donors = np.array(["a", "a", "b", "b", "b", "c"])
    y = np.array([0, 1, 0, 0, 1, 1])
    np.testing.assert_allclose(C.donor_type_weights(donors, y, 2), [1, 1, 0.5, 0.5, 1, 1])
    # weighted per-type sums of a per-cell value = sum over donors of each donor's per-type mean
    v = np.array([[1.0], [2.0], [3.0], [5.0], [7.0], [11.0]])
    w = C.donor_type_weights(donors, y, 2)
    np.testing.assert_allclose(C.grouped_sums(v * w[:, None], y, 2)[:, 0], [1 + 4, 2 + 7 + 11])
    assert C.donor_mean_multiplier(256, 8) == pytest.approx(np.sqrt(8))
    assert C.donor_mean_multiplier(3, 8) == pytest.approx(np.sqrt(3))  # a donor of 3 cells spans <= 3 types
    with pytest.raises(ValueError, match="donors has"):
        C.donor_type_weights(donors[:3], y, 2)


def test_generator_ledger_states_donor_sensitivity():
    """Hand-computed. Donor means (default), K = 2 types, m = 7: every sensitivity is sqrt(min(K, m)) = sqrt(2) clips
    (mean 2 sqrt 2, copula 1.5^2 p sqrt 2); cell counts keep m = 7. Cell sums: m = 7 clips (mean 14)."""
    X = sparse.csr_matrix(np.random.default_rng(0).poisson(2.0, size=(60, 12)))
    y = np.repeat([0, 1], 30)
    donors = np.tile(np.arange(4), 15)
    kw = {"eps": 1.0, "unit": "donor", "max_cells_per_donor": 7, "clip_mean": 2.0, "n_copula_genes": 5, "gene_tiers": 1}
    gen = CopulaGenerator(**kw).fit(X, y, n_classes=2, donors=donors)
    sens = {e["name"]: e["sensitivity"] for e in gen.ledger.entries}
    r2 = np.sqrt(2.0)
    assert sens == pytest.approx({"counts": 7.0, "donors": r2, "mean": 2 * r2, "second_moment": 6000 * r2,
                                  "nonzero": 25 * r2, "library": r2, "copula": 1.5**2 * 5 * r2})  # fmt: skip
    shares = gen._rho()
    assert shares["donors"] > 0
    for e in gen.ledger.entries:  # sigma = sensitivity / sqrt(2 rho_share), as drawn
        assert e["noise"] == pytest.approx(e["sensitivity"] / np.sqrt(2 * shares[e["name"]]))
    assert any("per-type donor means" in s for s in gen.scope)
    gen = CopulaGenerator(donor_aggregation="sum", **kw).fit(X, y, n_classes=2, donors=donors)
    sens = {e["name"]: e["sensitivity"] for e in gen.ledger.entries}
    assert "donors" not in sens and "donors" not in gen._rho()
    assert sens["counts"] == 7.0
    assert sens["mean"] == 14.0
    assert sens["nonzero"] == 7 * 25.0
    assert sens["copula"] == pytest.approx(7 * 1.5**2 * 5)
    assert sens["library"] == 7.0  # one-hot library-size bin per cell
    shares = gen._rho()
    for e in gen.ledger.entries:  # sigma = sensitivity / sqrt(2 rho_share), as drawn
        assert e["noise"] == pytest.approx(e["sensitivity"] / np.sqrt(2 * shares[e["name"]]))
    # unit="sample": m = 1; replace-one neighbouring doubles it (and the ledger says which relation)
    gen = CopulaGenerator(eps=1.0, clip_mean=2.0, n_copula_genes=5, gene_tiers=1).fit(X, y, n_classes=2)
    assert {e["name"]: e["sensitivity"] for e in gen.ledger.entries}["mean"] == 2.0
    gen = CopulaGenerator(eps=1.0, clip_mean=2.0, n_copula_genes=5, gene_tiers=1, neighbouring="replace")
    gen.fit(X, y, n_classes=2)
    assert {e["name"]: e["sensitivity"] for e in gen.ledger.entries}["mean"] == 4.0
    assert gen.privacy_report()["neighbouring"] == "replace" == gen.ledger.to_dict()["neighbouring"]
    # vine_nmf: the pooled gram m * clip_lognorm^2; per-type releases sqrt(2) (donor means) or m (cell sums) times
    # their clip: factor histograms sqrt(k), vine levels 1.5^2 p
    vkw = {"eps": 1.0, "unit": "donor", "max_cells_per_donor": 7, "n_factors": 4, "n_hvg": 8, "clip_lognorm": 3.0}
    for agg, mult in (("mean", r2), ("sum", 7.0)):
        gen = VineNMFGenerator(donor_aggregation=agg, **vkw).fit(X, y, n_classes=2, donors=donors)
        sens = {e["name"]: e["sensitivity"] for e in gen.ledger.entries}
        assert sens["gram"] == 7 * 9.0
        assert sens["factor_hist"] == pytest.approx(mult * 2.0)
        assert sens["library"] == pytest.approx(mult)
        assert sens["mean"] == pytest.approx(mult * 150.0)
        assert sens["vine_level_1"] == pytest.approx(mult * 1.5**2 * 4)
        assert sens["vine_level_2"] == pytest.approx(mult * 1.5**2 * 3)
        assert ("donors" in sens) == (agg == "mean")


# --------------------------------------------------------------------------- sensitivities: empirical neighbours
class _Recorder:
    """Stands in for ``_contribution.release``: records pre-noise values; in replay mode returns another run's outputs.

    Replay conditions the second run on the first run's released values (adaptive composition), so differences in
    pre-noise statistics come only from the removed donor.
    """

    def __init__(self, replay: _Recorder | None = None):
        self.values, self.sens, self.out, self.replay = {}, {}, {}, replay

    def __call__(self, values, *, sensitivity, name, **kw):
        self.values[name] = np.array(values, dtype=float)
        self.sens[name] = sensitivity
        out = C.release(values, sensitivity=sensitivity, name=name, **kw)  # same rng consumption in both runs
        self.out[name] = out
        return out if self.replay is None else self.replay.out[name].copy()


@pytest.mark.parametrize("cls", GENERATORS)
def test_removing_one_donor_changes_each_release_by_at_most_sensitivity(cls, kang_small, monkeypatch):
    X, y, donors, K = _arrays(kang_small)
    # cap >= largest donor, so the donor cap keeps every cell (no subsampling randomness between the two runs)
    m = int(np.bincount(donors).max())
    kw = {"eps": 1.0, "unit": "donor", "max_cells_per_donor": m, "random_state": 3, **SMALL_KW[cls]}
    drop = donors != donors.max()
    assert drop.sum() < donors.size
    runs = []
    for Xd, yd, dd in ((X, y, donors), (X[drop], y[drop], donors[drop])):
        rec = _Recorder(replay=runs[0] if runs else None)
        monkeypatch.setattr(copula_mod, "release", rec)
        monkeypatch.setattr(vine_mod, "release", rec)
        cls(**kw).fit(Xd, yd, n_classes=K, donors=dd)
        runs.append(rec)
    full, nbr = runs
    # releases computed from the data given earlier releases only (PIT-based ones are checked at function level);
    # the copula's moments come per gene tier (default for private fits), after the pilot release
    names = [n for n in full.values if not n.startswith(("copula", "vine_level"))]
    own = ("gram", "factor_hist", "mean", "second_moment", "nonzero")
    if cls is CopulaGenerator:
        own = ("pilot: per-type gene means (tiers)",)
    want = {"counts", "library", "donors", *own}
    assert want <= set(names), names
    if cls is CopulaGenerator:
        assert sum(n.startswith(("mean (gene tier", "nonzero (gene tier")) for n in names) == 10
    for name in names:
        diff = np.linalg.norm(full.values[name] - nbr.values[name])
        assert diff > 0, name  # the donor does contribute
        assert diff <= full.sens[name] * (1 + 1e-9), (name, diff, full.sens[name])
    # the bound is reached up to a modest factor for the counts (donor of size m in one release)
    assert np.linalg.norm(full.values["counts"] - nbr.values["counts"]) <= m


@pytest.mark.parametrize("cls", [*GENERATORS, "copula_sum"])
def test_removing_a_large_donor_is_bounded_by_a_binding_cap(cls, kang_small, monkeypatch):
    """25 donors of 10 cells and one of 50: with the cap m = 10 binding for the large donor, removing it changes every
    data-only release by at most its stated sensitivity (the counts by exactly m). Without the cap the per-type counts
    would change by 50 > m: this is the test that catches a lost donor cap."""
    X, y, _, K = _arrays(kang_small)
    donors = np.r_[np.repeat(np.arange(25), 10), np.full(X.shape[0] - 250, 25)]
    m = 10
    extra = {}
    if cls == "copula_sum":  # cell sums instead of donor means
        cls, extra = CopulaGenerator, {"donor_aggregation": "sum"}
    kw = {"eps": 1.0, "unit": "donor", "max_cells_per_donor": m, **SMALL_KW[cls], **extra}
    keep = donors != 25
    runs = []
    for Xd, yd, dd in ((X, y, donors), (X[keep], y[keep], donors[keep])):
        rec = _Recorder(replay=runs[0] if runs else None)
        monkeypatch.setattr(copula_mod, "release", rec)
        monkeypatch.setattr(vine_mod, "release", rec)
        cls(random_state=np.random.default_rng(4), **kw).fit(Xd, yd, n_classes=K, donors=dd)
        runs.append(rec)
    full, nbr = runs
    assert full.sens["counts"] == m
    # the donor's m kept cells spread over the types: the count vector moves by sqrt(sum_k m_k^2), in [m/sqrt(K), m]
    assert m / np.sqrt(K) - 1e-9 <= np.linalg.norm(full.values["counts"] - nbr.values["counts"]) <= m
    names = [n for n in full.values if n != "counts" and not n.startswith(("copula", "vine_level", "factor_hist"))]
    assert ("donors" in names) == (not extra) and ("gram" in names) == (cls is VineNMFGenerator)
    assert len(names) >= 4
    for name in names:
        diff = np.linalg.norm(full.values[name] - nbr.values[name])
        assert 0 < diff <= full.sens[name] * (1 + 1e-9), (name, diff, full.sens[name])


def test_gram_release_bound_with_donor_cap_across_cell_types():
    """A donor with cells in several types: concatenated per-type Gram sums change by <= m C^2 (Frobenius)."""
    rng = np.random.default_rng(1)
    n, p, K, m, clip = 400, 6, 3, 5, 2.0
    Z = rng.normal(0, 3.0, size=(n, p))
    y = rng.integers(0, K, n)
    donors = rng.integers(0, 20, n)
    keep = C.cap_cells_per_donor(donors, m, rng)
    Z, y, donors = C.clip_rows_l2(Z[keep], clip), y[keep], donors[keep]
    sens = C.sum_sensitivity(clip, m, power=2)
    for d in range(20):
        out = donors != d
        diff = C.grouped_gram(Z, y, K) - C.grouped_gram(Z[out], y[out], K)
        assert np.linalg.norm(diff) <= sens + 1e-9
        s_diff = C.grouped_sums(Z, y, K) - C.grouped_sums(Z[out], y[out], K)
        assert np.linalg.norm(s_diff) <= C.sum_sensitivity(clip, m) + 1e-9


def test_release_adds_calibrated_noise_and_records():
    led = sd.privacy.Ledger()
    rng = np.random.default_rng(0)
    out = C.release(np.zeros(20000), sensitivity=3.0, rho=0.5, name="x", ledger=led, rng=rng)
    assert out.std() == pytest.approx(3.0, rel=0.03)  # sigma = 3 / sqrt(2 * 0.5) = 3
    assert led.mu**2 / 2 == pytest.approx(0.5)
    sym = C.release(np.zeros((4, 5, 5)), sensitivity=1.0, rho=1.0, name="s", ledger=led, rng=rng, symmetric=True)
    np.testing.assert_array_equal(sym, np.swapaxes(sym, 1, 2))
    same = C.release(np.ones(3), sensitivity=1.0, rho=np.inf, name="n", ledger=led, rng=rng)
    np.testing.assert_array_equal(same, np.ones(3))
    assert len(led) == 2


# --------------------------------------------------------------------------- DP accounting and output contract
@pytest.mark.parametrize("method", ["copula", "vine_nmf"])
@pytest.mark.parametrize("unit_kw", [{}, {"donor_key": "donor_id"}])
def test_generate_integer_sparse_and_eps_spent(kang_small, method, unit_kw):
    kw = {"n_copula_genes": 30} if method == "copula" else {"n_factors": 4, "n_hvg": 60}
    before = kang_small.X.copy()
    n_obs = {"n_obs": kang_small.n_obs} if unit_kw else {}  # 2 donors: donor-level DP counts are pure noise
    syn = sd.tl.generate(kang_small, method, eps=1.5, groupby="cell_type", **unit_kw, **kw, **n_obs)
    assert sparse.isspmatrix_csr(syn.X) or isinstance(syn.X, sparse.csr_array)
    assert np.issubdtype(syn.X.dtype, np.integer)
    assert syn.X.data.min() >= 0
    assert syn.n_vars == kang_small.n_vars
    priv = syn.uns["scdpsynth"]["privacy"]
    if unit_kw:
        assert syn.n_obs == kang_small.n_obs
    else:  # the DP class counts (fresh entropy): within 5 noise sd of the true total, plus rounding per class
        K = kang_small.obs["cell_type"].nunique()
        sd_total = priv["ledger"]["noise"][list(priv["ledger"]["release"]).index("counts")] * np.sqrt(K)
        assert abs(syn.n_obs - kang_small.n_obs) < 5 * sd_total + K  # 5 sd: fails once in ~1.7 million runs
    assert (kang_small.X != before).nnz == 0  # user data untouched
    assert priv["eps_spent"] <= 1.5
    assert priv["eps_spent"] > 1.49  # the budget is used, not wasted
    assert priv["unit"] == ("donor" if unit_kw else "sample")
    if unit_kw:
        assert any("donor-level DP" in s for s in priv["scope"])


@pytest.mark.parametrize("cls", GENERATORS)
def test_same_seed_same_output_and_rho_within_budget(cls, kang_small):
    X, y, _donors, K = _arrays(kang_small)
    rng = np.random.default_rng
    a = cls(eps=0.7, random_state=rng(5), **SMALL_KW[cls]).fit(X, y, n_classes=K).sample([20] * K)
    g = cls(eps=0.7, random_state=rng(5), **SMALL_KW[cls]).fit(X, y, n_classes=K)
    b = g.sample([20] * K)
    assert (a != b).nnz == 0
    assert g.ledger.mu**2 / 2 <= g.budget.rho
    assert g.privacy_report()["eps_spent"] <= 0.7


@pytest.mark.parametrize("cls", GENERATORS)
def test_bad_input_errors(cls, kang_small):
    X, y, _donors, K = _arrays(kang_small)
    with pytest.raises(ValueError, match="donors="):
        cls(eps=1.0, unit="donor", **SMALL_KW[cls]).fit(X, y, n_classes=K)
    with pytest.raises(ValueError, match="raw non-negative integer counts"):
        cls(eps=1.0, **SMALL_KW[cls]).fit(X * 0.5, y, n_classes=K)
    with pytest.raises(ValueError, match="Unknown weights"):
        cls(eps=1.0, weights={"nonsense": 1.0})
    with pytest.raises(ValueError, match="weights must be"):
        cls(eps=1.0, weights={"mean": 0.0})
    with pytest.raises(RuntimeError, match="fit"):
        cls(eps=1.0).sample([3])
    assert cls(eps=1.0, unit="cell").unit == "sample"  # alias


# --------------------------------------------------------------------------- marginals, copula pieces
def test_marginals_from_moments_recovers_families():
    rng = np.random.default_rng(0)
    true = CountMarginals(
        np.array([0, 1, 2]), np.array([2.0, 3.0, 4.0]), np.array([np.inf, 1.5, 2.0]), np.array([0.0, 0.0, 0.3])
    )
    x = true.sample(rng, 100_000).astype(float)
    for dispersion in ("zeros", "moments"):
        fit = marginals_from_moments(x.mean(0), (x**2).mean(0), (x == 0).mean(0), dispersion=dispersion)
        assert fit.family.tolist() == [0, 1, 2]
        np.testing.assert_allclose(fit.mu, true.mu, rtol=0.03)
        np.testing.assert_allclose(fit.size[1:], true.size[1:], rtol=0.1)
        assert fit.pi[2] == pytest.approx(0.3, abs=0.02)
    # "zeros": an NB whose second moment is (noisily) too small still gets its size from the zero fraction
    nb = CountMarginals(np.array([1]), np.array([3.0]), np.array([1.5]), np.array([0.0]))
    p0 = float(nb.cdf_table(1)[0, 0])
    fit = marginals_from_moments(np.array([3.0]), np.array([3.0 + 9.0 - 1.0]), np.array([p0]))
    assert fit.family.tolist() == [1] and fit.size[0] == pytest.approx(1.5, rel=1e-6)
    assert (
        marginals_from_moments(np.array([3.0]), np.array([11.0]), np.array([p0]), dispersion="moments").family[0] == 0
    )
    # CDF table agrees with the empirical CDF (binomial standard error ~0.0016; tolerance 0.01)
    table = true.cdf_table(40)
    for j in range(3):
        emp = np.array([(x[:, j] <= t).mean() for t in range(5)])
        np.testing.assert_allclose(table[j, :5], emp, atol=0.01)


def test_marginals_with_size_factors_recover_dispersion():
    """X | s ~ NB(s mu, r) with s on equally likely levels: moments and zeros both give r back net of the factors."""
    rng = np.random.default_rng(1)
    levels = np.array([0.4, 0.7, 1.0, 1.3, 1.6])
    mu, r, n = np.array([1.5, 2.0, 8.0]), np.array([2.0, 1.0, 4.0]), 200_000
    s = rng.choice(levels, n)[:, None]
    X = rng.poisson(rng.gamma(r, 1.0, size=(n, 3)) * s * mu / r)
    m1, m2, p0 = X.mean(0), (X.astype(float) ** 2).mean(0), (X == 0).mean(0)
    for disp in ("moments", "zeros"):
        m = marginals_from_moments(m1, m2, p0, families=("poisson", "nb"), dispersion=disp, size_factors=levels)
        np.testing.assert_allclose(m.size, r, rtol=0.1, err_msg=disp)
        np.testing.assert_allclose(m.mu, mu, rtol=0.02)
    # without the factors the same data look more overdispersed (smaller r)
    plain = marginals_from_moments(m1, m2, p0, families=("poisson", "nb"), dispersion="moments")
    assert np.all(plain.size < r)


def test_copula_size_factors_spread_library_sizes(kang_example):
    X, y, _donors, K = _arrays(kang_example)
    lib = np.asarray(X.sum(axis=1)).ravel()
    spread = {}
    for sf in (True, False):
        g = CopulaGenerator(eps=None, n_copula_genes=30, size_factors=sf).fit(X, y, n_classes=K)
        S = g.sample(np.bincount(y, minlength=K))
        s_lib = np.asarray(S.sum(axis=1)).ravel()
        spread[sf] = np.std(np.log(s_lib + 1))
        assert abs(np.mean(s_lib) / np.mean(lib) - 1) < 0.1
    # real cells vary in depth; with size factors the synthetic depth spread is much closer to the real one
    real = np.std(np.log(lib + 1))
    assert abs(spread[True] - real) < abs(spread[False] - real)
    assert abs(spread[True] - real) < 0.15 * real


def test_direct_scores_match_table_scores():
    marg = CountMarginals(np.array([0, 1, 2]), np.array([1.5, 4.0, 2.0]), np.array([np.inf, 2.0, 3.0]),
                          np.array([0.0, 0.0, 0.3]))  # fmt: skip
    X = np.random.default_rng(0).poisson(3.0, size=(50, 3))
    table = marg.cdf_table(400)
    a = normal_scores(X, marg, table, np.random.default_rng(1))
    b = copula_mod._scores_direct(X, marg, np.random.default_rng(1))
    np.testing.assert_allclose(a, b, atol=1e-8)


def test_nearest_correlation():
    R = np.array([[1.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(nearest_correlation(R), R, atol=1e-12)
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])  # not PSD
    P = nearest_correlation(bad)
    assert np.linalg.eigvalsh(P).min() > 0
    np.testing.assert_allclose(np.diag(P), 1.0)
    assert np.abs(P).max() <= 1.0 + 1e-12


def test_normal_scores_are_standard_normal_under_the_true_marginal():
    rng = np.random.default_rng(2)
    marg = CountMarginals(np.array([1, 0]), np.array([0.7, 3.0]), np.array([0.8, np.inf]), np.zeros(2))
    x = marg.sample(rng, 40_000)
    z = normal_scores(x, marg, marg.cdf_table(200), rng)
    # randomised PIT of a discrete variable under its own CDF is exactly uniform: z ~ N(0, 1)
    assert np.abs(z.mean(0)).max() < 0.03
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.03)


def test_copula_nonprivate_fit_keeps_means_and_correlation(kang_example):
    X, y, _, K = _arrays(kang_example)
    gen = CopulaGenerator(eps=None, n_copula_genes=50, random_state=0).fit(X, y, n_classes=K)
    counts = np.bincount(y, minlength=K)
    S = gen.sample(counts)
    ys = np.repeat(np.arange(K), counts)
    k = int(np.argmax(counts))
    real_mean = np.asarray(X[y == k].mean(0)).ravel()
    syn_mean = np.asarray(S[ys == k].mean(0)).ravel()
    assert stats.spearmanr(real_mean, syn_mean)[0] > 0.95
    g = gen.copula_genes_[k]
    cr = np.corrcoef(np.log1p(X[y == k][:, g].toarray()).T)
    cs = np.corrcoef(np.log1p(S[ys == k][:, g].toarray()).T)
    iu = np.triu_indices(g.size, 1)
    ok = np.isfinite(cr[iu]) & np.isfinite(cs[iu])
    assert stats.pearsonr(cr[iu][ok], cs[iu][ok])[0] > 0.5


# --------------------------------------------------------------------------- Frank pair copula and the C-vine
def test_frank_h_and_inverse():
    rng = np.random.default_rng(0)
    u, v = rng.random(1000), rng.random(1000)
    for theta in (-30.0, -8.0, -0.5, 1e-10, 3.0, 20.0, 35.0):
        np.testing.assert_allclose(frank_h(frank_hinv(u, v, theta), v, theta), u, atol=1e-8)
        if abs(theta) <= 20:  # beyond, h saturates at 1 - 1e-15 and u is ill-conditioned in double precision
            np.testing.assert_allclose(frank_hinv(frank_h(u, v, theta), v, theta), u, atol=1e-8)
    np.testing.assert_allclose(frank_h(u, v, 0.0), u)
    # h(u | v) is the conditional CDF: d/dv of C(u, v), checked by finite differences
    theta, eps = 4.0, 1e-6

    def cop(a, b):
        return -np.log1p(np.expm1(-theta * a) * np.expm1(-theta * b) / np.expm1(-theta)) / theta

    np.testing.assert_allclose(frank_h(u, v, theta), (cop(u, v + eps) - cop(u, v - eps)) / (2 * eps), atol=1e-5)


def test_frank_tau_known_values_and_inverse():
    assert frank_tau(0.0) == 0.0
    assert frank_tau(5.0) == pytest.approx(0.4567, abs=1e-3)  # Nelsen (2006), Table 5.1-style value
    assert frank_tau(-5.0) == pytest.approx(-0.4567, abs=1e-3)
    taus = np.array([-0.6, -0.2, 0.0, 0.1, 0.5, 0.8])
    back = np.array([frank_tau(t) for t in frank_theta_from_tau(taus)])
    np.testing.assert_allclose(back, taus, atol=2e-3)


def test_frank_matches_pyvinecopulib():
    pv = pytest.importorskip("pyvinecopulib")
    rng = np.random.default_rng(1)
    uv = rng.random((200, 2))
    for theta in (-12.0, -1.0, 0.5, 6.0):
        cop = pv.Bicop(family=pv.BicopFamily.frank, parameters=np.array([[theta]]))
        assert cop.parameters_to_tau(np.array([[theta]])) == pytest.approx(frank_tau(theta), abs=1e-6)
        # pyvinecopulib's hfunc1 / hinv1 are h(u2 | u1) and its inverse in u2
        np.testing.assert_allclose(cop.hfunc1(uv), frank_h(uv[:, 1], uv[:, 0], theta), atol=1e-8)
        np.testing.assert_allclose(cop.hinv1(uv), frank_hinv(uv[:, 1], uv[:, 0], theta), atol=1e-8)
    assert frank_theta_from_tau(0.99) == pytest.approx(35.0)  # capped at pyvinecopulib's Frank bound


def test_cvine_sample_reproduces_pair_copulas():
    """3-d C-vine, root 0: tau(U0, U1), tau(U0, U2) and the conditional tau of tree 2 match the Frank parameters."""
    thetas = [np.array([0.0, 6.0, -4.0]), np.array([0.0, 0.0, 3.0])]
    U = cvine_sample(np.random.default_rng(0), 20_000, [0, 1], thetas, [2])
    assert U.min() >= 0 and U.max() <= 1
    np.testing.assert_allclose(U.mean(0), 0.5, atol=0.01)  # uniform margins
    # sampling standard error of tau at n = 20,000 is ~0.005; tolerance 0.02
    assert stats.kendalltau(U[:, 0], U[:, 1])[0] == pytest.approx(frank_tau(6.0), abs=0.02)
    assert stats.kendalltau(U[:, 0], U[:, 2])[0] == pytest.approx(frank_tau(-4.0), abs=0.02)
    c1, c2 = frank_h(U[:, 1], U[:, 0], 6.0), frank_h(U[:, 2], U[:, 0], -4.0)
    assert stats.kendalltau(c1, c2)[0] == pytest.approx(frank_tau(3.0), abs=0.02)


def test_vine_fit_recovers_correlation_structure(kang_example):
    X, y, _, K = _arrays(kang_example)
    gen = VineNMFGenerator(eps=None, n_factors=5, n_hvg=200, truncation=2, random_state=0).fit(X, y, n_classes=K)
    vine = gen.vine_[int(np.argmax(np.bincount(y)))]
    assert len(vine["order"]) == 2 and len(vine["rest"]) == 3
    assert sorted(vine["order"] + vine["rest"]) == list(range(5))
    assert np.all(np.abs(vine["theta"][0]) <= 35.0)
    assert vine["theta"][0][vine["order"][0]] == 0.0  # the root has no pair with itself


def test_vine_nmf_nonprivate_keeps_means(kang_example):
    X, y, _, K = _arrays(kang_example)
    gen = VineNMFGenerator(eps=None, n_factors=6, n_hvg=200, random_state=0).fit(X, y, n_classes=K)
    counts = np.bincount(y, minlength=K)
    S = gen.sample(counts)
    ys = np.repeat(np.arange(K), counts)
    k = int(np.argmax(counts))
    real_mean = np.asarray(X[y == k].mean(0)).ravel()
    syn_mean = np.asarray(S[ys == k].mean(0)).ravel()
    assert stats.spearmanr(real_mean, syn_mean)[0] > 0.9
    assert gen.H_.min() >= 0 and gen.H_.shape == (6, 200)


# --------------------------------------------------------------------------- full data (slow)
@pytest.mark.slow
@pytest.mark.parametrize("method", ["copula", "vine_nmf"])
def test_full_kang_donor_level(kang_pbmc, method):
    """12,261 cells, 8 donors: donor-level DP output is integer CSR, budget respected, cell types all generated."""
    # a fixed seed: with 8 donors the DP class counts (sensitivity = the cap, 256 cells; sd ~ 500 cells against ~2,000
    # kept cells) leave fewer than 3 cell types positive in a few percent of fresh draws
    with pytest.warns(KnownSeedWarning):
        syn = sd.tl.generate(kang_pbmc, method, eps=10.0, groupby="cell_type", donor_key="donor_id", n_obs=12_000,
                             random_state=0)  # fmt: skip
    # the DP class proportions are noisy, the total is the user's
    assert syn.n_obs == 12_000 and sparse.issparse(syn.X)
    assert np.issubdtype(syn.X.dtype, np.integer)
    priv = syn.uns["scdpsynth"]["privacy"]
    assert priv["unit"] == "donor" and "n_donors" not in priv
    assert priv["eps_spent"] <= 10.0
    assert (syn.obs["cell_type"].value_counts() > 0).sum() >= 3


@pytest.mark.slow
@pytest.mark.parametrize("cls", GENERATORS)
def test_full_kang_nonprivate_fidelity(kang_pbmc, cls):
    """Without noise both models reproduce per-type gene means (Spearman > 0.95 in every type with >= 500 cells)."""
    X, y, _, K = _arrays(kang_pbmc)
    gen = cls(eps=None, random_state=0).fit(X, y, n_classes=K)
    counts = np.bincount(y, minlength=K)
    S = gen.sample(counts)
    ys = np.repeat(np.arange(K), counts)
    for k in np.flatnonzero(counts >= 500):
        real = np.asarray(X[y == k].mean(0)).ravel()
        syn = np.asarray(S[ys == k].mean(0)).ravel()
        assert stats.spearmanr(real, syn)[0] > 0.95, k


def test_zero_matching_blend_known_answers():
    """The blend ``a`` makes Poisson draws around ``m (a + (1 - a) rel)`` give the requested zero fraction."""
    rng = np.random.default_rng(0)
    rel = rng.gamma(0.5, 2.0, size=(4000, 5))
    rel /= rel.mean(axis=0)
    m = np.array([0.5, 2.0, 0.1, 1.0, 1.0])
    zeros_at = lambda a: np.exp(-m * (a + (1 - a) * rel)).mean(axis=0)  # noqa: E731
    lo, hi = zeros_at(np.zeros(5)), np.exp(-m)  # most zeros (a = 0) and fewest (a = 1, constant mean)
    p0 = np.array(
        [0.5 * (lo[0] + hi[0]), 0.3 * lo[1] + 0.7 * hi[1], 0.9 * lo[2] + 0.1 * hi[2], lo[3] + 0.05, hi[4] / 2]
    )
    a = vine_mod._zero_matching_blend(m, rel, p0)
    np.testing.assert_allclose(zeros_at(a)[:3], p0[:3], rtol=1e-6)
    assert np.all((a[:3] > 0) & (a[:3] < 1))
    assert a[3] == 0.0  # more zeros than the model gives: left to an NB size
    assert a[4] == 1.0  # fewer zeros than Poisson at the mean allows: constant mean


def test_vine_nmf_private_hvgs_keep_their_detection_rate(kang_example):
    """At eps=10 the noisy factor model made HVG means so uneven across cells that synthetic cells detected an HVG
    about a tenth as often as real ones (ratio 0.10-0.12 over seeds 0-2 on the embedded data); matching the released
    zero fraction brought the ratio to 0.42-0.44 (``denoise=False`` today: the rest is noise in the released zero
    fractions themselves), and the empirical-Bayes denoising of the released moments (default) to 0.89-0.94; a
    non-private fit gives 1.00."""
    X, y, _, K = _arrays(kang_example)
    counts = np.bincount(y, minlength=K)
    for eps, den, lo, hi in ((10.0, True, 0.8, 1.1), (10.0, False, 0.3, 0.6), (None, True, 0.95, 1.05)):
        gen = VineNMFGenerator(eps=eps, random_state=0, denoise=den).fit(X, y, n_classes=K)
        S = gen.sample(counts)
        ratio = (S[:, gen.hvg_] > 0).sum() / (X[:, gen.hvg_] > 0).sum()
        assert lo < ratio < hi, (eps, den, ratio)
        assert np.all((gen.hvg_blend_ >= 0) & (gen.hvg_blend_ <= 1))


def test_vine_nmf_with_every_gene_an_hvg():
    """d <= n_hvg leaves no gene to draw independently: the fit and the draws still work."""
    X = sparse.csr_matrix(np.random.default_rng(0).poisson(2.0, size=(100, 30)))
    gen = VineNMFGenerator(eps=1.0, n_factors=4, n_hvg=50, random_state=np.random.default_rng(1))
    out = gen.fit(X, np.repeat([0, 1], 50), n_classes=2).sample([5, 7])
    assert out.shape == (12, 30) and out.nnz > 0


# --------------------------------------------------------------------------- nb_baseline (reference floor)
def test_nb_baseline_is_a_nonprivate_reference_floor(kang_small):
    from scdpsynth.generators.nb_baseline import NBBaseline

    with pytest.raises(ValueError, match="eps=None"):
        NBBaseline(eps=1.0)
    with pytest.raises(ValueError, match="eps=None"):
        sd.tl.generate(kang_small, "nb_baseline", eps=10.0, groupby="cell_type")
    X, y, _donors, K = _arrays(kang_small)
    g = NBBaseline(random_state=0).fit(X, y, n_classes=K)
    np.testing.assert_array_equal(g.class_counts_, np.bincount(y, minlength=K))  # exact sizes
    S = g.sample([4000] + [0] * (K - 1))
    assert sparse.isspmatrix_csr(S) and np.issubdtype(S.dtype, np.integer) and S.shape == (4000, X.shape[1])
    Xk = X[y == 0].toarray().astype(float)
    mean, var = Xk.mean(0), Xk.var(0)
    # kit's rule: Poisson where var <= mean, else NB with dispersion (var - mean) / mean^2 clipped to [1e-3, 10]
    np.testing.assert_array_equal(g.poisson_[0], var <= mean)
    disp = np.clip((var - mean) / np.maximum(mean, 1e-12) ** 2, 1e-3, 10.0)
    np.testing.assert_allclose(g.size_[0], 1.0 / disp)
    Sm = S.toarray().mean(0)
    ok = mean > 0.5
    np.testing.assert_allclose(Sm[ok], mean[ok], rtol=0.2)
    syn = sd.tl.generate(kang_small, "nb_baseline", eps=None, groupby="cell_type")
    assert syn.n_obs == kang_small.n_obs
    assert syn.uns["scdpsynth"]["privacy"]["private"] is False
    row = sd.tl.list_methods().set_index("name").loc["nb_baseline"]
    assert row["private"].startswith("no") and "reference floor" in row["summary"].lower()


def test_donor_means_estimate_the_average_donor_with_less_noise_than_cell_sums(monkeypatch):
    """Simulated cohort of 40 donors x 60 cells (cap m = 60 keeps every cell). Noise-free, the donor-mean release is
    the average over donors of each donor's per-type mean (known answer). At the same budget its error is below the
    cell sums': their noise sd per type is sqrt(K) / D_k against m / n_k clips, i.e. a ratio of about sqrt(K) times
    the type's share of cells (0.1-0.8 here); we require the median ratio over types to be under 0.6. (The raw noisy
    means are compared: the projection onto the means' bounds would truncate both errors.)"""
    ad = sd.datasets.simulate_cohort(40, 60, 200, random_state=0)
    X, y, donors, K = _arrays(ad)
    m = int(np.bincount(donors).max())
    w = C.donor_type_weights(donors, y, K)
    kw = {"m": m, "neighbouring": "add_remove", "count_cap": np.inf, "mean_cap": np.inf}
    exact = dict.fromkeys(["counts", "donors", "mean"], np.inf)
    _, st = copula_mod.dp_count_moments(X, y, K, clips={"mean": np.inf}, rho=exact, ledger=None, rng=None,
                                        cell_weights=w, m_weighted=C.donor_mean_multiplier(m, K), **kw)  # fmt: skip
    Xd = X.toarray()
    want = np.zeros((K, X.shape[1]))
    for k in range(K):
        for d in np.unique(donors[y == k]):
            want[k] += Xd[(y == k) & (donors == d)].mean(0)
        want[k] /= np.unique(donors[y == k]).size
    np.testing.assert_allclose(st["mean"], want, rtol=1e-10)
    np.testing.assert_allclose(st["denominator"], [np.unique(donors[y == k]).size for k in range(K)])
    cell_mean = C.grouped_sums(X, y, K) / np.bincount(y, minlength=K)[:, None]
    rho = {"counts": 0.5, "donors": 0.5, "mean": 0.5}
    monkeypatch.setattr(copula_mod, "project_mean", lambda M, *, upper, norm: M)
    err = {}
    for mode in ("mean", "sum"):
        led = sd.privacy.Ledger()
        wk = {"cell_weights": w, "m_weighted": C.donor_mean_multiplier(m, K)} if mode == "mean" else {}
        _, st = copula_mod.dp_count_moments(X, y, K, clips={"mean": 150.0}, rho=rho, ledger=led,
                                            rng=np.random.default_rng(11), **wk, **kw)  # fmt: skip
        truth = want if mode == "mean" else cell_mean
        err[mode] = np.sqrt(((st["mean"] - truth) ** 2).mean(axis=1))
    ratio = err["mean"] / err["sum"]
    assert np.median(ratio) < 0.6, ratio


# --------------------------------------------------------------------------- public reference marginals
def test_public_reference_marginals_are_the_references_and_only_the_rest_is_released(kang_small):
    """Known answer: with ``reference=`` the marginals and size levels equal a non-private fit on the reference, the
    private data's counts do not move them, and the ledger holds only the counts (donors) and copula releases."""
    X, y, donors, K = _arrays(kang_small)
    ref_rows = np.flatnonzero(np.arange(X.shape[0]) % 2 == 0)
    priv_rows = np.setdiff1d(np.arange(X.shape[0]), ref_rows)
    Xr, yr = X[ref_rows], y[ref_rows]
    Xp, yp = X[priv_rows], y[priv_rows]
    rng = np.random.default_rng
    pub = CopulaGenerator(eps=1.0, n_copula_genes=20, random_state=rng(0)).fit(Xp, yp, n_classes=K, reference=(Xr, yr))
    exact = CopulaGenerator(eps=None, n_copula_genes=20).fit(Xr, yr, n_classes=K)
    for field in ("family", "mu", "size", "pi"):
        np.testing.assert_allclose(getattr(pub.marginals_, field), getattr(exact.marginals_, field), rtol=1e-12)
    np.testing.assert_allclose(pub.size_levels_, exact.size_levels_, rtol=1e-12)
    assert [e["name"] for e in pub.ledger.entries] == ["counts", "copula"]
    assert pub.privacy_report()["eps_spent"] <= 1.0
    assert any("public reference" in s for s in pub.scope)
    # the private counts do not reach the marginals (doubling them changes nothing there)
    pub2 = CopulaGenerator(eps=1.0, n_copula_genes=20, random_state=rng(0)).fit(
        Xp * 2, yp, n_classes=K, reference=(Xr, yr)
    )
    np.testing.assert_array_equal(pub2.marginals_.mu, pub.marginals_.mu)
    # donor level: counts, donors and copula
    don = CopulaGenerator(eps=1.0, unit="donor", max_cells_per_donor=50, n_copula_genes=20, random_state=rng(1))
    don.fit(Xp, yp, n_classes=K, donors=donors[priv_rows], reference=(Xr, yr))
    assert [e["name"] for e in don.ledger.entries] == ["counts", "donors", "copula"]
    with pytest.raises(ValueError, match="no cells of classes"):
        CopulaGenerator(eps=1.0).fit(Xp, yp, n_classes=K, reference=(Xr[yr != 0], yr[yr != 0]))
    with pytest.raises(ValueError, match="genes"):
        CopulaGenerator(eps=1.0).fit(Xp, yp, n_classes=K, reference=(Xr[:, :10], yr))


def test_tl_generate_public_reference(kang_small):
    ref = kang_small[::2].copy()
    priv = kang_small[1::2].copy()
    before = priv.X.copy()
    ref_shuffled = ref[:, ref.var_names[::-1]].copy()  # genes matched by name, not position
    syn = sd.tl.generate(priv, "copula", eps=2.0, groupby="cell_type", public_reference=ref_shuffled,
                         n_copula_genes=20)  # fmt: skip
    priv_info = syn.uns["scdpsynth"]["privacy"]
    assert list(priv_info["ledger"]["release"]) == ["counts", "copula"]
    assert any("public reference" in s for s in priv_info["scope"])
    assert (priv.X != before).nnz == 0
    # per-type means of the synthetic cells follow the reference (correlation of log means over genes)
    ref_mean = np.log1p(np.asarray(ref.X.mean(axis=0)).ravel())
    syn_mean = np.log1p(np.asarray(syn.X.mean(axis=0)).ravel())
    assert np.corrcoef(ref_mean, syn_mean)[0, 1] > 0.95
    with pytest.raises(ValueError, match="cannot use public_reference; methods that can: \\['copula'\\]"):
        sd.tl.generate(priv, "privsyn", eps=2.0, groupby="cell_type", public_reference=ref)
    with pytest.raises(ValueError, match="lacks 10 of adata's genes"):
        sd.tl.generate(priv, "copula", eps=2.0, groupby="cell_type", public_reference=ref[:, 10:].copy())
    with pytest.raises(ValueError, match="no cells of classes"):
        first = ref.obs["cell_type"].cat.categories[0]
        sd.tl.generate(priv, "copula", eps=2.0, groupby="cell_type",
                       public_reference=ref[ref.obs["cell_type"] != first].copy())  # fmt: skip
    with pytest.raises(TypeError, match="AnnData"):
        sd.tl.generate(priv, "copula", eps=2.0, groupby="cell_type", public_reference=ref.X)
