"""The contract every membership-inference attack follows, and how attacks are scored (AnnData-free).

An attack is a function::

    attack(syn, targets, *, reference=None, random_state=0, **kwargs) -> np.ndarray

``syn`` is the synthetic matrix (m x d), ``targets`` the records whose membership is guessed (n x d; members are
rows of the generator's training data, non-members rows of a real holdout) and ``reference`` a real data set
disjoint from both (the attacker's auxiliary knowledge of the population) for attacks registered with
``needs_reference=True``. It returns one membership score per target row; **higher means more likely a member**.
All matrices are dense float on the analysis scale (log-expression; ``tl.attack`` log1p-normalises counts).

White-box attacks (``needs_generator=True``) take a fitted generator object instead of ``syn``; see
:mod:`scdpsynth.attacks.whitebox_vae`.

Scoring follows Carlini et al. (2022, "Membership inference attacks from first principles"): the ROC curve, its
area (AUROC) and the true-positive rate at a low false-positive rate (1% and 0.1%), where TPR at FPR ``f`` is the
largest TPR over ROC points with FPR <= ``f`` (no interpolation, so it is never optimistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AttackScores",
    "aggregate_scores",
    "as_matrix",
    "auroc",
    "bootstrap_ci",
    "roc_curve",
    "score_attack",
    "synthetic_pca",
    "tpr_at_fpr",
]


def as_matrix(X, name: str, d: int | None = None) -> np.ndarray:
    """Dense 2-D float64 copy of ``X`` with a clear error for a wrong shape or non-finite values."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.array(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix (records x genes), got shape {X.shape}.")
    if d is not None and X.shape[1] != d:
        raise ValueError(
            f"{name} has {X.shape[1]} genes but the synthetic data have {d}; use the same genes in the same order."
        )
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values; impute or drop them first.")
    return X


def roc_curve(scores, member) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of membership ``scores`` (higher = member) against boolean ``member`` labels.

    Returns ``(fpr, tpr, thresholds)``: one point per distinct score (ties are one point), starting at
    ``(0, 0)`` with threshold ``+inf`` and ending at ``(1, 1)``. A record is called a member if its score is
    ``>= threshold``.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    member = np.asarray(member, dtype=bool).ravel()
    if scores.shape != member.shape:
        raise ValueError(f"scores ({scores.shape}) and member labels ({member.shape}) must have the same length.")
    n_pos, n_neg = int(member.sum()), int((~member).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"Need both members and non-members to score an attack, got {n_pos} and {n_neg}.")
    if not np.isfinite(scores).all():
        raise ValueError("Attack scores contain NaN or infinite values.")
    order = np.argsort(-scores, kind="mergesort")
    s, m = scores[order], member[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.cumsum(m)[last_of_tie]
    fp = np.cumsum(~m)[last_of_tie]
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return fpr, tpr, thresholds


def auroc(scores, member) -> float:
    """Area under the ROC curve (trapezoidal; equals P(score_member > score_nonmember) + 0.5 P(tie))."""
    fpr, tpr, _ = roc_curve(scores, member)
    return _area(fpr, tpr)


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under a ROC curve from :func:`roc_curve` (ties are one diagonal step: they count half)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Largest TPR among ROC points whose FPR is at most ``max_fpr`` (0 if none but the origin)."""
    ok = np.asarray(fpr) <= max_fpr + 1e-12
    return float(np.max(np.asarray(tpr)[ok]))


def aggregate_scores(scores, groups) -> tuple[np.ndarray, np.ndarray]:
    """Mean score per group (e.g. cell scores -> donor scores). Returns ``(group_values, mean_scores)``.

    ``group_values`` are the sorted unique values of ``groups``.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    if scores.shape != groups.shape:
        raise ValueError(f"scores ({scores.shape}) and groups ({groups.shape}) must have the same length.")
    values, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=scores, minlength=values.size)
    counts = np.bincount(inverse, minlength=values.size)
    return values, sums / counts


