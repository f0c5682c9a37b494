from __future__ import annotations

import logging
import math
import numbers

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _validation as V
from .._chunks import is_in_memory, is_sparse, load_matrix, load_rows
from ..generators import registry
from ..privacy import DEFAULT_DELTA

logger = logging.getLogger("scdpsynth")

_TRANSFORMS = ("auto", "log1p", "none")


def _largest_remainder(weights: np.ndarray, n_obs: int) -> np.ndarray:
    """Split ``n_obs`` rows over classes in proportion to ``weights`` (>= 0), largest remainder first."""
    weights = np.maximum(np.asarray(weights, dtype=float), 0.0)
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    share = weights / weights.sum() * n_obs
    counts = np.floor(share).astype(np.int64)
    rest = int(n_obs - counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


def _class_sizes(class_sizes, n_obs, *, released, real_counts, categories) -> tuple[np.ndarray, str]:
    """Rows per synthetic class and how they were set (text for the privacy scope, '' if nothing is leaked)."""
    if n_obs is not None and (isinstance(n_obs, bool) or not isinstance(n_obs, numbers.Integral) or n_obs < 1):
        raise ValueError(f"n_obs must be a positive integer, got {n_obs!r}.")
    if isinstance(class_sizes, str):
        if class_sizes == "dp":
            weights, note = np.maximum(released, 0.0), ""
        elif class_sizes == "public":
            weights = real_counts.astype(float)
            note = "exact class sizes of the real data treated as public (class_sizes='public', an explicit opt-in)"
        else:
            raise ValueError(f"class_sizes must be 'dp', 'public' or per-class counts, got {class_sizes!r}.")
    else:
        if isinstance(class_sizes, dict):
            unknown = set(map(str, class_sizes)) - {str(c) for c in categories}
            if unknown:
                raise ValueError(f"class_sizes names unknown classes {sorted(unknown)}; classes: {list(categories)}.")
            given = {str(k): v for k, v in class_sizes.items()}
            class_sizes = [given.get(str(c), 0) for c in categories]
        weights = np.asarray(class_sizes, dtype=float)
        if weights.shape != (len(categories),) or np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError(
                f"class_sizes must give {len(categories)} non-negative counts (one per class, in the order "
                f"{list(categories)}) or a dict class -> count, got {class_sizes!r}."
            )
        note = "per-class sizes given by the user (class_sizes=...), declared public"
    if n_obs is not None:
        return _largest_remainder(weights, int(n_obs)), note
    counts = np.rint(weights).astype(np.int64)
    if counts.sum() == 0:
        raise ValueError(
            "The DP class counts are all below 0.5 (a tiny data set or a tiny eps): pass n_obs= to set the number "
            "of synthetic rows."
        )
    return counts, note


def _labels(adata, groupby) -> tuple[np.ndarray, pd.Index, list[str]]:
    """Integer class codes, the class labels and the obs columns they come from (several columns: cross-classes)."""
    if groupby is None:
        return np.zeros(adata.n_obs, dtype=np.int64), pd.Index(["all"]), []
    keys = [groupby] if isinstance(groupby, str) else list(groupby)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"groupby must be a column name of adata.obs or a list of them, got {groupby!r}.")
    if len(keys) == 1:
        y, cats = V.check_categorical(adata, keys[0], what="groupby")
        return y, cats, keys
    codes = []
    for k in keys:
        c, cats = V.check_categorical(adata, k, what="groupby")
        codes.append(np.asarray(cats.astype(str))[c])
    combined = pd.Categorical(pd.MultiIndex.from_arrays(codes).map(lambda t: " | ".join(t)))
    return np.asarray(combined.codes, dtype=np.int64), pd.Index(combined.categories), keys


def _public_reference(ref, adata, groupby, categories, layer):
    """``(X_ref, y_ref)``: the public reference's counts on ``adata``'s genes and its rows' codes in ``categories``."""
    if not hasattr(ref, "obs") or not hasattr(ref, "var_names"):
        raise TypeError(f"public_reference must be an AnnData object, got {type(ref).__name__}.")
    V.check_unique_names(ref.var_names, "public_reference.var_names", fix="public_reference.var_names_make_unique()")
    missing = adata.var_names.difference(ref.var_names)
    if len(missing):
        raise ValueError(
            f"public_reference lacks {len(missing)} of adata's genes (e.g. {list(missing[:3])}); subset adata to "
            "the genes the reference has, or use a reference that measures them all."
        )
    y_ref, ref_cats, _ = _labels(ref, groupby)
    codes = pd.Categorical(np.asarray(ref_cats, dtype=object)[y_ref], categories=categories).codes
    absent = [str(c) for i, c in enumerate(categories) if not np.any(codes == i)]
    if absent:
        raise ValueError(f"public_reference has no cells of classes {absent}; it needs cells of every class.")
    keep = np.flatnonzero(codes >= 0)  # reference cells of classes the private data do not have are ignored
    cols = ref.var_names.get_indexer(adata.var_names)
    X_ref = load_matrix(V.get_matrix(ref, layer))
    X_ref = sparse.csr_matrix(X_ref)[keep][:, cols] if sparse.issparse(X_ref) else np.asarray(X_ref)[keep][:, cols]
    V.check_counts(X_ref, "public_reference" + ("" if layer is None else f".layers[{layer!r}]"))
    return X_ref, codes[keep].astype(np.int64)


