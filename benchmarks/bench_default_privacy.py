"""Utility at equal eps with *default* arguments: ML accuracy and histogram overlap on the embedded Kang data.

For privsyn, private_pgm, ron_gauss and copula at eps 1 and 10: stratified 80/20 split (split seed 0), three
generation seeds, ``tl.evaluate`` with ``ml_efficacy`` and ``histogram_overlap`` against the real holdout. Prints
the mean and sd over the generation seeds, the fit+sample seconds and the eps the ledger reports.

Used for the before/after table of the privacy-by-default change (issue 11): run it on both commits.

Usage::

    python benchmarks/bench_default_privacy.py [--seeds 3] [--out table.csv]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import scdpsynth as sd

METHODS = ("privsyn", "private_pgm", "ron_gauss", "copula")
EPS = (1.0, 10.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    adata = sd.datasets.kang_example()
    train, hold = sd.pp.train_holdout_split(adata, holdout_size=0.2, stratify="cell_type", random_state=0)
    rows = []
    for method in METHODS:
        for eps in EPS:
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    syn = sd.tl.generate(train, method, eps=eps, groupby="cell_type", random_state=seed)
                secs = time.perf_counter() - t0
                res = sd.tl.evaluate(
                    train, syn, holdout=hold, metrics=["ml_efficacy", "histogram_overlap"], groupby="cell_type"
                )
                acc = res.query("metric == 'ml_efficacy' and variant == 'accuracy'")["value"].mean()
                ov = res.query("metric == 'histogram_overlap'")["value"].iloc[0]
                rows.append(
                    {
                        "method": method,
                        "eps": eps,
                        "seed": seed,
                        "accuracy": acc,
                        "overlap": ov,
                        "n_obs": syn.n_obs,
                        "eps_spent": float(syn.uns["scdpsynth"]["privacy"]["eps_spent"]),
                        "seconds": secs,
                    }
                )
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    summary = df.groupby(["method", "eps"]).agg(
        accuracy=("accuracy", "mean"),
        accuracy_sd=("accuracy", "std"),
        overlap=("overlap", "mean"),
        overlap_sd=("overlap", "std"),
        eps_spent=("eps_spent", "max"),
        seconds=("seconds", "mean"),
    )
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(summary)
    if args.out:
        summary.to_csv(args.out)
    np.set_printoptions()


if __name__ == "__main__":
    main()
