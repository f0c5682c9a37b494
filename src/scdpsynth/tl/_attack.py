from __future__ import annotations

import inspect
import logging
import warnings
import zlib

import numpy as np
import pandas as pd

from .. import _validation as V
from .._chunks import load_matrix
from .._progress import progress_bar
from .._transforms import log_normalise as _log_normalise
from .._utils import check_random_state, child_seed

logger = logging.getLogger("scdpsynth")

_RESULT_COLUMNS = [
    "attack",
    "unit",
    "auroc",
    "tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr",
    "n_members",
    "n_nonmembers",
    "auroc_ci_low",
    "auroc_ci_high",
    "tpr_at_1pct_fpr_ci_low",
    "tpr_at_1pct_fpr_ci_high",
]
#: fewest non-members for which the TPR at 1% FPR rests on at least one false positive
MIN_NONMEMBERS_1PCT = 100
#: fewest reference records (or donors) the default split leaves the attacker
MIN_REFERENCE = 10


def attack(
    adata_train,
    adata_holdout,
    adata_syn,
    *,
    method="dcr",
    unit: str = "sample",
    donor_key: str | None = None,
    reference=None,
    reference_fraction: float | None = None,
    layer: str | None = None,
    layer_syn: str | None = None,
    groupby: str | None = None,
    generator=None,
    shadow=None,
    shadow_params: dict | None = None,
    attack_kwargs: dict | None = None,
    key_added: str = "scdpsynth_attack",
    random_state=0,
    progress: bool | None = None,
) -> dict:
    """Run membership-inference attacks on synthetic data and score them.

    Members are the records (or donors) of ``adata_train``, the data the generator was fitted to; non-members those
    of ``adata_holdout``. Attacks that need the attacker's auxiliary real data get ``reference``; by default part of
    the holdout (whole donors when ``donor_key`` is given; see ``reference_fraction``) is split off for it and is
    then no longer a target. Every AUROC and TPR at 1% FPR comes with a 95% bootstrap confidence interval; with
    fewer than 100 non-members a warning says that the low-FPR figures cannot be estimated.

    Parameters
    ----------
    adata_train
        Real training data of the generator (members). Not modified.
    adata_holdout
        Real data from the same population not used for training (non-members). Not modified.
    adata_syn
        Synthetic data; the results are written to ``adata_syn.uns[key_added]``.
    method
        Attack name, list of names, or ``"all"`` (every registered attack whose inputs are available: the white-box
        attack needs ``generator=``). See :func:`scdpsynth.tl.list_attacks`.
    unit
        ``"sample"``: score every record; ``"donor"``: score donors, a donor's score being the mean of its cells'
        scores (donor-level attacks score donors directly). Needs ``donor_key``.
    donor_key
        Column of ``obs`` with donor identifiers, in ``adata_train`` and ``adata_holdout`` (and ``reference``). With
        ``unit="donor"`` a donor may not appear in both; with ``unit="sample"`` it only makes the default reference
        split take whole holdout donors.
    reference
        Explicit auxiliary real data (AnnData) disjoint from the training data; then the whole holdout is a target.
    reference_fraction
        Fraction of the holdout (records or donors) split off as reference when ``reference`` is None and an attack
        needs it. ``None`` (default): half of the holdout, but no more than leaves 100 non-member targets (so that
        the TPR at 1% FPR rests on at least one false positive), and at least 10 reference records (or 4 donors).
        With fewer than 100 non-members a warning says that the low-FPR figures cannot be estimated; read them with
        their bootstrap confidence intervals.
    layer, layer_syn
        Layer with the expression matrix of the real data / the synthetic data (``None``: ``.X``).
    groupby
        Column of ``obs`` with class labels, passed to the white-box attack as class codes (codes follow the
        categories of ``adata_syn.obs[groupby]``, as ``tl.generate`` writes them).
    generator
        Fitted generator object for the white-box attack (``whitebox_vae``), exposing ``per_sample_loss(X, y)``.
    shadow
        Generator for shadow-model attacks (``pseudobulk_rf``): a registry name, a generator class or a function
        ``shadow(X, donor_codes, n_out, rng) -> matrix``. Default: the method and (eps, delta) recorded in
        ``adata_syn.uns["scdpsynth"]`` by ``tl.generate``.
    shadow_params
        Keyword arguments of the shadow generator class (e.g. ``{"eps": 1.0, "n_components": 10}``).
    attack_kwargs
        Per-attack keyword arguments, e.g. ``{"domias": {"n_components": 3}}``.
    key_added
        Key of ``adata_syn.uns`` for the results.
    random_state
        Seed or :class:`numpy.random.Generator` (reference split, randomised attacks).
    progress
        Progress bar over the attacks; ``None`` follows ``sd.settings.progress``.

    Returns
    -------
    Dict (also stored in ``adata_syn.uns[key_added]``, h5ad-serialisable) with

    ``results``  tidy DataFrame: attack, unit, auroc, tpr_at_1pct_fpr, tpr_at_0.1pct_fpr, n_members, n_nonmembers,
                 and the 95% bootstrap confidence intervals auroc_ci_low/high, tpr_at_1pct_fpr_ci_low/high
                 (:func:`scdpsynth.attacks._base.bootstrap_ci`)
    ``roc``      ``{attack: {"fpr": array, "tpr": array}}`` ROC curves for plotting
    ``scores``   ``{attack: {"id": str array, "score": array, "member": bool array}}`` per record or donor
    ``params``   unit, donor_key, transform, number of genes, reference source and size, seed.

    Counts (all inputs raw integer counts) are log1p-normalised (total 1e4 per record over the shared genes) before
    attacking; other values are used as given. The white-box attack sees the targets on the generator's own input scale.
    """
    from ..attacks import registry
    from ..attacks._base import aggregate_scores, score_attack

    for name, a in (("adata_train", adata_train), ("adata_holdout", adata_holdout), ("adata_syn", adata_syn)):
        if not hasattr(a, "obs") or not hasattr(a, "var_names"):
            raise TypeError(f"{name} must be an AnnData object, got {type(a).__name__}.")
    if unit not in ("sample", "donor"):
        raise ValueError(f"unit must be 'sample' or 'donor', got {unit!r}.")
    if unit == "donor" and donor_key is None:
        raise ValueError("unit='donor' needs donor_key=, the obs column with donor identifiers.")
    if reference_fraction is not None and not 0 < reference_fraction < 1:
        raise ValueError(f"reference_fraction must be in (0, 1), got {reference_fraction!r}.")
    attack_kwargs = dict(attack_kwargs or {})
    methods = _methods(method, registry, generator)
    for k in attack_kwargs:
        if k not in methods:
            raise ValueError(f"attack_kwargs has an entry for {k!r}, which is not among the attacks run: {methods}.")
    rng = check_random_state(random_state)
    attack_seed = child_seed(rng)  # drawn first: an attack's randomness does not depend on the other attacks run
    seed_repr = int(random_state) if isinstance(random_state, int | np.integer) else -1

    # --- genes, matrices, transform -------------------------------------------------------------------------------
    parts = {"train": adata_train, "holdout": adata_holdout, "syn": adata_syn}
    if reference is not None:
        if not hasattr(reference, "obs"):
            raise TypeError(f"reference must be an AnnData object, got {type(reference).__name__}.")
        parts["reference"] = reference
    genes = _common_genes(parts)
    raw = {k: _matrix(a, layer_syn if k == "syn" else layer, genes, k) for k, a in parts.items()}
    counts = {k: V.is_counts(X) for k, X in raw.items()}
    real_counts = [counts[k] for k in raw if k != "syn"]
    if all(counts.values()):
        transform = "log1p(normalize_total 1e4)"
        data = {k: _log_normalise(X) for k, X in raw.items()}
    elif not any(real_counts):
        transform = "none"
        data = dict(raw)
    else:
        kinds = {k: "counts" if c else "not counts" for k, c in counts.items()}
        raise ValueError(
            f"Inputs mix raw counts and transformed values ({kinds}); attacks need all inputs on one scale. Pass "
            "layer=/layer_syn= so that all are raw counts (or all log-expression)."
        )

    # --- donors, targets, reference -------------------------------------------------------------------------------
    donors = {}
    if donor_key is not None:
        for k in ("train", "holdout", *(("reference",) if reference is not None else ())):
            V.check_categorical(parts[k], donor_key, what="donor_key")
            donors[k] = np.asarray(parts[k].obs[donor_key].astype(str))
        both = np.intersect1d(donors["train"], donors["holdout"])
        if both.size and unit == "donor":
            raise ValueError(
                f"Donors {list(both[:5])} appear in both adata_train and adata_holdout; membership is then undefined. "
                f"Split by donor: sd.pp.train_holdout_split(adata, donor_key={donor_key!r})."
            )
        if reference is not None and unit == "donor":
            overlap = np.intersect1d(donors["reference"], np.r_[donors["train"], donors["holdout"]])
            if overlap.size:
                raise ValueError(f"Reference donors {list(overlap[:5])} also appear among the targets; use others.")
    ids = {k: np.asarray(parts[k].obs_names.astype(str)) for k in ("train", "holdout")}

    needs_ref = any(registry.info(m)["needs_reference"] for m in methods)
    hold_rows = np.arange(data["holdout"].shape[0])
    if needs_ref and reference is None:
        ref_rows = _split_reference(hold_rows, donors.get("holdout"), reference_fraction, rng)
        hold_rows = np.setdiff1d(hold_rows, ref_rows)
        ref_X = data["holdout"][ref_rows]
        ref_groups = donors["holdout"][ref_rows] if unit == "donor" else ids["holdout"][ref_rows]
        frac = "auto" if reference_fraction is None else reference_fraction
        ref_source = f"split from holdout (fraction {frac}: {ref_rows.size} of {data['holdout'].shape[0]} records)"
    elif reference is not None:
        ref_X = data["reference"]
        ref_groups = donors["reference"] if unit == "donor" else np.asarray(reference.obs_names.astype(str))
        ref_source = "given"
    else:
        ref_X, ref_groups, ref_source = None, None, "none"
    if hold_rows.size == 0:
        raise ValueError("No holdout records left as non-member targets; use a larger holdout or pass reference=.")
    n_nonmembers = np.unique(donors["holdout"][hold_rows]).size if unit == "donor" else hold_rows.size
    if n_nonmembers < MIN_NONMEMBERS_1PCT:
        warnings.warn(
            f"Only {n_nonmembers} non-member {'donors' if unit == 'donor' else 'records'}: the TPR at 1% FPR needs "
            f"at least {MIN_NONMEMBERS_1PCT} (and at 0.1% FPR 1000) to rest on one false positive, so these figures "
            "cannot be estimated here; read the AUROC with its confidence interval (auroc_ci_low/high). Use a "
            "larger holdout or pass reference= from other data.",
            UserWarning,
            stacklevel=2,
        )

    targets = np.vstack([data["train"], data["holdout"][hold_rows]])
    member = np.r_[np.ones(data["train"].shape[0], bool), np.zeros(hold_rows.size, bool)]
    target_ids = np.r_[ids["train"], ids["holdout"][hold_rows]]
    groups = np.r_[donors["train"], donors["holdout"][hold_rows]] if donors else target_ids
    unit_groups = groups if unit == "donor" else target_ids

    # --- run ------------------------------------------------------------------------------------------------------
    results, roc, scores = [], {}, {}
    bar = progress_bar(methods, desc="attack", progress=progress)
    for name in bar:
        bar.set_postfix_str(name)
        fn = registry.get(name)
        info = registry.info(name)
        kw = dict(attack_kwargs.get(name, {}))
        if "random_state" in inspect.signature(fn).parameters:
            kw.setdefault("random_state", np.random.default_rng([attack_seed, zlib.crc32(name.encode())]))
        logger.info("Running attack %s on %d targets (%s level)", name, targets.shape[0], unit)
        if info["needs_generator"]:
            y = _class_codes(parts, adata_syn, groupby, hold_rows) if groupby is not None else None
            wb_targets = np.vstack([raw["train"], raw["holdout"][hold_rows]])
            s = fn(generator, _generator_scale(wb_targets, generator, counts["train"]), y=y, **kw)
        elif info["level"] == "donor":
            shadow_fn = _shadow(shadow, shadow_params, adata_syn, unit, transform)
            s_groups = fn(
                data["syn"],
                targets,
                reference=ref_X,
                target_groups=unit_groups,
                reference_groups=ref_groups,
                shadow=shadow_fn,
                **kw,
            )
            values = np.unique(unit_groups)
            results_unit = _score_groups(score_attack, name, unit, values, s_groups, unit_groups, member)
            results.append(results_unit.row())
            roc[name] = {"fpr": results_unit.fpr, "tpr": results_unit.tpr}
            scores[name] = {"id": results_unit.ids, "score": results_unit.scores, "member": results_unit.member}
            continue
        else:
            s = (
                fn(data["syn"], targets, reference=ref_X, **kw)
                if info["needs_reference"]
                else fn(data["syn"], targets, **kw)
            )
        s = np.asarray(s, dtype=float).ravel()
        if unit == "donor":
            values, s_donor = aggregate_scores(s, unit_groups)
            res = _score_groups(score_attack, name, unit, values, s_donor, unit_groups, member)
        else:
            res = score_attack(name, unit, target_ids, s, member)
        results.append(res.row())
        roc[name] = {"fpr": res.fpr, "tpr": res.tpr}
        scores[name] = {"id": res.ids, "score": res.scores, "member": res.member}

    out = {
        "results": pd.DataFrame(results, columns=_RESULT_COLUMNS),
        "roc": roc,
        "scores": scores,
        "params": {
            "unit": unit,
            "donor_key": "None" if donor_key is None else donor_key,
            "transform": transform,
            "n_genes": len(genes),
            "reference": ref_source,
            "n_reference": 0 if ref_X is None else int(ref_X.shape[0]),
            "methods": list(methods),
            "seed": seed_repr,
        },
    }
    adata_syn.uns[key_added] = out
    return out


