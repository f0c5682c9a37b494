from __future__ import annotations

import functools
import inspect
import logging
import time

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _validation as V
from .._chunks import load_matrix, load_rows
from .._progress import progress_bar
from .._transforms import log_normalise as _log_normalise
from .._utils import check_random_state, child_seed
from ..metrics import registry
from ..metrics._base import TIDY_COLUMNS, EvalData, cached, subset
from ..metrics.distance import dcr_auroc

logger = logging.getLogger("scdpsynth")


def _default_groupby(adata_syn) -> str | None:
    meta = adata_syn.uns.get("scdpsynth", {})
    g = meta.get("params", {}).get("groupby") if isinstance(meta, dict) else None
    if g is not None and not isinstance(g, str):  # several columns (cross-classes): the first one, e.g. cell_type
        g = next(iter(g)) if len(g) else None
    if g is None or (isinstance(g, str) and g == "None" and "None" not in adata_syn.obs.columns):
        return None
    return str(g)


AUTO_MAX_CELLS = 50_000


def _max_cells(max_cells) -> int | None:
    if max_cells is None:
        return None
    if isinstance(max_cells, str):
        if max_cells != "auto":
            raise ValueError(f"max_cells must be 'auto', None or an integer >= 2, got {max_cells!r}.")
        return AUTO_MAX_CELLS
    if isinstance(max_cells, bool) or not isinstance(max_cells, int | np.integer) or max_cells < 2:
        raise ValueError(f"max_cells must be 'auto', None or an integer >= 2, got {max_cells!r}.")
    return int(max_cells)


def _layer(adata, layer: str | None, name: str) -> str | None:
    if layer is not None and name == "adata_syn" and layer not in adata.layers:
        return None  # synthetic data from tl.generate keep their matrix in X
    return layer


def _read(adata, layer: str | None, name: str, cap: int | None, rng: np.random.Generator):
    """``(adata or a view of the kept rows, their matrix, note)``: at most ``cap`` rows, drawn uniformly without
    replacement; out-of-core input is streamed and only the kept rows are held (sparse stays sparse).
    """
    M = V.get_matrix(adata, _layer(adata, layer, name))
    n = adata.n_obs
    if cap is None or n <= cap:
        return adata, load_matrix(M), ""
    rows = np.sort(rng.choice(n, cap, replace=False))
    return adata[rows], load_rows(M, rows), f"{name}: {cap:,} of {n:,} cells"


def _aligned_matrix(adata, genes: pd.Index, layer: str | None, name: str, X=None):
    """The expression matrix of ``adata`` (or ``X``, already read from it) with columns in the order of ``genes``."""
    if not adata.var_names.is_unique:
        raise ValueError(f"{name} has duplicate var_names; run {name}.var_names_make_unique() first.")
    layer = _layer(adata, layer, name)
    if X is None:
        X = load_matrix(V.get_matrix(adata, layer))  # backed / dask: read in row chunks (sparse stays sparse)
    if adata.var_names.equals(genes):
        return X
    missing, extra = genes.difference(adata.var_names), adata.var_names.difference(genes)
    if len(missing) or len(extra):
        raise ValueError(
            f"{name} and adata_real have different genes ({len(missing)} missing, e.g. {list(missing[:5])}; "
            f"{len(extra)} extra, e.g. {list(extra[:5])}). Subset both to the shared genes first, e.g. "
            f"{name} = {name}[:, adata_real.var_names.intersection({name}.var_names)].copy() and the same for "
            "adata_real."
        )
    return X[:, adata.var_names.get_indexer(genes)]


def _labels(adata, groupby: str, classes: pd.Index, name: str) -> np.ndarray:
    if groupby not in adata.obs.columns:
        raise KeyError(
            f"groupby={groupby!r} is not a column of {name}.obs. Available: {list(adata.obs.columns)}; "
            "pass groupby= naming the class column present in all inputs."
        )
    col = adata.obs[groupby]
    if col.isna().any():
        raise ValueError(f"{name}.obs[{groupby!r}] has missing labels; drop those rows first.")
    codes = classes.get_indexer(col.astype(str))
    if (codes < 0).any():
        unknown = sorted(set(col.astype(str)[codes < 0]))
        raise ValueError(
            f"{name}.obs[{groupby!r}] has classes not in adata_real: {unknown[:5]}. Class names must match; drop "
            f"those rows, e.g. {name} = {name}[{name}.obs[{groupby!r}].isin(adata_real.obs[{groupby!r}])].copy()."
        )
    return codes.astype(np.int64)


