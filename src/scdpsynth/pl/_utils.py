"""scanpy-style figure handling shared by all plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def new_axes(ax=None, *, figsize=(4.5, 3.5), ncols: int = 1, nrows: int = 1):
    """Return ``(fig, axes)``: the given axes' figure, or a new figure with ``nrows x ncols`` axes."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, axes = plt.subplots(nrows, ncols, figsize=(figsize[0] * ncols, figsize[1] * nrows), squeeze=False)
    fig._scdpsynth_own = True  # made here, not passed in: finish() shows it by default
    return fig, (axes[0, 0] if nrows == ncols == 1 else axes)


def finish(fig, axes, *, show: bool | None, save: str | Path | bool | None, return_fig: bool, name: str):
    """Save and/or show the figure as scanpy does; return the figure, the axes or None.

    ``save`` may be a path, or ``True`` for ``figures/{name}.png``. ``show=None`` shows the figure (and returns None)
    unless the caller passed its own ``ax`` or asked for the figure (``return_fig=True``); ``show=False`` returns the
    axes.
    """
    import matplotlib.pyplot as plt

    if save:
        path = Path("figures") / f"{name}.png" if save is True else Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    if return_fig:
        return fig
    if show is None:
        show = getattr(fig, "_scdpsynth_own", False)
    if show:
        plt.show()
        return None
    return axes


def require_uns(adata, key: str, producer: str):
    """``adata.uns[key]`` or a KeyError saying which ``tl`` call makes it."""
    if key not in adata.uns:
        raise KeyError(f"adata.uns[{key!r}] not found: run {producer} first.")
    return adata.uns[key]


def category_colors(n: int) -> list:
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def as_dense(X) -> np.ndarray:
    return X.toarray() if hasattr(X, "toarray") else np.asarray(X)