def bootstrap_ci(scores, member, *, n_boot: int = 200, level: float = 0.95, random_state=0) -> dict[str, tuple]:
    """Percentile bootstrap confidence intervals of the AUROC and of the TPR at 1% and 0.1% FPR.

    Members and non-members are resampled separately (stratified bootstrap, their numbers kept), ``n_boot`` times
    with a fixed seed; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled
    statistics. The threshold of the low-FPR figures is re-estimated in each resample, so the interval also holds
    the uncertainty of the threshold (with fewer than ``1 / fpr`` non-members the TPR at that FPR rests on zero
    false positives and its interval is wide).

    Returns
    -------
    ``{"auroc": (low, high), "tpr_at_1pct_fpr": (low, high), "tpr_at_0.1pct_fpr": (low, high)}``.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    member = np.asarray(member, dtype=bool).ravel()
    pos, neg = np.flatnonzero(member), np.flatnonzero(~member)
    rng = np.random.default_rng(random_state)
    stats = np.empty((n_boot, 3))
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        fpr, tpr, _ = roc_curve(scores[idx], member[idx])
        stats[b] = _area(fpr, tpr), tpr_at_fpr(fpr, tpr, 0.01), tpr_at_fpr(fpr, tpr, 0.001)
    q = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2], axis=0)
    keys = ("auroc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")
    return {k: (float(q[0, j]), float(q[1, j])) for j, k in enumerate(keys)}


@dataclass
class AttackScores:
    """Scores of one attack at one unit (record or donor) with its ROC summary."""

    attack: str
    unit: str
    ids: np.ndarray
    scores: np.ndarray
    member: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    auroc: float
    tpr_at_1pct_fpr: float
    tpr_at_01pct_fpr: float
    ci: dict | None = None

    def row(self) -> dict:
        """One row of the tidy results frame."""
        return {
            "attack": self.attack,
            "unit": self.unit,
            "auroc": self.auroc,
            "tpr_at_1pct_fpr": self.tpr_at_1pct_fpr,
            "tpr_at_0.1pct_fpr": self.tpr_at_01pct_fpr,
            "n_members": int(self.member.sum()),
            "n_nonmembers": int((~self.member).sum()),
            **{
                f"{k}_ci_{side}": (np.nan if self.ci is None else self.ci[k][j])
                for k in ("auroc", "tpr_at_1pct_fpr")
                for j, side in enumerate(("low", "high"))
            },
        }


def score_attack(attack: str, unit: str, ids, scores, member, *, n_boot: int = 200) -> AttackScores:
    """ROC curve, AUROC (:func:`auroc`: ties count half) and TPR at 1% and 0.1% FPR of one attack's scores.

    With ``n_boot > 0`` the 95% bootstrap confidence intervals of the AUROC and of the TPR at 1% FPR are attached
    (:func:`bootstrap_ci`).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    member = np.asarray(member, dtype=bool).ravel()
    fpr, tpr, _ = roc_curve(scores, member)
    area = auroc(scores, member)
    return AttackScores(
        attack=attack,
        unit=unit,
        ids=np.asarray(ids).astype(str),
        scores=scores,
        member=member,
        fpr=fpr,
        tpr=tpr,
        auroc=area,
        tpr_at_1pct_fpr=tpr_at_fpr(fpr, tpr, 0.01),
        tpr_at_01pct_fpr=tpr_at_fpr(fpr, tpr, 0.001),
        ci=bootstrap_ci(scores, member, n_boot=n_boot) if n_boot > 0 else None,
    )


def synthetic_pca(syn: np.ndarray, n_components: int | None):
    """Projection onto the top principal components of the synthetic data (``None``: identity).

    The attacker holds the synthetic data, so fitting the projection on it costs nothing; the same projection is
    applied to targets and reference. Components are capped at ``min(m - 1, d)``.
    """
    if n_components is None:
        return lambda A: A
    if not isinstance(n_components, int | np.integer) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer or None, got {n_components!r}.")
    k = int(min(n_components, syn.shape[0] - 1, syn.shape[1]))
    if k < 1:
        raise ValueError("Need at least 2 synthetic records to fit a projection; pass n_components=None.")
    mean = syn.mean(axis=0)
    centred = syn - mean
    if k < min(centred.shape) // 4:
        from sklearn.utils.extmath import randomized_svd

        # top-k components by randomised SVD with power iterations (fixed seed: deterministic)
        _, _, vt = randomized_svd(centred, k, n_oversamples=20, n_iter=7, random_state=0)
    else:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:k]
    return lambda A: (A - mean) @ comps.T
