"""Co-expression preservation: significant Pearson edges, Leiden modules and module group fold changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from ._base import EvalData, cached, tidy

__all__ = ["pearson_pvalues", "coexpression_edges", "leiden_modules", "group_fold_changes", "coexpression"]


def pearson_pvalues(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlations of all gene pairs and their two-sided p-values (t-distribution, ``n - 2`` df).

    ``t = r sqrt((n - 2) / (1 - r^2))``, ``p = 2 P(T_{n-2} > |t|)``. Genes with zero variance get ``r = 0``,
    ``p = 1``. Memory is ``O(d^2)``.

    Returns
    -------
    ``(r, p)``: ``d x d`` arrays.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n < 3:
        raise ValueError(f"Pearson p-values need at least 3 observations, got {n}.")
    Z = X - X.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", Z, Z))
    const = norm <= 1e-12 * max(1.0, float(np.abs(X).max(initial=0.0)))
    Z[:, const] = 0.0
    Z[:, ~const] /= norm[~const]
    r = np.clip(Z.T @ Z, -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt((n - 2) / (1.0 - r**2))
    p = 2.0 * special.stdtr(n - 2, -np.abs(t))
    p[const, :] = 1.0
    p[:, const] = 1.0
    return r, p


def coexpression_edges(r: np.ndarray, p: np.ndarray, *, threshold: float, alpha: float = 0.05) -> np.ndarray:
    """Boolean upper-triangle edge vector: ``p < alpha`` and ``r > threshold`` (pairs ``i < j``, row-major)."""
    iu = np.triu_indices(r.shape[0], k=1)
    return (p[iu] < alpha) & (r[iu] > threshold)


def leiden_modules(
    r: np.ndarray, edges: np.ndarray, *, min_size: int = 10, resolution: float = 1.0, seed: int = 0
) -> list[np.ndarray]:
    """Leiden communities of the co-expression network (genes = nodes, ``edges`` weighted by ``r``).

    Uses :mod:`leidenalg` with the RB-configuration (modularity with resolution ``resolution``) quality function
    and a fixed ``seed``. Isolated genes are left out; communities smaller than ``min_size`` are dropped.

    Returns
    -------
    Gene-index arrays, largest module first.
    """
    import igraph as ig
    import leidenalg

    iu = np.triu_indices(r.shape[0], k=1)
    src, dst = iu[0][edges], iu[1][edges]
    if src.size == 0:
        return []
    nodes = np.unique(np.concatenate([src, dst]))
    local = np.searchsorted(nodes, np.stack([src, dst], axis=1))
    g = ig.Graph(n=nodes.size, edges=local.tolist())
    g.es["weight"] = r[src, dst].tolist()
    part = leidenalg.find_partition(
        g,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=int(seed),
        n_iterations=-1,
    )
    modules = [nodes[np.asarray(m, dtype=np.int64)] for m in part if len(m) >= min_size]
    return sorted((np.sort(m) for m in modules), key=lambda m: (-m.size, m[0]))


def group_fold_changes(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    modules: list[np.ndarray],
    *,
    method: str = "log",
    range_gfc: float = 2.0,
) -> np.ndarray:
    """Group fold change (GFC) of every module in every class.

    With ``xbar_gc`` the mean of gene ``g`` in class ``c`` and ``mbar_g = (1/C) sum_c' xbar_gc'`` the mean over the
    classes present (each class weighs the same, whatever its size):

    ``method="log"`` (default)
        ``GFC_gc = xbar_gc - mbar_g`` on the analysis scale: for log-expression this is the log fold change of the
        class's geometric mean against the mean over classes (natural log for ``tl.evaluate``'s ``log1p``).
    ``method="hcocena"``
        as hCoCena (Oestreich et al. 2022), used by the reference study: means on the linear scale
        ``expm1(X)`` (inverting ``log1p``), signed fold change ``GFC_gc = a / b`` if ``a >= b`` else ``-b / a`` with
        ``a = xbar_gc``, ``b = mbar_g``, clipped to ``[-range_gfc, range_gfc]``.

    The module GFC is the mean over its genes, ``GFC_mc = mean_{g in m} GFC_gc`` (genes with an undefined GFC,
    e.g. all-zero, left out). Classes without samples give NaN.

    Returns
    -------
    Array ``(n_modules, n_classes)``.
    """
    if method not in ("log", "hcocena"):
        raise ValueError(f"method must be 'log' or 'hcocena', got {method!r}.")
    X = np.asarray(X, dtype=np.float64)
    if method == "hcocena":
        X = np.expm1(X)
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    onehot = np.zeros((n_classes, X.shape[0]))
    onehot[y, np.arange(X.shape[0])] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (onehot @ X) / counts[:, None]  # C x d
        present = counts > 0
        mbar = means[present].mean(axis=0)
        if method == "log":
            gfc_gene = means - mbar
        else:
            gfc_gene = np.clip(np.where(means >= mbar, means / mbar, -mbar / means), -range_gfc, range_gfc)
    out = np.full((len(modules), n_classes), np.nan)
    for k, m in enumerate(modules):
        sub = gfc_gene[:, m]
        ok = ~np.isnan(sub)
        with np.errstate(invalid="ignore"):
            out[k] = np.where(ok.any(axis=1), np.nansum(sub, axis=1) / ok.sum(axis=1), np.nan)
    return out


def _top_variance(X: np.ndarray, n_top: int | None) -> np.ndarray:
    d = X.shape[1]
    if n_top is None or n_top >= d:
        return np.arange(d)
    return np.sort(np.argsort(-X.var(axis=0), kind="stable")[:n_top])


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 2:
        return np.nan, np.nan
    a, b = a[ok], b[ok]
    mae = float(np.abs(a - b).mean())
    if a.std() == 0 or b.std() == 0:
        return np.nan, mae
    return float(np.corrcoef(a, b)[0, 1]), mae


def coexpression(
    real: EvalData,
    syn: EvalData,
    *,
    holdout: EvalData | None = None,
    thresholds: tuple[float, ...] = (0.0, 0.7),
    alpha: float = 0.05,
    module_threshold: float = 0.7,
    min_module_size: int = 10,
    resolution: float = 1.0,
    n_top_genes: int | None = 2000,
    gfc_method: str = "log",
    random_state: int = 0,
) -> pd.DataFrame:
    """Co-expression preservation: edges, Leiden modules and module group fold changes (GFC).

    Genes are the ``n_top_genes`` of highest variance in the real training data (all if ``None``; memory is
    ``O(genes^2)``). An edge joins two genes whose Pearson correlation has ``p < alpha`` (t-test,
    :func:`pearson_pvalues`) and ``r > threshold``. Per threshold (``variant`` ``"r>0.7:..."``):

    ``n_real``, ``n_syn``
        edges in real training and synthetic data; ``correct`` edges in both (higher is better), ``spurious``
        synthetic edges absent from the real network (lower is better), ``recall`` = correct / n_real,
        ``precision`` = correct / n_syn. The ``reference`` is the same quantity for the real holdout. The
        ``chance`` column of ``recall`` and ``precision`` is what as many synthetic edges on random gene pairs would
        score (``n_syn / pairs`` and ``n_real / pairs``): recall near it is no co-expression, however high it looks
        (``mst`` on 500 ALL genes at eps=10, three fits: recall 0.11-0.24, chance 0.07-0.18, precision 0.01).

    Modules are Leiden communities (:func:`leiden_modules`, seed ``random_state``) of the real network at
    ``r > module_threshold``. ``variant="gfc:M<k>"``, ``group=<class>``: GFC of module ``k`` in the synthetic data
    (``value``) and in the real training data (``reference``), see :func:`group_fold_changes` (``gfc_method``).
    Summary rows: ``gfc_pearson`` and ``gfc_mae`` compare synthetic with real GFC over all (module, class) pairs
    (``reference``: holdout vs real); ``module_coherence`` is the mean within-module correlation in synthetic
    data (``reference``: real training data); ``n_modules`` the number of modules. GFC rows need class labels.

    :func:`scdpsynth.tl.evaluate` replaces every ``reference`` by the value of a real holdout sample as large as the
    synthetic set (edge counts and their significance grow with the sample size).
    """
    genes = cached(real, ("coexpression:genes", n_top_genes), lambda: _top_variance(real.X, n_top_genes))
    r_real, p_real = cached(real, ("coexpression:pearson", n_top_genes), lambda: pearson_pvalues(real.X[:, genes]))
    r_syn, p_syn = pearson_pvalues(syn.X[:, genes])
    r_hold = p_hold = None
    if holdout is not None:
        r_hold, p_hold = pearson_pvalues(holdout.X[:, genes])
    rows = []
    for thr in thresholds:
        e_real = cached(
            real,
            ("coexpression:edges", n_top_genes, thr, alpha),
            lambda thr=thr: coexpression_edges(r_real, p_real, threshold=thr, alpha=alpha),
        )
        e_syn = coexpression_edges(r_syn, p_syn, threshold=thr, alpha=alpha)
        e_hold = coexpression_edges(r_hold, p_hold, threshold=thr, alpha=alpha) if holdout is not None else None
        v, ref = _edge_counts(e_real, e_syn), _edge_counts(e_real, e_hold) if e_hold is not None else {}
        chance = _edge_chance(v, e_real.size)
        for key, val in v.items():
            rows.append(
                {
                    "variant": f"r>{thr:g}:{key}",
                    "value": val,
                    "reference": ref.get(key, np.nan),
                    "chance": chance.get(key, np.nan),
                }
            )

    modules = cached(
        real,
        ("coexpression:modules", n_top_genes, module_threshold, alpha, min_module_size, resolution, random_state),
        lambda: leiden_modules(
            r_real,
            coexpression_edges(r_real, p_real, threshold=module_threshold, alpha=alpha),
            min_size=min_module_size,
            resolution=resolution,
            seed=random_state,
        ),
    )
    rows.append({"variant": "n_modules", "value": float(len(modules))})
    if modules:
        coh = [(_coherence(r_syn, m), _coherence(r_real, m)) for m in modules]
        rows.append(
            {
                "variant": "module_coherence",
                "value": float(np.mean([c[0] for c in coh])),
                "reference": float(np.mean([c[1] for c in coh])),
            }
        )
    if modules and real.y is not None and syn.y is not None:
        C = len(real.classes) if real.classes else int(real.y.max()) + 1
        names = real.classes or [str(c) for c in range(C)]
        Xg = [real.X[:, genes], syn.X[:, genes]]
        gfc_real = cached(
            real,
            ("coexpression:gfc", n_top_genes, module_threshold, alpha, min_module_size, resolution, random_state,
             gfc_method),
            lambda: group_fold_changes(Xg[0], real.y, C, modules, method=gfc_method),
        )  # fmt: skip
        gfc_syn = group_fold_changes(Xg[1], syn.y, C, modules, method=gfc_method)
        ref_pair = (np.nan, np.nan)
        if holdout is not None and holdout.y is not None:
            gfc_hold = group_fold_changes(holdout.X[:, genes], holdout.y, C, modules, method=gfc_method)
            ref_pair = _agreement(gfc_hold.ravel(), gfc_real.ravel())
        corr, mae = _agreement(gfc_syn.ravel(), gfc_real.ravel())
        rows += [
            {"variant": "gfc_pearson", "value": corr, "reference": ref_pair[0]},
            {"variant": "gfc_mae", "value": mae, "reference": ref_pair[1]},
        ]
        for k in range(len(modules)):
            for c in range(C):
                rows.append(
                    {
                        "variant": f"gfc:M{k + 1}",
                        "group": str(names[c]),
                        "value": float(gfc_syn[k, c]),
                        "reference": float(gfc_real[k, c]),
                    }
                )
    return tidy([{"metric": "coexpression", "group": "all", "reference": np.nan, **row} for row in rows])


def _coherence(r: np.ndarray, module: np.ndarray) -> float:
    sub = r[np.ix_(module, module)]
    iu = np.triu_indices(module.size, k=1)
    return float(sub[iu].mean())


def _edge_chance(counts: dict[str, float], n_pairs: int) -> dict[str, float]:
    """Recall and precision of as many synthetic edges as ``counts["n_syn"]`` placed on random pairs: ``n_syn /
    pairs`` and ``n_real / pairs``. A generator that calls many pairs gets recall from that alone.
    """
    if not n_pairs:
        return {}
    return {"recall": counts["n_syn"] / n_pairs, "precision": counts["n_real"] / n_pairs}


def _edge_counts(e_real: np.ndarray, e_other: np.ndarray) -> dict[str, float]:
    n_real, n_other = float(e_real.sum()), float(e_other.sum())
    correct = float((e_real & e_other).sum())
    return {
        "n_real": n_real,
        "n_syn": n_other,
        "correct": correct,
        "spurious": float((e_other & ~e_real).sum()),
        "recall": correct / n_real if n_real else np.nan,
        "precision": correct / n_other if n_other else np.nan,
    }