def _methods(method, registry, generator) -> list[str]:
    if isinstance(method, str) and method == "all":
        out = []
        for name in registry.names():
            info = registry.info(name)
            if info.get("needs_generator") and generator is None:
                continue
            out.append(name)
        return out
    names = [method] if isinstance(method, str) else list(method)
    if not names:
        raise ValueError("method must name at least one attack; see sd.tl.list_attacks().")
    names = [registry.check(m) for m in names]
    if len(set(names)) != len(names):
        raise ValueError(f"method lists an attack twice: {names}.")
    for m in names:
        if registry.info(m).get("needs_generator") and generator is None:
            raise ValueError(f"Attack {m!r} is white-box: pass generator=, the fitted generator object.")
    return names


def _common_genes(parts: dict) -> pd.Index:
    genes = parts["train"].var_names
    for k, a in parts.items():
        if not a.var_names.is_unique:
            raise ValueError(f"var_names of {k} are not unique; call .var_names_make_unique() first.")
        genes = genes.intersection(a.var_names, sort=False)
    if len(genes) == 0:
        raise ValueError("The inputs share no genes (var_names); the synthetic data must use the real gene names.")
    for k, a in parts.items():
        if a.n_vars != len(genes):
            logger.info("Attack uses %d shared genes; %s has %d (others ignored)", len(genes), k, a.n_vars)
    return genes


