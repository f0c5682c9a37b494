"""The common base of the DP-SGD generators (dp_vae, dp_gan): budget split, DP sizes, standardisation, schedule."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..privacy import DEFAULT_DELTA, Ledger
from ._base import BaseGenerator
from ._calibration import MarginalCalibration, cdf_quantiles, empirical_quantiles, quantile_levels
from ._deep_inputs import positive_number, share
from ._dp_stats import dp_feature_stats
from ._dpsgd import calibrate_noise_multiplier
from ._normal_scores import dp_normal_scores, exact_normal_scores
from ._torch import import_torch, secure_generator, select_device, torch_generator

__all__ = ["DeepGenerator"]

STANDARDIZE = ("auto", "dp", "public", "quantile")
CALIBRATE = ("auto", "class", "pooled")


class DeepGenerator(BaseGenerator):
    """Common parts of the DP-SGD generators: budget split, DP sizes and standardisation, calibration, devices.

    Budget (with ``eps`` given; every release is recorded in ``self.ledger`` as its noise is drawn):

    1. the per-class counts, with a share ``counts_share`` of the zCDP budget ``rho(eps, delta)``
       (:meth:`~scdpsynth.generators.BaseGenerator._release_class_counts`, :attr:`class_counts_`). Their sum
       ``n_hat = max(sum, 1)`` stands in for the number of rows everywhere: the default batch size, the Poisson
       sample rate ``q = min(1, batch_size / n_hat)``, the ``standardize="auto"`` rule and the denominators of the
       DP statistics. Nothing about ``n`` leaves unpaid.
    2. the preprocessing statistics (standardisation, or library sizes for count likelihoods), two Gaussian
       releases sharing ``stats_share`` of ``rho`` (unused when nothing is released).
    3. DP-SGD: the noise multiplier ``z`` is calibrated on the ledger (PLD, :func:`calibrate_noise_multiplier`) so
       that everything recorded plus all DP-SGD steps stays within (eps, delta); the training loop records every
       step with the ``z`` opacus uses and the ``q`` the batches are drawn with.

    Class labels are part of each record and covered by DP-SGD; the synthetic class sizes come from
    :attr:`class_counts_`.

    Standardisation (continuous data): ``standardize="dp"`` uses :func:`dp_feature_stats` (charged to the budget);
    ``standardize="public"`` maps the public ``value_range`` to ``[-1, 1]`` (no data-derived statistics);
    ``standardize="auto"`` (default) picks ``"dp"`` when the DP means are expected to be accurate (noise below 10% of
    the range half-width; a function of ``n_hat``, d and the budget only, see :meth:`_resolve_standardize`), else
    ``"public"``. ``standardize="quantile"`` (opt-in) maps each feature to normal scores through its CDF
    (:mod:`~scdpsynth.generators._normal_scores`): under DP the CDF of one per-feature histogram of
    :attr:`quantile_grid` cells over ``value_range`` (Gaussian mechanism, L2 sensitivity ``sqrt(d)``, the whole
    ``stats_share``), without privacy the exact empirical CDF. The model then only has to learn dependence and class
    effects, and samples keep each feature's marginal shape. Scaling is reverted after sampling.

    Calibrated marginals (continuous data; :mod:`~scdpsynth.generators._calibration`): after training, the model's
    own per-feature CDFs are read off a reference draw (up to :attr:`calibration_rows` rows per part,
    :attr:`calibration_levels` quantiles; post-processing of the model) and every sample is mapped feature by
    feature onto the target CDFs, ``x -> F^-1(G(x))``. The map is monotone, so ranks within a part are kept and
    only the marginal shapes change. ``calibrate="class"``: one map per class onto that class's CDFs (so the
    Wilcoxon tests between classes follow the data's); ``"pooled"``: one map per feature onto the CDF of all rows;
    ``False``: the model's own marginals; ``"auto"`` (default): ``"class"`` without privacy, ``False`` under DP.
    Targets: the exact quantiles without privacy; under DP one histogram as above per class (parallel composition:
    a record is in one class, so the classes' releases together cost one ``stats_share`` of ``rho``) or, pooled,
    one histogram (the ``"quantile"`` standardisation's when there is one, at no further cost), recorded before
    DP-SGD is calibrated on what is left.

    Randomness: every draw comes from ``self.rng`` (fresh OS entropy for a private fit by default), torch's through
    generators seeded from it. ``secure_rng=True`` draws the DP-SGD noise and the Poisson batches from a
    cryptographically secure generator instead, with opacus' secure mode (protection against floating-point attacks
    on the noise); it needs the ``torchcsprng`` package.

    ``num_threads`` (default 1) sets torch's CPU threads during ``fit``/``sample`` only and restores the previous
    setting afterwards; one thread is fastest for these small MLPs, by far on a shared machine (oversubscribed
    intra-op threads); ``None`` keeps torch's own setting.
    """

    units = ("sample",)
    #: cells of the DP histogram behind ``standardize="quantile"`` (over the public ``value_range``)
    quantile_grid = 64
    #: rows of the reference draw behind ``calibrate`` and quantile levels kept from it
    calibration_rows = 4096
    calibration_levels = 256
    #: default batch size ``max(batch_floor, ceil(n_hat / batch_divisor))`` (subclasses tune it)
    batch_floor = 32
    batch_divisor = 50

    def __init__(
        self,
        *,
        eps=None,
        delta=DEFAULT_DELTA,
        random_state=None,
        unit="sample",
        epochs=30,
        batch_size=None,
        lr=1e-3,
        max_grad_norm=1.0,
        hidden_dim=64,
        latent_dim=16,
        standardize="auto",
        value_range=(0.0, 16.0),
        stats_share=0.1,
        counts_share=0.02,
        secure_rng=False,
        device="auto",
        num_threads=1,
        calibrate="auto",
    ):
        super().__init__(eps=eps, delta=delta, random_state=random_state, unit=unit)
        self.epochs = positive_number("epochs", epochs, integer=True)
        self.batch_size = None if batch_size is None else positive_number("batch_size", batch_size, integer=True)
        self.lr = positive_number("lr", lr)
        self.max_grad_norm = positive_number("max_grad_norm", max_grad_norm)
        self.hidden_dim = positive_number("hidden_dim", hidden_dim, integer=True)
        self.latent_dim = positive_number("latent_dim", latent_dim, integer=True)
        if standardize not in STANDARDIZE:
            raise ValueError(
                f"standardize must be 'auto', 'dp' (DP statistics, charged to eps), 'public' (value_range) or "
                f"'quantile' (normal scores through DP per-feature CDFs, charged to eps), got {standardize!r}."
            )
        self.standardize = standardize
        if not (calibrate is False or (isinstance(calibrate, str) and calibrate in CALIBRATE)):
            raise ValueError(
                "calibrate must be 'auto' (per class without privacy, off under DP), 'class' (each class's samples "
                "onto its CDFs; under DP DP histograms charged to eps), 'pooled' (one CDF per feature) or False, "
                f"got {calibrate!r}."
            )
        self.calibrate = calibrate
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise TypeError(f"value_range must be a pair (lo, hi) of numbers, got {value_range!r}.") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"value_range must satisfy lo < hi (finite), got {value_range!r}.")
        self.value_range = (lo, hi)
        self.stats_share = share("stats_share", stats_share)
        self.counts_share = share("counts_share", counts_share)
        if self.stats_share + self.counts_share >= 1:
            raise ValueError(
                f"stats_share + counts_share must be < 1 (the rest goes to DP-SGD), got {stats_share} + {counts_share}."
            )
        if not isinstance(secure_rng, bool | np.bool_):
            raise TypeError(f"secure_rng must be True or False, got {secure_rng!r}.")
        self.secure_rng = bool(secure_rng)
        if self.secure_rng:
            secure_generator()  # fail early, naming the fix, when torchcsprng is missing
        self.device = device
        self.device_ = select_device(device)  # fail early for an unavailable device
        if num_threads is not None:
            num_threads = positive_number("num_threads", num_threads, integer=True)
        self.num_threads = num_threads
        self.noise_multiplier_ = 0.0
        self.history_: list[float] = []
        self.normal_scores_ = None  # set by _fit_scaler for standardize="quantile"
        self.target_knots_ = None  # (k, d, L) target quantiles, set by _fit_scaler when calibrating
        self.calibration_ = None  # set by _fit_calibration after training

    # -- helpers for subclasses ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _threads(self):
        """Run with ``num_threads`` CPU threads in torch if given, restoring the previous setting afterwards."""
        if self.num_threads is None:
            yield
            return
        torch = import_torch()
        before = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _start_fit(self, y: np.ndarray, n_classes: int) -> float:
        """Fresh ledger and scope, then the DP class counts (:attr:`class_counts_`); returns ``n_hat``.

        ``n_hat = max(sum of the released counts, 1)`` (the exact row count for a non-private fit) is the only row
        count the fit uses from here on.
        """
        if len(self.ledger):  # a refit starts a fresh ledger (with the same settings, e.g. keep_values)
            self.ledger = Ledger(neighbouring=self.ledger.neighbouring, keep_values=self.ledger.keep_values)
        self.scope = []
        counts = self._release_class_counts(y, n_classes, self.counts_share * self.budget.rho)
        self.n_hat_ = max(float(np.sum(counts)), 1.0)
        return self.n_hat_

    def _schedule(self, n_hat: float) -> tuple[float, int]:
        """Poisson sampling rate ``q = min(1, batch_size / n_hat)`` and the number of steps ``ceil(epochs / q)``.

        ``n_hat`` is the DP row count (sum of the released class counts). ``batch_size=None`` uses
        ``max(batch_floor, ceil(n_hat / batch_divisor))`` (class attributes; 32 and 50, a sampling rate of about 2%
        for large data, unless a subclass sets others).
        """
        n_hat = max(float(n_hat), 1.0)
        if self.batch_size is not None:
            self.batch_size_ = self.batch_size
        else:
            self.batch_size_ = max(self.batch_floor, math.ceil(n_hat / self.batch_divisor))
        q = min(1.0, self.batch_size_ / n_hat)
        return q, max(1, math.ceil(self.epochs / q))

    def _stats_rho(self) -> float | None:
        """ZCDP share of the statistics releases (two releases, half each), or None when non-private."""
        if not self.private:
            return None
        return self.stats_share * self.budget.rho

    def _stats_sigma_mult(self) -> float | None:
        """Noise of each statistics release in units of its sensitivity, ``1 / sqrt(stats_share * rho)``."""
        rho = self._stats_rho()
        return None if rho is None else 1.0 / math.sqrt(rho)

    def _calibrate(self, sample_rate: float, steps: int) -> float:
        """DP-SGD noise multiplier for the budget left after the releases already in the ledger."""
        if not self.private:
            self.noise_multiplier_ = 0.0
            return 0.0
        z = calibrate_noise_multiplier(
            self.ledger, eps=self.budget.eps, delta=self.budget.delta, sample_rate=sample_rate, steps=steps
        )
        self.noise_multiplier_ = z
        return z

    def _rngs(self):
        """Torch generators of a fit: ``(g_cpu, g_dev, g_noise, g_batches)``.

        ``g_cpu``/``g_dev`` (model initialisation, latent draws) are seeded from ``self.rng``. The DP-SGD noise
        (``g_noise``) and the Poisson batches (``g_batches``) come from them too, or from one cryptographically secure
        generator with ``secure_rng=True`` (private fits).
        """
        g_cpu = torch_generator(self.rng, "cpu")
        g_dev = torch_generator(self.rng, self.device_)
        if self.private and self.secure_rng:
            g_secure = secure_generator()
            return g_cpu, g_dev, g_secure, g_secure
        return g_cpu, g_dev, g_dev, g_cpu

    def _record_step(self, dp_opt, sample_rate: float) -> None:
        """Record one DP-SGD step with the noise multiplier the opacus optimiser ``dp_opt`` used and the batches'
        sample rate; the sensitivity is its clipping norm (the ledger states DP-SGD noise in units of it).
        """
        self.ledger.add_dpsgd(
            name=f"dp-sgd ({type(self).__name__})",
            noise_multiplier=float(dp_opt.noise_multiplier),
            sample_rate=float(sample_rate),
            steps=1,
        )

    def _resolve_standardize(self, n_hat: float, d: int) -> str:
        """``"auto"``: ``"dp"`` unless the DP feature means would be noisier than 10% of the value range half-width.

        The noise standard deviation of a DP mean is ``sigma_mult * h * sqrt(d) / n_hat`` (see
        :func:`dp_feature_stats`); the choice uses only the DP row count ``n_hat``, d, eps, delta and stats_share, so
        it costs nothing more. Non-private fits always use the exact statistics.
        """
        if self.standardize != "auto":
            return self.standardize
        if not self.private:
            return "dp"
        return "dp" if self._stats_sigma_mult() * math.sqrt(d) / max(float(n_hat), 1.0) <= 0.1 else "public"

    def _resolve_calibrate(self):
        """``"class"``, ``"pooled"`` or False; ``"auto"``: ``"class"`` for a non-private fit (the exact quantiles cost
        nothing), False under DP (a DP histogram on a few hundred rows is noisier than the model's marginals).
        """
        if self.calibrate == "auto":
            return False if self.private else "class"
        return self.calibrate

    def _fit_scaler(self, X: np.ndarray, y: np.ndarray, n_hat: float) -> None:
        """Feature scaling (:meth:`_fit_standardize`), then the target quantiles of calibrated marginals.

        ``self.target_knots_`` (``(k, d, L)``, k classes or 1 part): the exact quantiles without privacy (a class
        without rows takes all rows'); under DP those of DP histograms (:meth:`_feature_cdfs`): one per class,
        recorded as parts of one partition (parallel composition), or one for all rows, reusing the ``"quantile"``
        standardisation's CDFs when there are any. Either way at most one more ``stats_share`` of ``rho``, recorded
        in the ledger before DP-SGD is calibrated on what is left.
        """
        self._fit_standardize(X, n_hat)
        self.calibrate_ = self._resolve_calibrate()
        self.target_knots_ = self.calibration_ = None
        if not self.calibrate_:
            return
        levels = quantile_levels(self.calibration_levels)
        per_class = self.calibrate_ == "class"
        reuse = self.private and not per_class and self.normal_scores_ is not None
        if self.private and not reuse and 2 * self.stats_share + self.counts_share >= 1:
            raise ValueError(
                f"calibrate={self.calibrate_!r} under DP releases DP histograms with their own stats_share of the "
                f"budget; 2 * stats_share + counts_share must be < 1, got 2 * {self.stats_share} + "
                f"{self.counts_share}."
            )
        if not per_class:
            if not self.private:
                self.target_knots_ = empirical_quantiles(X, levels)[None]
            else:
                cdfs = self.normal_scores_ if reuse else self._feature_cdfs(X, "calibrated marginals")
                self.target_knots_ = cdf_quantiles(cdfs, levels)[None]
            return
        parts = []
        for c in range(self.n_classes_):  # every class, rows or not: which classes are empty stays private
            Xc = X[y == c]
            if self.private:
                cdfs = self._feature_cdfs(Xc, "calibrated marginals, per class", partition=("calibration", c))
                parts.append(cdf_quantiles(cdfs, levels))
            else:
                parts.append(empirical_quantiles(Xc if len(Xc) else X, levels))
        self.target_knots_ = np.stack(parts)

    def _released_class_freq(self) -> np.ndarray:
        """Class frequencies from the DP class counts (negatives as 0; uniform when all are 0): post-processing."""
        released = np.maximum(np.asarray(self.class_counts_, dtype=float), 0.0)
        total = released.sum()
        return released / total if total > 0 else np.full(len(released), 1.0 / len(released))

    def _fit_calibration(self) -> None:
        """After training: the model's own marginal quantiles from a reference draw, mapped onto
        :attr:`target_knots_` by every later sample (:class:`MarginalCalibration`).

        Per class: the same number of rows of each class; pooled: as many in all, in proportion to the DP class
        counts. That number is :attr:`calibration_rows`, capped at 2^25 values per draw (at least ``2 L`` rows).
        Post-processing of the model (no privacy cost); no-op when the marginals are not calibrated.
        """
        self.calibration_ = None
        if self.target_knots_ is None:
            return
        k, d, L = self.target_knots_.shape
        rows = max(2 * L, min(self.calibration_rows, 2**25 // max(d, 1)))
        levels = quantile_levels(L)
        if k == 1:
            freq = self._released_class_freq()
            counts = np.floor(freq * rows).astype(int)
            counts[np.argmax(freq)] += rows - counts.sum()
            plans = [counts]
        else:
            plans = [np.eye(k, dtype=int)[c] * rows for c in range(k)]
        # calibration_ is None while drawing: the model's own values
        model = np.stack([empirical_quantiles(self._sample(counts), levels) for counts in plans])
        self.calibration_ = MarginalCalibration(model_knots=model, target_knots=self.target_knots_, levels=levels)

    def _feature_cdfs(self, X: np.ndarray, use: str, partition: tuple[str, int] | None = None):
        """Per-feature CDFs of ``X``: exact without privacy, else one DP histogram of :attr:`quantile_grid` cells over
        ``value_range`` with ``stats_share`` of ``rho`` (:func:`dp_normal_scores`, on part ``partition`` of a
        partition of the records if given; the scope line names ``use``, once).
        """
        if not self.private:
            return exact_normal_scores(X)
        cdfs = dp_normal_scores(
            X,
            rho=self._stats_rho(),
            bounds=self.value_range,
            grid_size=self.quantile_grid,
            rng=self.rng,
            ledger=self.ledger,
            partition=partition,
        )
        line = (
            f"{use} through per-feature CDFs from one DP histogram ({self.quantile_grid} cells over the public "
            f"value_range {list(self.value_range)})"
        )
        if line not in self.scope:
            self.scope.append(line)
        return cdfs

    def _fit_standardize(self, X: np.ndarray, n_hat: float) -> None:
        """Set the feature scaling: ``self.mean_``/``self.std_`` (DP, public range, or exact when non-private), or
        ``self.normal_scores_`` for ``"quantile"`` (then ``mean_ = 0``, ``std_ = 1``).
        """
        self.standardize_ = self._resolve_standardize(n_hat, X.shape[1])
        self.normal_scores_ = None
        if self.standardize_ == "quantile":
            d = X.shape[1]
            self.mean_, self.std_ = np.zeros(d), np.ones(d)
            self.normal_scores_ = self._feature_cdfs(X, "normal scores")
            return
        if self.standardize_ == "public":
            lo, hi = self.value_range
            self.mean_ = np.full(X.shape[1], 0.5 * (lo + hi))
            self.std_ = np.full(X.shape[1], 0.5 * (hi - lo))
            self.scope.append(f"standardisation from the public value_range {list(self.value_range)}")
            return
        self.mean_, self.std_ = dp_feature_stats(
            X, value_range=self.value_range, rho=self._stats_rho(), n=n_hat, rng=self.rng, ledger=self.ledger
        )

    def _scale(self, X: np.ndarray) -> np.ndarray:
        """Data units -> model units (standardised values, or normal scores)."""
        if self.normal_scores_ is not None:
            return self.normal_scores_.transform(X)
        return (X - self.mean_) / self.std_

    def _unscale(self, Z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Model units -> data units of rows of classes ``labels``, through the calibrated marginals when fitted
        (clipped into ``value_range`` for a private fit).
        """
        X = self.normal_scores_.inverse_transform(Z) if self.normal_scores_ is not None else Z * self.std_ + self.mean_
        X = self._clip_private(X)
        if self.calibration_ is None:
            return X
        parts = labels if self.calibration_.model_knots.shape[0] > 1 else None
        return self._clip_private(self.calibration_.apply(X, parts))

    def _clip_private(self, X: np.ndarray) -> np.ndarray:
        """Clip samples of a private fit into the public ``value_range`` (post-processing; no-op when non-private)."""
        return np.clip(X, *self.value_range) if self.private else X

    def _common_scope(self) -> None:
        self.scope.append(
            "not written out: the training diagnostics (history_, losses on the private data without noise) stay on "
            "the Python generator object"
        )

    @staticmethod
    def _class_centres(X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-class means of ``X`` (rows of absent classes stay 0) and the mask of classes present."""
        present = np.bincount(y, minlength=n_classes) > 0
        centres = np.zeros((n_classes, X.shape[1]))
        for c in np.flatnonzero(present):
            centres[c] = X[y == c].mean(0)
        return centres, present

    @staticmethod
    def _class_spread(syn_centres: np.ndarray, real_centres: np.ndarray) -> float:
        """How far apart the synthetic class centres are, relative to the real ones (Frobenius norms about the mean)."""
        real = real_centres - real_centres.mean(0)
        syn = syn_centres - syn_centres.mean(0)
        return float(np.linalg.norm(syn)) / max(float(np.linalg.norm(real)), 1e-12)

    @staticmethod
    def _class_agreement(syn_centres: np.ndarray, real_centres: np.ndarray) -> float:
        """Pearson correlation of the class centres about their mean, synthetic vs real (0 for a random model)."""
        real = (real_centres - real_centres.mean(0)).ravel()
        syn = (syn_centres - syn_centres.mean(0)).ravel()
        if real.std() == 0 or syn.std() == 0:
            return 0.0
        return float(np.corrcoef(real, syn)[0, 1])

    def params(self) -> dict:
        return {
            "epochs": self.epochs,
            "batch_size": getattr(self, "batch_size_", self.batch_size),
            "lr": self.lr,
            "max_grad_norm": self.max_grad_norm,
            "hidden_dim": self.hidden_dim,
            "latent_dim": self.latent_dim,
            "standardize": getattr(self, "standardize_", self.standardize),
            "calibrate": getattr(self, "calibrate_", self.calibrate),
            "value_range": list(self.value_range),
            "stats_share": self.stats_share,
            "counts_share": self.counts_share,
            "secure_rng": self.secure_rng,
            "device": str(self.device_),
            "noise_multiplier": float(self.noise_multiplier_),
        }
