from __future__ import annotations

import numpy as np

from ._utils import as_dense, finish, new_axes


def gene_histograms(
    adata_real,
    adata_syn,
    genes,
    *,
    layer: str | None = None,
    log1p: bool | None = None,
    bins: int = 30,
    ncols: int = 4,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Overlaid histograms of real and synthetic expression for each of ``genes``.

    Parameters
    ----------
    adata_real, adata_syn
        Real and synthetic AnnData with the genes in ``var_names``.
    genes
        A gene name or a list of names.
    layer
        Layer of both objects to read (``None``: ``X``).
    log1p
        Plot ``log1p`` values; default: when the real values are integer counts.
    bins
        Number of bins over the real data's range (the histogram-overlap metric's binning).
    ncols, ax, show, save, return_fig
        Layout and scanpy-style output control; ``ax`` only for a single gene.
    """
    from .._validation import get_matrix, is_counts

    genes = [genes] if isinstance(genes, str) else list(genes)
    missing = [g for g in genes if g not in adata_real.var_names or g not in adata_syn.var_names]
    if missing:
        raise KeyError(f"Genes not in both objects' var_names: {missing}.")
    if ax is not None and len(genes) > 1:
        raise ValueError("ax= can only be used with a single gene.")
    Xr, Xs = get_matrix(adata_real, layer), get_matrix(adata_syn, layer)
    if log1p is None:
        log1p = is_counts(Xr)
    nrows = int(np.ceil(len(genes) / ncols))
    fig, axes = new_axes(ax, ncols=min(ncols, len(genes)), nrows=nrows, figsize=(3.2, 2.6))
    flat = [axes] if ax is not None or len(genes) == 1 else list(np.ravel(axes))
    for a, g in zip(flat, genes, strict=False):
        r = as_dense(Xr[:, adata_real.var_names.get_loc(g)]).ravel().astype(float)
        s = as_dense(Xs[:, adata_syn.var_names.get_loc(g)]).ravel().astype(float)
        if log1p:
            r, s = np.log1p(r), np.log1p(s)
        lo, hi = r.min(), r.max()
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        a.hist(r, bins=edges, density=True, alpha=0.5, label="real", color="0.3")
        a.hist(np.clip(s, lo, hi), bins=edges, density=True, alpha=0.5, label="synthetic", color="C1")
        a.set_title(g)
        a.set_xlabel("log1p(count)" if log1p else "expression")
    for a in flat[len(genes) :]:
        a.set_visible(False)
    flat[0].legend(frameon=False)
    if ax is None:
        fig.tight_layout()
    return finish(fig, axes, show=show, save=save, return_fig=return_fig, name="gene_histograms")
