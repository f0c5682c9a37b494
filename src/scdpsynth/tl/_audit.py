"""Empirical privacy audit of :func:`scdpsynth.tl.generate`, end to end: a statistical lower bound on eps.

Jagielski, Ullman & Oprea (2020), "Auditing differentially private machine learning: how private is private SGD?"
and Nasr et al. (2021), "Adversary instantiation: lower bounds for differentially private machine learning".

A mechanism that is (eps, delta)-DP makes every membership test of one privacy unit weak: for any test of "is the
canary in?" on the output, the false-positive and false-negative rates satisfy ``FPR + exp(eps) FNR >= 1 - delta``
and ``FNR + exp(eps) FPR >= 1 - delta``, hence

    eps >= max( log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR) ).

The audit builds two neighbouring AnnData objects under the relation the generator claims
(``generator.neighbouring``): ``"add_remove"``: ``D`` and ``D' = D`` plus a canary record (``unit="sample"``) or a
canary donor of several cells (``unit="donor"``); ``"replace"``: one record (donor) of ``D`` replaced by the canary.
It then runs :func:`~scdpsynth.tl.generate` end to end ``n_trials`` times on each, with fresh randomness per fit
(:class:`numpy.random.Generator` objects spawned from one :class:`numpy.random.SeedSequence`, never shared between
fits), so it sees exactly what a user gets: the synthetic matrix with its sizes, dtype and sparsity, the labels and
the metadata in ``uns``. Each attack scores every output (higher = the canary was in):

* ``"dcr"``: minus the distance from the canary to the closest synthetic row of its class, on the output's scale
  (counts: ``log1p`` of counts normalised to 1e4 per row; continuous data: as they are);
* ``"projection"``: the shift of the synthetic class mean towards the canary, ``(mean(S_c) - mean(D_c)) . u`` with
  ``u`` the unit vector from the real class mean to the canary (the auditor knows ``D``);
* ``"metadata"``: looks only at what is not the expression values -- the number of rows, the rows and share of every
  class, the dtype and sparse format of ``X``, the AnnData keys and every leaf of ``uns``. On the first half of the
  trials it picks the feature (and direction, or for non-numeric values a lookup table of the value's in/out
  frequencies) that separates the arms best; the second half counts the errors. Exact sizes, seeds or anything else
  in the metadata that depends on the canary show up here.

For every attack, half of the trials choose the threshold that maximises the bound; the other half count false
positives and false negatives at that threshold. One-sided Clopper-Pearson upper bounds on FPR and FNR (each at
level ``alpha / (2 K)`` for ``K`` attacks, Bonferroni) go into the formula, so that with probability at least
``1 - alpha`` the true eps is at least the reported ``eps_lb``, the largest bound over the attacks. An ``eps_lb``
above the claimed eps shows, at that confidence, that the generator breaks its guarantee. A bound below it proves
nothing in general (the attacks may be weak); it is a smoke test of the implementation, not a proof of privacy.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import logging
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse, stats

from .. import _validation as V
from .._progress import progress_bar
from .._transforms import log_normalise
from .._utils import check_random_state
from ..privacy import DEFAULT_DELTA

logger = logging.getLogger("scdpsynth")

__all__ = [
    "ATTACKS",
    "AttackResult",
    "AuditResult",
    "audit",
    "clopper_pearson_upper",
    "default_canary",
    "eps_lower_bound",
]

#: the audit's built-in attacks (the default runs all of them)
ATTACKS = ("dcr", "projection", "metadata")
#: donor identifier of the canary donor (and the canary record's donor)
CANARY_DONOR = "scdpsynth-audit-canary"
#: raw count of the canary on its genes when the generator has no count cap (log1p(1000) = 6.9, inside (0, 16))
CANARY_COUNT = 1000
_MISSING = "<missing>"
_TARGET_SUM = 1e4


# ---------------------------------------------------------------------------------------------------- statistics
def _cp_upper(k, n, alpha: float) -> np.ndarray:
    """Vectorised one-sided Clopper-Pearson upper bound (level ``1 - alpha``)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    ub = stats.beta.ppf(1.0 - alpha, k + 1.0, np.maximum(n - k, 1.0))
    return np.where(k >= n, 1.0, ub)


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound (level ``1 - alpha``) on a rate with ``k`` events in ``n``."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"Need 0 <= k <= n and n > 0, got k={k}, n={n}.")
    return float(_cp_upper(k, n, alpha))


