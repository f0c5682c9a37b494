"""Preservation of a condition contrast (e.g. stimulated vs control) within each class (cell type).

Two tests per class, each run on the real training data and on the synthetic data, and compared as TPR / FPR of the
synthetic DE genes against the real ones:

- **cell level**: two-sided Wilcoxon rank-sum of the condition's two levels over the class's cells (as in
  :mod:`~scdpsynth.metrics.de_genes`);
- **pseudobulk**: counts summed per (sample, class) with :func:`decoupler.pp.pseudobulk`, log-CPM, Welch t-test of
  the two levels across samples (the usual replicate-level test; needs sample labels on the real side).
  Synthetic cells belong to no sample: they are split at random into as many pseudo-replicates per (class, level)
  as the real data have samples there, so the synthetic side carries no between-donor variance and its tests are
  more liberal than the real ones (a higher FPR is expected even for a perfect generator of cells).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse, stats

from ._base import EvalData, tidy
from .de_genes import _bh, _nanmean, _rates, pairwise_ranksum

__all__ = ["condition_ranksum_masks", "pseudobulk_masks", "de_condition"]


def condition_ranksum_masks(X, y, cond, n_classes: int, *, alpha: float = 0.05, correction: str | None = "bh",
                            min_cells: int = 10):  # fmt: skip
    """Genes up / down in condition level 1 vs level 0 within each class: boolean ``(n_classes, d)`` arrays.

    ``X`` is ``n x d`` (log-normalised), ``y`` class codes, ``cond`` 0/1 condition codes. Classes with fewer than
    ``min_cells`` cells in either level get no DE genes and ``ok[k] = False``. Returns ``(up, down, ok)``.
    """
    y, cond = np.asarray(y, dtype=np.int64), np.asarray(cond, dtype=np.int64)
    d = X.shape[1]
    up = np.zeros((n_classes, d), dtype=bool)
    down = np.zeros((n_classes, d), dtype=bool)
    ok = np.zeros(n_classes, dtype=bool)
    for k in range(n_classes):
        rows = np.flatnonzero(y == k)
        c = cond[rows]
        n1 = int(c.sum())
        if min(n1, rows.size - n1) < min_cells:
            continue
        Xk = X[rows]
        Xk = Xk.toarray() if sparse.issparse(Xk) else np.asarray(Xk)
        U, p = pairwise_ranksum(Xk, c, 2)
        p = p[1, 0]
        if correction == "bh":
            p = _bh(p)
        elif correction is not None:
            raise ValueError(f"correction must be None or 'bh', got {correction!r}.")
        sig = p <= alpha
        mu = n1 * (rows.size - n1) / 2.0
        up[k], down[k], ok[k] = sig & (U[1, 0] > mu), sig & (U[1, 0] < mu), True
    return up, down, ok


def _pseudobulk(counts, y, cond, samples, n_classes: int):
    """Summed counts per (sample, class, level) via decoupler; returns (matrix, class codes, level codes)."""
    import anndata as ad
    import decoupler as dc

    obs = pd.DataFrame(
        {
            "sample": pd.Categorical(np.asarray(samples).astype(str)),
            "klass": pd.Categorical(np.asarray(y).astype(str)),
            "cond": np.asarray(cond, dtype=np.int64),
        }
    )
    obs["sample"] = pd.Categorical(obs["sample"].astype(str) + "|" + obs["cond"].astype(str))
    obs.index = obs.index.astype(str)
    X = sparse.csr_matrix(counts) if sparse.issparse(counts) else np.asarray(counts)
    pdata = dc.pp.pseudobulk(ad.AnnData(X=X, obs=obs), sample_col="sample", groups_col="klass", skip_checks=True)
    pdata = pdata[pdata.obs["psbulk_cells"].to_numpy() > 0]  # (sample, class) pairs without cells
    M = pdata.X.toarray() if sparse.issparse(pdata.X) else np.asarray(pdata.X, dtype=np.float64)
    klass = pdata.obs["klass"].astype(str).astype(int).to_numpy()
    level = pdata.obs["sample"].astype(str).str.rsplit("|", n=1).str[1].astype(int).to_numpy()
    return M, klass, level


def pseudobulk_masks(counts, y, cond, samples, n_classes: int, *, alpha: float = 0.05,
                     correction: str | None = "bh", min_samples: int = 3):  # fmt: skip
    """Genes up / down in level 1 vs 0 per class from pseudobulk profiles: ``(up, down, ok, n_samples)``.

    Counts are summed per (sample, class, level) with :func:`decoupler.pp.pseudobulk`, scaled to counts per million
    and ``log1p``-transformed; each gene is tested with Welch's t-test between the levels' samples. Classes with
    fewer than ``min_samples`` samples in either level get ``ok[k] = False``; ``n_samples[k]`` is the smaller of
    the two levels' sample counts.
    """
    M, klass, level = _pseudobulk(counts, y, cond, samples, n_classes)
    lib = M.sum(axis=1, keepdims=True)
    L = np.log1p(M / np.maximum(lib, 1.0) * 1e6)
    d = M.shape[1]
    up = np.zeros((n_classes, d), dtype=bool)
    down = np.zeros((n_classes, d), dtype=bool)
    ok = np.zeros(n_classes, dtype=bool)
    n_samp = np.zeros(n_classes, dtype=np.int64)
    for k in range(n_classes):
        a, b = L[(klass == k) & (level == 1)], L[(klass == k) & (level == 0)]
        n_samp[k] = min(len(a), len(b))
        if n_samp[k] < min_samples:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            _, p = stats.ttest_ind(a, b, axis=0, equal_var=False)
        p = np.where(np.isfinite(p), p, 1.0)
        if correction == "bh":
            p = _bh(p)
        sig = p <= alpha
        diff = a.mean(axis=0) - b.mean(axis=0)
        up[k], down[k], ok[k] = sig & (diff > 0), sig & (diff < 0), True
    return up, down, ok, n_samp


def _pseudo_replicates(y, cond, n_rep: np.ndarray, rng) -> np.ndarray:
    """Random split of each (class, level) group into ``n_rep[k, level]`` pseudo-samples (labels as strings)."""
    out = np.empty(len(y), dtype=object)
    for k in np.unique(y):
        for lv in (0, 1):
            rows = np.flatnonzero((y == k) & (cond == lv))
            r = max(int(n_rep[k, lv]), 1)
            out[rows] = [f"pseudo{k}_{lv}_{i}" for i in rng.permutation(np.arange(rows.size) % r)]
    return out


def de_condition(
    real: EvalData,
    syn: EvalData,
    *,
    holdout: EvalData | None = None,
    alpha: float = 0.05,
    correction: str | None = "bh",
    min_cells: int = 10,
    random_state=0,
) -> pd.DataFrame:
    """Condition contrast within each class (e.g. stim vs ctrl per cell type): TPR / FPR of synthetic DE genes.

    Needs ``real.condition`` and ``syn.condition`` (0/1 codes of a two-level obs column; ``tl.evaluate(...,
    condition="group_id")``) and class labels. Per class ``k`` and direction (up/down in level 1 vs level 0),
    ``TPR = |syn DE & real DE| / |real DE|`` and ``FPR = |syn DE & not real DE| / |not real DE|``, as in
    :func:`~scdpsynth.metrics.de_genes.de_genes`; rows ``tpr`` / ``fpr`` (``group="all"``) average over classes
    and directions (undefined rates left out). Cell-level tests are two-sided Wilcoxon rank sums with
    Benjamini-Hochberg correction (``correction=None`` for raw p-values); variants ``pseudobulk_tpr`` /
    ``pseudobulk_fpr`` test pseudobulk profiles (see :func:`pseudobulk_masks`) when the real data carry sample
    labels (``real.donors``; ``tl.evaluate(..., donor_key=...)``), with the synthetic cells split into
    pseudo-replicates (see the module docstring: no donor variance, so a higher FPR is expected). Both rates need
    counts for the pseudobulk variants (``counts`` of the :class:`EvalData`).

    Column ``contrast`` names the levels (``"stim vs ctrl"``) when ``real.condition_levels`` does.

    Reference (``tl.evaluate``): the same rates of a real holdout sample as large as the synthetic set.
    """
    for what, data in (("real", real), ("synthetic", syn)):
        if data.y is None or data.condition is None:
            raise ValueError(
                f"de_condition needs class labels and a condition for the {what} data: pass groupby= and "
                "condition= (a two-level obs column, e.g. condition='group_id') to tl.evaluate."
            )
    C = len(real.classes) if real.classes else int(max(real.y.max(), syn.y.max())) + 1
    names = real.classes or [str(c) for c in range(C)]
    kw = {"alpha": alpha, "correction": correction}
    r_up, r_down, r_ok = condition_ranksum_masks(real.X, real.y, real.condition, C, min_cells=min_cells, **kw)
    s_up, s_down, _ = condition_ranksum_masks(syn.X, syn.y, syn.condition, C, min_cells=min_cells, **kw)
    tests = [("", r_up, r_down, r_ok, s_up, s_down)]
    if real.donors is not None and real.counts is not None and syn.counts is not None:
        pr_up, pr_down, pr_ok, _ = pseudobulk_masks(real.counts, real.y, real.condition, real.donors, C, **kw)
        n_rep = np.zeros((C, 2), dtype=np.int64)
        for k in range(C):
            for lv in (0, 1):
                m = (real.y == k) & (real.condition == lv)
                n_rep[k, lv] = np.unique(real.donors[m]).size
        rng = np.random.default_rng(random_state)
        pseudo = _pseudo_replicates(syn.y, syn.condition, n_rep, rng)
        ps_up, ps_down, _, _ = pseudobulk_masks(syn.counts, syn.y, syn.condition, pseudo, C, **kw)
        tests.append(("pseudobulk_", pr_up, pr_down, pr_ok, ps_up, ps_down))
    rows = []
    for prefix, R_up, R_down, ok, S_up, S_down in tests:
        per = {"tpr": [], "fpr": []}
        for k in range(C):
            if not ok[k]:
                continue
            for direction, R, S in (("up", R_up, S_up), ("down", R_down, S_down)):
                tpr, fpr = _rates(R[k], S[k])
                for kind, v in (("tpr", tpr), ("fpr", fpr)):
                    rows.append({"variant": f"{prefix}{kind}_{direction}", "group": names[k], "value": v})
                    per[kind].append(v)
        rows += [{"variant": f"{prefix}{kind}", "group": "all", "value": _nanmean(v)} for kind, v in per.items()]
    contrast = f"{real.condition_levels[1]} vs {real.condition_levels[0]}" if len(real.condition_levels) == 2 else ""
    return tidy([{"metric": "de_condition", **row, "contrast": contrast} for row in rows])
