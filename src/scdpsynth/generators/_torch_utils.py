"""Shared machinery of the deep DP generators: lazy torch/opacus import, devices, seeding, DP-SGD accounting.

Nothing here imports torch or opacus at module import time, so ``import scdpsynth`` stays fast.

Privacy accounting
------------------
:class:`DPSGDAccountant` composes, under Renyi DP at one fixed grid of orders (:data:`RDP_ORDERS`),

* DP-SGD steps: the Poisson-subsampled Gaussian mechanism with sampling rate ``q`` and noise multiplier ``z``
  (noise standard deviation ``z * C`` on the sum of per-sample gradients clipped to L2 norm ``C``), whose RDP is
  computed by opacus' ``compute_rdp`` (Mironov, Talwar & Zhang 2019), and
* plain Gaussian releases with L2 sensitivity ``D`` and noise ``sigma``: ``r(alpha) = alpha D^2 / (2 sigma^2)``
  (Mironov 2017, Proposition 7), e.g. the DP standardisation statistics.

The composed curve is converted to (eps, delta)-DP with :func:`scdpsynth.privacy.eps_from_rdp` (Balle et al. 2020,
Theorem 21; the same conversion as opacus' ``get_privacy_spent``). Neighbouring data sets differ by adding or
removing one row (the setting of the Poisson-subsampled Gaussian analysis).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .._utils import child_seed
from ..privacy import eps_from_rdp
from ..privacy.mechanisms import _check_positive
from ._base import BaseGenerator

__all__ = [
    "DPSGDAccountant",
    "RDP_ORDERS",
    "calibrate_noise_multiplier",
    "dp_feature_stats",
    "import_opacus",
    "import_torch",
    "init_linear_",
    "dp_backward",
    "hooks_off",
    "make_dp_optimizer",
    "poisson_batch",
    "select_device",
    "torch_generator",
]

#: RDP orders: a coarse version of opacus' default grid (fractional orders are slow to evaluate for the subsampled
#: Gaussian), extended with large orders for small budgets
RDP_ORDERS = np.array(
    [
        1.1,
        1.25,
        1.5,
        1.75,
        2.0,
        2.25,
        2.5,
        2.75,
        3.0,
        3.5,
        4.0,
        4.5,
        5.0,
        5.5,
        6.0,
        7.0,
        8.0,
        9.0,
        10.0,
        *range(12, 64, 2),
        64,
        80,
        96,
        128,
        192,
        256,
    ],
    dtype=float,
)


def import_torch():
    """Import torch lazily, with an install hint."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a dependency of the deep generators
        raise ImportError(
            "The deep generators (dp_vae, dp_gan) need PyTorch and opacus: pip install torch opacus"
        ) from err
    return torch


def import_opacus():
    """Import opacus lazily, with an install hint."""
    try:
        import opacus
    except ImportError as err:  # pragma: no cover
        raise ImportError("The deep generators (dp_vae, dp_gan) need opacus for DP-SGD: pip install opacus") from err
    return opacus


def select_device(device="auto"):
    """Return a :class:`torch.device` for ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:i]"``."""
    torch = import_torch()
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {type(device).__name__}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}). Use device='auto' (falls back to the CPU) or device='cpu'."
            )
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible.")
        return dev
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {device!r}.")


def torch_generator(rng: np.random.Generator, device="cpu"):
    """A :class:`torch.Generator` on ``device`` seeded with a child seed of ``rng`` (global RNG untouched)."""
    torch = import_torch()
    gen = torch.Generator(device=device)
    gen.manual_seed(child_seed(rng))
    return gen


def init_linear_(module, generator) -> None:
    """Re-initialise every ``nn.Linear`` in ``module`` like torch's default init, drawing from ``generator``.

    torch's default initialisation draws from the global RNG; this keeps fits reproducible without touching it.
    """
    torch = import_torch()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
                    torch.nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def poisson_batch(n: int, sample_rate: float, generator):
    """Indices of a Poisson sample: each of ``n`` rows is included independently with probability ``sample_rate``.

    The batch may be empty; DP-SGD still takes a (noise-only) step then, as its privacy analysis assumes.
    """
    torch = import_torch()
    return torch.nonzero(torch.rand(n, generator=generator) < sample_rate, as_tuple=False).flatten()


