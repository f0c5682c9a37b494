"""Contribution bounding for cell- and donor-level DP: donor caps, per-cell clipping, sensitivities, releases.

Every statistic the count generators release is a *per-cell-type sum* of clipped per-cell vectors,
``S_k = sum_{i: y_i = k} f(x_i)`` with ``||f(x_i)||_2 <= C`` (see :func:`clip_rows_l2`), released jointly for all
cell types ``k`` as one Gaussian mechanism on the concatenation ``(S_1, ..., S_K)``.

Neighbouring datasets differ by adding or removing one *privacy unit* (add/remove DP):

* ``unit="sample"`` (one cell): a cell lies in exactly one cell type, so it changes one block by at most ``C``
  (parallel composition over cell types): L2 sensitivity ``C``.
* ``unit="donor"``: each donor keeps at most ``m`` cells (:func:`cap_cells_per_donor`), spread as ``m_k`` cells
  over the types with ``sum_k m_k <= m``. Block ``k`` changes by at most ``m_k C``, so the concatenation changes by
  at most ``sqrt(sum_k (m_k C)^2) <= C sqrt(sum_k m_k^2) <= m C``: L2 sensitivity ``m C``. A donor spanning many
  cell types is therefore covered by the *total* cap, not a per-type cap.

Under replace-one neighbouring (``neighbouring="replace"``) both bounds double (triangle inequality). Per-type cell
counts are released the same way (``f(x) = 1``, ``C = 1``), so means use noisy denominators and the per-type counts
are not assumed public inside the generator.

For a Gram statistic ``sum_i z_i z_i^T`` with ``||z_i||_2 <= C`` each term has Frobenius norm ``||z_i||^2 <= C^2``,
so the same argument gives sensitivity ``m C^2`` (``C^2`` per cell).

**Donor means** (:func:`donor_type_weights`). Summing a donor's cells makes its contribution grow with its cell
count, so the noise of a per-type mean is about ``K / n_donors`` of the clip (``K`` cell types) whatever ``m`` is.
Weighting each cell by ``w_i = 1 / n_dk`` (``n_dk`` the donor's kept cells of the cell's type) makes block ``k`` of
a donor's contribution the *mean* of its clipped vectors, of norm at most ``C``; a donor spans at most
``min(K, m)`` types, so the concatenation changes by at most ``C sqrt(min(K, m))`` (``C^2 sqrt(min(K, m))`` for a
Gram sum), and the weighted count ``sum_i w_i`` (donors per type) by at most ``sqrt(min(K, m))``. Dividing the
weighted sums by the released donor counts estimates the mean over donors of each donor's per-type mean: its noise
is about ``sqrt(K) / n_donors`` of the clip, a factor ``sqrt(K)`` below the cell sums'
(:func:`donor_mean_multiplier` gives the factor that replaces ``m``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from ..privacy import Ledger, gaussian_sigma_for_rho

__all__ = [
    "cap_cells_per_donor",
    "clip_rows_l2",
    "contribution_bound",
    "donor_mean_multiplier",
    "donor_type_weights",
    "grouped_sums",
    "grouped_gram",
    "release",
    "sum_sensitivity",
]

NEIGHBOURING = ("add_remove", "replace")


def contribution_bound(unit: str, max_cells_per_donor: int | None) -> int:
    """Largest number of cells one privacy unit contributes: 1 for ``"sample"``, the donor cap for ``"donor"``."""
    if unit == "sample":
        return 1
    if unit != "donor":
        raise ValueError(f"unit must be 'sample' or 'donor', got {unit!r}.")
    if max_cells_per_donor is None or int(max_cells_per_donor) < 1:
        raise ValueError(
            f"unit='donor' needs max_cells_per_donor >= 1 (cells kept per donor), got {max_cells_per_donor!r}."
        )
    return int(max_cells_per_donor)


def sum_sensitivity(clip: float, m: int, *, neighbouring: str = "add_remove", power: int = 1) -> float:
    """L2 sensitivity of the concatenated per-type sums of per-cell vectors clipped to L2 norm ``clip``.

    ``m`` cells per unit (1 for cells); ``power=2`` for Gram sums ``sum z z^T`` (each term has Frobenius norm
    ``clip**2``). Add/remove: ``m * clip**power``; replace-one: twice that.
    """
    if neighbouring not in NEIGHBOURING:
        raise ValueError(f"neighbouring must be one of {NEIGHBOURING}, got {neighbouring!r}.")
    if not (clip > 0 and math.isfinite(clip)):
        raise ValueError(f"clip must be a finite number > 0, got {clip!r}.")
    s = float(m) * float(clip) ** power
    return 2.0 * s if neighbouring == "replace" else s


def cap_cells_per_donor(donors: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted row indices keeping at most ``max_cells`` cells of each donor (uniformly at random, without replacement).

    The cap is over all cell types together, which is what bounds a donor's total contribution.
    """
    donors = np.asarray(donors)
    if donors.ndim != 1:
        raise ValueError(f"donors must be a 1-d array of donor codes, got shape {donors.shape}.")
    keep = []
    for d in np.unique(donors):
        idx = np.flatnonzero(donors == d)
        if idx.size > max_cells:
            idx = rng.choice(idx, size=max_cells, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def donor_type_weights(donors: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-cell weights ``1 / n_dk``: one over the number of cells sharing the cell's donor and type.

    The weights of each (donor, type) pair sum to 1, so weighted per-type sums add one donor mean per donor and type
    (see the module docstring for the sensitivities).
    """
    donors = np.asarray(donors)
    y = np.asarray(y, dtype=np.int64)
    if donors.shape != y.shape:
        raise ValueError(f"donors has {donors.shape[0]} entries for {y.shape[0]} cells.")
    _, codes = np.unique(donors, return_inverse=True)
    pair = codes.astype(np.int64) * int(n_classes) + y
    _, inv, size = np.unique(pair, return_inverse=True, return_counts=True)
    return 1.0 / size[inv].astype(np.float64)


def donor_mean_multiplier(m: int, n_classes: int) -> float:
    """``sqrt(min(K, m))``: what replaces the cell cap ``m`` in sensitivities of donor-mean weighted sums."""
    return math.sqrt(min(int(n_classes), int(m)))


def clip_rows_l2(A, clip: float):
    """Scale each row of ``A`` (dense or CSR) to L2 norm at most ``clip``; returns a new float64 matrix."""
    if sparse.issparse(A):
        A = sparse.csr_matrix(A, dtype=np.float64, copy=True)
        norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
        scale = np.minimum(1.0, clip / np.maximum(norms, 1e-300))
        A.data *= np.repeat(scale, np.diff(A.indptr))
        return A
    A = np.array(A, dtype=np.float64)
    norms = np.linalg.norm(A, axis=1)
    return A * np.minimum(1.0, clip / np.maximum(norms, 1e-300))[:, None]


def grouped_sums(A, y: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, d)`` dense array of per-class column sums of ``A`` (dense or sparse)."""
    y = np.asarray(y)
    ind = sparse.csr_matrix((np.ones(y.size), (y, np.arange(y.size))), shape=(n_classes, y.size))
    out = ind @ A
    return np.asarray(out.toarray() if sparse.issparse(out) else out, dtype=np.float64)


def grouped_gram(Z: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, p, p)`` per-class Gram matrices ``sum_i z_i z_i^T`` of the dense rows of ``Z``."""
    out = np.zeros((n_classes, Z.shape[1], Z.shape[1]))
    for k in range(n_classes):
        Zk = Z[y == k]
        if Zk.shape[0]:
            out[k] = Zk.T @ Zk
    return out


def release(
    values: np.ndarray,
    *,
    sensitivity: float,
    rho: float,
    name: str,
    ledger: Ledger,
    rng: np.random.Generator,
    symmetric: bool = False,
) -> np.ndarray:
    """Gaussian mechanism ``values + N(0, sigma^2)``, ``sigma = sensitivity / sqrt(2 rho)``, drawn by ``ledger``.

    ``rho = inf`` (non-private) returns a copy without noise and records nothing. With ``symmetric=True`` the last
    two axes hold symmetric matrices: noise is drawn for the upper triangle (diagonal included) and mirrored, so the
    release is the upper triangle, whose L2 norm is at most the Frobenius norm the sensitivity bounds.
    """
    if math.isinf(rho):
        return np.array(values, dtype=np.float64)
    sigma = gaussian_sigma_for_rho(rho, sensitivity)
    return ledger.gaussian(values, sensitivity=sensitivity, sigma=sigma, rng=rng, name=name, symmetric=symmetric)
