"""Empirical privacy audit: a statistical lower bound on a generator's epsilon from a canary attack.

Jagielski, Ullman & Oprea (2020), "Auditing differentially private machine learning: how private is private SGD?"
and Nasr et al. (2021), "Adversary instantiation: lower bounds for differentially private machine learning".

A generator that is (eps, delta)-DP makes every membership test of one record (or one donor) weak: for any
threshold on any attack score, the false-positive and false-negative rates satisfy
``FPR + exp(eps) FNR >= 1 - delta`` and ``FNR + exp(eps) FPR >= 1 - delta``, hence

    eps >= max( log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR) ).

The audit builds two neighbouring data sets, ``D`` and ``D'`` = ``D`` with one record (donor) replaced by, or
extended with, a *canary* -- an extreme record at a corner of the data range, or a donor of such records -- and
fits the generator ``n_trials`` times on each with fresh randomness. An attack scores the canary against each
synthetic output (higher = canary was in). Half of the trials choose the threshold that maximises the bound; the
other half count false positives and false negatives at that threshold. One-sided Clopper-Pearson upper bounds on
FPR and FNR, each at level ``alpha / 2`` (so both hold together with probability >= ``1 - alpha``), go into the
formula: with probability at least ``1 - alpha`` the true eps is at least ``eps_lb``. An ``eps_lb`` above the
claimed eps therefore shows, at that confidence, that the generator breaks its guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from .._utils import check_random_state, child_seed

__all__ = ["AuditResult", "audit", "clopper_pearson_upper", "default_canary", "eps_lower_bound"]


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound (level ``1 - alpha``) on a rate with ``k`` events in ``n``."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"Need 0 <= k <= n and n > 0, got k={k}, n={n}.")
    if k == n:
        return 1.0
    return float(stats.beta.ppf(1.0 - alpha, k + 1, n - k))


def eps_lower_bound(fp: int, n_neg: int, fn: int, n_pos: int, *, alpha: float = 0.05, delta: float = 0.0) -> dict:
    """Lower bound on eps from ``fp`` false positives in ``n_neg`` and ``fn`` false negatives in ``n_pos`` trials.

    Returns a dict with ``eps_lb`` (>= 0), ``fpr_ub`` and ``fnr_ub`` (Clopper-Pearson upper bounds, each at level
    ``1 - alpha / 2``).
    """
    fpr_ub = clopper_pearson_upper(int(fp), int(n_neg), alpha / 2.0)
    fnr_ub = clopper_pearson_upper(int(fn), int(n_pos), alpha / 2.0)
    cands = [0.0]
    if 1.0 - delta - fnr_ub > 0 and fpr_ub > 0:
        cands.append(math.log((1.0 - delta - fnr_ub) / fpr_ub))
    if 1.0 - delta - fpr_ub > 0 and fnr_ub > 0:
        cands.append(math.log((1.0 - delta - fpr_ub) / fnr_ub))
    return {"eps_lb": max(cands), "fpr_ub": fpr_ub, "fnr_ub": fnr_ub}


def _counts_at(thresholds: np.ndarray, s_out: np.ndarray, s_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False positives (out-scores >= t) and false negatives (in-scores < t) for each threshold t."""
    s_out, s_in = np.sort(s_out), np.sort(s_in)
    fp = s_out.size - np.searchsorted(s_out, thresholds, side="left")
    fn = np.searchsorted(s_in, thresholds, side="left")
    return fp, fn


def _best_threshold(s_out: np.ndarray, s_in: np.ndarray, alpha: float, delta: float) -> float:
    thresholds = np.unique(np.r_[s_out, s_in, np.inf])
    fp, fn = _counts_at(thresholds, s_out, s_in)
    bounds = [
        eps_lower_bound(a, s_out.size, b, s_in.size, alpha=alpha, delta=delta)["eps_lb"]
        for a, b in zip(fp, fn, strict=True)
    ]
    return float(thresholds[int(np.argmax(bounds))])


