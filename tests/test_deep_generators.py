"""DP-VAE and DP-WGAN: DP-SGD accounting and clipping, reproducibility, devices, count decoders, tl.generate."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import scdpsynth as sd
from scdpsynth.generators._torch_utils import (
    RDP_ORDERS,
    DPSGDAccountant,
    calibrate_noise_multiplier,
    clipped_feature_sums,
    dp_backward,
    dp_class_stats,
    dp_feature_stats,
    make_dp_optimizer,
    poisson_batch,
    select_device,
)
from scdpsynth.generators.dp_gan import DPGAN
from scdpsynth.generators.dp_vae import DPVAE
from scdpsynth.privacy import RDPAccountant, zcdp_from_eps

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

TINY = dict(hidden_dim=16, latent_dim=4, epochs=2, batch_size=32, num_threads=1)


def _xy(adata, key):
    return np.asarray(adata.X, dtype=float), adata.obs[key].cat.codes.to_numpy().astype(np.int64)


# -- lazy imports, devices ------------------------------------------------------------------------------------------
def test_import_scdpsynth_does_not_import_torch():
    code = (
        "import sys, scdpsynth, scdpsynth.generators as g; "
        "assert 'dp_vae' in g.registry and 'dp_gan' in g.registry; "
        "assert 'torch' not in sys.modules and 'opacus' not in sys.modules, 'torch imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_device_selection():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        select_device("tpu")
    with pytest.raises(TypeError, match="device must be"):
        select_device(3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_gives_clear_error():
    with pytest.raises(ValueError, match=r"CUDA is not available.*device='auto'"):
        select_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        DPVAE(eps=1.0, device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        DPGAN(eps=1.0, device="cuda:0")


# -- accounting -----------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
@pytest.mark.parametrize(("eps", "q", "steps"), [(1.0, 0.25, 120), (3.0, 0.01, 2000)])
def test_calibration_matches_opacus_get_noise_multiplier(eps, q, steps):
    from opacus.accountants.utils import get_noise_multiplier

    ours = calibrate_noise_multiplier(eps=eps, delta=1e-5, sample_rate=q, steps=steps)
    ref = get_noise_multiplier(
        target_epsilon=eps, target_delta=1e-5, sample_rate=q, steps=steps, epsilon_tolerance=1e-3
    )
    # same analysis; our order grid is coarser and the bisection stops at 0.5% relative width
    assert ours == pytest.approx(ref, rel=0.02)
    acc = DPSGDAccountant()
    acc.step(noise_multiplier=ours, sample_rate=q, steps=steps)
    assert acc.get_epsilon(1e-5) <= eps
    assert acc.get_epsilon(1e-5) > 0.97 * eps  # and does not waste budget


def test_accountant_known_answers():
    from opacus.accountants import RDPAccountant as OpacusRDP

    acc = DPSGDAccountant()
    assert acc.get_epsilon(1e-5) == 0.0
    for _ in range(50):
        acc.step(noise_multiplier=1.3, sample_rate=0.05)
    assert acc.history == [[1.3, 0.05, 50]]
    ref = OpacusRDP()
    for _ in range(50):
        ref.step(noise_multiplier=1.3, sample_rate=0.05)
    assert acc.get_epsilon(1e-6) == pytest.approx(ref.get_epsilon(1e-6, alphas=list(RDP_ORDERS)), rel=1e-10)

    # Gaussian releases: r(alpha) = alpha D^2 / (2 sigma^2), as in privacy.RDPAccountant
    g = DPSGDAccountant()
    g.add_gaussian(name="a", sensitivity=2.0, sigma=5.0)
    np.testing.assert_allclose(g.rdp, RDP_ORDERS * 4.0 / 50.0)
    r = RDPAccountant(orders=RDP_ORDERS)
    r.add_gaussian(name="a", sensitivity=2.0, sigma=5.0)
    assert g.get_epsilon(1e-5) == pytest.approx(r.get_epsilon(1e-5))
    d = acc.to_dict(1e-6)
    assert d["eps_spent"] == pytest.approx(acc.get_epsilon(1e-6)) and d["dpsgd_steps"].tolist() == [50]


def test_calibration_with_prior_releases_stays_within_budget():
    acc = DPSGDAccountant()
    acc.add_gaussian(name="stats", sensitivity=1.0, sigma=1.0 / math.sqrt(0.1 * zcdp_from_eps(2.0, 1e-5)))
    z0 = calibrate_noise_multiplier(eps=2.0, delta=1e-5, sample_rate=0.1, steps=300)
    z = calibrate_noise_multiplier(eps=2.0, delta=1e-5, sample_rate=0.1, steps=300, base_rdp=acc.gaussian_rdp())
    assert z > z0  # less budget left for DP-SGD, more noise
    acc.step(noise_multiplier=z, sample_rate=0.1, steps=300)
    assert 1.95 < acc.get_epsilon(1e-5) <= 2.0
    with pytest.raises(ValueError, match="too small"):
        calibrate_noise_multiplier(eps=1e-4, delta=1e-5, sample_rate=1.0, steps=10**6)


# -- DP-SGD mechanics -------------------------------------------------------------------------------------------------
def test_poisson_batches_have_the_sampling_rate_and_are_reproducible():
    sizes = [len(poisson_batch(1000, 0.1, torch.Generator().manual_seed(s))) for s in range(200)]
    # Binomial(1000, 0.1): mean 100, sd of the mean of 200 draws 9.49 / sqrt(200) = 0.67; 5-sigma tolerance
    assert abs(np.mean(sizes) - 100) < 3.4
    a = poisson_batch(50, 0.3, torch.Generator().manual_seed(1))
    b = poisson_batch(50, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_dp_step_clips_each_row_and_adds_generated_gradient():
    """Known answer: with zero noise, p.grad = (sum_i clip(g_i, C) + g_extra) / expected batch size."""
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ELU(), torch.nn.Linear(4, 1))
    x = torch.randn(5, 3, generator=gen) * 3
    xe = torch.randn(2, 3, generator=gen)
    C, B = 0.5, 4

    def loss_rows(m, xb):
        return (m(xb).squeeze(1) - 1.0) ** 2

    manual = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(x)):
        grads = torch.autograd.grad(loss_rows(model, x[i : i + 1]).sum(), list(model.parameters()))
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        for acc, g in zip(manual, grads, strict=True):
            acc += g * min(1.0, C / float(norm))
    extra = torch.autograd.grad(model(xe).sum(), list(model.parameters()))
    assert float(torch.sqrt(sum((g**2).sum() for g in manual))) > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    gsm, dp_opt = make_dp_optimizer(
        model, opt, noise_multiplier=0.0, max_grad_norm=C, expected_batch_size=B, generator=gen
    )
    dp_backward(gsm, dp_opt, loss_rows(gsm, x), extra_loss=lambda: gsm(xe).sum())
    assert dp_opt.pre_step()
    for p, m, e in zip(model.parameters(), manual, extra, strict=True):
        torch.testing.assert_close(p.grad, (m + e) / B, rtol=1e-4, atol=1e-6)


def test_dp_step_noise_has_the_calibrated_scale():
    model = torch.nn.Linear(50, 40)
    gen = torch.Generator().manual_seed(3)
    gsm, dp_opt = make_dp_optimizer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        noise_multiplier=2.0,
        max_grad_norm=0.7,
        expected_batch_size=10,
        generator=gen,
    )
    x = torch.zeros(0, 50)  # empty Poisson batch: the step is noise only
    dp_backward(gsm, dp_opt, gsm(x).sum(1))
    assert dp_opt.pre_step()
    noise = torch.cat([p.grad.flatten() for p in model.parameters()]).numpy() * 10
    # 2,040 N(0, 1.4^2) draws: sample sd within 5% (sd of the sd estimate ~1.6%)
    assert np.std(noise) == pytest.approx(1.4, rel=0.05) and abs(np.mean(noise)) < 0.15


# -- statistics released before DP-SGD ------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 6)), elements=st.floats(-30, 30)),
    row=arrays(np.float64, 6, elements=st.floats(-1e3, 1e3)),
)
def test_feature_sums_sensitivity_add_one_row(X, row):
    r = row[: X.shape[1]][None]
    a1, a2, (s1, s2) = clipped_feature_sums(X, (0.0, 16.0))
    b1, b2, _ = clipped_feature_sums(np.vstack([X, r]), (0.0, 16.0))
    assert np.linalg.norm(a1 - b1) <= s1 + 1e-9
    assert np.linalg.norm(a2 - b2) <= s2 + 1e-9


def test_dp_feature_stats_noise_and_ledger():
    rng = np.random.default_rng(0)
    X = rng.normal(6.0, 1.0, size=(20000, 30))
    acc = DPSGDAccountant()
    mean, std = dp_feature_stats(X, value_range=(0.0, 16.0), sigma_mult=2.0, rng=rng, accountant=acc)
    # mean error sd = 2 * 8 * sqrt(30) / 20000 = 0.0044 (plus data noise 0.007); 5 sd tolerance
    np.testing.assert_allclose(mean, 6.0, atol=0.045)
    np.testing.assert_allclose(std, 1.0, atol=0.1)
    assert [g["sensitivity"] for g in acc.gaussians] == pytest.approx([8 * math.sqrt(30), 32 * math.sqrt(30)])
    exact_mean, exact_std = dp_feature_stats(X, value_range=(0, 16), sigma_mult=None, rng=rng, accountant=None)
    np.testing.assert_allclose(exact_mean, X.mean(0))
    np.testing.assert_allclose(exact_std, X.std(0))


def test_dp_class_stats_known_answer_without_noise_and_ledger():
    v = np.array([1.0, 3.0, 5.0, 5.0])
    y = np.array([0, 0, 1, 1])
    m, s = dp_class_stats(v, y, 2, value_range=(0, 14), sigma_mult=None, rng=None, accountant=None, name="v")
    np.testing.assert_allclose(m, [2.0, 5.0])
    np.testing.assert_allclose(s, [1.0, 1e-6])
    acc = DPSGDAccountant()
    dp_class_stats(v, y, 2, value_range=(0, 14), sigma_mult=3.0, rng=np.random.default_rng(0), accountant=acc, name="v")
    assert [(g["sensitivity"], g["sigma"]) for g in acc.gaussians] == [(7.0, 21.0), (24.5, 73.5)]


# -- DP-VAE ---------------------------------------------------------------------------------------------------------
def test_vae_private_fit_spends_at_most_eps_and_is_reproducible(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    counts = np.bincount(y)
    g1 = DPVAE(eps=2.0, delta=1e-5, random_state=7, standardize="dp", **TINY).fit(X, y, n_classes=2)
    rep = g1.privacy_report()
    assert rep["private"] and 1.9 < rep["eps_spent"] <= 2.0
    assert len(g1.accountant.gaussians) == 2 and g1.accountant.history[0][2] == g1.steps_ == math.ceil(2 * 128 / 32)
    assert any("n treated as public" in s for s in rep["scope"])
    S1 = g1.sample(counts)
    S2 = DPVAE(eps=2.0, delta=1e-5, random_state=7, standardize="dp", **TINY).fit(X, y, n_classes=2).sample(counts)
    np.testing.assert_array_equal(S1, S2)
    S3 = DPVAE(eps=2.0, delta=1e-5, random_state=8, standardize="dp", **TINY).fit(X, y, n_classes=2).sample(counts)
    assert not np.array_equal(S1, S3)
    assert S1.shape == X.shape and np.isfinite(S1).all()


def test_vae_auto_standardisation_uses_only_public_quantities(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    # sigma_mult * sqrt(200) / 128 > 0.1 at eps=1: DP means would be noise, so the public range is used
    g = DPVAE(eps=1.0, random_state=0, **TINY).fit(X, y, n_classes=2)
    assert g.standardize_ == "public" and g.accountant.gaussians == []
    assert any("public value_range" in s for s in g.scope)
    np.testing.assert_allclose(g.mean_, 8.0) and np.testing.assert_allclose(g.std_, 8.0)
    assert g.privacy_report()["eps_spent"] <= 1.0
    big = np.vstack([X] * 40)  # n = 5120: DP means are accurate enough
    gb = DPVAE(eps=1.0, random_state=0, **{**TINY, "epochs": 1, "batch_size": 512})
    assert gb._resolve_standardize(*big.shape) == "dp"
    assert DPVAE(eps=None)._resolve_standardize(10, 10**6) == "dp"


def test_vae_nonprivate_learns_expression_and_class_differences(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    g = DPVAE(eps=None, random_state=0, hidden_dim=32, latent_dim=8, epochs=60, batch_size=32, lr=3e-3, num_threads=1)
    g.fit(X, y, n_classes=2)
    assert g.privacy_report()["eps_spent"] == math.inf
    assert g.history_[-1] < g.history_[0]
    counts = np.bincount(y)
    S = g.sample(counts)
    lab = np.repeat([0, 1], counts)
    assert np.corrcoef(X.mean(0), S.mean(0))[0, 1] > 0.95  # measured 0.997
    d_real = X[y == 0].mean(0) - X[y == 1].mean(0)
    d_syn = S[lab == 0].mean(0) - S[lab == 1].mean(0)
    assert np.corrcoef(d_real, d_syn)[0, 1] > 0.7  # B vs T lineage differences are reproduced; measured 0.95
    ratio = np.median(S.std(0) / X.std(0))
    assert 0.5 < ratio < 2.0  # measured 0.92


def test_vae_per_sample_loss(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    g = DPVAE(eps=3.0, random_state=0, **TINY).fit(X, y, n_classes=2)
    a = g.per_sample_loss(X[:10], y[:10])
    b = g.per_sample_loss(X[:10], y[:10])
    assert a.shape == (10,) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # deterministic for a fixed random_state
    assert not np.array_equal(a, g.per_sample_loss(X[:10], y[:10], random_state=1))
    assert g.per_sample_loss(X[:1], y[:1]).shape == (1,)
    with pytest.raises(ValueError, match="features"):
        g.per_sample_loss(X[:3, :10], y[:3])
    with pytest.raises(ValueError, match="n_mc"):
        g.per_sample_loss(X[:3], y[:3], n_mc=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        DPVAE().per_sample_loss(X, y)


def test_per_sample_loss_is_lower_on_training_rows_of_an_overfitted_model(bioc_all_small):
    """The quantity a white-box membership attack uses: members fit better than held-out rows (non-private)."""
    X, y = _xy(bioc_all_small, "lineage")
    rng = np.random.default_rng(0)
    members = np.zeros(len(y), bool)
    members[rng.choice(len(y), 64, replace=False)] = True
    g = DPVAE(eps=None, random_state=0, hidden_dim=64, latent_dim=8, epochs=150, batch_size=32, lr=3e-3, num_threads=1)
    g.fit(X[members], y[members], n_classes=2)
    loss = g.per_sample_loss(X, y, n_mc=4)
    assert loss[members].mean() < loss[~members].mean()
    auc = (loss[~members][:, None] > loss[members][None, :]).mean()  # P(non-member loss > member loss)
    assert auc > 0.7


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_vae_count_likelihoods_sample_integer_counts(kang_small, likelihood):
    X = kang_small.X.toarray()
    y = kang_small.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    k = int(y.max()) + 1
    g = DPVAE(eps=3.0, likelihood=likelihood, random_state=0, **TINY)
    assert g.data == "counts" and DPVAE.data == "continuous"
    g.fit(X, y, n_classes=k)
    assert g.privacy_report()["eps_spent"] <= 3.0
    assert g.accountant.gaussians[0]["name"].startswith("per-class sums of log library")
    S = g.sample(np.bincount(y, minlength=k))
    assert S.dtype == np.int64 and S.shape == X.shape and S.min() >= 0
    assert np.isfinite(g.per_sample_loss(X[:5], y[:5])).all()
    # per-class DP log library sizes: noise sd sigma_mult * 7 / 60 ~ 0.5 at eps=3; tolerance 2 (> 4 sd)
    real_lib = np.log(X.sum(1) + 1).mean()
    assert abs(np.log(S.sum(1) + 1).mean() - real_lib) < 2.0
    with pytest.raises(ValueError, match="raw non-negative integer counts"):
        DPVAE(likelihood=likelihood, **TINY).fit(np.log1p(X), y, n_classes=k)


def test_vae_nb_nonprivate_library_sizes(kang_small):
    X = kang_small.X.toarray()
    y = kang_small.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    g = DPVAE(eps=None, likelihood="nb", random_state=0, **TINY).fit(X, y, n_classes=int(y.max()) + 1)
    lib = np.log(np.maximum(X.sum(1), 1))
    np.testing.assert_allclose(g.lib_mean_[0], lib[y == 0].mean())
    np.testing.assert_allclose(g.lib_std_[0], lib[y == 0].std())


def test_bad_parameters_name_the_fix():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        DPVAE(likelihood="poisson")
    with pytest.raises(ValueError, match="standardize must be"):
        DPGAN(standardize="zscore")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        DPVAE(epochs=1.5)
    with pytest.raises(ValueError, match="stats_share"):
        DPVAE(stats_share=1.0)
    with pytest.raises(ValueError, match="value_range"):
        DPGAN(value_range=(5, 1))
    with pytest.raises(ValueError, match="unit"):
        DPVAE(unit="donor")
    with pytest.raises(ValueError, match="class codes"):
        DPVAE(**TINY).fit(np.ones((4, 3)), np.array([0, 1, 2, 0]), n_classes=2)
    with pytest.raises(ValueError, match="class_counts"):
        DPGAN(eps=None, **TINY).fit(np.random.default_rng(0).normal(size=(8, 3)), np.zeros(8, int), n_classes=1).sample(
            [1, 2]
        )


def test_default_schedule_and_thread_setting_is_restored(bioc_all_small):
    g = DPVAE()
    assert g._schedule(128) == (0.25, 120)  # batch max(32, ceil(128 / 50)) = 32, 30 epochs
    q, steps = g._schedule(12261)
    assert g.batch_size_ == 246 and q == pytest.approx(246 / 12261) and steps == math.ceil(30 / q)
    before = torch.get_num_threads()
    X, y = _xy(bioc_all_small, "lineage")
    DPGAN(eps=None, **{**TINY, "epochs": 1, "num_threads": max(1, before % 2 + 1)}).fit(X, y, n_classes=2)
    assert torch.get_num_threads() == before


# -- DP-GAN ---------------------------------------------------------------------------------------------------------
def test_gan_private_fit_spends_at_most_eps_and_is_reproducible(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    counts = np.bincount(y)
    kw = dict(eps=1.5, delta=1e-5, random_state=3, **TINY)
    g = DPGAN(**kw).fit(X, y, n_classes=2)
    rep = g.privacy_report()
    assert 1.4 < rep["eps_spent"] <= 1.5
    S1 = g.sample(counts)
    np.testing.assert_array_equal(S1, DPGAN(**kw).fit(X, y, n_classes=2).sample(counts))
    assert S1.shape == X.shape and np.isfinite(S1).all()
    # Lipschitz constraint by weight clipping holds after training
    assert max(float(p.detach().abs().max()) for p in g.critic_.parameters()) <= g.clip_value + 1e-7
    assert np.isfinite(g.critic_scores(X[:4], y[:4])).all()
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in g.critic_.parameters())


def test_gan_nonprivate_learns_class_differences_and_spread(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    g = DPGAN(eps=None, random_state=0, epochs=60).fit(X, y, n_classes=2)
    assert g.privacy_report()["private"] is False
    counts = np.bincount(y)
    S = g.sample(counts)
    lab = np.repeat([0, 1], counts)
    d_real = X[y == 0].mean(0) - X[y == 1].mean(0)
    d_syn = S[lab == 0].mean(0) - S[lab == 1].mean(0)
    assert np.corrcoef(d_real, d_syn)[0, 1] > 0.7  # measured 0.92 with this seed
    assert 0.5 < np.median(S.std(0) / X.std(0)) < 1.5  # measured 0.83: no mode collapse
    assert np.corrcoef(X.mean(0), S.mean(0))[0, 1] > 0.8


# -- through tl.generate --------------------------------------------------------------------------------------------
def test_tl_generate_dp_vae_continuous_metadata_roundtrip(bioc_all_small, tmp_path):
    import anndata as ad

    before = bioc_all_small.copy()
    syn = sd.tl.generate(bioc_all_small, "dp_vae", eps=2.0, groupby="lineage", random_state=0, **TINY)
    assert syn.shape == bioc_all_small.shape
    priv = syn.uns["scdpsynth"]["privacy"]
    assert priv["eps_spent"] <= 2.0 and priv["accountant"].startswith("rdp") and priv["delta"] == 1e-5
    assert syn.uns["scdpsynth"]["params"]["noise_multiplier"] > 0
    np.testing.assert_array_equal(bioc_all_small.X, before.X)
    syn.write_h5ad(tmp_path / "s.h5ad")
    assert ad.read_h5ad(tmp_path / "s.h5ad").uns["scdpsynth"]["privacy"]["eps_spent"] == priv["eps_spent"]


def test_tl_generate_dp_vae_nb_keeps_counts_and_dp_gan_runs(kang_small):
    syn = sd.tl.generate(kang_small, "dp_vae", eps=2.0, groupby="cell_type", likelihood="zinb", random_state=0, **TINY)
    assert syn.uns["scdpsynth"]["params"]["transform"] == "none"  # raw counts in, counts out
    vals = syn.X.data if hasattr(syn.X, "data") else np.asarray(syn.X)
    assert np.all(vals == np.round(vals)) and vals.min() >= 0
    assert syn.uns["scdpsynth"]["privacy"]["eps_spent"] <= 2.0
    gan = sd.tl.generate(kang_small, "dp_gan", eps=2.0, groupby="cell_type", random_state=0, **TINY)
    assert gan.uns["scdpsynth"]["params"]["transform"] == "log1p"
    assert gan.uns["scdpsynth"]["privacy"]["eps_spent"] <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dp_vae", "dp_gan"])
def test_full_bulk_all_with_defaults(bioc_all, method):
    syn = sd.tl.generate(bioc_all, method, eps=3.0, groupby="lineage", random_state=0, num_threads=1)
    assert syn.shape == bioc_all.shape
    priv = syn.uns["scdpsynth"]["privacy"]
    assert priv["eps_spent"] <= 3.0 and priv["delta"] == 1e-5
    X = np.asarray(syn.X)
    assert np.isfinite(X).all() and X.min() >= 0.0 and X.max() <= 16.0  # clipped into the public value_range
