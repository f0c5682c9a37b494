"""Conditional Wasserstein GAN with a DP-SGD critic (DP generator by post-processing).

Model
-----
Generator ``G(z, y)``: an MLP on ``[z, onehot(y)]`` plus a learned per-class output offset (a direct path for the class
means), softly bounded at ``+-4`` standard deviations (``4 tanh(. / 4)``). Critic ``D(x, y)``: a projection critic
(Miyato & Koyama 2018), ``w' h(x) + e_y' h(x)`` with ``h`` one hidden layer. With the one-hot label only
concatenated to the inputs (Mirza & Osindero 2014; this module's earlier design) the classes did not separate on bulk
ALL even without privacy (balanced accuracy 0.33, chance 0.5); with the projection critic and the offset they do
(1.00; flu 0.63 -> 0.89-0.96, 300 epochs). Training uses the Wasserstein loss with weight clipping (Arjovsky et al.
2017): the critic minimises ``mean D(G(z), y_fake) - mean D(x, y)`` for ``n_critic`` steps per generator step, the
generator minimises ``-mean D(G(z), y_fake)``. Fake labels are drawn in proportion to the DP class counts
(:attr:`class_counts_`). Features are standardised like in :class:`~scdpsynth.generators.dp_vae.DPVAE` and the
scaling is reverted after sampling. A fit that did not learn (collapsed or random classes, collapsed outputs, or
outputs stuck at the bound) raises a :class:`~scdpsynth._utils.NotLearnedWarning`; under DP on a few hundred rows it
usually does not learn (DP-SGD noise on a critic with ``d x hidden_dim`` weights), and
:class:`~scdpsynth.generators.dp_vae.DPVAE` is the deep model to use.

Privacy (DPGAN, Xie et al. 2018)
--------------------------------
Only the critic touches private rows, after two Gaussian releases (see
:class:`~scdpsynth.generators._deep_base.DeepGenerator`): the per-class counts (whose sum ``n_hat`` is the only row
count the fit uses) and, with ``standardize="dp"``, the standardisation statistics. Each critic step is a DP-SGD
step: Poisson sampling with rate ``q = min(1, batch_size / n_hat)``; the gradient of each real row's term
``-D(x_i, y_i)`` is clipped to L2 norm ``max_grad_norm`` (the sensitivity of their sum under adding/removing one
row; the label is part of the row), the gradient of the generated batch (a function of the already-private critic,
generator and counts, not of any record) is added, then ``N(0, (z * max_grad_norm)^2)`` noise. (Clipping the
generated rows' terms the same way, to keep both halves of the loss on one scale, made private fits diverge sooner on
bulk ALL and flu: histogram overlap 0.00-0.16 against 0.13-0.38.) Weight clipping, the
generator updates and sampling are post-processing. The noise multiplier ``z`` is calibrated on the ledger (PLD
accounting of the counts, statistics and all critic steps) so that the total stays within (eps, delta).
"""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np

from .._progress import progress_bar, resolve_progress
from .._utils import NotLearnedWarning
from ..privacy import DEFAULT_DELTA
from ._deep_base import DeepGenerator
from ._deep_inputs import check_class_counts, check_fit_input
from ._dpsgd import dp_backward, hooks_off, make_dp_optimizer, poisson_batch
from ._torch import import_torch, init_linear_, one_hot

__all__ = ["DPGAN"]

logger = logging.getLogger("scdpsynth")

#: generator outputs are softly bounded to this many standard deviations (standardised units)
OUTPUT_BOUND = 4.0