def make_dp_optimizer(
    module, optimizer, *, noise_multiplier: float, max_grad_norm: float, expected_batch_size: int, generator
):
    """Wrap ``module`` and ``optimizer`` for DP-SGD with opacus' ghost clipping.

    Returns opacus' ``GradSampleModuleFastGradientClipping`` (per-sample gradient norms of the ``nn.Linear`` layers
    without materialising per-sample gradients) and ``DPOptimizerFastGradientClipping``. Use :func:`dp_backward`
    with the per-sample losses, then ``optimizer.step()``: the gradient of every row is clipped to L2 norm
    ``max_grad_norm``, ``N(0, (noise_multiplier * max_grad_norm)^2)`` noise (drawn from ``generator``) is added to
    their sum, which is divided by the public expected batch size ``q * n``.
    """
    import_opacus()
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping

    gsm = GradSampleModuleFastGradientClipping(
        module, batch_first=True, loss_reduction="sum", max_grad_norm=float(max_grad_norm), use_ghost_clipping=True
    )
    dp_opt = DPOptimizerFastGradientClipping(
        optimizer,
        noise_multiplier=float(noise_multiplier),
        max_grad_norm=float(max_grad_norm),
        expected_batch_size=int(expected_batch_size),
        loss_reduction="mean",
        generator=generator,
    )
    return gsm, dp_opt


def dp_backward(gsm, dp_opt, per_sample_losses, extra_loss=None) -> None:
    """Put the sum of clipped per-sample gradients of ``per_sample_losses`` (shape ``(B,)``) into ``p.grad``.

    Two backward passes (opacus ghost clipping): per-sample gradient norms, then the gradient of
    ``sum_i c_i loss_i`` with clipping factors ``c_i = min(1, C / ||g_i||)``. ``extra_loss`` (a callable returning a
    scalar) adds the gradient of a loss that involves no private record (e.g. a WGAN critic on generated data), with
    the opacus hooks off; it is a function of already-released state, so adding it before the noise costs no
    privacy. Call ``dp_opt.step()`` afterwards to add the noise and update.
    """
    import warnings

    from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    dp_opt.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # opacus' full backward hooks warn when inputs need no gradient (harmless)
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        DPTensorFastGradientClipping(gsm, dp_opt, per_sample_losses, loss_reduction="sum").backward()
        if extra_loss is not None:
            with hooks_off(gsm):
                extra_loss().backward()


@contextlib.contextmanager
def hooks_off(module):
    """Temporarily disable opacus' hooks on ``module`` (no-op for a plain ``nn.Module``)."""
    if not hasattr(module, "disable_hooks"):
        yield
        return
    module.disable_hooks()
    try:
        yield
    finally:
        module.enable_hooks()


def _subsampled_gaussian_rdp(sample_rate: float, noise_multiplier: float, steps: int, orders: np.ndarray) -> np.ndarray:
    import_opacus()
    from opacus.accountants.analysis.rdp import compute_rdp

    return np.asarray(
        compute_rdp(
            q=float(sample_rate),
            noise_multiplier=float(noise_multiplier),
            steps=int(steps),
            orders=[float(a) for a in orders],
        ),
        dtype=float,
    )


