"""Donor-level DP on a simulated cohort: copula / vine_nmf at unit="donor" over eps, CAMDA scores and a donor MIA.

Cohort: ``sd.datasets.simulate_cohort(490, 1300, --genes)`` (637k cells, the CAMDA 2026 Track II training split's
size; simulated, see its docstring). Donors are split 80/20 (``pp.train_holdout_split(..., donor_key="donor_id")``,
whole donors on each side). Each method is fitted on the training donors with ``unit="donor"`` (each donor capped
at ``max_cells_per_donor=256`` cells, sensitivities per donor) and draws ``--n-syn`` synthetic cells (``n_obs``).

Scores (each on cell subsamples, stated in the output):

- CAMDA ``camda_ilisi`` and ``camda_scc`` of ``--n-eval`` training cells vs as many synthetic cells (reference: as
  many holdout cells);
- donor-level membership inference as the challenge scores it: ``tl.attack(..., method="dcr", unit="donor")`` --
  each cell's distance to its closest synthetic cell, averaged per donor; AUROC of member (training) vs
  non-member (holdout) donors, on ``--cells-per-donor-attack`` cells per donor.

With ``--public-reference-donors N`` the cohort is simulated with ``N`` more donors (the same seed, so the first
490 donors are the same cells) and those extra donors serve as *public* reference data
(``tl.generate(..., public_reference=...)``): copula rows marked ``public_ref`` take their marginals from it and
spend the budget on the counts and the copula only. The reference comes from the very model that simulated the
private donors -- a best case that a real public atlas (other protocol, other donors) will not reach.

Usage::

    python benchmarks/bench_cohort_donor.py [--methods copula vine_nmf] [--eps 1 10 100 none] [--genes 2000]
        [--gene-tiers 1 5] [--tier-clip-scale 1.0]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import pandas as pd

import scdpsynth as sd


def _per_donor(adata, k: int, seed: int):
    rng = np.random.default_rng(seed)
    codes = adata.obs["donor_id"].cat.codes.to_numpy()
    keep = np.concatenate([rng.permutation(np.flatnonzero(codes == d))[:k] for d in np.unique(codes)])
    return adata[np.sort(keep)].copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["copula", "vine_nmf"])
    ap.add_argument("--eps", nargs="+", default=["1", "10", "100", "none"])
    ap.add_argument("--donors", type=int, default=490)
    ap.add_argument("--cells", type=int, default=1300, help="cells per donor")
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--n-syn", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=20000)
    ap.add_argument("--cells-per-donor-attack", type=int, default=20)
    ap.add_argument(
        "--public-reference-donors",
        type=int,
        default=0,
        help="simulate this many extra donors as public reference data (copula rows 'public_ref')",
    )
    ap.add_argument(
        "--donor-aggregation",
        nargs="*",
        default=["mean"],
        choices=["mean", "sum"],
        help="copula's donor_aggregation (each value is one row per eps)",
    )
    ap.add_argument(
        "--gene-tiers",
        nargs="+",
        type=int,
        default=[5],
        help="copula's gene_tiers (each value is one row per private eps; 1 = one clip for all genes; default 5)",
    )
    ap.add_argument("--tier-clip-scale", type=float, default=None, help="copula's tier_clip_scale (default: its own)")
    args = ap.parse_args()
    sd.settings.progress = False
    warnings.simplefilter("ignore")

    t0 = time.perf_counter()
    n_pub = args.public_reference_donors
    cohort = sd.datasets.simulate_cohort(args.donors + n_pub, args.cells, args.genes, random_state=0)
    public = None
    if n_pub:
        is_pub = cohort.obs["donor_id"].cat.codes.to_numpy() >= args.donors
        public = cohort[is_pub].copy()
        cohort = cohort[~is_pub].copy()
        cohort.obs["donor_id"] = cohort.obs["donor_id"].cat.remove_unused_categories()
        print(f"public reference: {public.n_obs} cells of {n_pub} further donors")
    print(f"cohort {cohort.shape} ({cohort.obs['donor_id'].nunique()} donors) in {time.perf_counter() - t0:.0f} s")
    train, hold = sd.pp.train_holdout_split(cohort, holdout_size=0.2, donor_key="donor_id", random_state=0)
    del cohort
    rng = np.random.default_rng(0)
    train_eval = train[np.sort(rng.choice(train.n_obs, args.n_eval, replace=False))].copy()
    hold_eval = hold[np.sort(rng.choice(hold.n_obs, min(args.n_eval, hold.n_obs), replace=False))].copy()
    train_att = _per_donor(train, args.cells_per_donor_attack, 1)
    hold_att = _per_donor(hold, args.cells_per_donor_attack, 2)
    print(f"train {train.shape} ({train.obs['donor_id'].nunique()} donors), holdout {hold.shape}; eval on "
          f"{train_eval.n_obs} / {hold_eval.n_obs} cells; attack on {train_att.n_obs} member / {hold_att.n_obs} "
          f"non-member cells ({args.cells_per_donor_attack} per donor)")  # fmt: skip
    rows = []
    cases = [("copula", agg, t) for agg in args.donor_aggregation for t in args.gene_tiers if "copula" in args.methods]
    cases += [(mth, None, None) for mth in args.methods if mth != "copula"]
    if public is not None:
        cases.append(("copula", "public_ref", None))
    for method, agg, tiers in cases:
        for e in args.eps:
            eps = None if e == "none" else float(e)
            if eps is None and tiers is not None and tiers > min(args.gene_tiers):  # non-private: tiers do nothing
                continue
            kw = {} if agg is None else {"donor_aggregation": agg}
            if agg == "public_ref":
                kw = {"public_reference": public}
            if tiers is not None:
                kw["gene_tiers"] = tiers
                if args.tier_clip_scale is not None:
                    kw["tier_clip_scale"] = args.tier_clip_scale
            t0 = time.perf_counter()
            syn = sd.tl.generate(train, method, eps=eps, groupby="cell_type", unit="donor", donor_key="donor_id",
                                 n_obs=args.n_syn, **kw)  # fmt: skip
            fit_s = time.perf_counter() - t0
            ev = sd.tl.evaluate(train_eval, syn, holdout=hold_eval, metrics=["camda_ilisi", "camda_scc"],
                                groupby="cell_type")  # fmt: skip
            ev = ev.set_index("metric")
            att = sd.tl.attack(train_att, hold_att, syn, method="dcr", unit="donor", donor_key="donor_id")
            res = att["results"].iloc[0]
            rows.append({"method": method, "donor_aggregation": agg or "-", "gene_tiers": tiers or "-", "eps": e,
                         "fit_sample_s": fit_s,
                         "ilisi": ev.loc["camda_ilisi", "value"], "ilisi_real": ev.loc["camda_ilisi", "reference"],
                         "scc": ev.loc["camda_scc", "value"], "scc_real": ev.loc["camda_scc", "reference"],
                         "donor_mia_auroc": res["auroc"], "n_member_donors": res["n_members"],
                         "n_nonmember_donors": res["n_nonmembers"],
                         "eps_spent": syn.uns["scdpsynth"]["privacy"].get("eps_spent", np.nan)})  # fmt: skip
            print(rows[-1], flush=True)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(pd.DataFrame(rows).to_string(index=False))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
