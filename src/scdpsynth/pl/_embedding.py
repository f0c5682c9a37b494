from __future__ import annotations

import numpy as np

from ._utils import finish, new_axes


def real_vs_synthetic_umap(
    adata_real,
    adata_syn,
    *,
    color: str | None = None,
    layer: str | None = None,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """UMAP of real and synthetic cells embedded together (scanpy), coloured by origin or by ``color``.

    Both objects are concatenated on their shared genes; counts are normalised to 1e4 per cell and log1p-transformed
    (scanpy), then PCA -> neighbours -> UMAP. Nothing is written to the inputs.

    Parameters
    ----------
    adata_real, adata_syn
        Real and synthetic AnnData.
    color
        ``None`` colours by origin (real / synthetic); an ``obs`` column present in both draws two panels, one per
        origin, coloured by that column.
    layer
        Layer to use instead of ``X``.
    n_pcs, n_neighbors, random_state
        Passed to ``sc.pp.pca``, ``sc.pp.neighbors`` and ``sc.tl.umap``.
    ax, show, save, return_fig
        scanpy-style output control (``ax`` only when ``color`` is None).
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from .._validation import get_matrix, is_counts
    from ._utils import category_colors

    shared = adata_real.var_names.intersection(adata_syn.var_names)
    if len(shared) < 2:
        raise ValueError("adata_real and adata_syn share fewer than 2 genes (var_names).")
    parts = []
    for name, a in (("real", adata_real), ("synthetic", adata_syn)):
        X = get_matrix(a, layer)[:, a.var_names.get_indexer(shared)]
        obs = {"origin": np.repeat(name, a.n_obs)}
        if color is not None:
            if color not in a.obs:
                raise KeyError(f"color={color!r} is not a column of the {name} AnnData's obs.")
            obs[color] = a.obs[color].astype(str).to_numpy()
        parts.append(ad.AnnData(X=X.astype(np.float32), obs=pd.DataFrame(obs)))
    both = ad.concat(parts, index_unique="-")
    both.var_names = shared
    if is_counts(both.X):
        sc.pp.normalize_total(both, target_sum=1e4)
        sc.pp.log1p(both)
    sc.pp.pca(both, n_comps=min(n_pcs, both.n_vars - 1, both.n_obs - 1), random_state=random_state)
    sc.pp.neighbors(both, n_neighbors=n_neighbors, random_state=random_state)
    sc.tl.umap(both, random_state=random_state)
    emb = both.obsm["X_umap"]
    origin = both.obs["origin"].to_numpy()
    if color is None:
        fig, axes = new_axes(ax, figsize=(4.5, 4))
        for name, c in (("real", "0.35"), ("synthetic", "C1")):
            m = origin == name
            axes.scatter(emb[m, 0], emb[m, 1], s=3, c=c, label=name, alpha=0.6, linewidths=0)
        axes.legend(frameon=False, markerscale=4)
        panels = [axes]
    else:
        if ax is not None:
            raise ValueError("ax= can only be used with color=None (one panel).")
        fig, axes = new_axes(None, ncols=2, figsize=(4.5, 4))
        axes = list(np.ravel(axes))
        levels = sorted(set(both.obs[color]))
        cols = dict(zip(levels, category_colors(len(levels)), strict=True))
        for a, name in zip(axes, ("real", "synthetic"), strict=True):
            m = origin == name
            for lv in levels:
                mm = m & (both.obs[color].to_numpy() == lv)
                a.scatter(emb[mm, 0], emb[mm, 1], s=3, color=cols[lv], label=lv, linewidths=0)
            a.set_title(name)
        axes[1].legend(frameon=False, markerscale=4, bbox_to_anchor=(1, 1), loc="upper left", fontsize=7)
        panels = axes
    for a in panels:
        a.set_xticks([])
        a.set_yticks([])
        a.set_xlabel("UMAP1")
        a.set_ylabel("UMAP2")
    return finish(fig, axes, show=show, save=save, return_fig=return_fig, name="real_vs_synthetic_umap")
