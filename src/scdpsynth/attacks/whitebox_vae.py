"""White-box loss attack on a fitted (DP-)VAE.

Yeom et al. (2018) / Hilprecht et al. (2019): a model fits its training records better than unseen ones, so the
negative ELBO (reconstruction loss + KL) is lower on members. The score is ``-per_sample_loss(x, y)``, using the
generator's own ``per_sample_loss(X, y) -> np.ndarray`` (negative ELBO per row). The attacker needs the fitted
model's parameters (white box), not the synthetic data.
"""

from __future__ import annotations

import numpy as np

from ._base import as_matrix

__all__ = ["whitebox_vae"]


def whitebox_vae(generator, targets, *, y=None, reference=None, random_state=0) -> np.ndarray:
    """Minus the per-record loss (negative ELBO) of ``generator`` on ``targets`` (higher = member).

    Parameters
    ----------
    generator
        A fitted generator exposing ``per_sample_loss(X, y) -> np.ndarray`` (e.g. the DP-VAE).
    targets
        Records to score (n x d), on the scale the generator was fitted on.
    y
        Integer class codes of the targets (as used in the generator's ``fit``); ``None`` gives class 0 to all.
    reference
        Ignored.
    random_state
        Unused; the generator's own randomness (e.g. a Monte-Carlo ELBO) is the generator's business.
    """
    loss_fn = getattr(generator, "per_sample_loss", None)
    if not callable(loss_fn):
        raise TypeError(
            f"whitebox_vae needs a fitted generator with a per_sample_loss(X, y) method (e.g. the DP-VAE), got "
            f"{type(generator).__name__}. Pass generator= the fitted generator object."
        )
    targets = as_matrix(targets, "targets")
    y = np.zeros(targets.shape[0], dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64).ravel()
    if y.shape[0] != targets.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {targets.shape[0]} targets.")
    loss = np.asarray(loss_fn(targets, y), dtype=np.float64).ravel()
    if loss.shape[0] != targets.shape[0]:
        raise ValueError(f"per_sample_loss returned {loss.shape[0]} values for {targets.shape[0]} records.")
    if not np.isfinite(loss).all():
        raise ValueError("per_sample_loss returned NaN or infinite values.")
    return -loss