@functools.cache
def _module_classes():
    torch = import_torch()
    nn = torch.nn

    class Generator(nn.Module):
        """MLP on ``[z, onehot(y)]`` plus a learned per-class output offset (a direct path for class means)."""

        def __init__(self, latent: int, k: int, hidden: int, d: int):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(latent + k, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, hidden),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden, d),
            )
            self.offset = nn.Linear(k, d, bias=False)

        def forward(self, z, onehot):
            # soft bound at +-OUTPUT_BOUND standard deviations: a noisy critic cannot drive the outputs off to infinity
            raw = self.net(torch.cat([z, onehot], dim=1)) + self.offset(onehot)
            return OUTPUT_BOUND * torch.tanh(raw / OUTPUT_BOUND)

    class Critic(nn.Module):
        """Projection critic (Miyato & Koyama 2018): ``D(x, y) = w' h(x) + e_y' h(x)``, ``h`` one hidden layer."""

        def __init__(self, d: int, k: int, hidden: int):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(d, hidden), nn.LeakyReLU(0.2))
            self.head = nn.Linear(hidden, 1)
            self.embed = nn.Linear(k, hidden, bias=False)

        def forward(self, x, onehot):
            h = self.body(x)
            return self.head(h).squeeze(1) + (self.embed(onehot) * h).sum(1)

    return Generator, Critic


