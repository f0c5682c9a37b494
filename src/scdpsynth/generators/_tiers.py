"""Gene tiers for the count moments: clip and release genes of similar expression together.

One L2 clip for a cell's whole gene vector is set by its few highest genes: it adds noise of the same absolute size
to every gene, many times the mean of a lowly expressed one. Splitting each cell type's genes into tiers of similar
expression and clipping each tier's sub-vector to a norm of its own scale gives the low tiers small clips and so
small noise.

The tiers and their clips must not come from the private data: they come from a *pilot* release (the per-type
means of ``min(x, cap)`` under the one whole-vector clip, its own budget share; see
:func:`~scdpsynth.generators.copula.dp_count_moments`) and are post-processing of it (:func:`plan_tiers`): per
cell type, genes are ranked by the pilot mean and cut into ``T`` tiers of geometrically growing size (the first
holds about ``1 / (2^T - 1)`` of the genes); each tier's clip is ``scale`` times the root of the summed per-cell
second moments a Poisson count with the pilot means would have (``sum mu + mu^2`` for counts, the fourth moment
for squared counts, ``sum min(mu, 1)`` for detection), never above the user's clip for the whole vector. Tiers are
per type because a marker gene is high in its own type only: ranked by means pooled over types, it sat in a low
tier with a small clip, which cut its mean in half.

Release of tier ``t``: the concatenation over types of each type's tier sums divided by that type's tier clip
``C_kt``; a unit's clipped vectors then have norm at most 1 in every block, so the sensitivity is ``m`` (the
contribution bound of :mod:`~scdpsynth.generators._contribution`, or ``sqrt(min(K, m))`` for donor means) whatever
the clips, and block ``k`` carries noise ``sigma * C_kt`` once scaled back. The ``T`` tiers of one statistic compose
(each unit contributes to every tier), so each gets ``1 / T`` of the statistic's zCDP share.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plan_tiers", "tier_edges"]

_MIN_CLIP = 1e-3


def tier_edges(n_genes: int, n_tiers: int) -> np.ndarray:
    """Cut points (in rank order) of ``n_tiers`` tiers of geometrically growing size: tier ``t`` ends at
    ``round(n_genes (2^(t+1) - 1) / (2^T - 1))``; tiers are never empty (at most ``n_genes`` tiers).
    """
    n_genes, n_tiers = int(n_genes), int(n_tiers)
    if n_tiers < 1:
        raise ValueError(f"n_tiers must be >= 1, got {n_tiers!r}.")
    T = min(n_tiers, max(n_genes, 1))
    ends = np.round(n_genes * (2.0 ** np.arange(1, T + 1) - 1) / (2.0**T - 1)).astype(np.int64)
    ends = np.maximum(ends, np.arange(1, T + 1))  # each tier at least one gene
    for t in range(T - 2, -1, -1):  # and room for the tiers after it
        ends[t] = min(ends[t], ends[t + 1] - 1)
    ends[-1] = n_genes
    return ends[:-1]


def plan_tiers(means: np.ndarray, n_tiers: int, *, clips: dict, count_cap: float, mean_cap: float,
               scale: float = 1.0) -> list[tuple[np.ndarray, dict]]:  # fmt: skip
    """Tiers ``[(genes, {key: clip}), ...]`` of one cell type from its released gene means (post-processing).

    ``clips`` holds the user's clips for the whole vector (keys ``"mean"``, ``"second_moment"``, ``"nonzero"``):
    each tier's clip is the Poisson rule times ``scale``, at most the user's clip and at least ``1e-3``.
    """
    mu = np.clip(np.asarray(means, dtype=np.float64), 0.0, None)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}.")
    order = np.argsort(-mu, kind="stable")
    out = []
    for genes in np.split(order, tier_edges(mu.size, n_tiers)):
        a = np.minimum(mu[genes], mean_cap)
        c = np.minimum(mu[genes], count_cap)
        rule = {
            "mean": np.sum(a + a**2),
            "second_moment": np.sum(c + 7 * c**2 + 6 * c**3 + c**4),
            "nonzero": np.sum(np.minimum(mu[genes], 1.0)),
        }
        tier_clips = {k: float(np.clip(scale * np.sqrt(rule[k]), _MIN_CLIP, clips[k])) for k in clips}
        out.append((np.sort(genes), tier_clips))
    return out