class DPSGDAccountant:
    """RDP accountant for DP-SGD steps (opacus' analysis) composed with plain Gaussian releases.

    Exposes :meth:`get_epsilon` and :meth:`to_dict` like :class:`scdpsynth.privacy.ZCDPAccountant`, so
    :meth:`BaseGenerator.privacy_report` works unchanged.

    Parameters
    ----------
    orders
        RDP orders (> 1) at which every release is accounted; default :data:`RDP_ORDERS`.
    """

    def __init__(self, orders=None):
        self.orders = np.asarray(RDP_ORDERS if orders is None else orders, dtype=float)
        if self.orders.ndim != 1 or np.any(self.orders <= 1):
            raise ValueError("RDP orders must be a 1-d array of numbers > 1.")
        #: opacus-style history of DP-SGD steps: ``[noise_multiplier, sample_rate, steps]`` entries
        self.history: list[list] = []
        #: Gaussian releases: dicts with name, sensitivity, sigma, count
        self.gaussians: list[dict] = []

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` DP-SGD steps (runs of equal parameters are merged, like opacus' RDPAccountant)."""
        if self.history and self.history[-1][0] == noise_multiplier and self.history[-1][1] == sample_rate:
            self.history[-1][2] += int(steps)
        else:
            self.history.append([float(noise_multiplier), float(sample_rate), int(steps)])

    def add_gaussian(self, *, name: str, sensitivity: float, sigma: float, count: int = 1) -> None:
        """Record ``count`` Gaussian releases with L2 sensitivity ``sensitivity`` and noise ``sigma``."""
        self.gaussians.append(
            {
                "name": name,
                "sensitivity": _check_positive("sensitivity", sensitivity),
                "sigma": _check_positive("sigma", sigma),
                "count": int(count),
            }
        )

    def gaussian_rdp(self) -> np.ndarray:
        """RDP curve of the Gaussian releases alone."""
        total = np.zeros_like(self.orders)
        for g in self.gaussians:
            total += g["count"] * self.orders * g["sensitivity"] ** 2 / (2.0 * g["sigma"] ** 2)
        return total

    @property
    def rdp(self) -> np.ndarray:
        """Composed RDP curve at :attr:`orders`."""
        total = self.gaussian_rdp()
        for z, q, steps in self.history:
            total = total + _subsampled_gaussian_rdp(q, z, steps, self.orders)
        return total

    def get_epsilon(self, delta: float) -> float:
        """(eps, delta)-DP of everything recorded so far."""
        if not self.history and not self.gaussians:
            return 0.0
        return eps_from_rdp(self.rdp, self.orders, delta)[0]

    def to_dict(self, delta: float | None = None) -> dict:
        """h5ad-serialisable summary."""
        out = {
            "accountant": "rdp (opacus DP-SGD + gaussian)",
            "releases": [g["name"] for g in self.gaussians] + [f"dp-sgd[{i}]" for i in range(len(self.history))],
            "dpsgd_noise_multiplier": np.array([h[0] for h in self.history], dtype=float),
            "dpsgd_sample_rate": np.array([h[1] for h in self.history], dtype=float),
            "dpsgd_steps": np.array([h[2] for h in self.history], dtype=np.int64),
            "gaussian_sigma": np.array([g["sigma"] for g in self.gaussians], dtype=float),
            "gaussian_sensitivity": np.array([g["sensitivity"] for g in self.gaussians], dtype=float),
        }
        if delta is not None:
            if self.history or self.gaussians:
                out["eps_spent"], out["best_order"] = eps_from_rdp(self.rdp, self.orders, delta)
            else:
                out["eps_spent"] = 0.0
        return out


def calibrate_noise_multiplier(
    *,
    eps: float,
    delta: float,
    sample_rate: float,
    steps: int,
    base_rdp: np.ndarray | None = None,
    orders=None,
    rtol: float = 5e-3,
) -> float:
    """Smallest DP-SGD noise multiplier (to relative tolerance ``rtol``) keeping the composed eps <= ``eps``.

    Like opacus' ``get_noise_multiplier`` (bisection on the RDP accountant) but on the composed curve
    ``base_rdp + steps x subsampled Gaussian``, where ``base_rdp`` holds releases already made (e.g. DP
    standardisation statistics). The returned multiplier always satisfies the budget (the upper end of the bracket).
    """
    eps = _check_positive("eps", eps)
    orders = np.asarray(RDP_ORDERS if orders is None else orders, dtype=float)
    base = np.zeros_like(orders) if base_rdp is None else np.asarray(base_rdp, dtype=float)
    if base.any() and eps_from_rdp(base, orders, delta)[0] >= eps:
        raise ValueError("The releases made before DP-SGD already spend the whole budget; lower stats_share.")

    def eps_at(z: float) -> float:
        return eps_from_rdp(base + _subsampled_gaussian_rdp(sample_rate, z, steps, orders), orders, delta)[0]

    lo, hi = 0.0, 1.0
    while eps_at(hi) > eps:
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise ValueError(
                f"eps={eps} is too small for {steps} DP-SGD steps at sample rate {sample_rate:.3g}: the noise "
                "multiplier would exceed 1e6. Raise eps, or lower epochs / batch_size."
            )
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if mid == 0:
            break
        if eps_at(mid) > eps:
            lo = mid
        else:
            hi = mid
    return hi


def clipped_feature_sums(X: np.ndarray, value_range) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The two sums released by :func:`dp_feature_stats` and their L2 sensitivities (add/remove one row)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    c, h = 0.5 * (lo + hi), 0.5 * (hi - lo)
    Xc = np.clip(X, lo, hi) - c
    d = X.shape[1]
    return Xc.sum(0), (Xc**2 - h**2 / 2.0).sum(0), (h * math.sqrt(d), h**2 * math.sqrt(d) / 2.0)


def dp_feature_stats(
    X: np.ndarray,
    *,
    value_range: tuple[float, float],
    sigma_mult: float | None,
    rng: np.random.Generator,
    accountant: DPSGDAccountant | None,
    min_std_frac: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation, with the Gaussian mechanism when ``sigma_mult`` is given.

    Values are clipped coordinate-wise into the public ``value_range = (lo, hi)`` and centred at
    ``c = (lo + hi) / 2`` (half-width ``h``). Two sums are released, each with noise ``sigma_mult`` times its L2
    sensitivity under adding/removing one row of ``d`` features:

    * ``S1 = sum_i (x_i - c)``, coordinates in ``[-h, h]``: sensitivity ``h sqrt(d)``;
    * ``S2 = sum_i ((x_i - c)^2 - h^2 / 2)``, coordinates in ``[-h^2/2, h^2/2]``: sensitivity ``h^2 sqrt(d) / 2``.

    The row count ``n`` is treated as public. Mean and variance follow by post-processing and are clipped into
    ``[lo, hi]`` and ``[min_std_frac * h, h]``. Both releases are recorded in ``accountant``. With
    ``sigma_mult=None`` the exact (non-private) mean and standard deviation of the unclipped data are returned
    (standard deviation 1 for constant features).
    """
    n, d = X.shape
    if sigma_mult is None:
        std = X.std(0)
        return X.mean(0), np.where(std > 0, std, 1.0)
    s1, s2, (sens1, sens2) = clipped_feature_sums(X, value_range)
    s1 = s1 + rng.normal(0.0, sigma_mult * sens1, size=d)
    s2 = s2 + rng.normal(0.0, sigma_mult * sens2, size=d)
    accountant.add_gaussian(name="feature sums (standardisation mean)", sensitivity=sens1, sigma=sigma_mult * sens1)
    accountant.add_gaussian(
        name="feature sums of squares (standardisation std)", sensitivity=sens2, sigma=sigma_mult * sens2
    )
    lo, hi = float(value_range[0]), float(value_range[1])
    c, h = 0.5 * (lo + hi), 0.5 * (hi - lo)
    m1 = s1 / n
    m2 = s2 / n + h**2 / 2.0
    mean = np.clip(m1, -h, h)
    std = np.sqrt(np.clip(m2 - mean**2, (min_std_frac * h) ** 2, h**2))
    return mean + c, std


def dp_class_stats(
    v: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    value_range: tuple[float, float],
    sigma_mult: float | None,
    rng: np.random.Generator,
    accountant: DPSGDAccountant | None,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and standard deviation of a scalar ``v`` (e.g. log library size), DP via the Gaussian mechanism.

    ``v`` is clipped into the public ``value_range`` and centred (half-width ``h``); each row adds to one class, so
    the vector of per-class sums has L2 sensitivity ``h`` and the per-class sums of ``(v - c)^2 - h^2/2`` have
    ``h^2 / 2`` (add/remove one row). Class counts are public. Results are clipped into ``value_range`` and
    ``[0.01 h, h]``. ``sigma_mult=None`` gives the exact statistics of the unclipped values.
    """
    counts = np.bincount(y, minlength=n_classes).astype(float)
    if sigma_mult is None:
        mean = np.bincount(y, weights=v, minlength=n_classes) / np.maximum(counts, 1)
        var = np.bincount(y, weights=(v - mean[y]) ** 2, minlength=n_classes) / np.maximum(counts, 1)
        return mean, np.sqrt(np.maximum(var, 1e-12))
    lo, hi = float(value_range[0]), float(value_range[1])
    c, h = 0.5 * (lo + hi), 0.5 * (hi - lo)
    vc = np.clip(v, lo, hi) - c
    s1 = np.bincount(y, weights=vc, minlength=n_classes) + rng.normal(0.0, sigma_mult * h, size=n_classes)
    s2 = np.bincount(y, weights=vc**2 - h**2 / 2, minlength=n_classes)
    s2 = s2 + rng.normal(0.0, sigma_mult * h**2 / 2, size=n_classes)
    accountant.add_gaussian(name=f"per-class sums of {name}", sensitivity=h, sigma=sigma_mult * h)
    accountant.add_gaussian(
        name=f"per-class sums of squares of {name}", sensitivity=h**2 / 2, sigma=sigma_mult * h**2 / 2
    )
    counts = np.maximum(counts, 1.0)  # an empty class gets pure noise, clipped below
    mean = np.clip(s1 / counts, -h, h)
    var = s2 / counts + h**2 / 2 - mean**2
    return mean + c, np.sqrt(np.clip(var, (0.01 * h) ** 2, h**2))


class DeepGenerator(BaseGenerator):
    """Common parts of the DP-SGD generators: budget split, DP standardisation, noise calibration, devices.

    Budget: with ``eps`` given, a share ``stats_share`` of the zCDP budget ``rho(eps, delta)`` goes to the Gaussian
    releases of the preprocessing statistics (standardisation or library sizes; two releases, each with noise
    multiplier ``1 / sqrt(stats_share * rho)``), and the DP-SGD noise multiplier is then calibrated on the composed
    RDP curve so that the total stays within ``eps`` (:func:`calibrate_noise_multiplier`). The accountant's eps is
    reported after training. ``stats_share`` is unused when no statistics are released.

    Standardisation (continuous data): ``standardize="dp"`` uses :func:`dp_feature_stats` (charged to the budget);
    ``standardize="public"`` maps the public ``value_range`` to ``[-1, 1]`` (no data-derived statistics);
    ``standardize="auto"`` (default) picks ``"dp"`` when the DP means are expected to be accurate (noise below 10% of
    the range half-width; a function of n, d and the budget only, see :meth:`_resolve_standardize`), else
    ``"public"``. Scaling is reverted after sampling.

    ``num_threads`` (default 1) sets torch's CPU threads during ``fit``/``sample`` only and restores the previous
    setting afterwards; one thread is fastest for these small MLPs, by far on a shared machine (oversubscribed
    intra-op threads); ``None`` keeps torch's own setting.
    """

    units = ("sample",)

    def __init__(
        self,
        *,
        eps=None,
        delta=1e-5,
        random_state=0,
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
        device="auto",
        num_threads=1,
    ):
        super().__init__(eps=eps, delta=delta, random_state=random_state, unit=unit)
        self.epochs = _positive_number("epochs", epochs, integer=True)
        self.batch_size = None if batch_size is None else _positive_number("batch_size", batch_size, integer=True)
        self.lr = _positive_number("lr", lr)
        self.max_grad_norm = _positive_number("max_grad_norm", max_grad_norm)
        self.hidden_dim = _positive_number("hidden_dim", hidden_dim, integer=True)
        self.latent_dim = _positive_number("latent_dim", latent_dim, integer=True)
        if standardize not in ("auto", "dp", "public"):
            raise ValueError(
                f"standardize must be 'auto', 'dp' (DP statistics, charged to eps) or 'public' "
                f"(value_range), got {standardize!r}."
            )
        self.standardize = standardize
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise TypeError(f"value_range must be a pair (lo, hi) of numbers, got {value_range!r}.") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"value_range must satisfy lo < hi (finite), got {value_range!r}.")
        self.value_range = (lo, hi)
        if not (0 < float(stats_share) < 1):
            raise ValueError(f"stats_share must be in (0, 1), got {stats_share!r}.")
        self.stats_share = float(stats_share)
        self.device = device
        self.device_ = select_device(device)  # fail early for an unavailable device
        if num_threads is not None:
            num_threads = _positive_number("num_threads", num_threads, integer=True)
        self.num_threads = num_threads
        self.accountant = DPSGDAccountant()
        self.noise_multiplier_ = 0.0
        self.history_: list[float] = []

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

    def _schedule(self, n: int) -> tuple[float, int]:
        """Poisson sampling rate ``q = min(1, batch_size / n)`` and the number of steps ``ceil(epochs / q)``.

        ``batch_size=None`` uses ``max(32, ceil(n / 50))`` (sampling rate about 2% for large n, a function of the
        public n only).
        """
        self.batch_size_ = self.batch_size if self.batch_size is not None else max(32, math.ceil(n / 50))
        q = min(1.0, self.batch_size_ / n)
        return q, max(1, math.ceil(self.epochs / q))

    def _stats_sigma_mult(self) -> float | None:
        """Noise multiplier of each of the two statistics releases, or None when non-private."""
        if not self.private:
            return None
        return 1.0 / math.sqrt(self.stats_share * self.budget.rho)

    def _calibrate(self, sample_rate: float, steps: int) -> float:
        """DP-SGD noise multiplier for the budget left after the releases already in the accountant."""
        if not self.private:
            return 0.0
        z = calibrate_noise_multiplier(
            eps=self.budget.eps,
            delta=self.budget.delta,
            sample_rate=sample_rate,
            steps=steps,
            base_rdp=self.accountant.gaussian_rdp(),
            orders=self.accountant.orders,
        )
        self.noise_multiplier_ = z
        return z

    def _resolve_standardize(self, n: int, d: int) -> str:
        """``"auto"``: ``"dp"`` unless the DP feature means would be noisier than 10% of the value range half-width.

        The noise standard deviation of a DP mean is ``sigma_mult * h * sqrt(d) / n`` (see :func:`dp_feature_stats`);
        the choice uses only public quantities (n, d, eps, delta, stats_share), so it leaks nothing. Non-private fits
        always use the exact statistics.
        """
        if self.standardize != "auto":
            return self.standardize
        if not self.private:
            return "dp"
        return "dp" if self._stats_sigma_mult() * math.sqrt(d) / n <= 0.1 else "public"

    def _fit_scaler(self, X: np.ndarray) -> None:
        """Set ``self.mean_``/``self.std_`` for standardisation (DP, public range, or exact when non-private)."""
        self.standardize_ = self._resolve_standardize(*X.shape)
        if self.standardize_ == "public":
            lo, hi = self.value_range
            self.mean_ = np.full(X.shape[1], 0.5 * (lo + hi))
            self.std_ = np.full(X.shape[1], 0.5 * (hi - lo))
            return
        self.mean_, self.std_ = dp_feature_stats(
            X,
            value_range=self.value_range,
            sigma_mult=self._stats_sigma_mult(),
            rng=self.rng,
            accountant=self.accountant,
        )

    def _clip_private(self, X: np.ndarray) -> np.ndarray:
        """Clip samples of a private fit into the public ``value_range`` (post-processing; no-op when non-private)."""
        return np.clip(X, *self.value_range) if self.private else X

    def _common_scope(self) -> None:
        self.scope.append("number of training rows n treated as public (sets the DP-SGD sample rate batch_size/n)")
        self.scope.append("class labels are part of each record (covered by DP-SGD); class frequencies are public")
        self.scope.append(
            "training diagnostics (the generator's history_ of losses) are computed on private data without noise; "
            "they stay on the Python object and are not written to the synthetic AnnData"
        )

    def params(self) -> dict:
        return {
            "epochs": self.epochs,
            "batch_size": getattr(self, "batch_size_", self.batch_size),
            "lr": self.lr,
            "max_grad_norm": self.max_grad_norm,
            "hidden_dim": self.hidden_dim,
            "latent_dim": self.latent_dim,
            "standardize": getattr(self, "standardize_", self.standardize),
            "value_range": list(self.value_range),
            "stats_share": self.stats_share,
            "device": str(self.device_),
            "noise_multiplier": float(self.noise_multiplier_),
        }


def _positive_number(name: str, value, *, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a {'positive integer' if integer else 'number > 0'}, got {value!r}.")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return int(value) if integer else float(value)


def to_dense_float(X) -> np.ndarray:
    """Dense float64 copy of a numpy or scipy matrix."""
    from scipy import sparse

    return X.toarray().astype(np.float64) if sparse.issparse(X) else np.array(X, dtype=np.float64)


def check_fit_input(X, y, n_classes: int, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``X`` (n x d) and integer labels ``y`` in ``[0, n_classes)``; return dense X and int64 y."""
    X = to_dense_float(X)
    if X.ndim != 2 or X.shape[0] < min_rows or X.shape[1] < 1:
        raise ValueError(f"X must be a 2-d matrix with at least {min_rows} rows and 1 column, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; impute or drop them first.")
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold one integer class code per row of X ({X.shape[0]}), got shape {y.shape}.")
    n_classes = int(n_classes)
    if n_classes < 1 or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"class codes must lie in [0, n_classes={n_classes}), got range [{y.min()}, {y.max()}].")
    return X, y.astype(np.int64)


def one_hot(y, n_classes: int, device):
    """Float one-hot matrix of integer codes as a torch tensor on ``device``."""
    torch = import_torch()
    out = torch.zeros(len(y), n_classes, device=device)
    out[torch.arange(len(y)), torch.as_tensor(np.asarray(y), device=device)] = 1.0
    return out


def check_class_counts(class_counts, n_classes: int) -> np.ndarray:
    """Validate the per-class sample sizes passed to ``sample``."""
    counts = np.asarray(class_counts)
    if counts.shape != (n_classes,) or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ValueError(
            f"class_counts must be {n_classes} non-negative integers (one per class), got {class_counts!r}."
        )
    return counts.astype(np.int64)