class DPGAN(DeepGenerator):
    """Conditional WGAN whose critic is trained with DP-SGD (opacus); the generator is DP by post-processing.

    Parameters
    ----------
    eps, delta, random_state, unit
        See :class:`~scdpsynth.generators.BaseGenerator`; ``eps=None`` trains without privacy.
        ``random_state=None`` (default) draws fresh OS entropy for a private fit.
    latent_dim, hidden_dim
        Generator noise dimension and hidden-layer width (generator and critic).
    epochs, batch_size
        Critic training length in expected passes over the data (``None``: 300 without privacy, 30 under DP, where
        every step adds noise and longer fits drift further: on ALL at eps=100, balanced accuracy 0.97 with 30 and
        0.61 with 300), and the expected real batch size (Poisson
        sampling rate ``q = min(1, batch_size / n_hat)`` with ``n_hat`` the sum of the DP class counts); the critic
        takes ``ceil(epochs / q)`` DP-SGD steps. ``None``: ``max(32, ceil(n_hat / 50))``.
    n_critic
        Critic steps per generator step. Generator steps cost no privacy. ``n_critic=1`` with ``lr=2e-3`` learnt
        best without privacy on bulk ALL and flu (500 genes; ``benchmarks/bench_bulk.py``).
    lr
        RMSprop learning rate (critic and generator), as recommended for weight-clipped WGANs.
    clip_value
        Critic weights are clipped into ``[-clip_value, clip_value]`` after each step (Lipschitz constraint).
    max_grad_norm
        Per-sample gradient clipping norm of the critic.
    standardize, value_range, stats_share
        Feature standardisation (see :class:`~scdpsynth.generators._deep_base.DeepGenerator`). ``"quantile"``
        (normal scores through per-feature CDFs) without privacy raised histogram overlap on 500 bulk genes from
        0.65 / 0.76 / 0.61 to 0.72 / 0.84 / 0.69 (ALL / flu / GEUVADIS, ``benchmarks/bench_bulk.py``, one fit),
        with balanced accuracy 1.00 / 0.96 / 0.94 -> 1.00 / 0.82 / 1.00. At eps=100 (one fit each) overlap stayed
        low either way (0.18 / 0.21 / 0.10 -> 0.22 / 0.24 / 0.24; balanced accuracy 0.57 / 0.69 / 0.50 -> 1.00 /
        0.70 / 1.00), and below that the DP histogram is mostly noise on a few hundred rows.
    counts_share
        Share of the zCDP budget for the DP per-class counts (:attr:`class_counts_`, whose sum sets the sample rate).
    secure_rng
        Draw the DP-SGD noise and the Poisson batches from a cryptographically secure generator with opacus' secure
        mode (needs the ``torchcsprng`` package; an ImportError names the fix).
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    num_threads
        torch CPU threads during fit/sample (restored afterwards; default 1, fastest for these small models);
        ``None`` keeps torch's setting.
    progress
        Progress bar over the training steps, and the Wasserstein estimate logged every 10% of the steps (logger
        ``"scdpsynth"``, level INFO); ``None`` follows ``sd.settings.progress``.
    calibrate
        Calibrated marginals (see :class:`~scdpsynth.generators._deep_base.DeepGenerator` and
        :class:`~scdpsynth.generators.dp_vae.DPVAE`): ``"auto"`` (default) maps each class's samples of a
        non-private fit onto that class's exact quantiles (histogram overlap on 500 bulk genes 0.65 / 0.76 / 0.61
        -> 0.83 / 0.88 / 0.77, ALL / flu / GEUVADIS, one fit each); private fits are left alone unless
        ``"class"`` or ``"pooled"`` is asked for.
    """

    name = "dp_gan"
    data = "continuous"

    def __init__(
        self,
        *,
        eps=None,
        delta=DEFAULT_DELTA,
        random_state=None,
        unit="sample",
        latent_dim=32,
        hidden_dim=64,
        epochs=None,
        batch_size=None,
        n_critic=1,
        lr=2e-3,
        clip_value=0.05,
        max_grad_norm=1.0,
        standardize="auto",
        value_range=(0.0, 16.0),
        stats_share=0.1,
        counts_share=0.02,
        secure_rng=False,
        device="auto",
        num_threads=1,
        progress=None,
        calibrate="auto",
    ):
        epochs = (300 if eps is None else 30) if epochs is None else epochs  # public: depends only on eps given
        super().__init__(
            eps=eps,
            delta=delta,
            random_state=random_state,
            unit=unit,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            max_grad_norm=max_grad_norm,
            hidden_dim=hidden_dim,
            latent_dim=latent_dim,
            standardize=standardize,
            value_range=value_range,
            stats_share=stats_share,
            counts_share=counts_share,
            secure_rng=secure_rng,
            device=device,
            num_threads=num_threads,
            calibrate=calibrate,
        )
        if isinstance(n_critic, bool) or not isinstance(n_critic, int | np.integer) or n_critic < 1:
            raise ValueError(f"n_critic must be a positive integer, got {n_critic!r}.")
        self.n_critic = int(n_critic)
        if not (isinstance(clip_value, int | float) and clip_value > 0):
            raise ValueError(f"clip_value must be a number > 0, got {clip_value!r}.")
        self.clip_value = float(clip_value)
        self.progress = resolve_progress(progress)

    def fit(self, X, y, *, n_classes: int, donors=None):
        """Fit to continuous ``X`` (n x d) with class codes ``y``."""
        with self._threads():
            return self._fit(X, y, n_classes=n_classes)

    def _fit(self, X, y, *, n_classes: int):
        torch = import_torch()
        X, y = check_fit_input(X, y, n_classes)
        n, d = X.shape
        self.n_classes_, self.n_features_ = int(n_classes), d
        n_hat = self._start_fit(y, n_classes)  # DP class counts first: n_hat is the only row count used below
        self._common_scope()
        self._fit_scaler(X, y, n_hat)
        Xs = self._scale(X)
        q, steps = self._schedule(n_hat)
        z = self._calibrate(q, steps)
        # labels of the generated rows: in proportion to the DP class counts (post-processing)
        self.class_freq_ = self._released_class_freq()

        dev = self.device_
        g_cpu, g_dev, g_noise, g_batches = self._rngs()
        Gen, Crit = _module_classes()
        gen, critic = Gen(self.latent_dim, n_classes, self.hidden_dim, d), Crit(d, n_classes, self.hidden_dim)
        init_linear_(gen, g_cpu)
        init_linear_(critic, g_cpu)
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-self.clip_value, self.clip_value)
        gen.to(dev)
        critic.to(dev)
        opt_g = torch.optim.RMSprop(gen.parameters(), lr=self.lr)
        opt_c = torch.optim.RMSprop(critic.parameters(), lr=self.lr)
        expected_b = max(1, round(q * n_hat))  # gradient normaliser and fake batch size (a DP quantity)
        if self.private:
            net_c, opt_c = make_dp_optimizer(
                critic,
                opt_c,
                noise_multiplier=z,
                max_grad_norm=self.max_grad_norm,
                expected_batch_size=expected_b,
                generator=g_noise,
                secure_mode=self.secure_rng,
            )
        else:
            net_c = critic
        tx = torch.as_tensor(Xs, dtype=torch.float32, device=dev)
        toh = one_hot(y, n_classes, dev)
        tfreq = torch.as_tensor(self.class_freq_, dtype=torch.float32, device=dev)

        def fake_batch(m: int):
            labels = (
                torch.multinomial(tfreq, m, replacement=True, generator=g_dev)
                if m
                else torch.zeros(0, dtype=torch.long, device=dev)
            )
            oh = torch.nn.functional.one_hot(labels, n_classes).float()
            noise = torch.randn(m, self.latent_dim, generator=g_dev, device=dev)
            return gen(noise, oh), oh

        self.history_ = []
        w_sum, w_count = 0.0, 0
        for step in progress_bar(range(steps), desc="dp_gan fit", progress=self.progress):
            idx = poisson_batch(n, q, g_batches).to(dev)
            with torch.no_grad():
                xf, ohf = fake_batch(expected_b)
            real_scores = net_c(tx[idx], toh[idx])
            if self.private:
                # real rows: clipped per-sample gradients of -D(x_i); generated rows: no private data, added unclipped
                dp_backward(net_c, opt_c, -real_scores, extra_loss=lambda xf=xf, ohf=ohf: net_c(xf, ohf).sum())
            else:
                opt_c.zero_grad(set_to_none=True)
                ((net_c(xf, ohf).sum() - real_scores.sum()) / expected_b).backward()
            opt_c.step()
            if self.private:
                self._record_step(opt_c, q)
            with torch.no_grad(), hooks_off(net_c):
                for p in critic.parameters():
                    p.clamp_(-self.clip_value, self.clip_value)
                if len(idx):
                    w_sum += float(real_scores.mean() - critic(xf, ohf).mean())
                    w_count += 1

            if (step + 1) % self.n_critic == 0 or step + 1 == steps:
                with hooks_off(net_c):  # generator step: post-processing of the private critic
                    xg, ohg = fake_batch(expected_b)
                    loss_g = -critic(xg, ohg).mean()
                    grads = torch.autograd.grad(loss_g, list(gen.parameters()))
                for p, gr in zip(gen.parameters(), grads, strict=True):
                    p.grad = gr
                opt_g.step()
            if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
                self.history_.append(w_sum / max(w_count, 1))
                if self.progress:
                    logger.info("dp_gan step %d/%d: Wasserstein estimate %.4g", step + 1, steps, self.history_[-1])
                w_sum, w_count = 0.0, 0
        if self.private:
            net_c.remove_hooks()
        gen.eval()
        critic.eval()
        self.generator_, self.critic_ = gen, critic
        self.sample_rate_, self.steps_ = q, steps
        self.fitted_ = True
        self._check_learned(torch, Xs, y, g_dev)
        self._fit_calibration()
        return self

    def _check_learned(self, torch, Xs: np.ndarray, y: np.ndarray, g_dev, per_class: int = 200) -> None:
        """Warn (:class:`~scdpsynth._utils.NotLearnedWarning`) when the generator did not learn.

        In standardised units, from ``per_class`` generated rows per class present: the generated class centres are
        less than 10% as far apart as the real ones (collapsed classes) or correlate with them below 0.2 (an
        untrained generator's random classes score about 0), the median per-feature standard deviation
        is under 10% of the real one (mode collapse), or more than a quarter of the values sit at the output bound
        (diverged). The ratios are kept in :attr:`fit_diagnostics_`. They use the private data without noise: like
        the other training diagnostics they are for the data holder, never written to the output.
        """
        centres, present = self._class_centres(Xs, y, self.n_classes_)
        labels = np.repeat(np.flatnonzero(present), per_class)
        dev = self.device_
        with torch.no_grad():
            noise = torch.randn(len(labels), self.latent_dim, generator=g_dev, device=dev)
            G = self.generator_(noise, one_hot(labels, self.n_classes_, dev)).double().cpu().numpy()
        sd_ratio = float(np.median(G.std(0) / np.maximum(Xs.std(0), 1e-12)))
        saturated = float(np.mean(np.abs(G) > 0.99 * OUTPUT_BOUND))
        self.fit_diagnostics_ = {"sd_vs_real": sd_ratio, "saturated": saturated}
        msgs = []
        if present.sum() > 1:
            syn_centres, _ = self._class_centres(G, labels, self.n_classes_)
            spread = self._class_spread(syn_centres[present], centres[present])
            agreement = self._class_agreement(syn_centres[present], centres[present])
            self.fit_diagnostics_.update(class_spread_vs_real=spread, class_agreement=agreement)
            if spread < 0.1:
                msgs.append(f"its classes collapsed (class centres {spread:.2f}x as far apart as the real ones)")
            elif agreement < 0.2:
                msgs.append(f"its class centres do not follow the real ones (correlation {agreement:.2f})")
        if sd_ratio < 0.1:
            msgs.append(f"its outputs collapsed (median per-feature sd {sd_ratio:.2f}x the real one)")
        if saturated > 0.25:
            msgs.append(f"{saturated:.0%} of its outputs sit at the +-{OUTPUT_BOUND:g} sd bound (diverged)")
        if msgs:
            warnings.warn(
                f"dp_gan did not learn: {'; '.join(msgs)}. Expected with few rows at small eps (DP-SGD noise on the "
                "critic); otherwise try more epochs or another lr, or dp_vae, which learns from fewer rows.",
                NotLearnedWarning,
                stacklevel=4,
            )

    def sample(self, class_counts) -> np.ndarray:
        """Draw ``class_counts[k]`` rows of class ``k`` (stacked in class order) from the generator.

        Values are unstandardised and, for a private fit, clipped into the public ``value_range``.
        """
        with self._threads():
            return self._sample(class_counts)

    def _sample(self, class_counts) -> np.ndarray:
        self._check_fitted()
        torch = import_torch()
        counts = check_class_counts(class_counts, self.n_classes_)
        labels = np.repeat(np.arange(self.n_classes_), counts)
        out = np.empty((len(labels), self.n_features_))
        dev = self.device_
        for start in range(0, len(labels), 2048):
            lab = labels[start : start + 2048]
            noise = self.rng.standard_normal((len(lab), self.latent_dim))
            with torch.no_grad():
                xs = self.generator_(
                    torch.as_tensor(noise, dtype=torch.float32, device=dev), one_hot(lab, self.n_classes_, dev)
                )
            out[start : start + len(lab)] = self._unscale(xs.double().cpu().numpy(), lab)
        return out

    def critic_scores(self, X, y) -> np.ndarray:
        """Critic output ``D(x, y)`` per row of ``X`` (original scale) with class codes ``y``; for audits."""
        self._check_fitted()
        torch = import_torch()
        X, y = check_fit_input(X, y, self.n_classes_, min_rows=1)
        if X.shape[1] != self.n_features_:
            raise ValueError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_}.")
        dev = self.device_
        with torch.no_grad():
            tx = torch.as_tensor(self._scale(X), dtype=torch.float32, device=dev)
            return self.critic_(tx, one_hot(y, self.n_classes_, dev)).double().cpu().numpy()

    def params(self) -> dict:
        out = super().params()
        out.update(n_critic=self.n_critic, clip_value=self.clip_value)
        return out