def _matrix(adata, layer, genes, name) -> np.ndarray:
    X = load_matrix(V.get_matrix(adata, layer))
    where = f"{name}: " + ("adata.X" if layer is None else f"adata.layers[{layer!r}]")
    V.check_finite(X, where)
    idx = adata.var_names.get_indexer(genes)
    return V.to_dense(X[:, idx])


def _reference_size(n: int, fraction: float | None, min_ref: int) -> int:
    """Reference units out of ``n`` holdout units: ``fraction`` of them, or by default half of them but leaving
    :data:`MIN_NONMEMBERS_1PCT` non-members where the holdout allows, with at least ``min_ref`` reference units.
    """
    if fraction is not None:
        k = round(fraction * n)
    else:
        k = max(min(n // 2, n - MIN_NONMEMBERS_1PCT), min(min_ref, n // 2))
    return min(max(1, k), n - 1)


def _split_reference(rows: np.ndarray, donors, fraction: float | None, rng) -> np.ndarray:
    if donors is not None:
        names = np.unique(donors)
        if names.size < 2:
            raise ValueError(
                f"Splitting a reference set off the holdout by donor needs >= 2 holdout donors, got {names.size}. "
                "Pass reference= (an AnnData of other donors) or a larger holdout."
            )
        k = _reference_size(names.size, fraction, 4)
        return rows[np.isin(donors, rng.permutation(names)[:k])]
    if rows.size < 2:
        raise ValueError("Splitting a reference set off the holdout needs >= 2 holdout records; pass reference=.")
    k = _reference_size(rows.size, fraction, MIN_REFERENCE)
    return np.sort(rng.permutation(rows)[:k])


def _score_groups(score_attack, name, unit, values, s_groups, unit_groups, member):
    s_groups = np.asarray(s_groups, dtype=float).ravel()
    if s_groups.shape[0] != values.size:
        raise ValueError(f"Attack {name!r} returned {s_groups.shape[0]} scores for {values.size} donors.")
    _, first = np.unique(unit_groups, return_index=True)
    return score_attack(name, unit, values, s_groups, member[first])


def _class_codes(parts, adata_syn, groupby, hold_rows) -> np.ndarray:
    if groupby not in adata_syn.obs:
        raise KeyError(f"groupby={groupby!r} is not a column of adata_syn.obs; it gives the generator's class codes.")
    cats = pd.Categorical(adata_syn.obs[groupby]).categories
    codes = []
    for k in ("train", "holdout"):
        if groupby not in parts[k].obs:
            raise KeyError(f"groupby={groupby!r} is not a column of adata_{k}.obs.")
        c = pd.Categorical(parts[k].obs[groupby].astype(str), categories=cats.astype(str)).codes
        if (c < 0).any():
            raise ValueError(f"adata_{k}.obs[{groupby!r}] has labels the synthetic data do not: cannot map classes.")
        codes.append(c if k == "train" else c[hold_rows])
    return np.concatenate(codes).astype(np.int64)


def _generator_scale(X: np.ndarray, generator, is_counts: bool) -> np.ndarray:
    """Targets on the scale ``tl.generate`` fits on: raw counts for count models, else log1p of counts."""
    if getattr(generator, "data", "continuous") == "counts" or not is_counts:
        return X
    return np.log1p(X)


def _shadow(shadow, shadow_params, adata_syn, unit, transform):
    """A ``shadow(X, donor_codes, n_out, rng)`` function fitting the attacked generator on the attack scale."""
    from ..generators import registry as generators

    if callable(shadow) and not isinstance(shadow, type):
        return shadow
    params = dict(shadow_params or {})
    if shadow is None:
        meta = adata_syn.uns.get("scdpsynth")
        if not isinstance(meta, dict) or "method" not in meta:
            raise ValueError(
                "pseudobulk_rf needs shadow= (a generator name or class, with shadow_params=) because adata_syn has "
                "no uns['scdpsynth'] record of the generator that made it."
            )
        shadow = meta["method"]
        priv = meta.get("privacy", {})
        if priv.get("private", False):
            params.setdefault("eps", float(priv["eps"]))
            params.setdefault("delta", float(priv["delta"]))
        logger.info("Shadow generator from uns['scdpsynth']: %s %s", shadow, params)
    cls = generators.get(shadow) if isinstance(shadow, str) else shadow

    def fit_sample(X, donor_codes, n_out, rng):
        u = "donor" if unit == "donor" and "donor" in getattr(cls, "units", ()) else "sample"
        gen = cls(random_state=child_seed(rng), unit=u, **params)
        counts_model = getattr(gen, "data", "continuous") == "counts"
        Xfit = np.rint(np.expm1(X)) if counts_model and transform != "none" else X
        gen.fit(Xfit, np.zeros(X.shape[0], dtype=np.int64), n_classes=1, donors=donor_codes if u == "donor" else None)
        out = np.asarray(gen.sample(np.array([n_out])), dtype=float)
        return _log_normalise(out) if counts_model and transform != "none" else out

    return fit_sample
