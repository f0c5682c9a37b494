"""Membership-inference attacks and the DP audit: run time and attack strength on real data.

Usage: python benchmarks/bench_attacks.py [--cells 3000] [--trials 200]

Prints, for Kang PBMCs (control, 8 donors; ../shared/data/kang_se_muscat.h5ad) split by donor, the AUROC and TPR at
low FPR of every record-level attack against (a) RON-Gauss at eps=1 and eps=10 and (b) a "generator" that releases
its training cells (worst case), at cell and donor level, with the time each attack took; then timings and eps lower
bounds of the end-to-end audit (``sd.tl.audit``: dcr, projection and metadata attacks on ``tl.generate`` outputs) for
RON-Gauss on the ALL microarray data (bulk).
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import pandas as pd

import scdpsynth as sd

ATTACKS = ["dcr", "dcr_calibrated", "domias", "logan", "mahalanobis", "mahalanobis_ref"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cells", type=int, default=3000)
    p.add_argument("--trials", type=int, default=200)
    args = p.parse_args()
    pd.set_option("display.width", 160)

    a = sd.datasets.kang_pbmc()
    rng = np.random.default_rng(0)
    a = a[np.sort(rng.choice(a.n_obs, args.cells, replace=False))].copy()
    train, hold = sd.pp.train_holdout_split(a, holdout_size=0.5, donor_key="donor_id", random_state=0)
    print(
        f"Kang PBMC: {a.n_obs} cells x {a.n_vars} genes; train {train.n_obs} cells / "
        f"{train.obs['donor_id'].nunique()} donors, holdout {hold.n_obs} / {hold.obs['donor_id'].nunique()}"
    )
    syns = {
        "copy_of_train": ad.AnnData(train.X.copy(), var=pd.DataFrame(index=train.var_names)),
        "ron_gauss_eps1": sd.tl.generate(train, "ron_gauss", eps=1.0, groupby="cell_type", random_state=0),
        "ron_gauss_eps10": sd.tl.generate(train, "ron_gauss", eps=10.0, groupby="cell_type", random_state=0),
    }
    rows = []
    for syn_name, syn in syns.items():
        for name in ATTACKS:
            t = time.perf_counter()
            res = sd.tl.attack(train, hold, syn, method=name, random_state=0)
            dt = time.perf_counter() - t
            donor = sd.tl.attack(
                train, hold, syn, method=name, unit="donor", donor_key="donor_id", random_state=0, key_added="donor"
            )
            r = res["results"].iloc[0].to_dict()
            r.update(syn=syn_name, seconds=round(dt, 2), donor_auroc=donor["results"]["auroc"].iloc[0])
            rows.append(r)
    df = pd.DataFrame(rows)[
        [
            "syn",
            "attack",
            "auroc",
            "tpr_at_1pct_fpr",
            "tpr_at_0.1pct_fpr",
            "n_members",
            "n_nonmembers",
            "donor_auroc",
            "seconds",
        ]
    ]
    print(df.round(3).to_string(index=False))

    bulk = sd.datasets.bioc_all()
    bulk = bulk[:60, np.sort(np.argsort(-np.asarray(bulk.X).var(axis=0))[:20])].copy()
    print(f"\nAudit of RON-Gauss on ALL (60 samples x 20 probes), {args.trials} trials per arm, alpha=0.05")
    for eps in (1.0, 4.0, 16.0, 64.0):
        r = sd.tl.audit(bulk, "ron_gauss", eps=eps, n_trials=args.trials, random_state=0, progress=False)
        per_attack = "  ".join(
            f"{row.attack}={row.eps_lb:.3f} (fp={row.fp}/{row.n_neg} fn={row.fn}/{row.n_pos})"
            for row in r.results.itertuples()
        )
        print(f"eps={eps:5.1f}  eps_lb={r.eps_lb:.3f} [{r.attack}]  {per_attack}  {r.seconds:.1f} s")


if __name__ == "__main__":
    main()
