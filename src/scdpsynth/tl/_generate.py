from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _validation as V
from .._utils import check_random_state
from ..generators import registry
from ..privacy import default_delta

logger = logging.getLogger("scdpsynth")


def _class_counts(real_counts: np.ndarray, n_obs: int | None) -> np.ndarray:
    """Rows per class: the real counts, or ``n_obs`` split in the real proportions (largest remainder)."""
    if n_obs is None:
        return real_counts.astype(np.int64)
    if not isinstance(n_obs, int | np.integer) or n_obs < 1:
        raise ValueError(f"n_obs must be a positive integer, got {n_obs!r}.")
    share = real_counts / real_counts.sum() * n_obs
    counts = np.floor(share).astype(np.int64)
    rest = int(n_obs - counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


def generate(
    adata,
    method: str,
    *,
    eps: float | None,
    delta: float | None = None,
    layer: str | None = None,
    groupby: str | None = None,
    donor_key: str | None = None,
    unit: str | None = None,
    n_obs: int | None = None,
    key_added: str = "scdpsynth",
    layer_added: str | None = None,
    random_state=0,
    return_generator: bool = False,
    **method_kwargs,
):
    """Generate a differentially private synthetic version of ``adata``.

    Parameters
    ----------
    adata
        Real data. Not modified (except ``layers[layer_added]`` when asked for).
    method
        Generator name; see :func:`scdpsynth.tl.list_methods`.
    eps
        Privacy budget epsilon (> 0), or ``None`` for a non-private fit.
    delta
        Privacy parameter delta. Default ``min(1e-5, 0.1 / n_units)`` where ``n_units`` is the number of samples
        (or donors for ``unit="donor"``); the value used is stored in the metadata.
    layer
        Layer holding the expression matrix; ``None`` uses ``adata.X``.
    groupby
        Column of ``adata.obs`` with class labels (e.g. cell type); synthetic data are generated per class and
        carry the label in ``obs[groupby]``. Class counts are treated as public (stated in the metadata).
    donor_key
        Column of ``adata.obs`` with donor identifiers; needed for ``unit="donor"``.
    unit
        Privacy unit, ``"sample"`` or ``"donor"``. Default ``"donor"`` if ``donor_key`` is given, else ``"sample"``.
    n_obs
        Number of synthetic observations; default as many as ``adata``. Split over classes in the real
        proportions.
    key_added
        Key in the synthetic ``uns`` for the metadata.
    layer_added
        If given and ``n_obs`` equals ``adata.n_obs``, also write the synthetic matrix into
        ``adata.layers[layer_added]``, row-aligned by label (each real row gets a synthetic row of the same class).
    random_state
        Seed or :class:`numpy.random.Generator`. Same seed, same output.
    return_generator
        Also return the fitted generator object (array API), e.g. for a white-box attack
        (``tl.attack(..., generator=gen)``) or to draw more samples. It is a Python object only: it may hold
        quantities listed in the privacy scope (e.g. observed gene ranges) and is never written to the AnnData.
    **method_kwargs
        Hyper-parameters of the method.

    Returns
    -------
    ``(syn, generator)`` if ``return_generator`` else ``syn``: a new AnnData with the synthetic matrix (counts stay
    integer counts), ``obs[groupby]`` labels, the real ``var_names`` and ``uns[key_added]`` holding method, params,
    privacy (eps, delta, eps_spent, accountant, unit, scope), seed and version.
    """
    import anndata as ad

    from .. import __version__

    cls = registry.get(method)
    X = V.get_matrix(adata, layer)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    V.check_finite(X, where)
    input_counts = V.is_counts(X)

    if groupby is None:
        y = np.zeros(adata.n_obs, dtype=np.int64)
        categories = pd.Index(["all"])
    else:
        y, categories = V.check_categorical(adata, groupby, min_size=2, what="groupby")
    if unit is None:
        unit = "donor" if donor_key is not None else "sample"
    if unit not in ("sample", "donor"):
        raise ValueError(f"unit must be 'sample' or 'donor', got {unit!r}.")
    donors = None
    if unit == "donor":
        if donor_key is None:
            raise ValueError("unit='donor' needs donor_key=, the adata.obs column with donor identifiers.")
        donors, donor_names = V.check_categorical(adata, donor_key, what="donor_key")
        n_units = len(donor_names)
    else:
        n_units = adata.n_obs
    eps = V.check_eps(eps)
    delta_note = "given"
    if delta is None:
        delta = default_delta(n_units)
        delta_note = f"default min(1e-5, 0.1 / n_units) with n_units={n_units}"
    delta = V.check_delta(delta)

    rng = check_random_state(random_state)
    seed_repr = int(random_state) if isinstance(random_state, int | np.integer) else -1

    gen = cls(eps=eps, delta=delta, random_state=rng, unit=unit, **method_kwargs)
    # ``data`` may be set per instance (e.g. a VAE with a count likelihood takes raw counts)
    transform = "none"
    Xfit = X
    if gen.data == "counts":
        V.check_counts(X, where)
    else:
        Xfit = V.to_dense(X)
        if input_counts:
            transform = "log1p"
            Xfit = np.log1p(Xfit)
    logger.info("Fitting %s (eps=%s, delta=%g, unit=%s) on %d x %d", method, eps, delta, unit, *adata.shape)
    gen.fit(Xfit, y, n_classes=len(categories), donors=donors)

    real_counts = np.bincount(y, minlength=len(categories))
    counts = _class_counts(real_counts, n_obs)
    Xs = gen.sample(counts)
    if transform == "log1p":
        Xs = np.rint(np.expm1(np.clip(Xs, 0, None)))
    if input_counts:
        dtype = X.dtype if np.issubdtype(X.dtype, np.integer) else np.dtype(np.int64)
        Xs = sparse.csr_matrix(Xs) if not sparse.issparse(Xs) else Xs.tocsr()
        Xs = Xs.astype(dtype) if sparse.issparse(X) else Xs.toarray().astype(dtype)
    else:
        Xs = np.asarray(Xs.toarray() if sparse.issparse(Xs) else Xs, dtype=np.float32)

    labels = pd.Categorical(np.repeat(np.asarray(categories), counts), categories=categories)
    obs = pd.DataFrame(index=pd.Index([f"syn-{i}" for i in range(Xs.shape[0])]))
    if groupby is not None:
        obs[groupby] = labels
    var = pd.DataFrame(index=adata.var_names.copy())

    privacy = gen.privacy_report()
    scope = list(privacy["scope"])
    if groupby is not None:
        scope.append(f"class counts of obs[{groupby!r}] treated as public (used to size the synthetic classes)")
    scope.append("var_names (gene identifiers) treated as public")
    privacy.update(scope=scope, delta_source=delta_note if privacy["private"] else "non-private")
    if unit == "donor":
        privacy["n_donors"] = int(n_units)
    meta = {
        "method": method,
        "params": _serialisable(
            {"groupby": groupby, "layer": layer, "unit": unit, "transform": transform, **gen.params()}
        ),
        "privacy": _serialisable(privacy),
        "seed": seed_repr,
        "version": __version__,
    }
    syn = ad.AnnData(X=Xs, obs=obs, var=var, uns={key_added: meta})

    if layer_added is not None:
        if syn.n_obs != adata.n_obs:
            raise ValueError("layer_added needs n_obs equal to adata.n_obs (one synthetic row per real row).")
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
