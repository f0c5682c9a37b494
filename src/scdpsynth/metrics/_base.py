"""The contract every metric follows (AnnData-free).

A metric is a function ``metric(real, syn, *, holdout=None, **kwargs) -> pandas.DataFrame`` taking
:class:`EvalData` and returning a *tidy* frame with at least the columns :data:`TIDY_COLUMNS`:

``metric``     registry name of the metric (str)
``variant``    sub-score or setting, e.g. ``"accuracy"``, ``"bins=25"``, ``"up"``; ``""`` if none (str)
``group``      class label the row refers to, or ``"all"`` (str)
``value``      the score of the synthetic data (float)
``reference``  the same score for real data where the metric defines one (e.g. train-on-real), else NaN (float)

Optional columns: ``chance`` (the score of a predictor that ignores the data, e.g. the majority class, where one
exists; NaN otherwise) and ``reference_how`` (how the metric computed its own ``reference``). Other extra columns
are allowed. Higher-is-better or not is stated in each metric's docstring.

Each metric is registered with ``reference=``, saying how :func:`scdpsynth.tl.evaluate` obtains its reference:
``"holdout_sample"`` (the metric applied to a real sample, as large as the synthetic set, of the holdout, which
the generator never saw), ``"train_sample"`` (the same with real training rows, for metrics that test on the
holdout) or ``"internal"`` (the metric's own ``reference`` column, documented in its docstring).

Real-side statistics that do not depend on the synthetic data may be memoised in ``EvalData.cache`` with
:func:`cached`; ``tl.benchmark`` keeps the real :class:`EvalData` across methods, budgets and seeds of one split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["EvalData", "TIDY_COLUMNS", "cached", "subset", "tidy"]

TIDY_COLUMNS = ["metric", "variant", "group", "value", "reference"]


class _Lazy:
    """Data descriptor for :attr:`EvalData.X`: a callable given as ``X`` is called on first access, and its result
    kept (metrics that never read ``X``, e.g. the CAMDA ones on counts, never pay for the dense matrix).
    """

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            raise AttributeError("X")  # no class-level default: the dataclass field stays required
        value = obj.__dict__[self.slot]
        if callable(value):
            value = obj.__dict__[self.slot] = value()
        return value

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = value


@dataclass
class EvalData:
    """Expression matrix with labels, as metrics see it.

    ``X`` is dense float (n x d) on the analysis scale (log-expression; counts are log1p-normalised by
    ``tl.evaluate`` before metrics see them); it may be given as a function returning that array, called the first
    time a metric reads ``X``. ``y`` holds integer class codes into ``classes`` (or None); ``donors`` optional
    donor / sample labels; ``counts`` optionally the raw count matrix (sparse or dense); ``condition`` optional 0/1
    codes of a two-level condition (``condition_levels`` names them). ``n_obs`` is the number of rows, read without
    building ``X``.
    """

    X: np.ndarray = _Lazy()  # type: ignore[assignment]
    y: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    genes: list[str] = field(default_factory=list)
    donors: np.ndarray | None = None
    counts: object | None = None
    condition: np.ndarray | None = None
    condition_levels: list[str] = field(default_factory=list)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_obs(self) -> int:
        raw = self.__dict__["_X"]
        if callable(raw):
            return int((self.counts if self.counts is not None else raw()).shape[0])
        return int(raw.shape[0])


def subset(data: EvalData, idx: np.ndarray) -> EvalData:
    """The rows ``idx`` of ``data`` (every per-row field; a fresh cache)."""

    def take(a):
        return None if a is None else a[idx]

    raw = data.__dict__["_X"]
    X = (lambda: data.X[idx]) if callable(raw) else raw[idx]
    return EvalData(X=X, y=take(data.y), classes=data.classes, genes=data.genes, donors=take(data.donors),
                    counts=take(data.counts), condition=take(data.condition),
                    condition_levels=data.condition_levels)  # fmt: skip


def cached(data: EvalData, key: tuple, compute, *, other: EvalData | None = None):
    """``compute()``, memoised in ``data.cache`` under ``key`` (and the identity of ``other``, e.g. the holdout).

    Only for values that depend on nothing but ``data``, ``other`` and what ``key`` holds (metric parameters).
    """
    full = (key, id(other))
    hit = data.cache.get(full)
    if hit is not None and hit[0] is other:
        return hit[1]
    value = compute()
    data.cache[full] = (other, value)
    return value


def tidy(rows: list[dict]) -> pd.DataFrame:
    """Build a tidy frame with the standard columns first (missing ones filled: variant/group '' / 'all')."""
    df = pd.DataFrame(rows)
    for col, default in (("variant", ""), ("group", "all"), ("reference", np.nan), ("chance", np.nan)):
        if col not in df:
            df[col] = default
    rest = [c for c in df.columns if c not in TIDY_COLUMNS]
    return df[TIDY_COLUMNS + rest]
