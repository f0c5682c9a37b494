"""Donor-level shadow-model attack: a random forest on donor pseudobulk features.

Shadow modelling (Shokri et al. 2017; for synthetic data Stadler et al. 2022, "Synthetic data -- anonymisation
groundhog day"): the attacker knows the generator (class and hyper-parameters, which ``tl.generate`` records) and
holds real reference donors. In each of ``n_shadow`` rounds it splits the reference donors at random into shadow
members and shadow non-members, fits the generator to the shadow members, samples shadow synthetic data and
computes, for every reference donor, features of the donor *relative to* that synthetic data. A random forest
learns member/non-member from these labelled features and is then applied to the target donors' features computed
against the real synthetic data.

Features of a donor with cells ``C`` and pseudobulk (mean profile) ``p`` against synthetic records ``S``:
distance of ``p`` to the synthetic mean, correlation of ``p`` with it, distance of ``p`` to the pseudobulk of its
nearest synthetic records (as many as the donor has cells, at most 50), and the 10/50/90% quantiles of the cells'
distances to their closest synthetic record. All distances are taken in the top principal components of ``S``.
A donor with a single record (bulk data, ``unit="sample"``) is its own pseudobulk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import NearestNeighbors

from .._utils import check_random_state, child_seed
from ._base import as_matrix, synthetic_pca

__all__ = ["donor_features", "pseudobulk_rf"]

FEATURES = ["dist_to_syn_mean", "corr_with_syn_mean", "dist_to_local_syn_pseudobulk", "dcr_q10", "dcr_q50", "dcr_q90"]


def donor_features(syn: np.ndarray, X: np.ndarray, groups: np.ndarray, n_components: int | None = 20):
    """Feature matrix (one row per sorted unique group, columns :data:`FEATURES`) of ``X`` against ``syn``."""
    proj = synthetic_pca(syn, n_components)
    S, T = proj(syn), proj(X)
    s_mean = syn.mean(axis=0)
    values, inverse = np.unique(groups, return_inverse=True)
    k_max = int(min(50, S.shape[0]))
    nn = NearestNeighbors(n_neighbors=k_max).fit(S)
    dist, idx = nn.kneighbors(T)
    out = np.empty((values.size, len(FEATURES)))
    for g in range(values.size):
        rows = np.flatnonzero(inverse == g)
        p = X[rows].mean(axis=0)
        pt = T[rows].mean(axis=0)
        k = int(min(rows.size, k_max))
        local = S[np.unique(idx[rows, :k])].mean(axis=0)
        a, b = p - p.mean(), s_mean - s_mean.mean()
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        out[g] = [
            np.linalg.norm(p - s_mean),
            float(a @ b / denom) if denom > 0 else 0.0,
            np.linalg.norm(pt - local),
            *np.quantile(dist[rows, 0], [0.1, 0.5, 0.9]),
        ]
    return values, out


def pseudobulk_rf(
    syn,
    targets,
    *,
    reference,
    target_groups,
    reference_groups,
    shadow: Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray],
    n_shadow: int = 4,
    n_components: int | None = 20,
    n_estimators: int = 200,
    random_state=0,
) -> np.ndarray:
    """Member probability per target donor from a random forest trained on shadow-model donor features.

    Parameters
    ----------
    syn
        Synthetic matrix (m x d).
    targets
        Target records (n x d); ``target_groups`` gives each record's donor.
    reference
        Real reference records (disjoint donors); ``reference_groups`` gives each record's donor. At least 4
        reference donors are needed (2 shadow members and 2 shadow non-members per round).
    target_groups, reference_groups
        Donor identifiers per record.
    shadow
        ``shadow(X, donor_codes, n_out, rng) -> synthetic matrix``: fits the attacked generator (same class and
        hyper-parameters) to ``X`` and samples ``n_out`` records.
    n_shadow
        Shadow rounds (each fits the generator once).
    n_components
        Principal components of the (shadow) synthetic data used for distances.
    n_estimators
        Trees of the random forest.
    random_state
        Seed or :class:`numpy.random.Generator` (donor splits, forest, shadow fits).

    Returns
    -------
    One score per sorted unique value of ``target_groups``.
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    if reference is None:
        raise ValueError("pseudobulk_rf needs reference= real donors disjoint from the training data.")
    reference = as_matrix(reference, "reference", syn.shape[1])
    if not callable(shadow):
        raise TypeError("pseudobulk_rf needs shadow=, a function fitting the attacked generator (see docstring).")
    target_groups = np.asarray(target_groups).ravel()
    reference_groups = np.asarray(reference_groups).ravel()
    if target_groups.shape[0] != targets.shape[0] or reference_groups.shape[0] != reference.shape[0]:
        raise ValueError("target_groups / reference_groups need one donor identifier per record.")
    if not isinstance(n_shadow, int | np.integer) or n_shadow < 1:
        raise ValueError(f"n_shadow must be a positive integer, got {n_shadow!r}.")
    ref_donors, ref_codes = np.unique(reference_groups, return_inverse=True)
    if ref_donors.size < 4:
        raise ValueError(
            f"pseudobulk_rf needs at least 4 reference donors for shadow training, got {ref_donors.size}. "
            "Pass a larger reference= set (or a larger holdout)."
        )
    rng = check_random_state(random_state)
    ratio = syn.shape[0] / max(targets.shape[0], 1)
    feats, labels = [], []
    for _ in range(int(n_shadow)):
        inside = np.zeros(ref_donors.size, dtype=bool)
        inside[rng.permutation(ref_donors.size)[: ref_donors.size // 2]] = True
        rows = inside[ref_codes]
        _, codes_in = np.unique(ref_codes[rows], return_inverse=True)
        n_out = max(round(ratio * float(rows.sum())), 2)
        shadow_syn = as_matrix(shadow(reference[rows], codes_in, n_out, rng), "shadow output", syn.shape[1])
        _, f = donor_features(shadow_syn, reference, ref_codes, n_components)
        feats.append(f)
        labels.append(inside.astype(int))
    clf = RandomForestClassifier(
        n_estimators=n_estimators, min_samples_leaf=2, random_state=child_seed(rng), n_jobs=1
    ).fit(np.vstack(feats), np.concatenate(labels))
    _, f_target = donor_features(syn, targets, target_groups, n_components)
    return clf.predict_proba(f_target)[:, 1]
