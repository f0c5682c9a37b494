"""Input checks of the deep generators: hyper-parameters, training matrices, labels and sample sizes."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_class_counts", "check_fit_input", "positive_number", "share", "to_dense_float"]


def positive_number(name: str, value, *, integer: bool = False):
    """``value`` as a positive int (``integer=True``) or float, with an error naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a {'positive integer' if integer else 'number > 0'}, got {value!r}.")
    if integer and int(value) != value:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return int(value) if integer else float(value)


def share(name: str, value) -> float:
    """A budget share in ``(0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}.")
    if not (0 < float(value) < 1):
        raise ValueError(f"{name} must be in (0, 1), got {value!r}.")
    return float(value)


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


def check_class_counts(class_counts, n_classes: int) -> np.ndarray:
    """Validate the per-class sample sizes passed to ``sample``."""
    counts = np.asarray(class_counts)
    if counts.shape != (n_classes,) or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ValueError(
            f"class_counts must be {n_classes} non-negative integers (one per class), got {class_counts!r}."
        )
    return counts.astype(np.int64)