def _eps_bounds(fp, n_neg: int, fn, n_pos: int, alpha: float, delta: float):
    fpr = _cp_upper(fp, n_neg, alpha / 2.0)
    fnr = _cp_upper(fn, n_pos, alpha / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where((1.0 - delta - fnr > 0) & (fpr > 0), np.log((1.0 - delta - fnr) / fpr), 0.0)
        b = np.where((1.0 - delta - fpr > 0) & (fnr > 0), np.log((1.0 - delta - fpr) / fnr), 0.0)
    return np.maximum(0.0, np.maximum(a, b)), fpr, fnr


def eps_lower_bound(fp: int, n_neg: int, fn: int, n_pos: int, *, alpha: float = 0.05, delta: float = 0.0) -> dict:
    """Lower bound on eps from ``fp`` false positives in ``n_neg`` and ``fn`` false negatives in ``n_pos`` trials.

    Returns a dict with ``eps_lb`` (>= 0), ``fpr_ub`` and ``fnr_ub`` (Clopper-Pearson upper bounds, each at level
    ``1 - alpha / 2``, so that the bound holds with probability >= ``1 - alpha``).
    """
    clopper_pearson_upper(int(fp), int(n_neg), alpha)  # validates the counts
    clopper_pearson_upper(int(fn), int(n_pos), alpha)
    eps, fpr, fnr = _eps_bounds(int(fp), int(n_neg), int(fn), int(n_pos), alpha, delta)
    return {"eps_lb": float(eps), "fpr_ub": float(fpr), "fnr_ub": float(fnr)}


def _counts_at(thresholds: np.ndarray, s_out: np.ndarray, s_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False positives (out-scores >= t) and false negatives (in-scores < t) for each threshold t."""
    s_out, s_in = np.sort(s_out), np.sort(s_in)
    fp = s_out.size - np.searchsorted(s_out, thresholds, side="left")
    fn = np.searchsorted(s_in, thresholds, side="left")
    return fp, fn


def _best_threshold(s_out: np.ndarray, s_in: np.ndarray, alpha: float, delta: float) -> tuple[float, float]:
    """Threshold maximising the bound on these scores (centre of the best plateau), and that bound."""
    thresholds = np.unique(np.r_[s_out, s_in, np.inf])
    fp, fn = _counts_at(thresholds, s_out, s_in)
    bounds = _eps_bounds(fp, s_out.size, fn, s_in.size, alpha, delta)[0]
    i = int(np.argmax(bounds))
    j = i
    while j + 1 < thresholds.size and fp[j + 1] == fp[i] and fn[j + 1] == fn[i]:
        j += 1
    # every t in (thresholds[i - 1], thresholds[i]] gives the same counts: take the middle of the gap below
    if i > 0 and np.isfinite(thresholds[i]):
        return float((thresholds[i - 1] + thresholds[i]) / 2.0), float(bounds[i])
    return float(thresholds[i]), float(bounds[i])


# ---------------------------------------------------------------------------------------------------- results
@dataclass
class AttackResult:
    """One attack of an audit: its bound at the Bonferroni-corrected level and its error counts."""

    attack: str
    eps_lb: float
    alpha: float
    threshold: float
    fp: int
    fn: int
    n_neg: int
    n_pos: int
    fpr_ub: float
    fnr_ub: float
    feature: str = ""
    scores_out: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    scores_in: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)


@dataclass
class AuditResult:
    """Outcome of :func:`audit`. ``eps_lb`` holds with probability >= ``1 - alpha`` (over all attacks together).

    ``attacks`` holds one :class:`AttackResult` per attack (bounds at level ``alpha / K``); ``results`` is the same
    as a tidy DataFrame. ``output_schema`` lists, per arm (``"out"``: without the canary, ``"in"``: with it), the
    ``dtype/format`` of the synthetic matrices seen; ``n_errors`` how many fits of each arm ended in an error of
    :func:`~scdpsynth.tl.generate` (e.g. all DP class counts below 0.5), which the audit treats as their output.
    """

    eps_lb: float
    eps_claimed: float
    delta: float
    alpha: float
    attack: str
    method: str
    unit: str
    neighbouring: str
    n_trials: int
    canary_class: str
    canary_size: int
    attacks: dict = field(repr=False)
    output_schema: dict = field(default_factory=dict, repr=False)
    n_errors: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def violated(self) -> bool:
        """True if the audit shows (at confidence ``1 - alpha``) that the claimed eps does not hold."""
        return self.eps_lb > self.eps_claimed

    @property
    def best(self) -> AttackResult:
        """The attack with the largest bound."""
        return self.attacks[self.attack]

    @property
    def results(self) -> pd.DataFrame:
        """One row per attack: bound, level, threshold, error counts and (metadata attack) the feature used."""
        cols = ["attack", "eps_lb", "alpha", "threshold", "fp", "n_neg", "fn", "n_pos", "fpr_ub", "fnr_ub", "feature"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.attacks.values()], columns=cols)

    def to_dict(self) -> dict:
        """h5ad-serialisable dict (per-attack results nested under ``"attacks"``)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("attacks", "output_schema")}
        out["attacks"] = {k: asdict(v) for k, v in self.attacks.items()}
        out["output_schema"] = {k: list(v) for k, v in self.output_schema.items()}
        out["n_errors"] = dict(self.n_errors)
        out["violated"] = self.violated
        return out


# ---------------------------------------------------------------------------------------------------- canary
def _is_counts_schema(X, layer: str | None, transform: str, counts_model: bool) -> bool:
    from ._generate import _resolve_transform

    return counts_model or _resolve_transform(transform, X, layer) == "log1p"


def default_canary(n_vars: int, rng: np.random.Generator, *, counts: bool, generator=None) -> np.ndarray:
    """The default canary record on the raw input scale: extreme, yet inside the generator's public bounds.

    A random half of the genes (``ceil(n_vars / 2)``) get a large value, the rest zero:

    * counts schema: the generator's ``count_cap`` (count models) or :data:`CANARY_COUNT` (1000; ``log1p`` 6.9, inside
      the default public bounds ``(0, 16)`` of the continuous generators);
    * continuous schema: ``lo + 15/16 (hi - lo)`` of the generator's public ``bounds`` or ``value_range`` (default
      ``(0, 16)``: the value 15), and ``lo`` on the other genes.
    """
    hi_genes = rng.permutation(int(n_vars)) < (int(n_vars) + 1) // 2
    if counts:
        cap = getattr(generator, "count_cap", None)
        value = float(cap) if isinstance(cap, numbers.Real) and cap > 0 else float(CANARY_COUNT)
        return np.where(hi_genes, value, 0.0)
    lo, hi = 0.0, 16.0
    for attr in ("bounds", "value_range"):
        b = getattr(generator, attr, None)
        if isinstance(b, tuple | list) and len(b) == 2 and all(np.ndim(v) == 0 for v in b):
            lo, hi = float(b[0]), float(b[1])
            break
    return np.where(hi_genes, lo + 15.0 / 16.0 * (hi - lo), lo)


def _canary_rows(canary: np.ndarray, m: int, X):
    """``m`` copies of the canary in the schema of ``X`` (same dtype; sparse CSR if ``X`` is sparse)."""
    dtype = X.dtype
    rec = np.asarray(canary, dtype=np.float64)
    if np.issubdtype(dtype, np.integer):
        rec = np.rint(rec)
    rows = np.tile(rec.astype(dtype), (m, 1))
    return sparse.csr_matrix(rows) if sparse.issparse(X) else rows


# ---------------------------------------------------------------------------------------------------- neighbours
def _obs_frame(adata, keys: list[str]) -> pd.DataFrame:
    obs = pd.DataFrame(index=adata.obs_names.copy())
    for k in keys:
        obs[k] = pd.Categorical(adata.obs[k])
    return obs


def _arm_adata(M, obs: pd.DataFrame, var_names, layer: str | None):
    import anndata as ad

    var = pd.DataFrame(index=pd.Index(var_names).copy())
    if layer is None:
        return ad.AnnData(X=M, obs=obs, var=var)
    return ad.AnnData(X=None, obs=obs, var=var, layers={layer: M})


def _with_canary(M, obs: pd.DataFrame, drop: np.ndarray, canary_rows, template: int, donor_key, donor_value):
    """``M``/``obs`` without the rows ``drop``, plus the canary rows (obs copied from row ``template``)."""
    keep = np.setdiff1d(np.arange(obs.shape[0]), drop)
    m = canary_rows.shape[0]
    if sparse.issparse(M):
        M1 = sparse.vstack([M[keep], canary_rows], format="csr").astype(M.dtype)
    else:
        M1 = np.vstack([np.asarray(M)[keep], canary_rows]).astype(M.dtype)
    new = pd.DataFrame(
        {c: [obs[c].iloc[template]] * m for c in obs.columns}, index=[f"{CANARY_DONOR}-{i}" for i in range(m)]
    )
    if donor_key is not None:
        new[donor_key] = donor_value
    obs1 = pd.concat([obs.iloc[keep].astype(object), new.astype(object)])
    for c in obs.columns:
        cats = list(obs[c].cat.categories)
        if donor_key is not None and c == donor_key and donor_value not in cats:
            cats.append(donor_value)
        obs1[c] = pd.Categorical(obs1[c], categories=cats)
    return M1, obs1


# ---------------------------------------------------------------------------------------------------- scoring
def _row_labels(obs: pd.DataFrame, keys: list[str]) -> np.ndarray:
    if not keys:
        return np.full(obs.shape[0], "all", dtype=object)
    parts = [obs[k].astype(str).to_numpy() for k in keys]
    if len(parts) == 1:
        return parts[0].astype(object)
    return np.array([" | ".join(t) for t in zip(*parts, strict=True)], dtype=object)


def _to_scale(M, counts: bool):
    """Rows of ``M`` on the scoring scale (sparse stays sparse): log1p(normalised counts) or the values as float."""
    if counts:
        if sparse.issparse(M):
            totals = np.asarray(M.sum(axis=1), dtype=np.float64).ravel()
            scale = np.divide(_TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
            return (sparse.diags(scale) @ M.astype(np.float64)).tocsr().log1p()
        return log_normalise(M, _TARGET_SUM)
    return M.astype(np.float64).tocsr() if sparse.issparse(M) else np.asarray(M, dtype=np.float64)


def _min_distance(S, c: np.ndarray) -> float:
    """Euclidean distance from ``c`` to its nearest row of ``S`` (dense or sparse), without densifying ``S``."""
    if S.shape[0] == 0:
        return math.inf
    if sparse.issparse(S):
        sq = np.asarray(S.multiply(S).sum(axis=1)).ravel()
        d2 = sq - 2.0 * np.asarray(S @ c).ravel() + float(c @ c)
        j = int(np.argmin(d2))
        row = S[j].toarray().ravel()
    else:
        d2 = np.einsum("ij,ij->i", S, S) - 2.0 * S @ c + float(c @ c)
        j = int(np.argmin(d2))
        row = S[j]
    return float(np.linalg.norm(row - c))


def _mean_rows(S) -> np.ndarray:
    return np.asarray(S.mean(axis=0)).ravel()


class _Context:
    """What the attacks know: the canary, its class, the real data ``D`` (the auditor's knowledge), the output scale."""

    def __init__(self, *, M, labels, keys, canary, canary_label, counts: bool, key_added: str):
        self.M, self.labels, self.keys = M, labels, keys
        self.canary_raw, self.canary_label = canary, canary_label
        self.counts, self.key_added = counts, key_added
        self.all_labels = list(pd.unique(labels))
        self.canary = np.asarray(_to_scale(canary[None, :], counts)).ravel()
        real = _to_scale(M[np.flatnonzero(labels == canary_label)], counts)
        self.centre = _mean_rows(real)
        direction = self.canary - self.centre
        norm = float(np.linalg.norm(direction))
        self.direction = direction / norm if norm > 0 else direction
        self._reference = None

    def class_rows(self, syn):
        """The canary's class rows of the synthetic matrix on the scoring scale."""
        X = syn.X
        rows = np.flatnonzero(_row_labels(syn.obs, self.keys) == self.canary_label)
        return _to_scale(X[rows] if rows.size < X.shape[0] else X, self.counts)

    def reference(self, max_rows: int = 2000) -> np.ndarray:
        if self._reference is None:
            M = self.M[: min(self.M.shape[0], max_rows)]
            R = _to_scale(M, self.counts)
            self._reference = R.toarray() if sparse.issparse(R) else R
        return self._reference


def _score_dcr(syn, ctx: _Context) -> float:
    return -_min_distance(ctx.class_rows(syn), ctx.canary)


def _score_projection(syn, ctx: _Context) -> float:
    S = ctx.class_rows(syn)
    if S.shape[0] == 0:
        return 0.0
    return float((_mean_rows(S) - ctx.centre) @ ctx.direction)


def _leaf_value(v):
    """A uns leaf as a float (numeric scalar) or a short hashable text (anything else)."""
    if isinstance(v, bool | np.bool_):
        return f"bool:{bool(v)}"
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, np.ndarray):
        if v.size == 1 and np.issubdtype(v.dtype, np.number):
            return float(v.ravel()[0])
        h = hashlib.sha1(np.ascontiguousarray(v).view(np.uint8) if v.dtype != object else repr(v.tolist()).encode())
        return f"array{v.shape}:{v.dtype}:{h.hexdigest()[:16]}"
    if isinstance(v, pd.DataFrame):
        return "frame:" + hashlib.sha1(v.to_csv().encode()).hexdigest()[:16]
    if isinstance(v, list | tuple):
        return repr([_leaf_value(x) for x in v])
    return f"{type(v).__name__}:{v}"


def _flatten(d, prefix: str = "uns") -> dict:
    out = {}
    for k, v in d.items():
        path = f"{prefix}[{k!r}]"
        if isinstance(v, dict):
            out.update(_flatten(v, path))
        else:
            out[path] = _leaf_value(v)
    return out


def _metadata_features(syn, ctx: _Context) -> dict:
    """Everything a user sees besides the expression values: sizes, schema, AnnData keys and every ``uns`` leaf."""
    X = syn.X
    labels = _row_labels(syn.obs, ctx.keys)
    f = {"n_obs": float(syn.n_obs)}
    for lab, n in pd.Series(pd.Categorical(labels, categories=ctx.all_labels)).value_counts().items():
        f[f"n_obs[{lab}]"] = float(n)
    n_c = float(np.sum(labels == ctx.canary_label))
    f["canary class share"] = n_c / syn.n_obs if syn.n_obs else 0.0
    f["X dtype/format"] = f"{X.dtype}/{X.format if sparse.issparse(X) else 'dense'}"
    f["anndata keys"] = repr(
        (
            list(syn.obs.columns),
            {c: list(map(str, syn.obs[c].cat.categories)) for c in syn.obs.columns if hasattr(syn.obs[c], "cat")},
            list(syn.var.columns),
            hashlib.sha1("\n".join(map(str, syn.var_names)).encode()).hexdigest()[:16],
            sorted(syn.layers.keys()),
            sorted(syn.obsm.keys()),
            sorted(syn.varm.keys()),
            sorted(syn.obsp.keys()),
        )
    )
    f.update(_flatten(syn.uns))
    return f


def _score_registered(fn, info, kwargs):
    def score(syn, ctx: _Context) -> float:
        S = ctx.class_rows(syn)
        S = S.toarray() if sparse.issparse(S) else S
        if S.shape[0] == 0:
            return -math.inf
        if info.get("needs_reference"):
            return float(fn(S, ctx.canary[None, :], reference=ctx.reference(), **kwargs)[0])
        return float(fn(S, ctx.canary[None, :], **kwargs)[0])

    return score


def _resolve_attacks(attack, attack_kwargs) -> dict[str, Callable | None]:
    """Attack name -> scoring function ``f(syn, ctx) -> float``; ``None`` for the metadata attack."""
    from ..attacks import registry as attacks_registry

    items = [attack] if isinstance(attack, str) or callable(attack) else list(attack)
    if not items:
        raise ValueError(f"attack must name at least one attack; built-in: {list(ATTACKS)}.")
    out: dict[str, Callable | None] = {}
    for a in items:
        if callable(a):
            name = getattr(a, "__name__", "custom")

            def custom(syn, ctx, _f=a):
                return float(_f(syn, ctx.canary_raw.copy()))

            out[name] = custom
        elif a == "dcr":
            out[a] = _score_dcr
        elif a == "projection":
            out[a] = _score_projection
        elif a == "metadata":
            out[a] = None
        elif isinstance(a, str) and a in attacks_registry:
            info = attacks_registry.info(a)
            if info.get("level") == "donor" or info.get("needs_generator"):
                raise ValueError(
                    f"Attack {a!r} needs shadow models or the fitted generator; audit a black-box record-level "
                    f"attack instead ({list(ATTACKS)} or a record-level registered attack)."
                )
            out[a] = _score_registered(attacks_registry.get(a), info, dict(attack_kwargs or {}))
        else:
            names = [*ATTACKS, *attacks_registry.names()]
            close = difflib.get_close_matches(str(a), names, n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"Unknown audit attack {a!r}.{hint} Available: {names} or a function f(syn, canary).")
    return out


# ---------------------------------------------------------------------------------------------------- evaluation
def _finite(scores: np.ndarray) -> np.ndarray:
    if np.isnan(scores).any():
        raise ValueError("An audit attack returned NaN canary scores.")
    return np.clip(scores, -1e300, 1e300)


def _result(name, s_out, s_in, half, thr, alpha, delta, feature="") -> AttackResult:
    e_out, e_in = s_out[half:], s_in[half:]
    fp, fn = (int(v[0]) for v in _counts_at(np.array([thr]), e_out, e_in))
    b = eps_lower_bound(fp, e_out.size, fn, e_in.size, alpha=alpha, delta=delta)
    return AttackResult(
        attack=name, eps_lb=b["eps_lb"], alpha=float(alpha), threshold=float(thr), fp=fp, fn=fn,
        n_neg=int(e_out.size), n_pos=int(e_in.size), fpr_ub=b["fpr_ub"], fnr_ub=b["fnr_ub"], feature=feature,
        scores_out=s_out, scores_in=s_in,
    )  # fmt: skip


def _evaluate_scores(name, scores: np.ndarray, half: int, alpha: float, delta: float) -> AttackResult:
    s_out, s_in = _finite(scores[0]), _finite(scores[1])
    thr, _ = _best_threshold(s_out[:half], s_in[:half], alpha, delta)
    return _result(name, s_out, s_in, half, thr, alpha, delta)


def _evaluate_metadata(feats: list[list[dict]], half: int, alpha: float, delta: float) -> AttackResult:
    """Pick feature, direction and threshold on the first half of the trials; count errors on the second."""
    names: list[str] = []
    for arm in feats:
        for f in arm:
            names.extend(k for k in f if k not in names)
    best = None
    for name in names:
        vals = [[f.get(name, _MISSING) for f in arm] for arm in feats]
        flat = vals[0] + vals[1]
        if all(v == flat[0] for v in flat):
            continue
        cands = []
        if all(isinstance(v, float) and math.isfinite(v) for v in flat):
            v_out, v_in = np.array(vals[0]), np.array(vals[1])
            cands = [(f"{name} (higher: canary in)", v_out, v_in), (f"{name} (lower: canary in)", -v_out, -v_in)]
        else:
            s_out, s_in = [list(map(str, v)) for v in vals]
            n_in = pd.Series(s_in[:half]).value_counts()
            n_out = pd.Series(s_out[:half]).value_counts()
            table = {
                v: math.log((n_in.get(v, 0) + 0.5) / (n_out.get(v, 0) + 0.5))
                for v in set(n_in.index) | set(n_out.index)
            }
            cands = [
                (
                    f"{name} (value lookup)",
                    np.array([table.get(v, 0.0) for v in s_out]),
                    np.array([table.get(v, 0.0) for v in s_in]),
                )
            ]
        for label, c_out, c_in in cands:
            thr, b = _best_threshold(c_out[:half], c_in[:half], alpha, delta)
            if best is None or b > best[0]:
                best = (b, label, c_out, c_in, thr)
    if best is None:
        zeros = np.zeros(len(feats[0]))
        res = _result("metadata", zeros, zeros, half, np.inf, alpha, delta)
        res.feature = "none: sizes, schema and uns identical in every output"
        return res
    _, label, c_out, c_in, thr = best
    return _result("metadata", c_out, c_in, half, thr, alpha, delta, feature=label)


# ---------------------------------------------------------------------------------------------------- the audit
def audit(
    adata,
    method: str,
    *,
    eps: float,
    delta: float | None = None,
    layer: str | None = None,
    groupby: str | list[str] | None = None,
    donor_key: str | None = None,
    unit: str | None = None,
    n_trials: int = 200,
    attack: str | Callable | Sequence = ATTACKS,
    attack_kwargs: dict | None = None,
    canary=None,
    canary_class=None,
    canary_size: int | None = None,
    neighbouring: str | None = None,
    alpha: float = 0.05,
    random_state=None,
    progress: bool | None = None,
    **kwargs,
) -> AuditResult:
    """Audit :func:`~scdpsynth.tl.generate` empirically: a Clopper-Pearson lower bound on eps from canary attacks.

    Runs ``tl.generate(..., method, eps=eps, ...)`` end to end ``n_trials`` times on ``D`` (the data, without the
    canary) and ``n_trials`` times on its neighbour ``D'`` (with the canary), attacks every output, and turns the
    attacks' error rates into a lower bound on the eps the outputs actually have. See the module description of
    :mod:`scdpsynth.tl._audit` for the statistics.

    Parameters
    ----------
    adata
        Real data, as for :func:`~scdpsynth.tl.generate` (the matrix in ``X`` or ``layers[layer]``, dense or sparse).
        Not modified. Use a small one: every trial fits the generator twice.
    method
        Generator name; see :func:`scdpsynth.tl.list_methods`.
    eps
        The claimed privacy budget epsilon (> 0).
    delta
        The claimed delta; default the generator's default (``1e-5``).
    layer, groupby, donor_key, unit
        As in :func:`~scdpsynth.tl.generate`, passed on to it. ``unit="donor"`` (the default when ``donor_key`` is
        given) makes the canary a whole donor.
    n_trials
        Fits per arm (with and without the canary), at least 2. The first half of the trials chooses each attack's
        threshold, the second half counts errors. 100-200 give a meaningful bound: with 100 counted trials per arm,
        95% confidence and three attacks, the largest bound any audit can show is about 3.0.
    attack
        Attack name or list of names: ``"dcr"``, ``"projection"``, ``"metadata"`` (default: all three), a
        record-level black-box attack of :func:`scdpsynth.tl.list_attacks` (run on the canary's class rows on the
        output's scale, with ``D`` as the reference data), or a function ``f(syn, canary) -> float`` of the synthetic
        AnnData and the raw canary record (higher = canary in).
    attack_kwargs
        Extra keyword arguments of registered attacks.
    canary
        The canary record on the raw input scale (length ``n_vars``); default :func:`default_canary` (a random half
        of the genes at a large value inside the generator's public bounds, zero elsewhere). Added in the AnnData's
        schema: same dtype (rounded for integer data), sparse if the input is sparse.
    canary_class
        Class label (of ``groupby``) of the canary records; default the smallest class of ``adata``. Under
        ``"replace"`` the replaced record is the first record of this class.
    canary_size
        Cells of the canary donor (``unit="donor"``); default the generator's ``max_cells_per_donor`` (its
        per-donor cap, the strongest canary it admits), else 32.
    neighbouring
        ``"add_remove"`` or ``"replace"``; default the relation the generator claims (``neighbouring`` of the
        generator, for copula/vine_nmf a hyper-parameter that this argument also sets). Auditing a generator under a
        relation it does not claim raises a ValueError.
    alpha
        1 - confidence of the bound (over all attacks together; each attack gets ``alpha / K``, Bonferroni).
    random_state
        Seed or :class:`numpy.random.Generator` of the audit (canary genes and the fits' randomness); ``None``:
        fresh OS entropy. Every fit gets its own :class:`numpy.random.Generator` spawned from it (never an integer
        seed, so no :class:`~scdpsynth._utils.KnownSeedWarning`; never the same stream for two fits).
    progress
        Progress bar over the trials (tqdm.auto); ``None`` follows ``sd.settings.progress``.
    **kwargs
        Further arguments of :func:`~scdpsynth.tl.generate` (``n_obs``, ``class_sizes``, ``transform``,
        ``key_added``) and the generator's hyper-parameters, as a user would pass them.

    Returns
    -------
    :class:`AuditResult`: ``eps_lb`` (the largest bound over the attacks), ``eps_claimed``, ``attack`` (which attack
    gave it), ``attacks`` (per-attack :class:`AttackResult` with bound, threshold, error counts and raw scores),
    ``results`` (the same as a DataFrame), ``violated`` (``eps_lb > eps_claimed``), ``output_schema`` and
    ``n_errors``. A ``ValueError``/``RuntimeError`` of ``tl.generate`` in some fits is treated as their output (scored
    lowest; the metadata attack sees its message); if every fit fails, the first error is raised.
    """
    from ..generators import registry
    from ._generate import _labels, generate

    t0 = time.perf_counter()
    registry.check(method)
    eps = V.check_eps(eps)
    if eps is None:
        raise ValueError(
            "audit needs the claimed eps (e.g. eps=1.0); an audit of a non-private fit (eps=None) is void."
        )
    delta = DEFAULT_DELTA if delta is None else V.check_delta(delta)
    if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 2:
        raise ValueError(f"n_trials must be an integer >= 2 (100-200 for a useful bound), got {n_trials!r}.")
    n_trials = int(n_trials)
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}.")
    for bad in ("layer_added", "return_generator"):
        if bad in kwargs:
            raise ValueError(f"audit does not take {bad}=: it runs tl.generate itself and leaves adata unchanged.")
    scorers = _resolve_attacks(attack, attack_kwargs)
    if unit is None:
        unit = "donor" if donor_key is not None else "sample"
    if unit not in ("sample", "donor"):
        raise ValueError(f"unit must be 'sample' or 'donor', got {unit!r}.")
    if unit == "donor" and donor_key is None:
        raise ValueError("unit='donor' needs donor_key=, the adata.obs column with donor identifiers.")

    # the generator's claim (constructed only: no data touched)
    cls = registry.get(method)
    gen_args = set(inspect.signature(generate).parameters)
    takes_neighbouring = "neighbouring" in inspect.signature(cls.__init__).parameters
    if neighbouring is not None:
        if neighbouring not in ("add_remove", "replace"):
            raise ValueError(f"neighbouring must be 'add_remove' or 'replace', got {neighbouring!r}.")
        if takes_neighbouring:
            kwargs["neighbouring"] = neighbouring
    method_kwargs = {k: v for k, v in kwargs.items() if k not in gen_args}
    probe = cls(eps=eps, delta=delta, unit=unit, random_state=np.random.default_rng(0), **method_kwargs)
    claimed = probe.neighbouring
    if neighbouring is None:
        neighbouring = claimed
    elif neighbouring != claimed:
        raise ValueError(
            f"{method} states its guarantee for {claimed!r} neighbouring, not {neighbouring!r}; audit it under the "
            f"relation it claims (neighbouring=None)."
        )
    key_added = kwargs.get("key_added", "scdpsynth")

    # the real data D, reduced to what generate reads
    M = V.get_matrix(adata, layer)
    if not (sparse.issparse(M) or isinstance(M, np.ndarray)):
        M = np.asarray(M)
    if sparse.issparse(M):
        M = M.tocsr()
    y, categories, keys = _labels(adata, groupby)
    obs_keys = list(keys) + ([donor_key] if donor_key is not None and donor_key not in keys else [])
    if donor_key is not None:
        V.check_categorical(adata, donor_key, what="donor_key")
    obs = _obs_frame(adata, obs_keys)
    labels = _row_labels(obs, keys)
    sizes = np.bincount(y, minlength=len(categories))
    if canary_class is None:
        present = np.flatnonzero(sizes > 0)
        c_code = int(present[np.argmax(sizes[present])])
    else:
        match = [i for i, c in enumerate(categories) if str(c) == str(canary_class)]
        if not match:
            raise ValueError(f"canary_class {canary_class!r} is not a class of groupby; classes: {list(categories)}.")
        c_code = match[0]
    template = int(np.flatnonzero(y == c_code)[0])
    canary_label = str(labels[template])

    rng = check_random_state(random_state)
    counts = _is_counts_schema(M, layer, kwargs.get("transform", "auto"), probe.data == "counts")
    if canary is None:
        canary = default_canary(M.shape[1], rng, counts=counts, generator=probe)
    canary = np.asarray(canary, dtype=np.float64).ravel()
    if canary.shape != (M.shape[1],) or not np.isfinite(canary).all():
        raise ValueError(f"canary must hold {M.shape[1]} finite values (one per gene), got shape {canary.shape}.")

    if unit == "donor":
        if canary_size is None:
            cap = getattr(probe, "max_cells_per_donor", None)
            canary_size = int(cap) if isinstance(cap, numbers.Integral) and cap > 0 else 32
        if isinstance(canary_size, bool) or not isinstance(canary_size, numbers.Integral) or canary_size < 1:
            raise ValueError(f"canary_size must be a positive integer, got {canary_size!r}.")
        m = int(canary_size)
        donors = obs[donor_key].astype(str).to_numpy()
        drop = np.flatnonzero(donors == donors[0]) if neighbouring == "replace" else np.zeros(0, dtype=np.int64)
    else:
        m = 1
        drop = np.array([template]) if neighbouring == "replace" else np.zeros(0, dtype=np.int64)
    M1, obs1 = _with_canary(M, obs, drop, _canary_rows(canary, m, M), template, donor_key, CANARY_DONOR)
    arms = (_arm_adata(M, obs, adata.var_names, layer), _arm_adata(M1, obs1, adata.var_names, layer))
    ctx = _Context(M=M, labels=labels, keys=keys, canary=canary, canary_label=canary_label, counts=counts,
                   key_added=key_added)  # fmt: skip

    names = list(scorers)
    scores = {n: np.empty((2, n_trials)) for n in names if scorers[n] is not None}
    feats: list[list[dict]] = [[], []]
    schema: dict[str, set] = {"out": set(), "in": set()}
    errors: tuple[list, list] = ([], [])
    first_error = None
    streams = np.random.SeedSequence(int(rng.integers(0, 2**63 - 1))).spawn(2 * n_trials)
    trials = range(n_trials)
    trials = progress_bar(trials, desc=f"audit {method} ({unit}, {neighbouring})", progress=progress)
    for t in trials:
        for arm in (0, 1):
            try:
                syn = generate(
                    arms[arm], method, eps=eps, delta=delta, layer=layer, groupby=groupby, donor_key=donor_key,
                    unit=unit, random_state=np.random.default_rng(streams[2 * t + arm]), **kwargs,
                )  # fmt: skip
            except (ValueError, RuntimeError) as err:  # an error is what the user gets: an output like any other
                errors[arm].append(f"{type(err).__name__}: {err}")
                first_error = first_error or err
                for n in names:
                    if scorers[n] is None:
                        feats[arm].append({"error": errors[arm][-1]})
                    else:
                        scores[n][arm, t] = -math.inf
                continue
            X = syn.X
            schema[("out", "in")[arm]].add(f"{X.dtype}/{X.format if sparse.issparse(X) else 'dense'}")
            for n in names:
                if scorers[n] is None:
                    feats[arm].append(_metadata_features(syn, ctx))
                else:
                    scores[n][arm, t] = scorers[n](syn, ctx)
    if len(errors[0]) + len(errors[1]) == 2 * n_trials:
        raise first_error
    if errors[0] or errors[1]:
        logger.warning(
            "tl.generate raised in %d of %d fits (%s); the audit treats the error as the output of those fits.",
            len(errors[0]) + len(errors[1]), 2 * n_trials, (errors[0] or errors[1])[0],
        )  # fmt: skip

    half = n_trials // 2
    a_k = float(alpha) / len(names)
    results = {}
    for n in names:
        results[n] = (
            _evaluate_metadata(feats, half, a_k, delta)
            if scorers[n] is None
            else _evaluate_scores(n, scores[n], half, a_k, delta)
        )
    best = max(results, key=lambda n: results[n].eps_lb)
    res = AuditResult(
        eps_lb=results[best].eps_lb, eps_claimed=float(eps), delta=float(delta), alpha=float(alpha), attack=best,
        method=method, unit=unit, neighbouring=neighbouring, n_trials=n_trials, canary_class=canary_label,
        canary_size=m, attacks=results, output_schema={k: sorted(v) for k, v in schema.items()},
        n_errors={"out": len(errors[0]), "in": len(errors[1])},
        seconds=time.perf_counter() - t0,
    )  # fmt: skip
    logger.info(
        "Audit of %s (eps=%g, %s, %s): eps_lb=%.3f (%s) over %d trials per arm",
        method, eps, unit, neighbouring, res.eps_lb, best, n_trials,
    )  # fmt: skip
    return res
