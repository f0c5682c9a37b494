"""Euclidean projection of noisy counts onto non-negative vectors with a given total (PrivSyn's Norm-Sub)."""

from __future__ import annotations

import numpy as np

__all__ = ["norm_sub"]


def norm_sub(m: np.ndarray, total: float | np.ndarray) -> np.ndarray:
    """Non-negativity and normalisation (PrivSyn's Norm-Sub) of marginals along the last axis.

    Norm-Sub repeatedly sets negative cells to zero and subtracts the excess uniformly from the positive cells until
    the marginal is non-negative and sums to ``total``; its fixed point is the Euclidean projection onto
    ``{v >= 0, sum(v) = total}``, computed here directly (sort-based, vectorised over the leading axes).
    ``total`` broadcasts against ``m.shape[:-1]``.
    """
    m = np.asarray(m, dtype=float)
    total = np.broadcast_to(np.asarray(total, dtype=float), m.shape[:-1])
    if np.any(total < 0):
        raise ValueError("norm_sub needs totals >= 0.")
    u = -np.sort(-m, axis=-1)
    css = np.cumsum(u, axis=-1) - total[..., None]
    k = np.arange(1, m.shape[-1] + 1)
    cond = u - css / k > 0
    cond[..., 0] = True  # holds whenever total > 0; for total = 0 it gives theta = max(m), i.e. all zeros
    r = m.shape[-1] - np.argmax(cond[..., ::-1], axis=-1)  # number of positive cells: last index where cond holds
    theta = np.take_along_axis(css, (r - 1)[..., None], axis=-1) / r[..., None]
    return np.clip(m - theta, 0.0, None)
