"""Public value bounds for clipping: checks and the documented default (AnnData-free).

A DP release of real-valued data needs bounds that do not depend on the data. :data:`DEFAULT_BOUNDS` is the public
default of the continuous generators: ``(0, 16)`` covers log-scale expression, i.e. log2 microarray intensities and
``log1p`` counts (``log1p`` of 8.9 million). Data on another scale (z-scores, raw intensities) need bounds from
domain knowledge (``bounds=(lo, hi)``); values outside are clipped, and :func:`warn_clipped` tells the data holder
(locally, never in the output) how much was clipped.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["DEFAULT_BOUNDS", "check_bounds", "warn_clipped"]

#: public default value range of log-scale expression (log2 intensities, log1p counts)
DEFAULT_BOUNDS = (0.0, 16.0)


def check_bounds(bounds, name: str = "bounds") -> tuple[float, float]:
    """Validate a public ``(lo, hi)`` pair of finite scalars with ``lo < hi``."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a pair (lo, hi) of numbers known independently of the data, e.g. (0, 16) for log2 "
            f"intensities or log1p counts; got {bounds!r}."
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be (lo, hi) with finite lo < hi, got {bounds!r}.")
    return lo, hi


def warn_clipped(X, bounds: tuple[float, float], name: str = "bounds", tol: float = 0.01) -> None:
    """Warn the data holder if more than ``tol`` of the values of ``X`` lie outside ``bounds`` (a local message to the
    person running the fit, not part of any output).
    """
    X = np.asarray(X)
    if X.size == 0:
        return
    lo, hi = bounds  # scalars, or per-column arrays that broadcast against the rows of X
    outside = float(np.mean((X < lo) | (X > hi)))
    if outside > tol:
        shown = f"={(float(lo), float(hi))}" if np.ndim(lo) == 0 and np.ndim(hi) == 0 else " (per gene)"
        warnings.warn(
            f"{outside:.1%} of the values lie outside the public {name}{shown} and are clipped. Pass "
            f"{name}=(lo, hi) from domain knowledge (not from the data) for data on another scale.",
            UserWarning,
            stacklevel=4,
        )
