"""Distance attacks: distance to closest synthetic record (DCR) and its GAN-Leaks calibration.

* :func:`dcr` scores a target by minus its Euclidean distance to the closest synthetic record: a generator that
  memorises training records puts synthetic records close to members (Hilprecht et al. 2019; Chen et al. 2020,
  "GAN-Leaks", full black-box attack).
* :func:`dcr_calibrated` subtracts the same distance to the attacker's real reference data, which removes how
  typical the target is of the population (GAN-Leaks calibrated attack, with the reference data standing in for
  the reference generator): ``score = d_ref(x) - d_syn(x)``.
"""

from __future__ import annotations

import numpy as np

from ._base import as_matrix, synthetic_pca

__all__ = ["dcr", "dcr_calibrated", "min_distance"]


def min_distance(data: np.ndarray, queries: np.ndarray, chunk_elements: int = 2**24) -> np.ndarray:
    """Euclidean distance from each query row to its nearest row of ``data`` (exact, brute force in chunks).

    The nearest row is found from ``|q|^2 + |x|^2 - 2 q.x`` and its distance recomputed directly, so that
    duplicates get distance 0 exactly.
    """
    data = np.asarray(data, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    sq_data = np.einsum("ij,ij->i", data, data)
    step = max(1, chunk_elements // max(data.shape[0], 1))
    out = np.empty(queries.shape[0])
    for start in range(0, queries.shape[0], step):
        q = queries[start : start + step]
        nearest = np.argmin(sq_data[None, :] - 2.0 * q @ data.T, axis=1)
        out[start : start + step] = np.linalg.norm(q - data[nearest], axis=1)
    return out


def dcr(syn, targets, *, reference=None, n_components: int | None = None, random_state=0) -> np.ndarray:
    """Membership score ``-min_j ||x - s_j||`` over synthetic records ``s_j`` (higher = closer = member).

    Parameters
    ----------
    syn
        Synthetic matrix (m x d).
    targets
        Records to score (n x d).
    reference
        Ignored (the uncalibrated attack needs no auxiliary data).
    n_components
        Compute distances in the top principal components of the synthetic data; ``None`` uses all genes.
    random_state
        Unused (the attack is deterministic); accepted for a uniform interface.
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    proj = synthetic_pca(syn, n_components)
    return -min_distance(proj(syn), proj(targets))


def dcr_calibrated(syn, targets, *, reference, n_components: int | None = None, random_state=0) -> np.ndarray:
    """Calibrated distance score ``min_r ||x - r|| - min_j ||x - s_j||`` with real reference records ``r``.

    Parameters
    ----------
    syn, targets, n_components, random_state
        As in :func:`dcr`.
    reference
        Real records disjoint from the generator's training data (m_ref x d).
    """
    syn = as_matrix(syn, "syn")
    targets = as_matrix(targets, "targets", syn.shape[1])
    if reference is None:
        raise ValueError("dcr_calibrated needs reference= real data disjoint from the training data.")
    reference = as_matrix(reference, "reference", syn.shape[1])
    proj = synthetic_pca(syn, n_components)
    t = proj(targets)
    return min_distance(proj(reference), t) - min_distance(proj(syn), t)
