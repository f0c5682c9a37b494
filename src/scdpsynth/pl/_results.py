"""Plots of evaluation results: privacy-utility curves, DE rates, co-expression edges, module GFC heatmaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._utils import category_colors, finish, new_axes, require_uns


def _table(results, key: str = "scdpsynth_eval") -> pd.DataFrame:
    """A tidy results frame: given directly, or read from ``adata.uns[key]`` (written by ``tl.evaluate``)."""
    if isinstance(results, pd.DataFrame):
        df = results
    else:
        df = require_uns(results, key, "scdpsynth.tl.evaluate(adata_real, adata_syn, ...)")
        if not isinstance(df, pd.DataFrame):
            df = pd.DataFrame(df)
    missing = {"metric", "variant", "group", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"results lacks the columns {sorted(missing)}; pass the output of tl.evaluate/tl.benchmark.")
    return df


def _metric_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = df[df["metric"] == metric]
    if rows.empty:
        raise ValueError(f"No rows for metric {metric!r}; evaluated metrics: {sorted(df['metric'].unique())}.")
    return rows


def _eps_positions(eps: pd.Series) -> tuple[np.ndarray, list[float], list[str]]:
    """Log-scale x positions for eps, with non-private runs (NaN/inf/None) placed one decade right of the largest."""
    e = pd.to_numeric(eps.replace({"none": np.nan, "None": np.nan}), errors="coerce").astype(float).to_numpy()
    finite = e[np.isfinite(e)]
    top = finite.max() * 10 if finite.size else 1.0
    x = np.where(np.isfinite(e), e, top)
    ticks = sorted(set(finite.tolist()))
    labels = [f"{t:g}" for t in ticks]
    if (~np.isfinite(e)).any():
        ticks.append(top)
        labels.append("non-private")
    return x, ticks, labels


def privacy_utility(
    results,
    *,
    metric: str = "ml_efficacy",
    variant: str | None = "accuracy",
    methods=None,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Metric versus privacy budget per method (mean ± s.d. over seeds), with the real-data reference line.

    Parameters
    ----------
    results
        Output of :func:`scdpsynth.tl.benchmark` (tidy, with ``method``, ``eps``, ``seed``).
    metric, variant
        Metric and variant to plot (``group == "all"`` rows), e.g. ``("histogram_overlap", "bins=50")``.
    methods
        Subset of methods to draw.
    ax, show, save, return_fig
        scanpy-style output control.
    """
    df = _table(results)
    if not {"method", "eps"} <= set(df.columns):
        raise ValueError("privacy_utility needs the output of tl.benchmark (columns 'method' and 'eps').")
    rows = _metric_rows(df, metric)
    rows = rows[rows["group"] == "all"]
    if variant is not None:
        if variant not in set(rows["variant"]):
            raise ValueError(f"variant {variant!r} not found for {metric!r}; available: {sorted(set(rows['variant']))}")
        rows = rows[rows["variant"] == variant]
    if methods is not None:
        rows = rows[rows["method"].isin([methods] if isinstance(methods, str) else methods)]
    rows = rows.assign(x=_eps_positions(rows["eps"])[0])
    _, ticks, labels = _eps_positions(rows["eps"])
    fig, ax = new_axes(ax, figsize=(5, 3.6))
    names = list(dict.fromkeys(rows["method"]))
    for name, color in zip(names, category_colors(len(names)), strict=True):
        g = rows[rows["method"] == name].groupby("x")["value"].agg(["mean", "std"]).reset_index()
        ax.errorbar(g["x"], g["mean"], yerr=g["std"].fillna(0), marker="o", ms=4, capsize=3, label=name, color=color)
    ref = rows["reference"].astype(float) if "reference" in rows else pd.Series(dtype=float)
    if ref.notna().any():
        ax.axhline(ref.mean(), color="0.2", ls="--", lw=1, label="real data")
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    ax.set_xlabel("privacy budget ε")
    ax.set_ylabel(f"{metric}" + (f" ({variant})" if variant else ""))
    ax.legend(frameon=False, fontsize=8)
    return finish(fig, ax, show=show, save=save, return_fig=return_fig, name="privacy_utility")


