"""DP-VAE and DP-WGAN: every release's noise and sensitivity, DP-SGD accounting on the ledger, DP sizes, randomness,
devices, count decoders, tl.generate end to end.
"""

from __future__ import annotations

import math
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import scdpsynth as sd
from scdpsynth._utils import KnownSeedWarning, NotLearnedWarning
from scdpsynth.generators import _dpsgd
from scdpsynth.generators._dp_stats import (
    clipped_class_sums,
    clipped_feature_sums,
    dp_class_stats,
    dp_feature_stats,
)
from scdpsynth.generators._dpsgd import (
    calibrate_noise_multiplier,
    dp_backward,
    dpsgd_event,
    make_dp_optimizer,
    poisson_batch,
)
from scdpsynth.generators._torch import select_device
from scdpsynth.generators.dp_gan import DPGAN
from scdpsynth.generators.dp_vae import DPVAE
from scdpsynth.privacy import Budget, Ledger

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

TINY = dict(hidden_dim=16, latent_dim=4, epochs=2, batch_size=32, num_threads=1)


def _xy(adata, key):
    return np.asarray(adata.X, dtype=float), adata.obs[key].cat.codes.to_numpy().astype(np.int64)


def _seeded(cls, seed, **kw):
    """A private generator with a fixed seed (tests only), without the KnownSeedWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KnownSeedWarning)
        return cls(random_state=seed, **kw)


class CapturingLedger(Ledger):
    """A ledger that also keeps each noisy output, so a test can look at the noise actually drawn."""

    def __init__(self, **kw):
        super().__init__(keep_values=True, **kw)
        self.outputs = []

    def gaussian(self, values, **kw):
        out = super().gaussian(values, **kw)
        self.outputs.append(out)
        return out


def _releases(ledger) -> dict:
    """name -> (entry, exact pre-noise value) of the Gaussian releases of a ``keep_values`` ledger."""
    return {e["name"]: (e, v) for e, v in zip(ledger.entries, ledger.values, strict=True) if e["mechanism"] != "dpsgd"}


# -- module layout, lazy imports, devices ----------------------------------------------------------------------------
def test_import_scdpsynth_does_not_import_torch():
    code = (
        "import sys, scdpsynth, scdpsynth.generators as g; "
        "import scdpsynth.generators.dp_vae, scdpsynth.generators.dp_gan, scdpsynth.generators._deep_base; "
        "assert 'dp_vae' in g.registry and 'dp_gan' in g.registry; "
        "assert 'torch' not in sys.modules and 'opacus' not in sys.modules, 'torch imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_old_accountant_module_is_gone():
    with pytest.raises(ImportError):
        import scdpsynth.generators._torch_utils  # noqa: F401


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


# -- DP-SGD accounting on the ledger ---------------------------------------------------------------------------------
def test_dpsgd_accounting_is_tight_pld():
    """q=0.02, z=3.2656, 1500 steps, delta=1e-5: PLD gives eps <= 0.92; the former RDP accountant said 0.9985."""
    from opacus.accountants import RDPAccountant

    ledger = Ledger()
    ledger.add_dpsgd(name="dp-sgd", noise_multiplier=3.2656, sample_rate=0.02, steps=1000)
    ledger.add_dpsgd(name="dp-sgd", noise_multiplier=3.2656, sample_rate=0.02, steps=500)  # runs merge
    assert len(ledger) == 1 and ledger.entries[0]["count"] == 1500
    eps = ledger.get_epsilon(1e-5)
    assert 0.85 < eps <= 0.92  # measured 0.911
    rdp = RDPAccountant()
    rdp.history = [(3.2656, 0.02, 1500)]
    assert rdp.get_epsilon(1e-5) > 0.99  # what the RDP bound charged for the same steps
    # one code path: the calibration's "what if" query gives what the ledger reports once the steps are recorded
    extra = dpsgd_event(noise_multiplier=3.2656, sample_rate=0.02, steps=1500)
    assert Ledger().get_epsilon(1e-5, extra=extra) == pytest.approx(eps, rel=1e-6)


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
@pytest.mark.parametrize(("eps", "q", "steps"), [(1.0, 0.25, 120), (3.0, 0.02, 1500)])
def test_calibration_meets_the_budget_on_the_reporting_ledger(eps, q, steps):
    from opacus.accountants.utils import get_noise_multiplier

    z = calibrate_noise_multiplier(Ledger(), eps=eps, delta=1e-5, sample_rate=q, steps=steps)
    ledger = Ledger()
    ledger.add_dpsgd(name="dp-sgd", noise_multiplier=z, sample_rate=q, steps=steps)
    assert 0.97 * eps < ledger.get_epsilon(1e-5) <= eps  # within budget, and does not waste it
    rdp_z = get_noise_multiplier(target_epsilon=eps, target_delta=1e-5, sample_rate=q, steps=steps, accountant="rdp")
    assert z < rdp_z  # the tight bound needs less noise than RDP for the same guarantee


def test_calibration_with_prior_releases_stays_within_budget():
    budget = Budget(2.0, 1e-5)
    ledger = Ledger()
    rng = np.random.default_rng(0)
    ledger.gaussian(np.zeros(3), sensitivity=1.0, sigma=1.0 / math.sqrt(2 * 0.1 * budget.rho), rng=rng, name="stats")
    z0 = calibrate_noise_multiplier(Ledger(), eps=2.0, delta=1e-5, sample_rate=0.1, steps=300)
    z = calibrate_noise_multiplier(ledger, eps=2.0, delta=1e-5, sample_rate=0.1, steps=300)
    assert z > z0  # less budget left for DP-SGD, more noise
    ledger.add_dpsgd(name="dp-sgd", noise_multiplier=z, sample_rate=0.1, steps=300)
    assert 1.95 < ledger.get_epsilon(1e-5) <= 2.0
    with pytest.raises(ValueError, match="too small"):
        calibrate_noise_multiplier(Ledger(), eps=1e-4, delta=1e-5, sample_rate=1.0, steps=10**6)
    spent = Ledger()
    spent.add_gaussian(name="everything", sensitivity=1.0, sigma=0.1)
    with pytest.raises(ValueError, match="already spend the whole budget"):
        calibrate_noise_multiplier(spent, eps=1.0, delta=1e-5, sample_rate=0.1, steps=10)


def test_training_loop_records_exactly_what_opacus_and_the_sampler_use(bioc_all_small, monkeypatch):
    """The ledger's DP-SGD entry holds the z the opacus optimiser noised with (clipping norm = the stated
    sensitivity) and the q every Poisson batch was drawn with, one step per noisy update."""
    from scdpsynth.generators import dp_gan, dp_vae

    X, y = _xy(bioc_all_small, "lineage")
    for module, cls in ((dp_vae, DPVAE), (dp_gan, DPGAN)):
        optimisers, rates = [], []

        def spy_opt(*args, _real=_dpsgd.make_dp_optimizer, _store=optimisers, **kw):
            gsm, opt = _real(*args, **kw)
            _store.append(opt)
            return gsm, opt

        def spy_batch(n, rate, gen, _store=rates):
            _store.append(rate)
            return poisson_batch(n, rate, gen)

        monkeypatch.setattr(module, "make_dp_optimizer", spy_opt)
        monkeypatch.setattr(module, "poisson_batch", spy_batch)
        g = cls(eps=1.5, **TINY).fit(X, y, n_classes=2)
        (entry,) = [e for e in g.ledger.entries if e["mechanism"] == "dpsgd"]
        (opt,) = optimisers
        assert entry["noise"] == opt.noise_multiplier == g.noise_multiplier_ > 0
        assert opt.max_grad_norm == g.max_grad_norm
        assert set(rates) == {entry["sample_rate"]} and entry["count"] == len(rates) == g.steps_


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


@pytest.mark.parametrize("secure_mode", [False, True])
def test_dp_step_noise_has_the_calibrated_scale(secure_mode):
    """The noise opacus adds to the clipped gradient sum has sd z * C (also in secure mode: (N1+..+N4)/2)."""
    model = torch.nn.Linear(50, 40)
    gen = torch.Generator().manual_seed(3)
    gsm, dp_opt = make_dp_optimizer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        noise_multiplier=2.0,
        max_grad_norm=0.7,
        expected_batch_size=10,
        generator=gen,
        secure_mode=secure_mode,
    )
    assert dp_opt.secure_mode is secure_mode
    x = torch.zeros(0, 50)  # empty Poisson batch: the step is noise only
    dp_backward(gsm, dp_opt, gsm(x).sum(1))
    assert dp_opt.pre_step()
    noise = torch.cat([p.grad.flatten() for p in model.parameters()]).numpy() * 10
    # 2,040 N(0, 1.4^2) draws: sample sd within 5% (sd of the sd estimate ~1.6%)
    assert np.std(noise) == pytest.approx(1.4, rel=0.05) and abs(np.mean(noise)) < 0.15


# -- statistics released before DP-SGD: sensitivities against neighbouring data --------------------------------------
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


@settings(max_examples=50, deadline=None)
@given(
    v=arrays(np.float64, st.integers(1, 10), elements=st.floats(-5, 30)),
    labels=st.lists(st.integers(0, 2), min_size=10, max_size=10),
    extra=st.floats(-1e3, 1e3),
    label=st.integers(0, 2),
)
def test_class_sums_sensitivity_add_one_row(v, labels, extra, label):
    y = np.array(labels[: len(v)], dtype=np.int64)
    a1, a2, (s1, s2) = clipped_class_sums(v, y, 3, (0.0, 14.0))
    b1, b2, _ = clipped_class_sums(np.append(v, extra), np.append(y, label), 3, (0.0, 14.0))
    assert np.linalg.norm(a1 - b1) <= s1 + 1e-9
    assert np.linalg.norm(a2 - b2) <= s2 + 1e-9


def _neighbour_fits(cls, X, y, row, label, **kw):
    """Fit on X and on X plus one row (same secret-free seed), each with a keep_values ledger."""
    out = []
    for XX, yy in ((X, y), (np.vstack([X, row[None]]), np.append(y, label))):
        g = _seeded(cls, 5, **kw)
        g.ledger = Ledger(keep_values=True)
        g.fit(XX, yy, n_classes=int(y.max()) + 1)
        out.append(_releases(g.ledger))
    return out


@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_stated_sensitivities_hold_on_neighbouring_data_continuous(bioc_all_small, cls):
    X, y = _xy(bioc_all_small, "lineage")
    row = np.where(np.arange(X.shape[1]) % 2 == 0, 40.0, -40.0)  # beyond the clipping range: the worst case
    a, b = _neighbour_fits(cls, X, y, row, 1, eps=2.0, standardize="dp", **{**TINY, "epochs": 1})
    assert set(a) == {
        "class_counts",
        "feature sums (standardisation mean)",
        "feature sums of squares (standardisation std)",
    }
    np.testing.assert_array_equal(a["class_counts"][1], np.bincount(y))  # the exact statistic is what got noised
    for name, (entry, value) in a.items():
        change = np.linalg.norm(b[name][1] - value)
        assert 0 < change <= entry["sensitivity"] + 1e-9, name
        assert change >= 0.99 * entry["sensitivity"], name  # the extreme row attains the bound: it is not loose


def test_stated_sensitivities_hold_on_neighbouring_data_counts(kang_small):
    X = kang_small.X.toarray()
    y = kang_small.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    row = np.zeros(X.shape[1])
    row[0] = 10**7  # log library size far above library_range: clipped
    a, b = _neighbour_fits(DPVAE, X, y, row, 2, eps=2.0, likelihood="nb", **{**TINY, "epochs": 1})
    assert set(a) == {
        "class_counts",
        "per-class sums of log library size",
        "per-class sums of squares of log library size",
    }
    for name, (entry, value) in a.items():
        change = np.linalg.norm(b[name][1] - value)
        assert 0 < change <= entry["sensitivity"] + 1e-9, name


# -- statistics released before DP-SGD: noise levels -----------------------------------------------------------------
def test_each_release_has_its_stated_noise_level(bioc_all_small):
    """Every Gaussian release of a fit: recorded sigma = sensitivity / sqrt(2 rho_share), and the noise actually
    drawn (output minus exact value, over 150 secret-free seeds) has that spread."""
    X, y = _xy(bioc_all_small, "lineage")
    rho = Budget(1.0, 1e-5).rho
    shares = {
        "class_counts": 0.02 * rho,
        "feature sums (standardisation mean)": 0.05 * rho,
        "feature sums of squares (standardisation std)": 0.05 * rho,
    }
    noise = {k: [] for k in shares}
    for seed in range(150):
        g = DPVAE(eps=1.0, random_state=np.random.default_rng(seed), standardize="dp", **TINY)
        g.ledger = CapturingLedger()
        n_hat = g._start_fit(y, 2)  # the releases of a fit, up to DP-SGD
        g._fit_scaler(X, y, n_hat)
        assert [e["name"] for e in g.ledger.entries] == list(shares)
        for e, exact, out in zip(g.ledger.entries, g.ledger.values, g.ledger.outputs, strict=True):
            assert e["noise"] == pytest.approx(e["sensitivity"] / math.sqrt(2 * shares[e["name"]]), rel=1e-12)
            noise[e["name"]].append((out - exact) / e["noise"])
        np.testing.assert_allclose(g.class_counts_, g.ledger.outputs[0])
        assert n_hat == max(g.class_counts_.sum(), 1.0)
        np.testing.assert_allclose(g.mean_, np.clip(g.ledger.outputs[1] / n_hat, -8, 8) + 8)  # DP denominator
    for name, z in noise.items():
        z = np.concatenate(z)  # standardised noise: N(0, 1) if the stated sigma was drawn
        tol = 5 / math.sqrt(2.0 * len(z)) + 0.01  # 5 sd of the sd estimate
        assert abs(np.std(z) - 1.0) < tol and abs(np.mean(z)) < 5 / math.sqrt(len(z)), name
    # the class count sensitivity: add/remove one row changes one count by one
    assert g.ledger.entries[0]["sensitivity"] == 1.0
    assert g.ledger.entries[1]["sensitivity"] == pytest.approx(8 * math.sqrt(200))


def test_class_stats_noise_level_and_dp_denominators():
    rng = np.random.default_rng(0)
    v = rng.normal(7.0, 1.0, 4000)
    y = rng.integers(0, 4, 4000)
    counts = np.bincount(y, minlength=4) + np.array([3.0, -2.0, 0.0, 5.0])  # "released" counts
    draws, sigmas = [], None
    for seed in range(300):
        ledger = CapturingLedger()
        m, _ = dp_class_stats(
            v,
            y,
            4,
            value_range=(0, 14),
            rho=0.5,
            counts=counts,
            rng=np.random.default_rng(seed),
            ledger=ledger,
            name="v",
        )
        sigmas = [e["noise"] for e in ledger.entries]
        draws.append(ledger.outputs[0] - ledger.values[0])
    assert sigmas == pytest.approx([7.0 / math.sqrt(0.5), 24.5 / math.sqrt(0.5)])  # D / sqrt(2 * rho / 2)
    assert np.std(np.concatenate(draws)) == pytest.approx(sigmas[0], rel=0.07)  # 1,200 draws: sd of sd ~2%
    # the means divide the noisy sums by the released counts, not the exact ones
    s1 = ledger.outputs[0]
    np.testing.assert_allclose(m, np.clip(s1 / counts, -7, 7) + 7)
    exact_m, exact_s = dp_class_stats(
        v, y, 4, value_range=(0, 14), rho=None, counts=None, rng=None, ledger=None, name="v"
    )
    np.testing.assert_allclose(exact_m, [v[y == k].mean() for k in range(4)])
    np.testing.assert_allclose(exact_s, [v[y == k].std() for k in range(4)])


def test_dp_feature_stats_accuracy_and_exact_mode():
    rng = np.random.default_rng(0)
    X = rng.normal(6.0, 1.0, size=(20000, 30))
    ledger = Ledger()
    mean, std = dp_feature_stats(X, value_range=(0.0, 16.0), rho=0.25, n=20000.0, rng=rng, ledger=ledger)
    # mean error sd = 8 sqrt(30) / sqrt(0.25) / 20000 = 0.0044 (plus data noise 0.007); 5 sd tolerance
    np.testing.assert_allclose(mean, 6.0, atol=0.045)
    np.testing.assert_allclose(std, 1.0, atol=0.1)
    assert [e["sensitivity"] for e in ledger.entries] == pytest.approx([8 * math.sqrt(30), 32 * math.sqrt(30)])
    exact_mean, exact_std = dp_feature_stats(X, value_range=(0, 16), rho=None, n=0, rng=rng, ledger=None)
    np.testing.assert_allclose(exact_mean, X.mean(0))
    np.testing.assert_allclose(exact_std, X.std(0))


# -- DP sizes: nothing about n leaves unpaid ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [DPVAE, DPGAN])
def test_sample_rate_batch_and_scope_come_from_the_dp_counts(bioc_all_small, cls):
    X, y = _xy(bioc_all_small, "lineage")
    g = cls(eps=1.0, **{**TINY, "batch_size": None, "epochs": 1}).fit(X, y, n_classes=2)
    n_hat = max(g.class_counts_.sum(), 1.0)
    assert g.ledger.entries[0]["name"] == "class_counts"
    assert g.n_hat_ == n_hat != len(y)  # a DP estimate, not the exact count
    assert g.batch_size_ == max(cls.batch_floor, math.ceil(n_hat / cls.batch_divisor))
    assert g.sample_rate_ == min(1.0, g.batch_size_ / n_hat) and g.steps_ == math.ceil(1 / g.sample_rate_)
    scope = " ".join(g.privacy_report()["scope"])
    assert "treated as public" not in scope and "frequencies" not in scope and "exact" not in scope
    if cls is DPGAN:  # generated labels in proportion to the DP counts
        np.testing.assert_allclose(g.class_freq_, np.maximum(g.class_counts_, 0) / np.maximum(g.class_counts_, 0).sum())
    else:
        assert not hasattr(g, "class_freq_")


def test_default_schedule_and_thread_setting_is_restored(bioc_all_small):
    assert DPGAN(eps=1.0).epochs == 30  # private: fewer steps, less noise to drift on
    g = DPGAN()
    assert g._schedule(128) == (0.25, 1200)  # batch max(32, ceil(128 / 50)) = 32, 300 epochs (non-private)
    q, steps = g._schedule(12261.4)
    assert g.batch_size_ == 246 and q == pytest.approx(246 / 12261.4) and steps == math.ceil(300 / q)
    assert g._schedule(-40.0) == (1.0, 300)  # a negative DP total: n_hat = 1
    v = DPVAE()  # small data: full batches (batch max(128, ceil(n_hat / 20))), 200 epochs (Gaussian)
    assert v._schedule(102) == (1.0, 200)
    q, steps = v._schedule(5000.0)
    assert v.batch_size_ == 250 and q == pytest.approx(0.05) and steps == 4000
    assert DPVAE(likelihood="nb").epochs == 100 and DPVAE(epochs=7).epochs == 7  # counts: many cells, 100 epochs
    before = torch.get_num_threads()
    X, y = _xy(bioc_all_small, "lineage")
    DPGAN(eps=None, **{**TINY, "epochs": 1, "num_threads": max(1, before % 2 + 1)}).fit(X, y, n_classes=2)
    assert torch.get_num_threads() == before


def test_auto_standardisation_uses_only_dp_quantities(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    # sigma_mult * sqrt(200) / n_hat > 0.1 at eps=1 and n ~ 128: DP means would be noise, so the public range is used
    g = DPVAE(eps=1.0, **TINY).fit(X, y, n_classes=2)
    assert g.standardize_ == "public"
    assert [e["name"] for e in g.ledger.entries] == ["class_counts", "dp-sgd (DPVAE)"]
    assert any("public value_range" in s for s in g.scope)
    np.testing.assert_allclose(g.mean_, 8.0) and np.testing.assert_allclose(g.std_, 8.0)
    assert g.privacy_report()["eps_spent"] <= 1.0
    gb = DPVAE(eps=1.0, **{**TINY, "epochs": 1, "batch_size": 512})
    assert gb._resolve_standardize(5120.0, 200) == "dp"  # large (DP) n: DP means are accurate enough
    assert DPVAE(eps=None)._resolve_standardize(10, 10**6) == "dp"


# -- randomness -------------------------------------------------------------------------------------------------------
def test_default_private_fits_use_fresh_entropy(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    counts = np.bincount(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KnownSeedWarning)
        a = DPVAE(eps=2.0, **{**TINY, "epochs": 1}).fit(X, y, n_classes=2)
        b = DPVAE(eps=2.0, **{**TINY, "epochs": 1}).fit(X, y, n_classes=2)
    assert not np.array_equal(a.class_counts_, b.class_counts_)
    assert not np.array_equal(a.sample(counts), b.sample(counts))
    # non-private default: deterministic (seed 0)
    c = DPGAN(eps=None, **{**TINY, "epochs": 1}).fit(X, y, n_classes=2).sample(counts)
    np.testing.assert_array_equal(c, DPGAN(eps=None, **{**TINY, "epochs": 1}).fit(X, y, n_classes=2).sample(counts))


def test_int_seed_with_eps_warns_and_reproduces(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    counts = np.bincount(y)
    with pytest.warns(KnownSeedWarning):
        g = DPVAE(eps=2.0, random_state=7, standardize="dp", **TINY)
    s1 = g.fit(X, y, n_classes=2).sample(counts)
    s2 = _seeded(DPVAE, 7, eps=2.0, standardize="dp", **TINY).fit(X, y, n_classes=2).sample(counts)
    np.testing.assert_array_equal(s1, s2)
    s3 = _seeded(DPVAE, 8, eps=2.0, standardize="dp", **TINY).fit(X, y, n_classes=2).sample(counts)
    assert not np.array_equal(s1, s3)
    with pytest.warns(KnownSeedWarning):
        DPGAN(eps=1.0, random_state=0)


def test_secure_rng_without_torchcsprng_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcsprng", None)  # import fails as if not installed
    for cls in (DPVAE, DPGAN):
        with pytest.raises(ImportError, match=r"torchcsprng.*secure_rng=False"):
            cls(eps=1.0, secure_rng=True)
    with pytest.raises(TypeError, match="secure_rng"):
        DPVAE(secure_rng="yes")


def test_secure_rng_wires_opacus_secure_mode(bioc_all_small, monkeypatch):
    """With secure_rng=True, the DP-SGD noise and the Poisson batches come from torchcsprng's generator and opacus
    runs in secure mode (a stand-in torchcsprng module here, since the package is optional)."""
    import os

    from scdpsynth.generators import dp_vae

    made = []

    def create_random_device_generator(path):
        assert path == "/dev/urandom"
        made.append(torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1))
        return made[-1]

    monkeypatch.setitem(
        sys.modules, "torchcsprng", types.SimpleNamespace(create_random_device_generator=create_random_device_generator)
    )
    seen = {}

    def spy_opt(*args, **kw):
        seen.update(kw)
        return _dpsgd.make_dp_optimizer(*args, **kw)

    def spy_batch(n, rate, gen):
        seen.setdefault("batch_generators", set()).add(id(gen))
        return poisson_batch(n, rate, gen)

    monkeypatch.setattr(dp_vae, "make_dp_optimizer", spy_opt)
    monkeypatch.setattr(dp_vae, "poisson_batch", spy_batch)
    X, y = _xy(bioc_all_small, "lineage")
    g = DPVAE(eps=2.0, secure_rng=True, **{**TINY, "epochs": 1}).fit(X, y, n_classes=2)
    assert seen["secure_mode"] is True and seen["generator"] is made[-1]
    assert seen["batch_generators"] == {id(made[-1])}
    assert g.params()["secure_rng"] is True and 0.95 * 2.0 <= g.privacy_report()["eps_spent"] <= 2.0


# -- DP-VAE ---------------------------------------------------------------------------------------------------------
def test_vae_private_fit_spends_its_budget_tightly(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    g = DPVAE(eps=2.0, standardize="dp", **TINY).fit(X, y, n_classes=2)
    rep = g.privacy_report()
    assert rep["private"] and 0.95 * 2.0 <= rep["eps_spent"] <= 2.0
    assert rep["accountant"] == "pld (dp-accounting)"
    assert rep["ledger"]["release"] == [
        "class_counts",
        "feature sums (standardisation mean)",
        "feature sums of squares (standardisation std)",
        "dp-sgd (DPVAE)",
    ]
    assert rep["ledger"]["count"][-1] == g.steps_ == math.ceil(2 / g.sample_rate_)
    S = g.sample(np.bincount(y))
    assert S.shape == X.shape and np.isfinite(S).all() and S.min() >= 0 and S.max() <= 16


def test_vae_nonprivate_learns_expression_and_class_differences(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    g = DPVAE(eps=None, random_state=0, hidden_dim=32, latent_dim=8, epochs=60, batch_size=32, lr=3e-3, num_threads=1)
    g.fit(X, y, n_classes=2)
    assert g.privacy_report()["eps_spent"] == math.inf and len(g.ledger) == 0
    np.testing.assert_array_equal(g.class_counts_, np.bincount(y))  # exact when non-private
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
    g = DPVAE(eps=3.0, **TINY).fit(X, y, n_classes=2)
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
    g = DPVAE(eps=3.0, likelihood=likelihood, **TINY)
    assert g.data == "counts" and DPVAE.data == "continuous"
    g.fit(X, y, n_classes=k)
    assert 0.95 * 3.0 <= g.privacy_report()["eps_spent"] <= 3.0
    assert [e["name"] for e in g.ledger.entries][:3] == [
        "class_counts",
        "per-class sums of log library size",
        "per-class sums of squares of log library size",
    ]
    S = g.sample(np.bincount(y, minlength=k))
    assert S.dtype == np.int64 and S.shape == X.shape and S.min() >= 0
    assert np.isfinite(g.per_sample_loss(X[:5], y[:5])).all()
    # per-class DP log library sizes: noise sd 7 / sqrt(0.05 rho) / 60 ~ 0.2 at eps=3; tolerance 2 (> 4 sd)
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
    with pytest.raises(ValueError, match="counts_share"):
        DPGAN(counts_share=0.0)
    with pytest.raises(ValueError, match="stats_share \\+ counts_share"):
        DPVAE(stats_share=0.6, counts_share=0.5)
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


# -- DP-GAN ---------------------------------------------------------------------------------------------------------
def test_gan_private_fit_spends_its_budget_tightly(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    counts = np.bincount(y)
    g = DPGAN(eps=1.5, **TINY).fit(X, y, n_classes=2)
    rep = g.privacy_report()
    assert 0.95 * 1.5 <= rep["eps_spent"] <= 1.5
    S1 = g.sample(counts)
    assert S1.shape == X.shape and np.isfinite(S1).all()
    # Lipschitz constraint by weight clipping holds after training
    assert max(float(p.detach().abs().max()) for p in g.critic_.parameters()) <= g.clip_value + 1e-7
    assert np.isfinite(g.critic_scores(X[:4], y[:4])).all()
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in g.critic_.parameters())
    kw = dict(eps=1.5, **TINY)
    np.testing.assert_array_equal(
        _seeded(DPGAN, 3, **kw).fit(X, y, n_classes=2).sample(counts),
        _seeded(DPGAN, 3, **kw).fit(X, y, n_classes=2).sample(counts),
    )


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
#: what the privacy scope of a default deep fit through tl.generate may say: public choices only, nothing data-derived
ALLOWED_SCOPE = (
    "not written out: the training diagnostics",
    "standardisation from the public value_range",
    "var_names (gene identifiers), the label set and the hyper-parameters are treated as public",
)


@pytest.mark.parametrize(
    ("kwargs", "transform"), [({"likelihood": "nb"}, "counts model"), ({}, "log1p")], ids=["nb", "log1p"]
)
def test_tl_generate_dp_vae_on_kang_example_end_to_end(kang_example, tmp_path, kwargs, transform):
    import anndata as ad

    before = kang_example.X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", KnownSeedWarning)
        syn = sd.tl.generate(kang_example, "dp_vae", eps=2.0, groupby="cell_type", **kwargs, **{**TINY, "epochs": 1})
    meta = syn.uns["scdpsynth"]
    priv = meta["privacy"]
    assert meta["params"]["transform"] == transform
    assert syn.X.dtype == np.int32 and (syn.X.data >= 0).all()  # counts stay counts
    assert 0.95 * 2.0 <= priv["eps_spent"] <= 2.0 and priv["delta"] == 1e-5
    assert priv["accountant"] == "pld (dp-accounting)" and meta["params"]["noise_multiplier"] > 0
    assert "seed" not in meta and not any("seed" in str(k) for k in priv)
    for s in priv["scope"]:
        assert s.startswith(ALLOWED_SCOPE), s
    assert priv["ledger"]["release"][0] == "class_counts"
    assert (kang_example.X != before).nnz == 0
    syn.write_h5ad(tmp_path / "s.h5ad")
    assert ad.read_h5ad(tmp_path / "s.h5ad").uns["scdpsynth"]["privacy"]["eps_spent"] == priv["eps_spent"]


def test_tl_generate_dp_vae_zinb_and_dp_gan_run(kang_small):
    syn = sd.tl.generate(kang_small, "dp_vae", eps=2.0, groupby="cell_type", likelihood="zinb", **TINY)
    vals = syn.X.data if hasattr(syn.X, "data") else np.asarray(syn.X)
    assert np.all(vals == np.round(vals)) and vals.min() >= 0
    assert syn.uns["scdpsynth"]["privacy"]["eps_spent"] <= 2.0
    gan = sd.tl.generate(kang_small, "dp_gan", eps=2.0, groupby="cell_type", **TINY)
    assert gan.uns["scdpsynth"]["params"]["transform"] == "log1p"
    assert 0.95 * 2.0 <= gan.uns["scdpsynth"]["privacy"]["eps_spent"] <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dp_vae", "dp_gan"])
def test_full_bulk_all_with_defaults(bioc_all, method):
    syn = sd.tl.generate(bioc_all, method, eps=3.0, groupby="lineage", num_threads=1)
    priv = syn.uns["scdpsynth"]["privacy"]
    assert 0.95 * 3.0 <= priv["eps_spent"] <= 3.0 and priv["delta"] == 1e-5
    X = np.asarray(syn.X)
    assert np.isfinite(X).all() and X.min() >= 0.0 and X.max() <= 16.0  # clipped into the public value_range


# -- defaults that learn on a few hundred rows, and the warning when a fit did not ------------------------------------
def test_vae_defaults_learn_on_small_bulk_data_without_warning(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotLearnedWarning)
        g = DPVAE(eps=None, random_state=0).fit(X, y, n_classes=2)  # defaults: full batches, 200 steps
    assert g.fit_diagnostics_["reconstruction_vs_class_means"] < 1.0  # measured 0.7-0.8
    assert g.fit_diagnostics_["class_spread_vs_real"] > 0.5
    counts = np.bincount(y)
    S, lab = g.sample(counts), np.repeat([0, 1], counts)
    d_real = X[y == 0].mean(0) - X[y == 1].mean(0)
    assert np.corrcoef(d_real, S[lab == 0].mean(0) - S[lab == 1].mean(0))[0, 1] > 0.9
    assert 0.5 < np.median(S.std(0) / X.std(0)) < 2.0


def test_vae_model_size_follows_public_choices_only():
    # small under DP (noise grows with the parameters) and for counts; wider for a non-private Gaussian fit
    assert (DPVAE(eps=None).latent_dim, DPVAE(eps=None).hidden_dim) == (16, 32)
    assert (DPVAE(eps=1.0).latent_dim, DPVAE(eps=1.0).hidden_dim) == (2, 8)
    assert (DPVAE(eps=None, likelihood="nb").latent_dim, DPVAE(eps=None, likelihood="nb").hidden_dim) == (2, 8)
    assert DPVAE(eps=None, latent_dim=4, hidden_dim=12).params()["latent_dim"] == 4


def test_vae_warns_when_a_fit_did_not_learn(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    with pytest.warns(NotLearnedWarning, match="did not learn"):
        g = DPVAE(eps=None, random_state=0, epochs=1, lr=1e-5).fit(X, y, n_classes=2)
    assert g.fit_diagnostics_["reconstruction_vs_class_means"] >= 1.0
    assert "fit_diagnostics_" not in str(g.privacy_report())  # a diagnostic on the object, never in the output


def test_gan_defaults_separate_the_classes_without_warning(bioc_all_small):
    # with the label only concatenated to the critic's input (before the projection critic and the class offset),
    # non-private dp_gan classified real ALL at balanced accuracy 0.33 (chance 0.5; benchmarks/bench_bulk.py)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    X, y = _xy(bioc_all_small, "lineage")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotLearnedWarning)
        g = DPGAN(eps=None, random_state=0).fit(X, y, n_classes=2)  # defaults: 300 epochs
    diag = g.fit_diagnostics_
    assert diag["class_spread_vs_real"] > 0.5 and diag["class_agreement"] > 0.9 and diag["saturated"] < 0.05
    counts = np.bincount(y)
    S, lab = g.sample(counts), np.repeat([0, 1], counts)
    clf = LogisticRegression(max_iter=2000).fit(S, lab)
    assert balanced_accuracy_score(y, clf.predict(X)) > 0.9  # measured 1.0
    assert 0.5 < np.median(S.std(0) / X.std(0)) < 2.0


def test_gan_warns_when_a_fit_did_not_learn(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    with pytest.warns(NotLearnedWarning, match="dp_gan did not learn"):  # one step at a tiny lr: nothing learnt
        g = DPGAN(eps=None, random_state=0, epochs=1, lr=1e-7).fit(X, y, n_classes=2)
    assert abs(g.fit_diagnostics_["class_agreement"]) < 0.2  # random classes of an untrained generator
    assert "fit_diagnostics_" not in str(g.privacy_report())


def test_vae_initial_scale_uses_only_the_standardisation(bioc_all_small):
    X, y = _xy(bioc_all_small, "lineage")
    g = _seeded(DPVAE, 0, eps=1.0, standardize="public", **{**TINY, "epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotLearnedWarning)
        g.fit(X, y, n_classes=2)
    np.testing.assert_allclose(g._init_feature_param(X.shape[1]), np.log(1.0 / 8.0), rtol=1e-6)  # public half-range 8
