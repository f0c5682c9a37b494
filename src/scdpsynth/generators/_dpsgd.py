"""DP-SGD building blocks: Poisson batches, opacus' clipped and noised optimiser, and noise calibration.

The privacy of DP-SGD (Abadi et al. 2016) is that of ``T`` steps of the Poisson-subsampled Gaussian mechanism:
each row joins a batch independently with probability ``q``, every per-row gradient is clipped to L2 norm ``C``
(sensitivity ``C`` of their sum under adding/removing one row) and ``N(0, (z C)^2)`` noise is added to the sum.
The training loop records its steps with :meth:`scdpsynth.privacy.Ledger.add_dpsgd` using exactly the ``z`` given
to opacus and the ``q`` given to :func:`poisson_batch`; the ledger composes them with every other release (PLD,
dp-accounting). :func:`calibrate_noise_multiplier` picks ``z`` on that same ledger (one code path for reporting and
calibrating).
"""

from __future__ import annotations

import contextlib
import math
import warnings

from ._torch import import_opacus, import_torch

__all__ = [
    "calibrate_noise_multiplier",
    "dp_backward",
    "dpsgd_event",
    "hooks_off",
    "make_dp_optimizer",
    "poisson_batch",
]

#: PLD discretisation of the bisection in :func:`calibrate_noise_multiplier` (coarse, fast); the result is then
#: checked (and raised if needed) at the ledger's reporting discretisation
SEARCH_DISCRETIZATION = 1e-3
#: largest noise multiplier the calibration tries
_MAX_Z = 1e6


def poisson_batch(n: int, sample_rate: float, generator):
    """Indices of a Poisson sample: each of ``n`` rows is included independently with probability ``sample_rate``.

    The batch may be empty; DP-SGD still takes a (noise-only) step then, as its privacy analysis assumes.
    """
    torch = import_torch()
    return torch.nonzero(torch.rand(n, generator=generator) < sample_rate, as_tuple=False).flatten()


def make_dp_optimizer(
    module,
    optimizer,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: int,
    generator,
    secure_mode: bool = False,
):
    """Wrap ``module`` and ``optimizer`` for DP-SGD with opacus' ghost clipping.

    Returns opacus' ``GradSampleModuleFastGradientClipping`` (per-sample gradient norms of the ``nn.Linear`` layers
    without materialising per-sample gradients) and ``DPOptimizerFastGradientClipping``. Use :func:`dp_backward`
    with the per-sample losses, then ``optimizer.step()``: the gradient of every row is clipped to L2 norm
    ``max_grad_norm``, ``N(0, (noise_multiplier * max_grad_norm)^2)`` noise (drawn from ``generator``) is added to
    their sum, which is divided by ``expected_batch_size`` (a normaliser only; it plays no part in the privacy).
    ``secure_mode=True`` is opacus' protection against floating-point attacks on the noise (each noise value is
    ``(N_1 + ... + N_4) / 2``); pass a cryptographically secure ``generator`` with it
    (:func:`~scdpsynth.generators._torch.secure_generator`), as opacus' ``PrivacyEngine(secure_mode=True)`` does.
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
        secure_mode=bool(secure_mode),
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


def dpsgd_event(*, noise_multiplier: float, sample_rate: float, steps: int):
    """The ``dp_accounting`` event of ``steps`` DP-SGD steps (what :meth:`Ledger.add_dpsgd` records)."""
    import dp_accounting as dpa

    step = dpa.PoissonSampledDpEvent(float(sample_rate), dpa.GaussianDpEvent(float(noise_multiplier)))
    return dpa.SelfComposedDpEvent(step, int(steps))


def _clt_noise_multiplier(eps: float, delta: float, sample_rate: float, steps: int) -> float:
    """Starting point of the search: the ``z`` at which the CLT approximation of DP-SGD (Bu, Dong, Long & Su 2020:
    ``mu ~ q sqrt(T (exp(1 / z^2) - 1))``-GDP) meets the ``mu`` of (eps, delta). Only a guess; never a guarantee.
    """
    from ..privacy import mu_from_eps

    ratio = mu_from_eps(eps, delta) / (float(sample_rate) * math.sqrt(int(steps)))
    return 1.0 / math.sqrt(math.log1p(ratio**2))


def calibrate_noise_multiplier(
    ledger,
    *,
    eps: float,
    delta: float,
    sample_rate: float,
    steps: int,
    rtol: float = 5e-3,
) -> float:
    """Smallest DP-SGD noise multiplier (to relative tolerance ``rtol``) keeping the ledger within (eps, delta).

    Bisects ``z`` on ``ledger.get_epsilon(delta, extra=<steps x Poisson-subsampled Gaussian(z) at sample_rate>)``:
    the releases already recorded (e.g. DP counts and statistics) composed with the planned DP-SGD steps under the
    PLD accountant, the tight bound the ledger reports. The search runs at a coarse PLD discretisation
    (:data:`SEARCH_DISCRETIZATION`); the returned ``z`` is then checked at the ledger's reporting discretisation and
    raised until it satisfies the budget there, so a ledger that records these steps reports ``eps_spent <= eps``.
    """
    eps, delta = float(eps), float(delta)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}.")
    if ledger.get_epsilon(delta) >= eps:
        raise ValueError(
            "The releases made before DP-SGD already spend the whole budget; lower stats_share or counts_share."
        )

    def eps_at(z: float, *, final: bool = False) -> float:
        extra = dpsgd_event(noise_multiplier=z, sample_rate=sample_rate, steps=steps)
        if final:  # the ledger's own (reporting) discretisation
            return ledger.get_epsilon(delta, extra=extra)
        return ledger.get_epsilon(delta, extra=extra, discretization=SEARCH_DISCRETIZATION)

    too_small = ValueError(
        f"eps={eps} is too small for {steps} DP-SGD steps at sample rate {sample_rate:.3g}: the noise multiplier "
        f"would exceed {_MAX_Z:g}. Raise eps, or lower epochs / batch_size."
    )
    # bracket [lo, hi] around the answer, starting from the CLT approximation (avoids slow PLDs far from it)
    hi = min(max(_clt_noise_multiplier(eps, delta, sample_rate, steps), 1e-2), _MAX_Z)
    if eps_at(hi) > eps:
        lo = hi
        while True:
            if hi >= _MAX_Z:
                raise too_small
            lo, hi = hi, min(2.0 * hi, _MAX_Z)
            if eps_at(hi) <= eps:
                break
    else:
        lo = 0.5 * hi
        while eps_at(lo) <= eps:
            lo, hi = 0.5 * lo, lo
            if lo < 1e-3:
                lo = 0.0
                break
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if eps_at(mid) > eps:
            lo = mid
        else:
            hi = mid
    while eps_at(hi, final=True) > eps:
        hi *= 1.0 + rtol
    return hi