def _condition(adata, condition: str, levels: pd.Index, name: str) -> np.ndarray:
    if condition not in adata.obs.columns:
        raise KeyError(
            f"condition={condition!r} is not a column of {name}.obs. Available: {list(adata.obs.columns)}; "
            "pass condition= naming a two-level column present in all inputs (e.g. 'group_id')."
        )
    col = adata.obs[condition].astype(str)
    codes = levels.get_indexer(col)
    if (codes < 0).any():
        raise ValueError(
            f"{name}.obs[{condition!r}] has levels not in adata_real ({sorted(set(col[codes < 0]))[:5]}); "
            f"expected {list(levels)}."
        )
    return codes.astype(np.int64)


def _condition_levels(adata, condition: str) -> pd.Index:
    _, levels = V.check_categorical(adata, condition, what="condition")
    if len(levels) != 2:
        raise ValueError(
            f"condition={condition!r} must have exactly two levels in adata_real, got {list(levels)}; subset the data "
            "to the two levels to contrast (the second level is tested against the first)."
        )
    return pd.Index([str(c) for c in levels])


def _eval_data(adata, genes, layer, name, *, counts_input: bool, groupby, classes, condition=None, levels=None,
               donor_key=None, X=None) -> EvalData:  # fmt: skip
    X = _aligned_matrix(adata, genes, layer, name, X)
    V.check_finite(X, f"{name} expression matrix")
    if counts_input:
        values = X.data if sparse.issparse(X) else np.asarray(X)
        if values.size and values.min() < 0:
            raise ValueError(
                f"adata_real holds counts but {name} has negative values; both must be on the same scale "
                "(raw counts, as tl.generate returns them for count input)."
            )
        Xa = functools.partial(_log_normalise, X)  # dense: built only if a metric reads EvalData.X
    else:
        Xa = functools.partial(V.to_dense, X)
    y = None if groupby is None else _labels(adata, groupby, classes, name)
    names = [] if classes is None else [str(c) for c in classes]
    cond = None if condition is None else _condition(adata, condition, levels, name)
    donors = None
    if donor_key is not None and name != "adata_syn":
        if donor_key not in adata.obs.columns:
            raise KeyError(
                f"donor_key={donor_key!r} is not a column of {name}.obs. Available: {list(adata.obs.columns)}."
            )
        donors = adata.obs[donor_key].astype(str).to_numpy()
    return EvalData(X=Xa, y=y, classes=names, genes=list(map(str, genes)), counts=X, donors=donors, condition=cond,
                    condition_levels=[] if levels is None else list(levels))  # fmt: skip


def _select(metrics, *, has_holdout: bool, has_labels: bool, has_condition: bool = False) -> list[str]:
    """Metric names for ``metrics``: ``"all"`` (the general suite: every metric outside a preset), a preset name
    (``metrics.PRESETS``, e.g. ``"camda"``), one metric name or a list of names. Presets and ``"all"`` skip metrics
    whose inputs are missing; names asked for explicitly raise instead.
    """
    from ..metrics import PRESETS

    explicit = not (isinstance(metrics, str) and (metrics == "all" or metrics in PRESETS))
    names = [metrics] if isinstance(metrics, str) and explicit else metrics
    if not explicit:
        in_preset = {m for ms in PRESETS.values() for m in ms}
        names = [m for m in registry.names() if m not in in_preset] if metrics == "all" else PRESETS[metrics]
    else:
        names = [registry.check(m) for m in names]
    chosen = []
    for m in names:
        info = registry.info(m)
        if info.get("needs_holdout") and not has_holdout:
            if explicit:
                raise ValueError(f"Metric {m!r} needs a real holdout: pass holdout= (see pp.train_holdout_split).")
            logger.info("Skipping metric %r: it needs a real holdout (pass holdout=).", m)
            continue
        if info.get("needs_labels") and not has_labels:
            if explicit:
                raise ValueError(f"Metric {m!r} needs class labels: pass groupby= (a column of obs).")
            logger.info("Skipping metric %r: it needs class labels (pass groupby=).", m)
            continue
        if info.get("needs_condition") and not has_condition:
            if explicit:
                raise ValueError(f"Metric {m!r} needs a two-level condition: pass condition= (a column of obs).")
            logger.info("Skipping metric %r: it needs a condition (pass condition=).", m)
            continue
        chosen.append(m)
    return chosen