def _resolve_transform(transform: str, X, layer: str | None) -> str:
    """``"auto"``: ``"log1p"`` when the schema says counts (integer dtype, or a layer named like counts), else
    ``"none"``. Decided from the dtype and the layer name only, never from the values.
    """
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of {list(_TRANSFORMS)}, got {transform!r}.")
    if transform != "auto":
        return transform
    counts_schema = np.issubdtype(X.dtype, np.integer) or (layer is not None and "count" in layer.lower())
    return "log1p" if counts_schema else "none"


def generate(
    adata,
    method: str,
    *,
    eps: float | None,
    delta: float | None = None,
    layer: str | None = None,
    groupby: str | list[str] | None = None,
    donor_key: str | None = None,
    unit: str | None = None,
    public_reference=None,
    n_obs: int | None = None,
    class_sizes="dp",
    transform: str = "auto",
    key_added: str = "scdpsynth",
    layer_added: str | None = None,
    random_state=None,
    return_generator: bool = False,
    **method_kwargs,
):
    """Generate a differentially private synthetic version of ``adata``.

    With default arguments the output is (eps, delta)-DP end to end: the noise is fresh and secret, and the number
    of synthetic rows per class comes from DP counts charged to the budget. Nothing derived from the data leaves
    outside the budget unless an argument opts in, and then ``uns[key_added]["privacy"]["scope"]`` says so.

    Parameters
    ----------
    adata
        Real data. Not modified (except ``layers[layer_added]`` when asked for). In memory (dense or sparse),
        backed (``anndata.read_h5ad(path, backed="r")``) or dask-backed; out-of-core matrices are read in row
        chunks. ``copula`` and ``vine_nmf`` stream them (their statistics are summed block by block, so the matrix
        is never held whole; at donor level only the rows the per-donor cap keeps are read); other methods read the
        matrix into memory (sparse stays sparse).
    method
        Generator name; see :func:`scdpsynth.tl.list_methods`.
    eps
        Privacy budget epsilon (> 0), or ``None`` for a non-private fit.
    delta
        Privacy parameter delta. Default ``1e-5``, a public constant (choose it well below 1 / number of privacy
        units).
    layer
        Layer holding the expression matrix; ``None`` uses ``adata.X``.
    groupby
        Column of ``adata.obs`` with class labels (e.g. cell type), or a list of columns (cross-classes, e.g.
        ``["cell_type", "group_id"]``); synthetic data are generated per class and carry the labels in ``obs``. The
        label set is treated as public; the class sizes are not (see ``class_sizes``).
    donor_key
        Column of ``adata.obs`` with donor identifiers; needed for ``unit="donor"``.
    unit
        Privacy unit, ``"sample"`` or ``"donor"``. Default ``"donor"`` if ``donor_key`` is given, else ``"sample"``.
    public_reference
        Optional AnnData of *public* data (e.g. a public atlas of the same tissue; raw counts in ``layer``, the
        ``groupby`` columns, every gene of ``adata``), never the private data. Generators that support it
        (``copula``) estimate their per-class marginals from it without noise and spend the whole budget on what
        remains private (class counts, copula). The scope says so. Only as good as the reference's match to the
        private data.
    n_obs
        Number of synthetic observations, split over the classes in proportion to ``class_sizes``. Default: the
        DP class counts themselves (for donor-level fits: of the cells kept after the per-donor cap).
    class_sizes
        ``"dp"`` (default): class proportions (and, without ``n_obs``, sizes) from the generator's DP class counts.
        ``"public"``: the exact real class sizes, an explicit opt-in listed in the privacy scope. Or per-class counts
        (array in class order, or dict class -> count) that the user declares public.
    transform
        ``"auto"`` (default): continuous generators fit ``log1p`` of counts when the schema says counts (integer
        dtype, or a layer named like ``"counts"``) and return counts; otherwise the values as they are. Decided from
        dtype and layer name only, never from the values. ``"log1p"`` or ``"none"`` to say so explicitly. Count
        generators always take and return counts.
    key_added
        Key in the synthetic ``uns`` for the metadata.
    layer_added
        If given, also write the synthetic matrix into ``adata.layers[layer_added]``, row-aligned by label (each
        real row gets a synthetic row of the same class). Needs ``class_sizes="public"`` and ``n_obs=None``.
    random_state
        ``None`` (default): fresh OS entropy for a private fit, seed 0 for a non-private one. An int or
        :class:`numpy.random.Generator` makes the output reproducible; with ``eps`` set, an int warns (a known seed
        makes the noise reproducible and voids the guarantee) and is never written to the output.
    return_generator
        Also return the fitted generator object (array API), e.g. for a white-box attack
        (``tl.attack(..., generator=gen)``) or to draw more samples. It is a Python object only and may hold exact
        training statistics (e.g. diagnostics); it is never written to the AnnData.
    **method_kwargs
        Hyper-parameters of the method.

    Returns
    -------
    ``(syn, generator)`` if ``return_generator`` else ``syn``: a new AnnData with the synthetic matrix (counts stay
    counts), the labels in ``obs``, the real ``var_names`` and ``uns[key_added]`` holding method, params (with the
    transform), privacy (eps, delta, eps_spent, accountant, neighbouring, ledger, unit, scope) and version; the
    seed only for non-private fits.
    """
    import anndata as ad

    from .. import __version__

    # validate the arguments before the generator's module (torch for the deep ones) is imported; the values are
    # checked once read, after the generator has said which rows it uses
    registry.check(method)
    matrix = V.get_matrix(adata, layer)  # in memory, backed or dask: read below, in row chunks when out of core
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    V.check_unique_names(adata.var_names, "adata.var_names", fix="adata.var_names_make_unique()")
    eps = V.check_eps(eps)
    delta = DEFAULT_DELTA if delta is None else V.check_delta(delta)
    y, categories, label_keys = _labels(adata, groupby)
    if unit is None:
        unit = "donor" if donor_key is not None else "sample"
    if unit not in ("sample", "donor"):
        raise ValueError(f"unit must be 'sample' or 'donor', got {unit!r}.")
    donors = None
    if unit == "donor":
        if donor_key is None:
            raise ValueError("unit='donor' needs donor_key=, the adata.obs column with donor identifiers.")
        donors, _ = V.check_categorical(adata, donor_key, what="donor_key")
    transform = _resolve_transform(transform, matrix, layer)
    if layer_added is not None and not (isinstance(class_sizes, str) and class_sizes == "public" and n_obs is None):
        raise ValueError(
            "layer_added needs one synthetic row per real row of the same class: pass class_sizes='public' (the "
            "exact class sizes become public, and the scope says so) and leave n_obs=None."
        )

    cls = registry.get(method)
    fit_kw = {}
    if public_reference is not None:
        if not getattr(cls, "supports_public_reference", False):
            able = [m for m in registry.names() if getattr(registry.get(m), "supports_public_reference", False)]
            raise ValueError(f"method {method!r} cannot use public_reference; methods that can: {able}.")
        fit_kw["reference"] = _public_reference(public_reference, adata, groupby, categories, layer)
    gen = cls(eps=eps, delta=delta, random_state=random_state, unit=unit, **method_kwargs)
    # a donor-level fit that caps the cells per donor draws its cap first and reads only the rows it keeps (an
    # out-of-core matrix is streamed, so memory follows the kept cells, not the cohort); others read every row
    rows = gen.rows_used(donors)
    X, y_fit, donors_fit = matrix, y, donors
    streamed = rows is None and gen.streams_input and not is_in_memory(matrix)  # the generator reads the blocks
    if rows is not None:
        X, y_fit, donors_fit = load_rows(matrix, rows), y[rows], donors[rows]
    elif not streamed:
        X = load_matrix(matrix)  # sparse stays sparse
    if not streamed:  # a streaming generator checks each block as it reads it
        V.check_finite(X, where)
    # ``data`` may be set per instance (e.g. a VAE with a count likelihood takes raw counts)
    counts_model = gen.data == "counts"
    counts_out = counts_model or transform == "log1p"
    if counts_model:
        if not streamed:
            V.check_counts(X, where)
        Xfit = X
    else:
        Xfit = V.to_dense(X)
        if transform == "log1p":
            if Xfit.size and Xfit.min() < 0:
                raise ValueError(f"transform='log1p' needs non-negative values in {where}; pass transform='none'.")
            Xfit = np.log1p(Xfit)
    logger.info("Fitting %s (eps=%s, delta=%g, unit=%s) on %d x %d", method, eps, delta, unit, *adata.shape)
    gen.fit(Xfit, y_fit, n_classes=len(categories), donors=donors_fit, **fit_kw)
    x_dtype, x_sparse = X.dtype, is_sparse(X)
    del X, Xfit  # a matrix read from a backed / dask source is a private copy: free it before sampling

    if gen.class_counts_ is None:
        raise RuntimeError(f"{type(gen).__name__}.fit() did not set class_counts_ (its DP class counts): a bug.")
    real_counts = np.bincount(y, minlength=len(categories))
    counts, size_note = _class_sizes(
        class_sizes, n_obs, released=gen.class_counts_, real_counts=real_counts, categories=categories
    )
    Xs = gen.sample(counts)
    if not counts_model and transform == "log1p":
        Xs = np.rint(np.expm1(np.clip(Xs, 0, None)))
    out_dtype = x_dtype if np.issubdtype(x_dtype, np.integer) else np.dtype(np.float32)
    if counts_out:
        Xs = sparse.csr_matrix(Xs) if not sparse.issparse(Xs) else Xs.tocsr()
        Xs = Xs.astype(out_dtype, copy=False) if x_sparse else Xs.toarray().astype(out_dtype)
    else:
        Xs = np.asarray(Xs.toarray() if sparse.issparse(Xs) else Xs, dtype=np.float32)

    obs = pd.DataFrame(index=pd.Index([f"syn-{i}" for i in range(Xs.shape[0])]))
    rows = np.repeat(np.arange(len(categories)), counts)
    if len(label_keys) == 1:
        obs[label_keys[0]] = pd.Categorical(np.asarray(categories)[rows], categories=categories)
    elif label_keys:
        parts = [str(c).split(" | ") for c in categories]
        for j, key in enumerate(label_keys):
            level = [p[j] for p in parts]
            obs[key] = pd.Categorical(np.asarray(level)[rows], categories=pd.unique(np.asarray(level)))
    var = pd.DataFrame(index=adata.var_names.copy())

    privacy = gen.privacy_report()
    scope = list(privacy["scope"])
    if size_note:
        scope.append(size_note)
    scope.append("var_names (gene identifiers), the label set and the hyper-parameters are treated as public")
    privacy.update(scope=scope, delta_source="given" if delta != DEFAULT_DELTA else "default public constant 1e-5")
    meta = {
        "method": method,
        "params": _serialisable(
            {
                "groupby": groupby if isinstance(groupby, str | None) else list(groupby),
                "layer": layer,
                "unit": unit,
                "transform": "counts model" if counts_model else transform,
                "class_sizes": (class_sizes if isinstance(class_sizes, str) else "given"),
                **gen.params(),
            }
        ),
        "privacy": _serialisable(privacy),
        "version": __version__,
    }
    if not gen.private:
        meta["seed"] = int(random_state) if isinstance(random_state, numbers.Integral) else (
            0 if random_state is None else -1)  # fmt: skip
    syn = ad.AnnData(X=Xs, obs=obs, var=var, uns={key_added: meta})

    if layer_added is not None:
        order = np.argsort(y, kind="stable")  # real rows grouped by class, same order as the synthetic rows
        aligned = Xs[np.argsort(order)]  # synthetic row j goes to real row order[j]
        adata.layers[layer_added] = aligned
        logger.info("Wrote synthetic matrix (label-aligned) to adata.layers[%r]", layer_added)
    return (syn, gen) if return_generator else syn


def _serialisable(d: dict) -> dict:
    """Keep only h5ad-writable values: None -> 'None', tuples -> lists of str/num, nested dicts recursively."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = _serialisable(v)
        elif v is None:
            out[k] = "None"
        elif isinstance(v, bool | np.bool_):
            out[k] = bool(v)
        elif isinstance(v, int | np.integer):
            out[k] = int(v)
        elif isinstance(v, float | np.floating):
            out[k] = float(v) if not math.isnan(v) else float("nan")
        elif isinstance(v, str):
            out[k] = v
        elif isinstance(v, list | tuple):
            if all(isinstance(x, str) for x in v):
                out[k] = [str(x) for x in v]
            else:
                out[k] = np.asarray(v)
        elif isinstance(v, np.ndarray):
            out[k] = v
        else:
            out[k] = str(v)
    return out