def de_genes(
    results,
    *,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """DE-gene preservation: TPR and FPR of synthetic DE calls against the real ones.

    With a single evaluation (``adata_syn`` after ``tl.evaluate`` or its table) each class pair and direction is a
    point in (FPR, TPR) space and the mean is marked. With a benchmark table (column ``eps``) TPR and FPR are drawn
    against the privacy budget per method.
    """
    df = _metric_rows(_table(results), "de_genes")
    if "eps" in df.columns and "method" in df.columns:
        fig, axes = new_axes(None, ncols=2, figsize=(4.2, 3.4)) if ax is None else (ax[0].figure, np.asarray(ax))
        axes = np.ravel(axes)
        for a, kind in zip(axes, ("tpr", "fpr"), strict=True):
            sub = df[(df["group"] == "all") & (df["variant"] == kind)]
            sub = sub.assign(x=_eps_positions(sub["eps"])[0])
            _, ticks, labels = _eps_positions(sub["eps"])
            names = list(dict.fromkeys(sub["method"]))
            for name, color in zip(names, category_colors(len(names)), strict=True):
                g = sub[sub["method"] == name].groupby("x")["value"].agg(["mean", "std"]).reset_index()
                a.errorbar(
                    g["x"], g["mean"], yerr=g["std"].fillna(0), marker="o", ms=4, capsize=3, label=name, color=color
                )
            a.set_xscale("log")
            a.set_xticks(ticks, labels)
            a.minorticks_off()
            a.set_xlabel("privacy budget ε")
            a.set_ylabel(kind.upper())
            a.set_ylim(-0.02, 1.02)
        axes[0].legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return finish(fig, axes, show=show, save=save, return_fig=return_fig, name="de_genes")
    fig, ax = new_axes(ax, figsize=(4, 3.6))
    pairs = df[df["group"] != "all"]
    for direction, marker in (("up", "^"), ("down", "v")):
        tpr = pairs[pairs["variant"] == f"tpr_{direction}"].set_index("group")["value"]
        fpr = pairs[pairs["variant"] == f"fpr_{direction}"].set_index("group")["value"]
        both = pd.concat([fpr.rename("fpr"), tpr.rename("tpr")], axis=1).dropna()
        ax.scatter(both["fpr"], both["tpr"], marker=marker, s=25, alpha=0.7, label=f"class pairs, {direction}")
    summary = df[df["group"] == "all"].set_index("variant")
    if {"tpr", "fpr"} <= set(summary.index):
        ax.scatter(
            [summary.loc["fpr", "value"]],
            [summary.loc["tpr", "value"]],
            marker="*",
            s=160,
            color="k",
            label="synthetic, mean",
            zorder=3,
        )
        if "reference" in summary and summary.loc[["tpr", "fpr"], "reference"].notna().all():
            ax.scatter(
                [summary.loc["fpr", "reference"]],
                [summary.loc["tpr", "reference"]],
                marker="o",
                s=70,
                facecolors="none",
                edgecolors="k",
                label="real holdout, mean",
                zorder=3,
            )
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("FPR (synthetic DE, not real DE)")
    ax.set_ylabel("TPR (real DE genes recovered)")
    ax.legend(frameon=False, fontsize=8)
    return finish(fig, ax, show=show, save=save, return_fig=return_fig, name="de_genes")


def coexpression(
    results,
    *,
    threshold: float = 0.7,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Co-expression edges at ``r > threshold``: correctly reconstructed vs spurious, with the real edge count.

    Bars per evaluation; for a benchmark table one pair of bars per method and ε (mean over seeds).
    """
    df = _metric_rows(_table(results), "coexpression")
    prefix = f"r>{threshold:g}:"
    sub = df[df["variant"].astype(str).str.startswith(prefix)]
    if sub.empty:
        avail = sorted({v.split(":")[0] for v in df["variant"].astype(str) if v.startswith("r>")})
        raise ValueError(f"No co-expression rows for threshold {threshold}; available: {avail}.")
    sub = sub.assign(kind=sub["variant"].str.slice(len(prefix)))
    keys = ["method", "eps"] if {"method", "eps"} <= set(sub.columns) else []
    if keys:
        sub = sub.assign(eps=sub["eps"].astype(float).fillna(np.inf))
        table = sub.groupby([*keys, "kind"])["value"].mean().unstack("kind")
        labels = [f"{m}\nε={'∞' if np.isinf(e) else f'{e:g}'}" for m, e in table.index]
    else:
        table = sub.groupby("kind")["value"].mean().to_frame().T
        labels = ["synthetic"]
    fig, ax = new_axes(ax, figsize=(max(3.5, 1.1 * len(labels) + 1.5), 3.6))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, table["correct"], width=0.4, label="correct", color="C2")
    ax.bar(x + 0.2, table["spurious"], width=0.4, label="spurious", color="C3")
    n_real = float(table["n_real"].iloc[0])
    ax.axhline(n_real, color="0.2", ls="--", lw=1, label=f"real edges ({n_real:.0f})")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel(f"edges (p<0.05, r>{threshold:g})")
    ax.legend(frameon=False, fontsize=8)
    return finish(fig, ax, show=show, save=save, return_fig=return_fig, name="coexpression")


def module_gfc(
    results,
    *,
    cmap: str = "RdBu_r",
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Heatmaps of module group fold changes (modules x classes), real next to synthetic, rows ordered by a
    dendrogram of the real GFC profiles (average linkage, Euclidean).

    Reads the ``coexpression`` rows ``variant="gfc:M<k>"`` of ``tl.evaluate``'s table (value = synthetic,
    reference = a real holdout sample as large as the synthetic set).
    """
    from scipy.cluster import hierarchy

    df = _metric_rows(_table(results), "coexpression")
    if "eps" in df.columns:
        raise ValueError("module_gfc plots one evaluation: pass adata_syn after tl.evaluate, or one run's rows.")
    gfc = df[df["variant"].astype(str).str.startswith("gfc:M")]
    if gfc.empty:
        raise ValueError("No module GFC rows: the evaluation found no Leiden modules or had no class labels.")
    syn = gfc.pivot_table(index="variant", columns="group", values="value", sort=False)
    real = gfc.pivot_table(index="variant", columns="group", values="reference", sort=False)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.0 + 0.55 * 2 * real.shape[1], 1.2 + 0.35 * real.shape[0]))
    fig._scdpsynth_own = True
    grid = fig.add_gridspec(1, 4, width_ratios=[0.8, real.shape[1], real.shape[1], 0.25], wspace=0.08)
    ax_d, ax_r, ax_s, ax_c = (fig.add_subplot(grid[0, i]) for i in range(4))
    if real.shape[0] > 1:
        link = hierarchy.linkage(real.to_numpy(), method="average")
        dend = hierarchy.dendrogram(
            link, orientation="left", ax=ax_d, no_labels=True, color_threshold=0, above_threshold_color="0.3"
        )
        order = dend["leaves"][::-1]
    else:
        order = [0]
    ax_d.axis("off")
    lim = float(np.nanmax(np.abs(np.concatenate([real.to_numpy().ravel(), syn.to_numpy().ravel()])))) or 1.0
    for a, mat, title in ((ax_r, real, "real"), (ax_s, syn, "synthetic")):
        m = mat.iloc[order]
        im = a.imshow(m.to_numpy(), aspect="auto", cmap=cmap, vmin=-lim, vmax=lim)
        a.set_xticks(range(m.shape[1]), m.columns, rotation=90, fontsize=8)
        a.set_title(title)
        a.grid(False)
        a.set_yticks(range(m.shape[0]), m.index.str.replace("gfc:", "") if a is ax_r else [], fontsize=8)
    fig.colorbar(im, cax=ax_c, label="module GFC")
    axes = [ax_d, ax_r, ax_s, ax_c]
    return finish(fig, axes, show=show, save=save, return_fig=return_fig, name="module_gfc")


