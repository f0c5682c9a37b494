"""Class-conditional variational autoencoder trained with DP-SGD (opacus).

Model
-----
Encoder ``q(z | x, y)`` and decoder ``p(x | z, y)`` are MLPs (one-hot class ``y`` concatenated to their inputs),
latent prior ``N(0, I)``, trained on the negative ELBO (reconstruction NLL + ``beta`` KL). Decoders:

* ``likelihood="gaussian"`` (continuous data, e.g. log expression): features are standardised (DP statistics or
  a public range, see :class:`~scdpsynth.generators._deep_base.DeepGenerator`), the decoder gives per-feature
  means and a learned per-feature log-scale; sampling adds the Gaussian observation noise and reverts the scaling.
* ``likelihood="nb"`` / ``"zinb"`` (raw counts; ``data = "counts"``): scVI-style negative binomial (optionally
  zero-inflated) with mean ``softmax(decoder) * library size`` and a learned per-gene inverse dispersion. The
  encoder sees ``log1p(x)``; training uses each row's own library size. For sampling, library sizes are drawn from
  a per-class log-normal whose mean and standard deviation are released with the Gaussian mechanism.

Privacy
-------
Three kinds of releases, all recorded in ``self.ledger`` (see :class:`~scdpsynth.generators._deep_base.DeepGenerator`):
the per-class counts (Gaussian mechanism, :attr:`class_counts_`; their sum ``n_hat`` is the only row count the fit
uses), the preprocessing statistics (standardisation or per-class library sizes, Gaussian mechanism), and DP-SGD
(Abadi et al. 2016): Poisson sampling with rate ``q = min(1, batch_size / n_hat)``; every per-sample gradient of the
whole model (encoder, decoder, scale parameters) is clipped to L2 norm ``max_grad_norm`` (sensitivity of the
gradient sum under adding/removing one row), and ``N(0, (z * max_grad_norm)^2)`` noise is added to the sum, with
``z`` calibrated on the ledger (PLD accounting, dp-accounting) so that all releases together stay within
(eps, delta). Class labels are part of each record, covered by DP-SGD. Sampling is post-processing. The KL and the
reparameterisation noise are per-sample terms inside the clipped gradients.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings

import numpy as np

from .._progress import progress_bar, resolve_progress
from .._utils import NotLearnedWarning, check_random_state
from ..privacy import DEFAULT_DELTA
from ._deep_base import DeepGenerator
from ._deep_inputs import check_class_counts, check_fit_input, positive_number
from ._dp_stats import dp_class_stats
from ._dpsgd import dp_backward, make_dp_optimizer, poisson_batch
from ._torch import import_torch, init_linear_, one_hot, torch_generator

__all__ = ["DPVAE"]

logger = logging.getLogger("scdpsynth")

LIKELIHOODS = ("gaussian", "nb", "zinb")


@functools.cache
def _module_class():
    torch = import_torch()
    nn = torch.nn

    class CondVAE(nn.Module):
        """Conditional VAE: encoder and decoder MLPs with one hidden layer each and per-feature scale parameters."""

        def __init__(self, d: int, k: int, latent: int, hidden: int, likelihood: str):
            super().__init__()
            self.likelihood = likelihood
            self.enc = nn.Sequential(nn.Linear(d + k, hidden), nn.ELU())
            self.enc_mu = nn.Linear(hidden, latent)
            self.enc_logvar = nn.Linear(hidden, latent)
            self.dec = nn.Sequential(nn.Linear(latent + k, hidden), nn.ELU())
            self.dec_out = nn.Linear(hidden, d)  # gaussian mean, or NB logits over genes
            # class-conditional offset of the output (a per-class mean in few parameters: learns under DP-SGD noise)
            self.dec_class = nn.Linear(k, d, bias=False)
            self.feature_param = nn.Linear(1, d, bias=False)  # gaussian log-scale, or NB log inverse dispersion
            self.dec_pi = nn.Linear(hidden, d) if likelihood == "zinb" else None

        def encode(self, x_in, onehot):
            h = self.enc(torch.cat([x_in, onehot], dim=1))
            return self.enc_mu(h), self.enc_logvar(h).clamp(-12.0, 8.0)

        def decode(self, z, onehot):
            h = self.dec(torch.cat([z, onehot], dim=1))
            ones = torch.ones(z.shape[0], 1, device=z.device, dtype=z.dtype)
            pi = self.dec_pi(h) if self.dec_pi is not None else None
            return self.dec_out(h) + self.dec_class(onehot), self.feature_param(ones), pi

        def forward(self, x_in, onehot, noise):
            mu, logvar = self.encode(x_in, onehot)
            z = mu + torch.exp(0.5 * logvar) * noise
            out, fparam, pi = self.decode(z, onehot)
            return mu, logvar, out, fparam, pi

    return CondVAE


def _nb_log_prob(torch, x, log_mu, log_theta, pi_logits=None):
    """Log-likelihood of counts under NB(mean mu, inverse dispersion theta), zero-inflated if ``pi_logits``."""
    theta = torch.exp(log_theta)
    log_theta_mu = torch.logaddexp(log_theta, log_mu)  # log(theta + mu)
    nb = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (log_theta - log_theta_mu)
        + x * (log_mu - log_theta_mu)
    )
    if pi_logits is None:
        return nb
    softplus = torch.nn.functional.softplus
    log_pi, log_not_pi = -softplus(-pi_logits), -softplus(pi_logits)
    zero = torch.logaddexp(log_pi, log_not_pi + theta * (log_theta - log_theta_mu))
    return torch.where(x < 0.5, zero, log_not_pi + nb)


class DPVAE(DeepGenerator):
    """Class-conditional VAE trained with DP-SGD (opacus); Gaussian, NB or ZINB decoder.

    Parameters
    ----------
    eps, delta, random_state, unit
        See :class:`~scdpsynth.generators.BaseGenerator`; ``eps=None`` trains without privacy (plain Adam).
        ``random_state=None`` (default) draws fresh OS entropy for a private fit.
    likelihood
        ``"gaussian"`` (continuous input), ``"nb"`` or ``"zinb"`` (raw integer counts in and out).
    latent_dim, hidden_dim
        Latent dimension and width of the hidden layers. ``None`` (default): 2 and 8 for a private fit or a counts
        likelihood, 16 and 32 for a non-private Gaussian fit (there is no DP-SGD noise to drown a wider model: on
        the flu data, accuracy 0.87 -> 0.97 against 0.98 for a per-class Gaussian; ALL and GEUVADIS stay at 1.0).
    epochs, batch_size
        Training length in expected passes over the data, and the expected batch size (Poisson sampling rate
        ``q = min(1, batch_size / n_hat)`` with ``n_hat`` the sum of the DP class counts); DP-SGD takes
        ``ceil(epochs / q)`` steps. ``epochs=None``: 200 for the Gaussian likelihood (bulk, few rows: at eps=10 over
        15 seeds, balanced accuracy 0.79 -> 0.93 on ALL and 0.70 -> 0.75 on GEUVADIS against 100 epochs, flu
        unchanged at 0.72), 100 for counts (many cells). ``batch_size=None``: ``max(128, ceil(n_hat / 20))``, i.e.
        full batches up to 128 rows and a 5% sample rate for large data (2,000 steps at 100 epochs).
    lr
        Adam learning rate.

    The private defaults (a small model: ``hidden_dim=8``, ``latent_dim=2``; ``lr=1e-2``; epochs of large batches)
    were chosen by a sweep on bulk ALL (500 highest-variance probes, lineage) and checked on the flu challenge
    data: DP-SGD noise grows with the number of parameters, and on 100-250 rows small models learn where wide ones
    drown in noise (ALL, eps=10: balanced accuracy 0.98 over 4 seeds vs 0.50 with the former width 64/latent 16;
    non-private 1.0 either way). The decoder adds a class-conditional offset to its output (``k x d`` weights) so
    the class means need few parameters; the observation scale starts at ``init_scale`` in data units.
    max_grad_norm
        Per-sample gradient clipping norm ``C``.
    beta
        Weight of the KL term.
    standardize, value_range, stats_share
        Feature standardisation of continuous data (see
        :class:`~scdpsynth.generators._deep_base.DeepGenerator`): ``"dp"`` releases per-feature means and standard
        deviations of the data clipped into the public ``value_range`` with a ``stats_share`` of the budget;
        ``"public"`` uses only ``value_range``; ``"auto"`` picks ``"dp"`` when its noise is small (large DP row
        count), else ``"public"``. The default range ``(0, 16)`` suits log2 microarray and log1p counts.
        ``"quantile"`` (opt-in) learns on normal scores through per-feature CDFs (DP histogram, or exact without
        privacy; see :class:`~scdpsynth.generators._deep_base.DeepGenerator`), so samples keep skewed, bimodal or
        zero-heavy marginals. On bulk data (``benchmarks/bench_bulk.py``, 500 genes) without privacy it raises
        histogram overlap from 0.67 / 0.76 / 0.64 to 0.81 / 0.82 / 0.73 (ALL / flu / GEUVADIS) with the same
        accuracy, but halves co-expression recall (ALL 0.57 -> 0.30: Pearson co-expression there is not a Gaussian
        copula of the ranks; a per-class Gaussian on normal scores also drops from 0.83 to 0.50) and lowers DE TPR
        by 0.03-0.10. Under DP with 70-200 rows the histogram needs a large budget: at eps=10 its noise makes
        overlap worse (ALL 0.61 -> 0.47, mean of 3 fits); at eps=100 ALL gains (overlap 0.65 -> 0.69, DE TPR
        0.47 -> 0.84), flu and GEUVADIS are mixed. Hence not the default.
    library_range
        Public range of the natural-log library size (counts likelihoods), used to clip it for the DP per-class
        library-size statistics (``stats_share`` of the budget).
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
        Progress bar over the training steps, and the training loss logged every 10% of the steps (logger
        ``"scdpsynth"``, level INFO); ``None`` follows ``sd.settings.progress``.
    init_scale
        Initial observation scale of the Gaussian decoder in data units (a public constant, converted with the
        DP or public standardisation scale; default 1, about a gene's spread in log2/log1p units). With
        ``standardize="quantile"`` it is in normal-score units, where 1 is each feature's whole spread.
    calibrate
        Calibrated marginals (Gaussian likelihood; see :class:`~scdpsynth.generators._deep_base.DeepGenerator`):
        each feature of a sample is mapped monotonically from the model's own CDF onto the data's, per class
        (``"class"``) or over all rows (``"pooled"``); ``False`` keeps the model's. ``"auto"`` (default):
        ``"class"`` for a non-private fit (exact quantiles, no cost), ``False`` under DP, where it costs another
        ``stats_share`` (one DP histogram per class, in parallel).

        Without privacy, on bulk data (``bench_bulk.py``, 500 genes, ALL / flu / GEUVADIS, 4 / 5 / 6 fits), False
        -> ``"class"``: histogram overlap 0.68 / 0.76 / 0.64 -> 0.82 / 0.88 / 0.78 (two real samples of that size
        score about 0.8); DE TPR 0.84 / 0.82 / 0.80 -> 0.91 / 0.94 / 0.72; co-expression recall (r > 0.7) 0.51 /
        0.35 / 0.36 -> 0.55 / 0.39 / 0.34 at the same precision; accuracy 1.00 / 0.98 / 1.00 -> 1.00 / 0.95 /
        1.00 (flu's classes take on their training rows' quirks). ``"pooled"`` keeps the model's ranks, so a
        draw's Wilcoxon DE genes do not change, but co-expression recall drops (0.49 / 0.30 / 0.32);
        ``standardize="quantile"`` reached overlap 0.81 / 0.82 / 0.73 with recall 0.30 / 0.13 / 0.15. On data it
        was not tuned on, Kang PBMCs log-normalised (9,800 training cells, 1,287 genes, cell types, one fit):
        overlap 0.24 -> 0.99 (real holdout 0.98), DE TPR 0.80 -> 0.90, co-expression recall / precision 0.93 /
        0.94 -> 0.92 / 0.93; pooled gets 0.98 but precision 0.51 (sparse genes' zeros then fall on the same
        cells more often than in real data). Under DP on these sizes the histograms are noise: pooled at eps=10,
        ALL overlap falls 0.62 -> 0.38 and balanced accuracy 0.95 -> 0.50 (mean of 3 fits), and per class each
        histogram has fewer rows; hence off by default.

    Warns
    -----
    NotLearnedWarning
        After a Gaussian fit whose reconstruction is no better than the per-class means, or whose decoded classes
        collapsed (see :meth:`_check_learned`; ratios in ``fit_diagnostics_``).
    """

    name = "dp_vae"
    data = "continuous"
    batch_floor = 128
    batch_divisor = 20

    def __init__(
        self,
        *,
        eps=None,
        delta=DEFAULT_DELTA,
        random_state=None,
        unit="sample",
        likelihood="gaussian",
        latent_dim=None,
        hidden_dim=None,
        epochs=None,
        batch_size=None,
        lr=1e-2,
        max_grad_norm=1.0,
        beta=1.0,
        standardize="auto",
        value_range=(0.0, 16.0),
        library_range=(0.0, 14.0),
        stats_share=0.1,
        counts_share=0.02,
        secure_rng=False,
        device="auto",
        num_threads=1,
        progress=None,
        calibrate="auto",
        init_scale=1.0,
    ):
        # model size from public choices only (eps given or not, the likelihood); see the class docstring
        large = eps is None and likelihood == "gaussian"
        latent_dim = (16 if large else 2) if latent_dim is None else latent_dim
        hidden_dim = (32 if large else 8) if hidden_dim is None else hidden_dim
        epochs = (200 if likelihood == "gaussian" else 100) if epochs is None else epochs
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
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"likelihood must be one of {list(LIKELIHOODS)}, got {likelihood!r}. Use 'nb' or 'zinb' "
                "for raw counts and 'gaussian' for continuous (e.g. log-normalised) data."
            )
        self.likelihood = likelihood
        if likelihood != "gaussian":
            self.data = "counts"  # tl.generate then passes raw counts and keeps integers
            if standardize != "auto":
                raise ValueError(
                    f"standardize={standardize!r} scales continuous data; likelihood={likelihood!r} learns on raw "
                    "counts with DP library sizes (library_range) and ignores it. Leave standardize='auto' for counts, "
                    "or use likelihood='gaussian' on log-normalised data."
                )
            if calibrate not in ("auto", False):
                raise ValueError(
                    f"calibrate={calibrate!r} maps continuous marginals; likelihood={likelihood!r} draws integer "
                    "counts from its own NB/ZINB marginals. Leave calibrate='auto' (or False) for counts."
                )
            self.calibrate_ = False
        if not (isinstance(beta, int | float) and beta > 0):
            raise ValueError(f"beta must be a number > 0, got {beta!r}.")
        self.beta = float(beta)
        lo, hi = (float(v) for v in library_range)
        if not lo < hi:
            raise ValueError(f"library_range must satisfy lo < hi, got {library_range!r}.")
        self.library_range = (lo, hi)
        self.progress = resolve_progress(progress)
        self.init_scale = positive_number("init_scale", init_scale)

    @property
    def counts(self) -> bool:
        return self.likelihood != "gaussian"

    # -- data transforms -------------------------------------------------------------------------------------------
    def _encoder_input(self, X: np.ndarray) -> np.ndarray:
        if self.counts:
            return np.log1p(X)
        return self._scale(X)

    def _init_feature_param(self, d: int) -> np.ndarray:
        """Initial decoder log-scale (Gaussian: scale ``init_scale`` in data units, in standardised units) or 0.

        Uses only the (DP or public) standardisation scale, never the data.
        """
        if self.counts:
            return np.zeros(d, dtype=np.float32)
        return np.clip(np.log(self.init_scale / self.std_), -7.0, 3.0).astype(np.float32)

    def _per_sample_nll(self, torch, out, x_target, log_lib):
        """Reconstruction negative log-likelihood per row (summed over features)."""
        rec, fparam, pi = out
        if not self.counts:
            log_s = fparam.clamp(-7.0, 3.0)
            z2 = ((x_target - rec) / torch.exp(log_s)) ** 2
            return (0.5 * z2 + log_s + 0.5 * math.log(2 * math.pi)).sum(1)
        log_mu = torch.log_softmax(rec, dim=1) + log_lib[:, None]
        return -_nb_log_prob(torch, x_target, log_mu, fparam.clamp(-10.0, 12.0), pi).sum(1)

    def _neg_elbo(self, torch, model, x_in, onehot, noise, x_target, log_lib, beta):
        mu, logvar, *out = model(x_in, onehot, noise)
        kl = 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar).sum(1)
        return self._per_sample_nll(torch, out, x_target, log_lib) + beta * kl

    # -- fit / sample ------------------------------------------------------------------------------------------------
    def fit(self, X, y, *, n_classes: int, donors=None):
        """Fit to ``X`` (n x d) with class codes ``y``; raw integer counts for ``likelihood="nb"/"zinb"``."""
        with self._threads():
            return self._fit(X, y, n_classes=n_classes)

    def _fit(self, X, y, *, n_classes: int):
        torch = import_torch()
        X, y = check_fit_input(X, y, n_classes)
        if self.counts and (X.min() < 0 or not np.all(X == np.round(X))):
            raise ValueError(
                f"likelihood={self.likelihood!r} needs raw non-negative integer counts; pass the raw "
                "count layer (layer='counts') or use likelihood='gaussian' for continuous data."
            )
        n, d = X.shape
        self.n_classes_, self.n_features_ = int(n_classes), d
        n_hat = self._start_fit(y, n_classes)  # DP class counts first: n_hat is the only row count used below
        self._common_scope()
        if self.counts:
            log_lib = np.log(np.maximum(X.sum(1), 1.0))
            self.lib_mean_, self.lib_std_ = dp_class_stats(
                log_lib,
                y,
                n_classes,
                value_range=self.library_range,
                rho=self._stats_rho(),
                counts=self.class_counts_,
                rng=self.rng,
                ledger=self.ledger,
                name="log library size",
            )
        else:
            log_lib = np.zeros(n)
            self._fit_scaler(X, y, n_hat)  # and the target CDFs of calibrated marginals
        x_in = self._encoder_input(X)
        x_target = X if self.counts else x_in
        q, steps = self._schedule(n_hat)
        z = self._calibrate(q, steps)
        expected_b = max(1, round(q * n_hat))  # gradient normaliser (a DP quantity; no part of the privacy)

        dev = self.device_
        g_cpu, g_dev, g_noise, g_batches = self._rngs()
        model = _module_class()(d, n_classes, self.latent_dim, self.hidden_dim, self.likelihood)
        init_linear_(model, g_cpu)
        with torch.no_grad():  # no class offset at first; observation scale 1 in data units (or unit dispersion)
            model.feature_param.weight.copy_(torch.as_tensor(self._init_feature_param(d)[:, None]))
            model.dec_class.weight.zero_()
        model.to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        if self.private:
            net, dp_opt = make_dp_optimizer(
                model,
                opt,
                noise_multiplier=z,
                max_grad_norm=self.max_grad_norm,
                expected_batch_size=expected_b,
                generator=g_noise,
                secure_mode=self.secure_rng,
            )
        else:
            net, dp_opt = model, opt
        tx_in = torch.as_tensor(x_in, dtype=torch.float32, device=dev)
        tx_target = torch.as_tensor(x_target, dtype=torch.float32, device=dev)
        tlib = torch.as_tensor(log_lib, dtype=torch.float32, device=dev)
        toh = one_hot(y, n_classes, dev)

        self.history_ = []
        model.train()
        running, seen = 0.0, 0
        for step in progress_bar(range(steps), desc="dp_vae fit", progress=self.progress):
            idx = poisson_batch(n, q, g_batches).to(dev)
            noise = torch.randn(len(idx), self.latent_dim, generator=g_dev, device=dev)
            losses = self._neg_elbo(torch, net, tx_in[idx], toh[idx], noise, tx_target[idx], tlib[idx], self.beta)
            if self.private:  # opacus clips each row's gradient, adds noise, divides by the expected batch size
                dp_backward(net, dp_opt, losses)
            else:
                opt.zero_grad(set_to_none=True)
                (losses.mean() if len(idx) else losses.sum()).backward()
            dp_opt.step()
            if self.private:
                self._record_step(dp_opt, q)
            running += float(losses.detach().sum())
            seen += len(idx)
            if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
                self.history_.append(running / max(seen, 1))
                if self.progress:
                    logger.info("dp_vae step %d/%d: mean negative ELBO %.4g", step + 1, steps, self.history_[-1])
                running, seen = 0.0, 0
        if self.private:
            net.remove_hooks()  # ``model`` stays usable without opacus
        model.eval()
        self.model_ = model
        self.sample_rate_, self.steps_ = q, steps
        self.fitted_ = True
        if not self.counts:
            self._check_learned(torch, tx_in, toh, x_in, y)
            self._fit_calibration()
        return self

    def _check_learned(self, torch, tx_in, toh, x_in: np.ndarray, y: np.ndarray) -> None:
        """Warn (:class:`~scdpsynth._utils.NotLearnedWarning`) when the fit did not learn; Gaussian likelihood only.

        Two checks in standardised units, both on the training data: the reconstruction (decoder mean at the
        posterior mean) is no better than the per-class means (mean squared error ratio ``>= 1``), or the decoded
        class centres (latent 0) are less than 10% as far apart as the real class means (collapsed classes).
        The ratios are kept in :attr:`fit_diagnostics_` on the generator object. Both use the private data without
        noise: like the other training diagnostics they are for the data holder, never written to the output.
        """
        centres, present = self._class_centres(x_in, y, self.n_classes_)
        base = float(np.mean((x_in - centres[y]) ** 2))
        with torch.no_grad():
            mu, _ = self.model_.encode(tx_in, toh)
            rec = self.model_.decode(mu, toh)[0].double().cpu().numpy()
        ratio = float(np.mean((x_in - rec) ** 2)) / max(base, 1e-12)
        self.fit_diagnostics_ = {"reconstruction_vs_class_means": ratio}
        msgs = []
        if ratio >= 1.0:
            msgs.append(f"its reconstruction error is {ratio:.2f}x that of the per-class means")
        if present.sum() > 1:
            labels = np.flatnonzero(present)
            dec = self._decode(torch, np.zeros((len(labels), self.latent_dim)), labels)[0]
            spread = self._class_spread(dec, centres[present])
            self.fit_diagnostics_["class_spread_vs_real"] = spread
            if spread < 0.1:
                msgs.append(
                    f"its decoded classes collapsed (class centres {spread:.2f}x as far apart as the real ones)"
                )
        if msgs:
            warnings.warn(
                f"dp_vae did not learn: {'; '.join(msgs)}. Expected with few rows at small eps (DP-SGD noise); "
                "otherwise try more epochs, a larger lr or a larger batch_size.",
                NotLearnedWarning,
                stacklevel=4,
            )

    def _decode(self, torch, z: np.ndarray, labels: np.ndarray):
        dev = self.device_
        with torch.no_grad():
            tz = torch.as_tensor(z, dtype=torch.float32, device=dev)
            rec, fparam, pi = self.model_.decode(tz, one_hot(labels, self.n_classes_, dev))
            if self.counts:
                rec = torch.softmax(rec, dim=1)
                pi = torch.sigmoid(pi) if pi is not None else None
            rec, fparam = rec.double().cpu().numpy(), fparam.double().cpu().numpy()
            return rec, fparam, None if pi is None else pi.double().cpu().numpy()

    def sample(self, class_counts) -> np.ndarray:
        """Draw ``class_counts[k]`` rows of class ``k`` (stacked in class order) from the decoder.

        Continuous data: ``mean + scale * N(0, 1)`` in standardised space, then unstandardised (and, for a private
        fit, clipped into the public ``value_range`` that the DP preprocessing assumes). Counts: library size
        from the DP per-class log-normal, then NB (Gamma-Poisson) or ZINB draws; returns integer counts.
        """
        with self._threads():
            return self._sample(class_counts)

    def _sample(self, class_counts) -> np.ndarray:
        self._check_fitted()
        torch = import_torch()
        counts = check_class_counts(class_counts, self.n_classes_)
        labels = np.repeat(np.arange(self.n_classes_), counts)
        out = np.empty((len(labels), self.n_features_), dtype=np.int64 if self.counts else np.float64)
        for start in range(0, len(labels), 2048):
            lab = labels[start : start + 2048]
            z = self.rng.standard_normal((len(lab), self.latent_dim))
            rec, fparam, pi = self._decode(torch, z, lab)
            if not self.counts:
                scale = np.exp(np.clip(fparam, -7.0, 3.0))
                xs = rec + scale * self.rng.standard_normal(rec.shape)
                out[start : start + len(lab)] = self._unscale(xs, lab)
                continue
            lib = np.exp(self.lib_mean_[lab] + self.lib_std_[lab] * self.rng.standard_normal(len(lab)))
            mu = rec * lib[:, None]
            theta = np.exp(np.clip(fparam, -10.0, 12.0))
            rate = self.rng.gamma(theta, mu / theta)
            xs = self.rng.poisson(rate)
            if pi is not None:
                xs[self.rng.random(xs.shape) < pi] = 0
            out[start : start + len(lab)] = xs
        return out

    def per_sample_loss(self, X, y, *, n_mc: int = 1, random_state=0) -> np.ndarray:
        """Negative ELBO of each row of ``X`` with class codes ``y`` under the fitted model (lower = better fit).

        ``X`` is on the scale passed to :meth:`fit` (continuous values, or raw counts for NB/ZINB); it is
        standardised with the fitted statistics. The ELBO is estimated with ``n_mc`` reparameterised draws from a
        torch generator seeded with ``random_state`` (deterministic for a fixed seed). Gaussian: nats in standardised
        units (the constant Jacobian of the standardisation is omitted); counts: nats of the count likelihood.
        Intended for white-box membership-inference audits.
        """
        self._check_fitted()
        if isinstance(n_mc, bool) or not isinstance(n_mc, int | np.integer) or n_mc < 1:
            raise ValueError(f"n_mc must be a positive integer (Monte-Carlo draws per row), got {n_mc!r}.")
        torch = import_torch()
        X, y = check_fit_input(X, y, self.n_classes_, min_rows=1)
        if X.shape[1] != self.n_features_:
            raise ValueError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_}.")
        g = torch_generator(check_random_state(random_state), self.device_)
        dev = self.device_
        x_in = self._encoder_input(np.asarray(X, dtype=float))
        x_target = X if self.counts else x_in
        log_lib = np.log(np.maximum(np.asarray(X).sum(1), 1.0)) if self.counts else np.zeros(len(X))
        tx_in = torch.as_tensor(x_in, dtype=torch.float32, device=dev)
        tx_t = torch.as_tensor(np.asarray(x_target, dtype=float), dtype=torch.float32, device=dev)
        tlib = torch.as_tensor(log_lib, dtype=torch.float32, device=dev)
        toh = one_hot(y, self.n_classes_, dev)
        total = np.zeros(len(X))
        with torch.no_grad():
            for _ in range(int(n_mc)):
                noise = torch.randn(len(X), self.latent_dim, generator=g, device=dev)
                total += (
                    self._neg_elbo(torch, self.model_, tx_in, toh, noise, tx_t, tlib, self.beta).double().cpu().numpy()
                )
        return total / int(n_mc)

    def params(self) -> dict:
        out = super().params()
        out.update(likelihood=self.likelihood, beta=self.beta)
        if self.counts:
            out["library_range"] = list(self.library_range)
            out.pop("value_range")
            out.pop("standardize")
        return out
