"""Input checks for AnnData-facing functions. Every error names the fix."""

from __future__ import annotations

import difflib
import logging
import warnings

import numpy as np
import pandas as pd
from scipy import sparse

from .privacy.budget import check_delta, check_eps

__all__ = [
    "get_matrix",
    "to_dense",
    "check_finite",
    "is_counts",
    "check_counts",
    "check_categorical",
    "check_unique_names",
    "check_eps",
    "check_delta",
]

logger = logging.getLogger("scdpsynth")


def get_matrix(adata, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]`` (not copied), with a helpful error for a missing layer."""
    if not hasattr(adata, "obs") or not hasattr(adata, "X"):
        raise TypeError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if layer is None:
        X = adata.X
        where = "adata.X"
    else:
        if layer not in adata.layers:
            raise KeyError(
                f"Layer {layer!r} not found. Available layers: {list(adata.layers.keys())}; use layer=None for adata.X."
            )
        X = adata.layers[layer]
        where = f"adata.layers[{layer!r}]"
    if X is None:
        raise ValueError(f"{where} is empty (None); put the expression matrix in adata.X or pass layer=.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{where} has shape {adata.shape}: need at least one observation and one variable.")
    return X


def to_dense(X, dtype=np.float64) -> np.ndarray:
    """Dense copy of a numpy/scipy/backed matrix as ``dtype``."""
    if sparse.issparse(X):
        return X.toarray().astype(dtype, copy=False)
    return np.array(X, dtype=dtype)


def _values(X) -> np.ndarray:
    return X.data if sparse.issparse(X) else np.asarray(X)


def check_finite(X, where: str = "the expression matrix") -> None:
    """Raise a ValueError if ``X`` holds NaN or infinite values."""
    values = _values(X)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise ValueError(
            f"{where} contains {n_bad} NaN or infinite values. Impute or drop them first "
            "(e.g. adata = adata[:, ~np.isnan(adata.X).any(0)]) before generating synthetic data."
        )


def is_counts(X) -> bool:
    """True if every value of ``X`` is a finite, non-negative integer."""
    values = _values(X)
    if values.size == 0:
        return True
    if np.issubdtype(values.dtype, np.integer):
        return bool(values.min() >= 0)
    if not np.isfinite(values).all():
        return False
    return bool(values.min() >= 0 and np.all(values == np.round(values)))


def check_counts(X, where: str = "adata.X") -> None:
    """Raise a ValueError unless ``X`` holds raw non-negative integer counts."""
    check_finite(X, where)
    values = _values(X)
    if values.size and values.min() < 0:
        raise ValueError(
            f"{where} has negative values (min {values.min():g}); this method needs raw counts. "
            "Pass the layer with raw counts, e.g. layer='counts'."
        )
    if not is_counts(X):
        frac = values[values != np.round(values)]
        raise ValueError(
            f"{where} holds non-integer values (e.g. {frac.flat[0]:g}); this method needs raw integer counts. Pass "
            "the layer with raw counts (layer='counts'), or undo normalisation/log1p (e.g. adata.raw.to_adata())."
        )


def check_unique_names(names: pd.Index, where: str, *, fix: str) -> None:
    """Raise a ValueError naming the duplicates if ``names`` is not unique."""
    if not names.is_unique:
        dup = list(pd.Index(names)[pd.Index(names).duplicated()].unique()[:5])
        raise ValueError(f"{where} has duplicate names (e.g. {dup}); run {fix} first.")


def check_categorical(adata, key: str, *, min_size: int = 1, what: str = "groupby") -> tuple[np.ndarray, pd.Index]:
    """Return integer codes and categories of ``adata.obs[key]``.

    Raises for a missing column, missing labels and groups smaller than ``min_size``; categories without any
    observation are dropped (they cannot be generated).
    """
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a column name of adata.obs (a str), got {type(key).__name__}.")
    if key not in adata.obs.columns:
        cols = [str(c) for c in adata.obs.columns]
        close = difflib.get_close_matches(key, cols, n=1, cutoff=0.6) or [c for c in cols if key.lower() in c.lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"{what}={key!r} is not a column of adata.obs.{hint} Available: {list(adata.obs.columns)}")
    col = adata.obs[key]
    if col.isna().any():
        raise ValueError(
            f"adata.obs[{key!r}] has {int(col.isna().sum())} missing labels; drop those cells "
            f"(adata = adata[adata.obs[{key!r}].notna()].copy()) or fill them."
        )
    cat = pd.Categorical(col)
    suspicious = [c for c in cat.categories if isinstance(c, str) and c.strip().lower() in ("nan", "none", "na", "")]
    if suspicious:
        warnings.warn(
            f"adata.obs[{key!r}] has the label(s) {suspicious}: text that usually marks a missing value, treated here "
            f"as a class of its own. Set them to NaN and drop those cells if they are missing labels.",
            UserWarning,
            stacklevel=3,
        )
    counts = pd.Series(cat.codes).value_counts().reindex(range(len(cat.categories)), fill_value=0)
    empty = [cat.categories[i] for i, c in counts.items() if c == 0]
    if empty:
        logger.info("Dropping %d empty categories of %r: %s", len(empty), key, empty)
        cat = cat.remove_unused_categories()
        counts = pd.Series(cat.codes).value_counts().reindex(range(len(cat.categories)), fill_value=0)
    small = {str(cat.categories[i]): int(c) for i, c in counts.items() if c < min_size}
    if small:
        raise ValueError(
            f"Groups of adata.obs[{key!r}] with fewer than {min_size} observations: {small}. Remove or merge them "
            f"before fitting, e.g. adata = adata[~adata.obs[{key!r}].isin({list(small)})].copy()."
        )
    return np.asarray(cat.codes, dtype=np.int64), pd.Index(cat.categories)