#: columns tl.evaluate writes, in this order, after any the metrics add
EVAL_COLUMNS = [*TIDY_COLUMNS, "chance", "reference_n", "reference_how", "privacy_dcr_auroc"]


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over classes in proportion to ``sizes`` (largest remainders)."""
    exact = n * sizes / sizes.sum()
    out = np.floor(exact).astype(np.int64)
    out[np.argsort(-(exact - out), kind="stable")[: n - out.sum()]] += 1
    return out


def reference_sample(pool: EvalData, n: int, seed: int) -> tuple[EvalData, bool]:
    """A real sample of ``n`` rows of ``pool``, stratified by class in the pool's own proportions.

    Rows are drawn without replacement while the pool (or a class) is large enough, else with replacement (a
    bootstrap). Returns the sample and whether it was a bootstrap.
    """
    rng = np.random.default_rng([int(seed), 0x5EED])
    N = pool.n_obs
    if pool.y is None:
        idx = np.sort(rng.choice(N, n, replace=n > N))
        boot = n > N
    else:
        codes, sizes = np.unique(pool.y, return_counts=True)
        parts, boot = [], False
        for c, size, k in zip(codes, sizes, _allocate(sizes, n), strict=True):
            rows = np.flatnonzero(pool.y == c)
            boot |= bool(k > size)
            parts.append(rng.choice(rows, k, replace=k > size))
        idx = np.sort(np.concatenate(parts))
    return subset(pool, idx), boot


def _reference_frame(fn, kind: str, real: EvalData, syn: EvalData, hold, kwargs: dict, needs_holdout: bool, seed):
    """Values of metric ``fn`` on a size-matched real sample (cached on ``real``), with how it was drawn."""
    pool = hold if kind == "holdout_sample" else real
    if pool is None:
        return None, 0, "none: pass holdout= for a reference on unseen real data"
    n = syn.n_obs
    sample, boot = cached(
        real, ("reference_sample", kind, n, seed), lambda: reference_sample(pool, n, seed), other=hold
    )
    where = "holdout rows (never seen by the generator)" if kind == "holdout_sample" else "real training rows"
    how = f"{'bootstrap of the ' + str(pool.n_obs) + ' ' if boot else ''}{where}, {n} = synthetic size"
    if pool.y is not None:
        how += ", stratified by class"
    if kind == "train_sample":
        how += "; tested on the same holdout"
    key = ("reference_frame", fn.__module__, fn.__name__, repr(sorted(kwargs.items())), kind, n, seed)
    frame = cached(
        real,
        key,
        lambda: fn(real, sample, holdout=hold if needs_holdout else None, **kwargs)[["variant", "group", "value"]],
        other=hold,
    )
    return frame, n, how


def _evaluate_data(real: EvalData, syn: EvalData, hold, chosen, *, metric_kwargs: dict, seed: int,
                   progress: bool | None = False) -> pd.DataFrame:  # fmt: skip
    """Run the ``chosen`` metrics on prepared data; references from size-matched real samples (see evaluate)."""
    frames = []
    bar = progress_bar(chosen, desc="evaluate", progress=progress)
    for m in bar:
        bar.set_postfix_str(m)
        fn = registry.get(m)
        info = registry.info(m)
        kind = info.get("reference", "internal")
        needs_holdout = bool(info.get("needs_holdout"))
        kwargs = dict(metric_kwargs.get(m, {}))
        if "random_state" in inspect.signature(fn).parameters:
            kwargs.setdefault("random_state", seed)
        t0 = time.perf_counter()
        # metrics whose reference tl.evaluate draws itself need the holdout only if they test on it
        df = fn(real, syn, holdout=hold if (needs_holdout or kind == "internal") else None, **kwargs)
        missing = [c for c in TIDY_COLUMNS if c not in df.columns]
        if missing:
            raise RuntimeError(f"Metric {m!r} returned a frame without the tidy columns {missing}; use metrics.tidy().")
        df = df.assign(metric=m)
        if "chance" not in df:
            df["chance"] = np.nan
        if kind == "internal":
            if "reference_how" not in df:
                df["reference_how"] = "see the metric's docstring"
            df["reference_n"] = np.nan
        else:
            ref, n_ref, how = _reference_frame(fn, kind, real, syn, hold, kwargs, needs_holdout, seed)
            if ref is None:
                df["reference"] = np.nan
            else:
                ref = ref.rename(columns={"value": "_ref"}).drop_duplicates(["variant", "group"])
                df = df.merge(ref, on=["variant", "group"], how="left")
                df["reference"] = df.pop("_ref").astype(float)
            df["reference_n"] = float(n_ref) if n_ref else np.nan
            df["reference_how"] = how
        logger.info("Metric %s: %d rows in %.2f s", m, len(df), time.perf_counter() - t0)
        frames.append(df)
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EVAL_COLUMNS)
    privacy = np.nan
    if hold is not None:
        privacy = dcr_auroc(real.X, hold.X, syn.X)
    result["privacy_dcr_auroc"] = privacy
    rest = [c for c in result.columns if c not in EVAL_COLUMNS]
    return result[EVAL_COLUMNS[:5] + rest + EVAL_COLUMNS[5:]]


_NUMERIC = ("value", "reference", "chance", "reference_n", "privacy_dcr_auroc")


def _serialisable_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Make every column h5ad-writable: text columns as str (missing -> ''), the rest as float/bool."""
    out = df.reset_index(drop=True).copy()
    out["variant"] = out["variant"].fillna("")
    out["group"] = out["group"].fillna("all")
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_bool_dtype(s) and col not in _NUMERIC:
            out[col] = s.astype(bool)
        elif col in _NUMERIC or pd.api.types.is_numeric_dtype(s):
            out[col] = pd.to_numeric(s, errors="raise").astype(np.float64)
        else:
            out[col] = s.fillna("").astype(str)
    return out


