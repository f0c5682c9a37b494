from __future__ import annotations

import logging
import math
import numbers
import warnings

import numpy as np
import pandas as pd

from .. import _validation as V
from .._progress import progress_bar
from ..generators import registry as generators
from ..pp import train_holdout_split
from ._evaluate import _eval_data, _evaluate_data, _select, _serialisable_frame
from ._generate import generate

logger = logging.getLogger("scdpsynth")

#: statistics of the summary (``summarize=True``): per (method, eps, metric, variant, group)
SUMMARY_COLUMNS = [
    "value_mean",
    "value_sd",
    "reference_mean",
    "reference_sd",
    "chance",
    "privacy_dcr_auroc_mean",
    "privacy_dcr_auroc_sd",
    "eps_spent",
    "n_runs",
]


def _seed_list(seeds, name: str) -> list[int]:
    seeds = [seeds] if isinstance(seeds, numbers.Integral) else list(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and s >= 0 for s in seeds):
        raise ValueError(f"{name} must be a non-empty list of non-negative integers, got {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} lists a seed twice: {seeds!r}.")
    return [int(s) for s in seeds]


def benchmark(
    adata,
    *,
    methods,
    eps_grid,
    seeds=(0,),
    generation_seeds=(0,),
    groupby: str | None = None,
    holdout_size: float = 0.2,
    metrics="all",
    method_kwargs: dict[str, dict] | None = None,
    layer: str | None = None,
    metric_kwargs: dict[str, dict] | None = None,
    summarize: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run generators over a grid of privacy budgets, split seeds and generation seeds, and evaluate each result.

    For every split seed ``s`` in ``seeds``, ``adata`` is split once into a training part and a real holdout
    (:func:`scdpsynth.pp.train_holdout_split`, stratified by ``groupby``, ``random_state=s``). Every method, epsilon
    and generation seed ``g`` is then fitted on that training part (:func:`scdpsynth.tl.generate`,
    ``random_state=g``, as many synthetic rows as training rows) and evaluated against the training part and the
    holdout as :func:`scdpsynth.tl.evaluate` does (``random_state=s``). The real side of the evaluation (the
    transformed real matrices, real DE genes, co-expression network, real classifiers, train-holdout distances and
    the size-matched real references) depends only on the split, so it is computed once per split seed and reused
    for every method, epsilon and generation seed.

    Parameters
    ----------
    adata
        Real data; not modified.
    methods
        Generator name or list of names; see :func:`scdpsynth.tl.list_methods`.
    eps_grid
        Privacy budgets; ``None`` runs the method without privacy.
    seeds
        Split seeds (the reference study uses 2 split seeds x 2 generation seeds).
    generation_seeds
        Seeds of the generator, run for every split seed. A known seed makes the privacy noise reproducible, which
        is what a benchmark wants and a release must not do (``tl.generate`` warns; the warning is silenced here).
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
    summarize
        Return mean and standard deviation over the ``len(seeds) * len(generation_seeds)`` runs instead of one row
        per run.
    progress
        Progress bar over the grid; ``None`` follows ``sd.settings.progress``.

    Returns
    -------
    With ``summarize=False``: one tidy DataFrame, the columns of :func:`scdpsynth.tl.evaluate` plus ``method``,
    ``eps`` (NaN for non-private), ``seed`` (the split seed), ``generation_seed``, ``eps_spent`` and ``delta``.
    With ``summarize=True``: one row per ``method, eps, metric, variant, group`` with ``value_mean``, ``value_sd``,
    ``reference_mean``, ``reference_sd``, ``chance``, ``privacy_dcr_auroc_mean``/``_sd``, ``eps_spent`` (the
    largest) and ``n_runs`` (standard deviations with ``ddof=1``; NaN for one run).
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
    seeds = _seed_list(seeds, "seeds")
    generation_seeds = _seed_list(generation_seeds, "generation_seeds")
    method_kwargs = dict(method_kwargs or {})
    unknown = [m for m in method_kwargs if m not in methods]
    if unknown:
        raise ValueError(f"method_kwargs has entries for methods not in methods: {unknown}. Methods: {methods}.")
    metric_kwargs = dict(metric_kwargs or {})

    genes = adata.var_names
    if not genes.is_unique:
        raise ValueError("adata has duplicate var_names; run adata.var_names_make_unique() first.")
    counts_input = V.is_counts(V.get_matrix(adata, layer))
    classes = None
    if groupby is not None:
        _, classes = V.check_categorical(adata, groupby, what="groupby")
        classes = pd.Index([str(c) for c in classes])
    chosen = _select(metrics, has_holdout=True, has_labels=groupby is not None)
    kw = {"counts_input": counts_input, "groupby": groupby, "classes": classes}

    frames = []
    bar = progress_bar(total=len(seeds) * len(methods) * len(eps_grid) * len(generation_seeds), desc="benchmark",
                       progress=progress)  # fmt: skip
    for seed in seeds:
        train, hold = train_holdout_split(adata, holdout_size=holdout_size, stratify=groupby, random_state=seed)
        # the real side, built once per split: metrics memoise their real statistics on these objects
        real = _eval_data(train, genes, layer, "adata_real", **kw)
        holdout = _eval_data(hold, genes, layer, "holdout", **kw)
        for method in methods:
            gen_kw = {"n_obs": train.n_obs, **method_kwargs.get(method, {})}
            for eps in eps_grid:
                for gseed in generation_seeds:
                    logger.info("benchmark: %s eps=%s split seed=%d generation seed=%d", method, eps, seed, gseed)
                    bar.set_postfix_str(f"{method} eps={eps} seed={seed}/{gseed}")
                    with warnings.catch_warnings():
                        # an integer seed with eps set warns that the noise is reproducible: intended here
                        warnings.filterwarnings("ignore", message=r"(?i).*seed", category=UserWarning)
                        syn = generate(
                            train, method, eps=eps, groupby=groupby, layer=layer, random_state=gseed, **gen_kw
                        )
                    syn_data = _eval_data(syn, genes, layer, "adata_syn", **kw)
                    df = _evaluate_data(real, syn_data, holdout, chosen, metric_kwargs=metric_kwargs, seed=seed)
                    privacy = syn.uns["scdpsynth"]["privacy"]
                    frames.append(
                        _serialisable_frame(df).assign(
                            method=method,
                            eps=np.nan if eps is None else float(eps),
                            eps_spent=float(privacy.get("eps_spent", math.inf)),
                            delta=float(privacy.get("delta", np.nan)),
                            seed=seed,
                            generation_seed=gseed,
                        )
                    )
                    bar.update()
    bar.close()
    out = pd.concat(frames, ignore_index=True)
    front = ["method", "eps", "seed", "generation_seed"]
    out = out[front + [c for c in out.columns if c not in front]]
    return summarize_runs(out) if summarize else out


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (``ddof=1``) over seeds of a per-run :func:`benchmark` table."""
    keys = ["method", "eps", "metric", "variant", "group"]
    g = runs.groupby(keys, dropna=False, sort=False)
    out = pd.DataFrame(
        {
            "value_mean": g["value"].mean(),
            "value_sd": g["value"].std(ddof=1),
            "reference_mean": g["reference"].mean(),
            "reference_sd": g["reference"].std(ddof=1),
            "chance": g["chance"].mean(),
            "privacy_dcr_auroc_mean": g["privacy_dcr_auroc"].mean(),
            "privacy_dcr_auroc_sd": g["privacy_dcr_auroc"].std(ddof=1),
            "eps_spent": g["eps_spent"].max(),
            "n_runs": g["value"].size(),
        }
    ).reset_index()
    return out[keys + SUMMARY_COLUMNS]
