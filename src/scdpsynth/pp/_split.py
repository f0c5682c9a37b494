from __future__ import annotations

import numpy as np

from .. import _validation as V
from .._utils import check_random_state


def train_holdout_split(
    adata,
    *,
    holdout_size: float = 0.2,
    stratify: str | None = None,
    donor_key: str | None = None,
    random_state=0,
):
    """Split ``adata`` into a training part (for the generator) and a real holdout (for evaluation and attacks).

    Parameters
    ----------
    adata
        Real data; not modified.
    holdout_size
        Fraction of observations (or donors, with ``donor_key``) held out, in (0, 1).
    stratify
        Column of ``adata.obs`` to stratify by (each class is split in the same proportion).
    donor_key
        Column of ``adata.obs`` with donor IDs: whole donors go to one side (needed for donor-level evaluation).
    random_state
        Seed or :class:`numpy.random.Generator`.

    Returns
    -------
    ``(train, holdout)``: two new AnnData objects (copies).
    """
    if not 0 < holdout_size < 1:
        raise ValueError(f"holdout_size must be in (0, 1), got {holdout_size!r}.")
    rng = check_random_state(random_state)
    n = adata.n_obs
    hold = np.zeros(n, dtype=bool)
    if donor_key is not None:
        codes, names = V.check_categorical(adata, donor_key, what="donor_key")
        if len(names) < 2:
            raise ValueError(f"Need at least 2 donors in obs[{donor_key!r}] to split by donor, got {len(names)}.")
        k = min(max(1, round(holdout_size * len(names))), len(names) - 1)
        hold = np.isin(codes, rng.permutation(len(names))[:k])
    else:
        groups = np.zeros(n, dtype=np.int64) if stratify is None else V.check_categorical(adata, stratify)[0]
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            k = round(holdout_size * idx.size)
            if idx.size >= 2:
                k = min(max(k, 1), idx.size - 1)
            hold[rng.permutation(idx)[:k]] = True
    return adata[~hold].copy(), adata[hold].copy()