def default_canary(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An extreme record: each gene at its observed maximum (a random half of the genes) or minimum (the rest).

    It sits at a corner of the data's bounding box, far from typical records but inside any range-based clipping.
    """
    X = np.asarray(X, dtype=float)
    hi = rng.permutation(X.shape[1]) < (X.shape[1] + 1) // 2
    return np.where(hi, X.max(axis=0), X.min(axis=0))


@dataclass
class AuditResult:
    """Outcome of :func:`audit`. ``eps_lb`` holds with probability >= ``1 - alpha`` if the test is sound."""

    eps_lb: float
    eps_claimed: float
    delta: float
    alpha: float
    threshold: float
    fp: int
    fn: int
    n_neg: int
    n_pos: int
    fpr_ub: float
    fnr_ub: float
    n_trials: int
    attack: str
    unit: str
    neighbouring: str
    scores_out: np.ndarray = field(repr=False)
    scores_in: np.ndarray = field(repr=False)

    @property
    def violated(self) -> bool:
        """True if the audit shows (at confidence ``1 - alpha``) that the claimed eps does not hold."""
        return self.eps_lb > self.eps_claimed

    def to_dict(self) -> dict:
        """h5ad-serialisable dict."""
        return {k: (v if not isinstance(v, np.ndarray) else v.copy()) for k, v in asdict(self).items()}


def audit(
    generator,
    X,
    y=None,
    *,
    params: dict | None = None,
    n_classes: int | None = None,
    donors=None,
    unit: str = "sample",
    canary=None,
    canary_size: int = 1,
    canary_class: int = 0,
    neighbouring: str = "replace",
    attack: str | Callable = "dcr",
    attack_kwargs: dict | None = None,
    reference=None,
    n_syn: int | None = None,
    n_trials: int = 200,
    alpha: float = 0.05,
    threshold: str | float = "split",
    random_state=0,
    progress: bool = False,
) -> AuditResult:
    """Audit a generator empirically: a Clopper-Pearson lower bound on its eps from a canary attack.

    Parameters
    ----------
    generator
        Generator class or registry name (see :func:`scdpsynth.tl.list_methods`).
    X
        Real data (n x d) on the generator's input scale; the fixed part of both neighbouring data sets.
    y
        Integer class codes (default: one class).
    params
        Keyword arguments of the generator (must include ``eps`` for the claimed budget; ``delta`` defaults to
        the generator's).
    n_classes
        Number of classes (default ``max(y) + 1``).
    donors
        Integer donor codes per row, needed for ``unit="donor"``.
    unit
        ``"sample"``: the canary is one record; ``"donor"``: a donor of ``canary_size`` copies of the canary record.
    canary
        The canary record (length d); default :func:`default_canary`.
    canary_size
        Records of the canary donor (``unit="donor"``).
    canary_class
        Class code of the canary records in ``"add"`` mode (in ``"replace"`` mode they take the replaced rows'
        classes, so the class counts stay the same).
    neighbouring
        ``"replace"``: ``D'`` replaces the first record (donor ``0``) of ``D`` by the canary (donor), matching
        generators whose sensitivity is stated for replacing one record; ``"add"``: ``D'`` adds the canary.
    attack
        Attack registry name (scores the canary against the synthetic output; reference-based attacks get
        ``reference``, white-box attacks the fitted generator), ``"projection"`` (the synthetic mean's shift towards
        the canary, ``(mean(X_syn) - mean(X)) . u`` with ``u`` the unit vector from ``mean(X)`` to the canary: the
        auditor knows ``X``, and this detects generators that release noisy moments) or a function
        ``f(X_syn, canary) -> float``.
    attack_kwargs
        Extra keyword arguments of a registered attack.
    reference
        Auxiliary real data for reference-based attacks (default ``X``, which the auditor knows).
    n_syn
        Synthetic records per fit (default: as many as ``X`` has, in its class proportions).
    n_trials
        Fits with and (as many) without the canary; at least 20. Half choose the threshold, half count errors.
    alpha
        1 - confidence of the bound.
    threshold
        ``"split"`` (chosen on the first half of the trials) or a fixed threshold (all trials count).
    random_state
        Seed or :class:`numpy.random.Generator`; each fit gets a child seed.
    progress
        Show a progress bar over the trials (tqdm).

    Returns
    -------
    :class:`AuditResult` with ``eps_lb``, the claimed eps, the error counts and the raw canary scores.
    """
    from ..attacks import registry as attacks
    from ..generators import registry as generators

    cls = generators.get(generator) if isinstance(generator, str) else generator
    if not isinstance(cls, type):
        raise TypeError(f"generator must be a generator class or registry name, got {type(generator).__name__}.")
    params = dict(params or {})
    if params.get("eps") is None:
        raise ValueError(
            "params must include the claimed eps (e.g. params={'eps': 1.0}); an audit of eps=None is void."
        )
    if unit not in ("sample", "donor"):
        raise ValueError(f"unit must be 'sample' or 'donor', got {unit!r}.")
    if neighbouring not in ("replace", "add"):
        raise ValueError(f"neighbouring must be 'replace' or 'add', got {neighbouring!r}.")
    if not isinstance(n_trials, int | np.integer) or n_trials < 20:
        raise ValueError(f"n_trials must be an integer >= 20 (a few hundred for a useful bound), got {n_trials!r}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be a 2-D matrix with at least 2 rows, got shape {X.shape}.")
    y = np.zeros(X.shape[0], dtype=np.int64) if y is None else np.asarray(y, dtype=np.int64).ravel()
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {X.shape[0]} rows.")
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    rng = check_random_state(random_state)
    canary = default_canary(X, rng) if canary is None else np.asarray(canary, dtype=float).ravel()
    if canary.shape != (X.shape[1],):
        raise ValueError(f"canary must have {X.shape[1]} values (one per gene), got shape {canary.shape}.")

    X1, y1, d1, X0, y0, d0 = _neighbours(X, y, donors, unit, canary, canary_size, canary_class, neighbouring)
    class_counts = np.bincount(y0, minlength=n_classes)
    if n_syn is not None:
        class_counts = np.floor(class_counts / class_counts.sum() * int(n_syn)).astype(np.int64)
        class_counts[np.argmax(class_counts)] += int(n_syn) - int(class_counts.sum())
    if isinstance(attack, str) and attack == "projection":
        centre = X.mean(axis=0)
        direction = canary - centre
        norm = np.linalg.norm(direction)
        if norm == 0:
            raise ValueError("The canary equals the data mean; the projection attack needs an outlying canary.")
        direction = direction / norm

        def projection(syn, canary):
            return float((syn.mean(axis=0) - centre) @ direction)

        attack = projection
    score, attack_name = _canary_scorer(
        attack, attacks, dict(attack_kwargs or {}), X if reference is None else reference
    )

    probe = cls(random_state=0, unit=unit, **params)
    if not probe.private:
        raise ValueError("The audited generator is non-private (eps=None); pass params={'eps': ...}.")
    eps_claimed, delta = float(probe.budget.eps), float(probe.budget.delta)

    scores = np.empty((2, int(n_trials)))
    trials = range(int(n_trials))
    if progress:
        from tqdm.auto import tqdm

        trials = tqdm(trials, desc=f"audit {getattr(cls, '__name__', 'generator')}")
    for t in trials:
        for arm, (Xa, ya, da) in enumerate(((X0, y0, d0), (X1, y1, d1))):
            gen = cls(random_state=child_seed(rng), unit=unit, **params)
            gen.fit(Xa, ya, n_classes=n_classes, donors=da)
            scores[arm, t] = score(np.asarray(gen.sample(class_counts), dtype=float), canary, gen)
    if not np.isfinite(scores).all():
        raise ValueError("The attack returned NaN or infinite canary scores.")
    s_out, s_in = scores
    if isinstance(threshold, str):
        if threshold != "split":
            raise ValueError(f"threshold must be 'split' or a number, got {threshold!r}.")
        half = int(n_trials) // 2
        thr = _best_threshold(s_out[:half], s_in[:half], alpha, delta)
        e_out, e_in = s_out[half:], s_in[half:]
    else:
        thr = float(threshold)
        e_out, e_in = s_out, s_in
    fp, fn = (int(v[0]) for v in _counts_at(np.array([thr]), e_out, e_in))
    bound = eps_lower_bound(fp, e_out.size, fn, e_in.size, alpha=alpha, delta=delta)
    return AuditResult(
        eps_lb=bound["eps_lb"],
        eps_claimed=eps_claimed,
        delta=delta,
        alpha=float(alpha),
        threshold=thr,
        fp=fp,
        fn=fn,
        n_neg=int(e_out.size),
        n_pos=int(e_in.size),
        fpr_ub=bound["fpr_ub"],
        fnr_ub=bound["fnr_ub"],
        n_trials=int(n_trials),
        attack=attack_name,
        unit=unit,
        neighbouring=neighbouring,
        scores_out=s_out,
        scores_in=s_in,
    )


def _neighbours(X, y, donors, unit, canary, canary_size, canary_class, neighbouring):
    """``(X1, y1, donors1)`` with the canary and ``(X0, y0, donors0)`` without it."""
    if unit == "donor":
        if donors is None:
            raise ValueError("unit='donor' needs donors=, integer donor codes per row.")
        donors = np.asarray(donors, dtype=np.int64).ravel()
        if donors.shape[0] != X.shape[0]:
            raise ValueError(f"donors has {donors.shape[0]} codes for {X.shape[0]} rows.")
        if not isinstance(canary_size, int | np.integer) or canary_size < 1:
            raise ValueError(f"canary_size must be a positive integer, got {canary_size!r}.")
        m = int(canary_size)
        new_code = int(donors.max()) + 1
        if neighbouring == "replace":
            keep = donors != donors.min()
            gone = np.flatnonzero(~keep)
            cls_c = np.resize(y[gone], m)
            X1 = np.vstack([X[keep], np.tile(canary, (m, 1))])
            return X1, np.r_[y[keep], cls_c], np.r_[donors[keep], np.full(m, new_code)], X, y, donors
        X1 = np.vstack([X, np.tile(canary, (m, 1))])
        return X1, np.r_[y, np.full(m, canary_class)], np.r_[donors, np.full(m, new_code)], X, y, donors
    d = None if donors is None else np.asarray(donors, dtype=np.int64).ravel()
    if neighbouring == "replace":
        X1 = X.copy()
        X1[0] = canary
        return X1, y.copy(), d, X, y, d
    d1 = None if d is None else np.r_[d, int(d.max()) + 1]
    return np.vstack([X, canary]), np.r_[y, canary_class], d1, X, y, d


def _canary_scorer(attack, attacks, kwargs, reference):
    if callable(attack):
        name = getattr(attack, "__name__", "custom")
        return (lambda syn, canary, gen: float(attack(syn, canary))), name
    fn = attacks.get(attack)
    info = attacks.info(attack)
    if info.get("level") == "donor":
        raise ValueError(f"Attack {attack!r} scores donors from shadow models; audit a record-level attack instead.")
    if info.get("needs_generator"):
        return (lambda syn, canary, gen: float(fn(gen, canary[None, :], **kwargs)[0])), attack
    if info.get("needs_reference"):
        ref = np.asarray(reference, dtype=float)
        return (lambda syn, canary, gen: float(fn(syn, canary[None, :], reference=ref, **kwargs)[0])), attack
    return (lambda syn, canary, gen: float(fn(syn, canary[None, :], **kwargs)[0])), attack
