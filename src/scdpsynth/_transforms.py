"""Per-record transforms shared by evaluation and attacks (no data-derived statistics, so no privacy cost)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["TARGET_SUM", "log_normalise"]

TARGET_SUM = 1e4


def log_normalise(X, target_sum: float = TARGET_SUM) -> np.ndarray:
    """``log1p`` of counts scaled to ``target_sum`` per row (scanpy's normalize_total + log1p); empty rows stay 0.

    Accepts dense or scipy sparse input and returns a dense float64 array.
    """
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    if sparse.issparse(X):
        return np.log1p(sparse.diags(scale) @ X.astype(np.float64)).toarray()
    return np.log1p(np.asarray(X, dtype=np.float64) * scale[:, None])