def evaluate(
    adata_real,
    adata_syn,
    *,
    holdout=None,
    metrics="all",
    groupby: str | None = None,
    condition: str | None = None,
    donor_key: str | None = None,
    layer: str | None = None,
    key_added: str = "scdpsynth_eval",
    random_state=0,
    copy: bool = False,
    metric_kwargs: dict[str, dict] | None = None,
    progress: bool | None = None,
    max_cells: int | str | None = "auto",
):
    """Evaluate synthetic data against the real training data (and a real holdout) with registered metrics.

    Parameters
    ----------
    adata_real
        Real *training* data: what the generator was fitted on. Not modified.
    adata_syn
        Synthetic data (e.g. from :func:`scdpsynth.tl.generate`), with the same genes (``var_names``; order may
        differ) and, for labelled metrics, class labels in ``obs[groupby]`` named like the real ones.
    holdout
        Real data the generator did not see (AnnData, see :func:`scdpsynth.pp.train_holdout_split`). Metrics that
        need it (``ml_efficacy``, ``knn_distance``) are skipped without it (or raise if asked for by name); others
        use it for their ``reference`` column.
    metrics
        ``"all"`` (the general suite), ``"camda"`` (the CAMDA challenge set) or a list of metric names; see
        :func:`scdpsynth.tl.list_metrics`.
    groupby
        Column of ``obs`` with class labels. Default: the ``groupby`` used by ``tl.generate``
        (``adata_syn.uns["scdpsynth"]["params"]["groupby"]``; its first column when it named several); no labels if
        none is found.
    condition
        A two-level column of ``obs`` (e.g. ``"group_id"``: ctrl / stim) for ``de_condition``, which tests the second
        level against the first within each ``groupby`` class; generate with ``groupby=[<class>, <condition>]`` so
        the synthetic cells carry it. Without it ``de_condition`` is skipped.
    donor_key
        Column of the real data's ``obs`` with sample / donor labels, for ``de_condition``'s pseudobulk variants.
    layer
        Layer of ``adata_real`` / ``holdout`` (and of ``adata_syn`` if it has it, else its ``X``) to use.
    key_added
        Key in ``adata_syn.uns`` for the result.
    random_state
        Seed (int or :class:`numpy.random.Generator`) passed to metrics with randomness (e.g. Leiden).
    copy
        If True, leave ``adata_syn`` untouched and return a copy of it holding the result.
    metric_kwargs
        Extra keyword arguments per metric, e.g. ``{"knn_distance": {"k": 5}}``.
    progress
        Progress bar over the metrics (shown once the evaluation has run ``sd.settings.progress_delay`` seconds);
        ``None`` follows ``sd.settings.progress``.
    max_cells
        Largest number of cells evaluated per input: a larger ``adata_real``, ``adata_syn`` or ``holdout`` is
        replaced by a uniform random sample of that many cells (drawn with ``random_state``; backed and dask inputs
        are streamed and only the sampled rows are kept), and the ``subsampled`` column of the result says so.
        ``"auto"`` (default): 50,000 cells, which keeps the CAMDA preset on 640k-cell cohorts under 8 GB; ``None``:
        every cell (memory then grows with the data: several metrics hold dense cells x genes matrices).

    Returns
    -------
    The tidy DataFrame also written to ``adata_syn.uns[key_added]``, one row per score, with columns

    ``metric``, ``variant``, ``group``, ``value``
        the score of the synthetic data (see each metric's docstring);
    ``reference``
        the same score of *real* data of the same size as the synthetic set, so that sample size cannot make
        synthetic data look better than real data (test power, histogram noise and edge counts all grow with it).
        How it is drawn depends on the metric (``reference_how`` says it per row; ``tl.list_metrics()`` column
        ``reference``): ``holdout_sample`` metrics (histogram_overlap, de_genes, coexpression, scc, lisi) score a
        stratified sample of the holdout, which the generator never saw, in place of the synthetic data (a bootstrap
        of the holdout when it is smaller than the synthetic set; NaN without a holdout); ``train_sample`` metrics
        (ml_efficacy, celltype_rf_auc), which test on the holdout, train on as many real training rows as there are
        synthetic rows; knn_distance keeps its own references (distances to a set do not depend on how many records
        are queried);
    ``chance``
        the score of a predictor that ignores the data where one exists (ml_efficacy: always the holdout's
        majority class, i.e. its share for accuracy and 1/classes for balanced accuracy; celltype_rf_auc: 0.5), else
        NaN;
    ``reference_n``
        rows of the real reference sample;
    ``reference_how``
        how the reference was obtained;
    ``subsampled``
        which inputs ``max_cells`` subsampled, e.g. ``"adata_real: 50,000 of 639,600 cells"``; ``""`` if none;
    ``privacy_dcr_auroc``
        a privacy figure beside every utility figure: the probability that a real training record lies closer to
        the synthetic data than a real holdout record (the DCR attack's AUROC; 0.5: the synthetic data know nothing
        of the training records, whatever the sizes of train and holdout; 1: copies; see
        :func:`scdpsynth.metrics.distance.dcr_auroc`). NaN without a holdout.

    With ``copy=True`` the copy of ``adata_syn`` instead.

    Notes
    -----
    If ``adata_real`` holds raw counts, all three inputs are transformed the same way before the metrics see them:
    ``log1p`` of counts normalised to 10,000 per row. Other data (e.g. log2 microarray) are used as they are.
    An exact copy of the training data scores as well as real data on every utility and fidelity metric; only the
    privacy figure (and :func:`scdpsynth.tl.attack`) tell it apart.
    """
    metric_kwargs = dict(metric_kwargs or {})
    for name in metric_kwargs:
        registry.check(name)
    if groupby is None:
        groupby = _default_groupby(adata_syn)
    genes = adata_real.var_names
    if not genes.is_unique:
        raise ValueError("adata_real has duplicate var_names; run adata_real.var_names_make_unique() first.")
    cap = _max_cells(max_cells)
    rng = check_random_state(random_state)
    seed = int(random_state) if isinstance(random_state, int | np.integer) else child_seed(rng)
    sub_rng = np.random.default_rng([seed, 0xCE115])
    full_real = adata_real  # classes and condition levels come from every real cell, sampled or not
    adata_real, X_real, note_real = _read(adata_real, layer, "adata_real", cap, sub_rng)
    adata_syn_in = adata_syn  # the result goes to the caller's object, not to a subsampled view
    adata_syn, X_syn, note_syn = _read(adata_syn, layer, "adata_syn", cap, sub_rng)
    note_hold = ""
    if holdout is not None:
        holdout, X_hold, note_hold = _read(holdout, layer, "holdout", cap, sub_rng)
    notes = "; ".join(n for n in (note_real, note_syn, note_hold) if n)
    if notes:
        logger.info("tl.evaluate: max_cells=%d subsampled %s", cap, notes)
    counts_input = V.is_counts(X_real)
    classes = None
    if groupby is not None:
        _, classes = V.check_categorical(full_real, groupby, what="groupby")
        classes = pd.Index([str(c) for c in classes])
    chosen = _select(metrics, has_holdout=holdout is not None, has_labels=groupby is not None,
                     has_condition=condition is not None)  # fmt: skip
    levels = None if condition is None else _condition_levels(full_real, condition)
    kw = {"counts_input": counts_input, "groupby": groupby, "classes": classes, "condition": condition,
          "levels": levels, "donor_key": donor_key}  # fmt: skip
    real = _eval_data(adata_real, genes, layer, "adata_real", X=X_real, **kw)
    syn = _eval_data(adata_syn, genes, layer, "adata_syn", X=X_syn, **kw)
    hold = _eval_data(holdout, genes, layer, "holdout", X=X_hold, **kw) if holdout is not None else None

    result = _evaluate_data(real, syn, hold, chosen, metric_kwargs=metric_kwargs, seed=seed, progress=progress)
    result.insert(result.columns.get_loc("privacy_dcr_auroc"), "subsampled", notes)
    result = _serialisable_frame(result)
    target = adata_syn_in.copy() if copy else adata_syn_in
    target.uns[key_added] = result
    return target if copy else result
