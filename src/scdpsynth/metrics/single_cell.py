"""Single-cell fidelity and utility metrics: SCC, LISI mixing of real and synthetic cells, random-forest ROC-AUC.

All functions follow the metric contract of :mod:`scdpsynth.metrics._base`: ``fn(real, syn, *, holdout=None,
**kwargs) -> tidy DataFrame``; inputs are :class:`~scdpsynth.metrics._base.EvalData` on the analysis (log) scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._base import EvalData, cached, tidy

__all__ = ["lisi", "lisi_scores", "celltype_rf_auc", "scc"]


def _check(data: EvalData, what: str, *, labels: bool = False) -> np.ndarray:
    X = np.asarray(data.X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{what}.X must be a non-empty 2-d matrix, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{what}.X holds NaN/inf values; log-normalise raw counts before evaluating.")
    if labels and data.y is None:
        raise ValueError(f"{what}.y is None: this metric needs class labels (pass groupby= to tl.evaluate).")
    return X


def _class_name(data: EvalData, k: int) -> str:
    return str(data.classes[k]) if k < len(data.classes) else str(k)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok])[0])


def _scc_rows(Xr: np.ndarray, Xs: np.ndarray, n_genes: int) -> tuple[float, float]:
    mean_r, mean_s = Xr.mean(axis=0), Xs.mean(axis=0)
    genes = np.argsort(-mean_r, kind="stable")[: min(n_genes, Xr.shape[1])]
    genes = genes[(Xr[:, genes].std(axis=0) > 0) & (Xs[:, genes].std(axis=0) > 0)]
    corr = float("nan")
    if genes.size >= 3 and Xr.shape[0] >= 3 and Xs.shape[0] >= 3:
        iu = np.triu_indices(genes.size, 1)
        corr = _spearman(np.corrcoef(Xr[:, genes].T)[iu], np.corrcoef(Xs[:, genes].T)[iu])
    return _spearman(mean_r, mean_s), corr


def scc(real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, n_genes: int = 100, min_cells: int = 3):
    """Spearman correlation coefficients (SCC) of per-gene means and of gene-gene correlations, real vs synthetic.

    For every cell type present in both (at least ``min_cells`` cells each) and for all cells together
    (``group="all"``): variant ``"mean"`` is the Spearman correlation between the real and synthetic per-gene mean
    expression; variant ``"correlation"`` is the Spearman correlation between the upper triangles of the real and
    synthetic gene-gene Pearson correlation matrices of the ``n_genes`` genes with the highest real mean (genes
    constant in either set are dropped). Higher is better (1 = same ranking); NaN where undefined.
    Without labels only ``group="all"`` is reported. ``holdout`` is unused.
    """
    Xr, Xs = _check(real, "real"), _check(syn, "syn")
    if Xr.shape[1] != Xs.shape[1]:
        raise ValueError(f"real and syn have different numbers of genes ({Xr.shape[1]} vs {Xs.shape[1]}).")
    rows = []
    groups = [("all", np.ones(Xr.shape[0], bool), np.ones(Xs.shape[0], bool))]
    if real.y is not None and syn.y is not None:
        yr, ys = np.asarray(real.y), np.asarray(syn.y)
        for k in np.unique(yr):
            groups.append((_class_name(real, int(k)), yr == k, ys == k))
    for name, mr, ms in groups:
        if mr.sum() < min_cells or ms.sum() < min_cells:
            continue
        m, c = _scc_rows(Xr[mr], Xs[ms], n_genes)
        rows += [
            {"metric": "scc", "variant": "mean", "group": name, "value": m},
            {"metric": "scc", "variant": "correlation", "group": name, "value": c},
        ]
    if not rows:
        raise ValueError(f"No group with at least min_cells={min_cells} cells in both real and synthetic data.")
    return tidy(rows)


def lisi_scores(
    X: np.ndarray, labels: np.ndarray, *, perplexity: float = 30.0, n_neighbors: int | None = None
) -> np.ndarray:
    """Local inverse Simpson index per row (Korsunsky et al. 2019, Harmony's ``compute_lisi``), vectorised.

    For each point, Gaussian weights ``exp(-beta * d)`` on the Euclidean distances ``d`` to its ``n_neighbors``
    nearest neighbours (default ``3 * perplexity``, self excluded) are calibrated by bisection on ``beta`` so that
    their entropy equals ``log(perplexity)``; the LISI is ``1 / sum_b p_b^2`` with ``p_b`` the weight of label ``b``.
    """
    from sklearn.neighbors import NearestNeighbors

    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    n = X.shape[0]
    k = int(min(n - 1, n_neighbors if n_neighbors is not None else 3 * perplexity))
    if k < 1:
        raise ValueError(f"Need at least 2 points for LISI, got {n}.")
    perplexity = min(perplexity, k / 3.0) if n_neighbors is None else perplexity
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    dist, idx = dist[:, 1:], idx[:, 1:]  # drop self
    dist = dist - dist[:, :1]  # shift per row for stability (weights are normalised, so this is exact)
    target = np.log(perplexity)
    beta = np.ones(n)
    lo, hi = np.full(n, 0.0), np.full(n, np.inf)
    for _ in range(60):
        P = np.exp(-dist * beta[:, None])
        sP = P.sum(axis=1)
        H = np.log(sP) + beta * (dist * P).sum(axis=1) / sP
        too_flat = H > target  # entropy too high: sharpen (raise beta)
        lo = np.where(too_flat, beta, lo)
        hi = np.where(too_flat, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2.0, 0.5 * (lo + hi))
    P = np.exp(-dist * beta[:, None])
    P /= P.sum(axis=1, keepdims=True)
    codes = pd.factorize(labels)[0]
    nb = codes[idx]
    simpson = np.zeros(n)
    for b in range(codes.max() + 1):
        simpson += (P * (nb == b)).sum(axis=1) ** 2
    return 1.0 / simpson


def _pca_space(Xr: np.ndarray, Xs: np.ndarray, n_pcs: int, rng: np.random.Generator):
    """Shared PCA space: genes scaled by the real mean/sd (clipped at +-10 as in ``sc.pp.scale``), PCA on the union."""
    from sklearn.decomposition import PCA

    mu, sd = Xr.mean(axis=0), Xr.std(axis=0)
    keep = sd > 0
    n_pcs = int(min(n_pcs, keep.sum(), Xr.shape[0] + Xs.shape[0] - 1))
    if n_pcs < 1:
        raise ValueError("Real data have no variable gene: cannot build a PCA space.")

    def scale(X):
        return np.clip((X[:, keep] - mu[keep]) / sd[keep], -10.0, 10.0)

    from threadpoolctl import threadpool_limits

    Zr, Zs = scale(Xr), scale(Xs)
    # one BLAS thread: LAPACK's SVD of these small matrices spends more on thread synchronisation than it saves
    # (184 x 300: 0.29 s with 2 threads on a busy 2-core machine, 0.06 s with 1; 3,000 x 1,000: 1.8 s vs 0.4 s)
    with threadpool_limits(limits=1, user_api="blas"):
        pca = PCA(n_components=n_pcs, random_state=int(rng.integers(2**31 - 1))).fit(np.vstack([Zr, Zs]))
        return pca.transform(Zr), pca.transform(Zs)


def lisi(
    real: EvalData,
    syn: EvalData,
    *,
    holdout: EvalData | None = None,
    n_pcs: int = 30,
    n_genes: int = 2000,
    perplexity: float = 30.0,
    max_cells: int = 5000,
    random_state=0,
):
    """iLISI-style mixing of real and synthetic cells in a shared PCA space, normalised to [0, 1].

    Real and synthetic cells are subsampled to the same number (``min(n_real, n_syn, max_cells)`` each), restricted
    to the ``n_genes`` genes of highest real variance, scaled per gene by the real mean and standard deviation
    (clipped at +-10), projected on the first ``n_pcs`` principal components of the pooled cells (fitting the PCA
    on real cells alone would spread them out more than unseen cells and penalise even a perfect generator), and
    scored by :func:`lisi_scores` with the source (real / synthetic) as label. The score ``(LISI - 1) / (2 - 1)``
    is 1 for perfect mixing (synthetic cells indistinguishable from real neighbours) and 0 for complete separation;
    the median over cells is reported (as in scib), for all cells (``group="all"``) and per cell type when labels exist.
    Higher is better. ``holdout`` is unused.
    """
    from .._utils import check_random_state

    rng = check_random_state(random_state)
    Xr, Xs = _check(real, "real"), _check(syn, "syn")
    if Xr.shape[1] != Xs.shape[1]:
        raise ValueError(f"real and syn have different numbers of genes ({Xr.shape[1]} vs {Xs.shape[1]}).")
    n = int(min(Xr.shape[0], Xs.shape[0], max_cells))
    if n < 2:
        raise ValueError("LISI needs at least 2 real and 2 synthetic cells.")
    ir = np.sort(rng.choice(Xr.shape[0], n, replace=False))
    is_ = np.sort(rng.choice(Xs.shape[0], n, replace=False))
    genes = np.sort(np.argsort(-Xr.var(axis=0), kind="stable")[: min(n_genes, Xr.shape[1])])
    Pr, Ps = _pca_space(Xr[ir][:, genes], Xs[is_][:, genes], n_pcs, rng)
    score = (lisi_scores(np.vstack([Pr, Ps]), np.repeat([0, 1], n), perplexity=perplexity) - 1.0).clip(0.0, 1.0)
    rows = [{"metric": "lisi", "variant": "ilisi_norm", "group": "all", "value": float(np.median(score))}]
    if real.y is not None and syn.y is not None:
        lab = np.concatenate([np.asarray(real.y)[ir], np.asarray(syn.y)[is_]])
        for k in np.unique(lab):
            rows.append({"metric": "lisi", "variant": "ilisi_norm", "group": _class_name(real, int(k)),
                         "value": float(np.median(score[lab == k]))})  # fmt: skip
    return tidy(rows)


def _ovr_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[int, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, k in enumerate(classes):
        pos = y_true == k
        if 0 < pos.sum() < pos.size:
            out[int(k)] = float(roc_auc_score(pos, proba[:, j]))
    return out


def _rf_proba(X, y, X_test, classes, *, n_estimators, max_features, seed) -> np.ndarray:
    from sklearn.ensemble import RandomForestClassifier

    proba = np.zeros((X_test.shape[0], classes.size))
    present = np.unique(y)
    if present.size == 1:
        proba[:, np.searchsorted(classes, present[0])] = 1.0
        return proba
    rf = RandomForestClassifier(n_estimators=n_estimators, max_features=max_features, random_state=seed, n_jobs=1)
    rf.fit(X, y)
    proba[:, np.searchsorted(classes, rf.classes_)] = rf.predict_proba(X_test)
    return proba


def celltype_rf_auc(
    real: EvalData,
    syn: EvalData,
    *,
    holdout: EvalData | None = None,
    n_estimators: int = 100,
    max_features: str | float = "sqrt",
    n_genes: int = 500,
    max_cells: int = 5000,
    random_state=0,
):
    """Cell-type classifier ROC-AUC: a random forest trained on synthetic cells predicts cell type on the real holdout.

    (Formerly ``rf_auc``. Not the CAMDA discriminator, which tells real from synthetic cells: see
    :func:`scdpsynth.metrics.camda.camda_discriminator_auc`.)

    A random forest (``n_estimators`` trees) is trained on (a subsample of at most ``max_cells``) synthetic cells,
    using the ``n_genes`` genes of highest variance in the real training data, and scored on the real holdout by
    one-vs-rest ROC-AUC per cell type (``group`` = cell type) and their macro average (``group="all"``);
    ``chance`` 0.5.
    ``reference`` is the same score for a forest trained on the real training data (train-real-test-real).
    Higher is better; 0.5 is chance. Classes absent from the holdout are skipped; classes absent from the synthetic
    data get probability 0.
    """
    from .._utils import check_random_state, child_seed

    if holdout is None:
        raise ValueError(
            "celltype_rf_auc needs a real holdout (holdout=...); split with scdpsynth.pp.train_holdout_split."
        )
    rng = check_random_state(random_state)
    Xr = _check(real, "real", labels=True)
    Xs = _check(syn, "syn", labels=True)
    Xh = _check(holdout, "holdout", labels=True)
    if not (Xr.shape[1] == Xs.shape[1] == Xh.shape[1]):
        raise ValueError("real, syn and holdout must have the same genes.")
    genes = np.sort(np.argsort(-Xr.var(axis=0), kind="stable")[: min(n_genes, Xr.shape[1])])
    yr, ys, yh = (np.asarray(d.y) for d in (real, syn, holdout))
    classes = np.unique(np.concatenate([yr, ys, yh]))

    def sub(X, y, seed):
        if X.shape[0] <= max_cells:
            return X[:, genes], y
        i = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_cells, replace=False))
        return X[i][:, genes], y[i]

    kw = {"n_estimators": n_estimators, "max_features": max_features}
    seed_s, seed_r = child_seed(rng), child_seed(rng)  # drawn first: the real side can be cached
    auc_s = _ovr_auc(yh, _rf_proba(*sub(Xs, ys, seed_s), Xh[:, genes], classes, seed=seed_s, **kw), classes)
    auc_r = cached(
        real,
        ("rf_auc:real", n_estimators, max_features, n_genes, max_cells, seed_r, tuple(classes)),
        lambda: _ovr_auc(yh, _rf_proba(*sub(Xr, yr, seed_r), Xh[:, genes], classes, seed=seed_r, **kw), classes),
        other=holdout,
    )
    if not auc_s:
        raise ValueError("The holdout needs at least two cell types to compute a ROC-AUC.")
    macro_s, macro_r = float(np.mean(list(auc_s.values()))), float(np.mean(list(auc_r.values())))
    name = "celltype_rf_auc"
    rows = [{"metric": name, "variant": "roc_auc_ovr", "group": "all", "value": macro_s, "reference": macro_r,
             "chance": 0.5}]  # fmt: skip
    for k, v in auc_s.items():
        rows.append({"metric": name, "variant": "roc_auc_ovr", "group": _class_name(holdout, k), "value": v,
                     "reference": auc_r.get(k, np.nan), "chance": 0.5})  # fmt: skip
    return tidy(rows)