def mia_roc(
    adata_syn,
    *,
    key: str = "scdpsynth_attack",
    attacks=None,
    log: bool = True,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """ROC curves of membership-inference attacks from ``tl.attack``.

    ``log=True`` draws log-log axes, which show the low-FPR regime that matters for privacy; with few targets (e.g.
    a handful of donors) ``log=False`` is easier to read.
    """
    res = require_uns(adata_syn, key, "scdpsynth.tl.attack(adata_train, adata_holdout, adata_syn, ...)")
    roc = res["roc"]
    names = list(roc) if attacks is None else ([attacks] if isinstance(attacks, str) else list(attacks))
    unknown = [n for n in names if n not in roc]
    if unknown:
        raise KeyError(f"No ROC stored for {unknown}; attacks run: {list(roc)}.")
    table = pd.DataFrame(res["results"]).set_index("attack")
    fig, ax = new_axes(ax, figsize=(4.2, 4))
    floor = 1e-3 if log else 0.0
    for name, color in zip(names, category_colors(len(names)), strict=True):
        fpr, tpr = np.asarray(roc[name]["fpr"], float), np.asarray(roc[name]["tpr"], float)
        auc = table.loc[name, "auroc"] if name in table.index else np.nan
        ax.plot(np.clip(fpr, floor, 1), np.clip(tpr, floor, 1), color=color, label=f"{name} (AUC {auc:.2f})")
    ax.plot([floor, 1], [floor, 1], ls=":", color="0.5", lw=1, label="random guess")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    unit = res.get("params", {}).get("unit", "")
    ax.set_title(f"membership inference ({unit})" if unit else "membership inference")
    ax.legend(frameon=False, fontsize=8)
    return finish(fig, ax, show=show, save=save, return_fig=return_fig, name="mia_roc")
