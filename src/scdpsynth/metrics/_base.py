"""The contract every metric follows (AnnData-free).

A metric is a function ``metric(real, syn, *, holdout=None, **kwargs) -> pandas.DataFrame`` taking
:class:`EvalData` and returning a *tidy* frame with at least the columns :data:`TIDY_COLUMNS`:

``metric``     registry name of the metric (str)
``variant``    sub-score or setting, e.g. ``"accuracy"``, ``"bins=25"``, ``"up"``; ``""`` if none (str)
``group``      class label the row refers to, or ``"all"`` (str)
``value``      the score of the synthetic data (float)
``reference``  the same score for real data where the metric defines one (e.g. train-on-real), else NaN (float)

Extra columns are allowed. Higher-is-better or not is stated in each metric's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["EvalData", "TIDY_COLUMNS", "tidy"]

TIDY_COLUMNS = ["metric", "variant", "group", "value", "reference"]


@dataclass
class EvalData:
    """Expression matrix with labels, as metrics see it.

    ``X`` is dense float (n x d) on the analysis scale (log-expression; counts are log1p-normalised by
    ``tl.evaluate`` before metrics see them); ``y`` holds integer class codes into ``classes`` (or None);
    ``donors`` optional integer donor codes; ``counts`` optionally the raw count matrix (sparse or dense).
    """

    X: np.ndarray
    y: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    genes: list[str] = field(default_factory=list)
    donors: np.ndarray | None = None
    counts: object | None = None


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Build a tidy frame with the standard columns first (missing ones filled: variant/group '' / 'all')."""
    df = pd.DataFrame(rows)
    for col, default in (("variant", ""), ("group", "all"), ("reference", np.nan)):
        if col not in df:
            df[col] = default
    rest = [c for c in df.columns if c not in TIDY_COLUMNS]
    return df[TIDY_COLUMNS + rest]
