from __future__ import annotations

import logging
import math
import numbers

import numpy as np
import pandas as pd

from .. import _validation as V
from ..generators import registry as generators
from ..pp import train_holdout_split
from ._evaluate import evaluate
from ._generate import generate

logger = logging.getLogger("scdpsynth")


def benchmark(
    adata,
    *,
    methods,
    eps_grid,
    seeds=(0,),
    groupby: str | None = None,
    holdout_size: float = 0.2,
    metrics="all",
    method_kwargs: dict[str, dict] | None = None,
    layer: str | None = None,
    metric_kwargs: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """Run generators over a grid of privacy budgets and seeds and evaluate each synthetic data set.

    For every seed, ``adata`` is split once into a training part and a real holdout
    (:func:`scdpsynth.pp.train_holdout_split`, stratified by ``groupby``, ``random_state=seed``); every method and
    epsilon is then fitted on the training part (:func:`scdpsynth.tl.generate`, ``random_state=seed``) and
    evaluated against it and the holdout (:func:`scdpsynth.tl.evaluate`).

    Parameters
    ----------
    adata
        Real data; not modified.
    methods
        Generator name or list of names; see :func:`scdpsynth.tl.list_methods`.
    eps_grid
        Privacy budgets; ``None`` runs the method without privacy.
    seeds
        Integer seeds (one split and one generator seed each).
    groupby
        Column of ``adata.obs`` with class labels (for generation per class and the labelled metrics).
    holdout_size
        Fraction of observations held out.
    metrics
        ``"all"`` or a list of metric names.
    method_kwargs
        Keyword arguments per method for :func:`scdpsynth.tl.generate`, e.g. ``{"ron_gauss": {"n_components": 20}}``.
    layer
        Layer holding the expression matrix.
    metric_kwargs
        Keyword arguments per metric for :func:`scdpsynth.tl.evaluate`.

    Returns
    -------
    One tidy DataFrame: the columns of :func:`scdpsynth.tl.evaluate` plus ``method``, ``eps`` (NaN for
    non-private), ``eps_spent``, ``delta`` and ``seed``.
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise ValueError("methods is empty: give at least one generator name (see tl.list_methods()).")
    for m in methods:
        generators.check(m)
    eps_grid = [eps_grid] if eps_grid is None or isinstance(eps_grid, numbers.Real) else list(eps_grid)
    if not eps_grid:
        raise ValueError("eps_grid is empty: give at least one epsilon (or None for non-private).")
    for e in eps_grid:
        V.check_eps(e)
    seeds = [seeds] if isinstance(seeds, numbers.Integral) else list(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and s >= 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}.")
    method_kwargs = dict(method_kwargs or {})
    unknown = [m for m in method_kwargs if m not in methods]
    if unknown:
        raise ValueError(f"method_kwargs has entries for methods not in methods: {unknown}. Methods: {methods}.")

    frames = []
    for seed in seeds:
        train, hold = train_holdout_split(adata, holdout_size=holdout_size, stratify=groupby, random_state=int(seed))
        for method in methods:
            for eps in eps_grid:
                logger.info("benchmark: %s eps=%s seed=%d", method, eps, seed)
                syn = generate(
                    train,
                    method,
                    eps=eps,
                    groupby=groupby,
                    layer=layer,
                    random_state=int(seed),
                    **method_kwargs.get(method, {}),
                )
                df = evaluate(
                    train,
                    syn,
                    holdout=hold,
                    metrics=metrics,
                    groupby=groupby,
                    layer=layer,
                    random_state=int(seed),
                    metric_kwargs=metric_kwargs,
                )
                privacy = syn.uns["scdpsynth"]["privacy"]
                frames.append(
                    df.assign(
                        method=method,
                        eps=np.nan if eps is None else float(eps),
                        eps_spent=float(privacy.get("eps_spent", math.inf)),
                        delta=float(privacy.get("delta", np.nan)),
                        seed=int(seed),
                    )
                )
    out = pd.concat(frames, ignore_index=True)
    front = ["method", "eps", "seed"]
    return out[front + [c for c in out.columns if c not in front]]
