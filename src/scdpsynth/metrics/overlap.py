"""Histogram intersection of per-gene marginal distributions (fidelity)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._base import EvalData, cached, tidy

__all__ = ["histogram_intersection", "histogram_overlap"]


def histogram_intersection(real: np.ndarray, other: np.ndarray, bins: int = 50) -> np.ndarray:
    """Per-gene histogram intersection of ``other`` with ``real`` after min-max scaling by the real range.

    Each gene ``g`` is scaled as ``(x - min_g) / (max_g - min_g)`` with ``min_g, max_g`` taken from ``real``
    (a constant real gene uses width 1, i.e. ``x - min_g``), and both samples are binned into ``bins`` equal
    bins on ``[0, 1]`` (1 falls into the last bin). Bin frequencies are counts divided by the *total* number of
    rows, so values of ``other`` outside the real range count as mass that does not overlap. The score is
    ``sum_b min(p_real[b], p_other[b])`` in ``[0, 1]``; 1 means identical binned marginals.

    Parameters
    ----------
    real
        Reference data, ``n x d``.
    other
        Data to compare, ``m x d`` (same genes).
    bins
        Number of bins.

    Returns
    -------
    Array of length ``d`` with the intersection per gene.
    """
    real = np.asarray(real, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if real.ndim != 2 or other.ndim != 2 or real.shape[1] != other.shape[1]:
        raise ValueError(
            f"real and other must be 2-D with the same number of columns, got {real.shape}, {other.shape}."
        )
    if not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    lo, width = _real_range(real)
    return _intersection(_scale(real, lo, width), _scale(other, lo, width), bins)


def _real_range(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = real.min(axis=0)
    width = real.max(axis=0) - lo
    width[width <= 0] = 1.0
    return lo, width


def _scale(X: np.ndarray, lo: np.ndarray, width: np.ndarray) -> np.ndarray:
    return (np.asarray(X, dtype=np.float64) - lo) / width


def _frequencies(scaled: np.ndarray, bins: int) -> np.ndarray:
    """Bin frequencies (d x bins) of min-max scaled values; values outside [0, 1] go to a dropped extra bin."""
    n, d = scaled.shape
    idx = np.floor(scaled * bins)
    np.minimum(idx, bins - 1, out=idx)  # 1.0 (the real maximum) falls into the last bin
    idx[(scaled < 0) | (scaled > 1)] = bins  # the extra "outside" bin
    idx += np.arange(d) * (bins + 1)
    counts = np.bincount(idx.astype(np.int64).ravel(), minlength=d * (bins + 1)).reshape(d, bins + 1)
    return counts[:, :bins] / n


def _intersection(scaled_real: np.ndarray, scaled_other: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum(_frequencies(scaled_real, bins), _frequencies(scaled_other, bins)).sum(axis=1)


def histogram_overlap(
    real: EvalData,
    syn: EvalData,
    *,
    holdout: EvalData | None = None,
    bins: tuple[int, ...] = (25, 50, 100),
) -> pd.DataFrame:
    """Histogram intersection overlap score, mean over genes (higher is better, 1 = identical marginals).

    For every gene, the synthetic and the real training values are min-max scaled by the real range and binned
    (see :func:`histogram_intersection`); the score is the mean over genes of the histogram intersection. The
    ``reference`` is the same score of the real holdout against the real training data (what fresh real data
    reach), NaN without a holdout; :func:`scdpsynth.tl.evaluate` replaces it by the score of a real holdout sample
    as large as the synthetic set (a smaller sample has noisier histograms and a lower overlap).

    Returns
    -------
    Tidy frame, one row per bin count (``variant`` ``"bins=25"`` etc.).
    """
    lo, width = cached(real, ("histogram_overlap:range",), lambda: _real_range(real.X))
    scaled = {"syn": _scale(syn.X, lo, width)}
    if holdout is not None:
        scaled["holdout"] = _scale(holdout.X, lo, width)
    rows = []
    for b in bins:
        p_real = cached(
            real, ("histogram_overlap:freq", int(b)), lambda b=b: _frequencies(_scale(real.X, lo, width), b)
        )
        value = float(np.minimum(p_real, _frequencies(scaled["syn"], b)).sum(axis=1).mean())
        ref = np.nan
        if holdout is not None:
            ref = float(np.minimum(p_real, _frequencies(scaled["holdout"], b)).sum(axis=1).mean())
        rows.append({"metric": "histogram_overlap", "variant": f"bins={b}", "value": value, "reference": ref})
    return tidy(rows)
