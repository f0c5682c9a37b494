"""Bulk benchmark: methods x eps on bulk ALL and flu, with the metrics of the reference study.

Data: bulk ALL microarray (``sd.datasets.bioc_all()``, label ``lineage``) and the flu challenge
(``sd.datasets.flu_challenge()``, label ``Condition``); stratified 80/20 split (seed 0); the ``--genes`` highest-
variance genes, variance computed on the training split only (no holdout information). Each method is run with its
defaults (``tl.generate(train, method, eps=eps, groupby=label)``, fresh OS entropy for private fits, seed 0 otherwise)
and evaluated with ``tl.evaluate(train, syn, holdout=holdout)``.

Prints one row per (data, method, eps, seed): accuracy and balanced accuracy (logistic regression trained on synthetic,
tested on the real holdout), histogram overlap (25 bins), DE-gene TPR/FPR, co-expression recall/precision for
``r > 0.7``, and fit+sample seconds; then the means over seeds.

Usage::

    python benchmarks/bench_bulk.py                                  # full grid (several minutes)
    python benchmarks/bench_bulk.py --methods dp_vae mst --eps 10 none --seeds 1 --data ALL
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import scdpsynth as sd

DATA = {"ALL": ("bioc_all", "lineage"), "flu": ("flu_challenge", "Condition")}
METHODS = ("dp_vae", "dp_gan", "mst", "private_pgm", "privsyn", "ron_gauss")
METRICS = ["ml_efficacy", "histogram_overlap", "de_genes", "coexpression"]


def _split(name: str, n_genes: int):
    loader, label = DATA[name]
    adata = getattr(sd.datasets, loader)()
    train, hold = sd.pp.train_holdout_split(adata, holdout_size=0.2, stratify=label, random_state=0)
    var = np.asarray(train.X).var(axis=0)  # training split only
    genes = train.var_names[np.argsort(-var)[:n_genes]]
    return train[:, genes].copy(), hold[:, genes].copy(), label


def _pick(res: pd.DataFrame, metric: str, pattern: str) -> float:
    rows = res[(res["metric"] == metric) & res["variant"].astype(str).str.fullmatch(pattern)]
    return float(rows["value"].mean()) if len(rows) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--eps", nargs="+", default=["1", "10", "100", "none"])
    ap.add_argument("--seeds", type=int, default=1, help="generation seeds per private cell")
    ap.add_argument("--genes", type=int, default=500)
    ap.add_argument("--out", default=None, help="CSV file for the per-run rows")
    args = ap.parse_args()
    eps_grid = [None if e.lower() == "none" else float(e) for e in args.eps]
    print(f"data={args.data} methods={args.methods} eps={args.eps} seeds={args.seeds} genes={args.genes}")
    rows = []
    for name in args.data:
        train, hold, label = _split(name, args.genes)
        print(f"{name}: train {train.shape}, holdout {hold.shape}, label {label}", flush=True)
        for method in args.methods:
            for eps in eps_grid:
                for seed in range(args.seeds if eps is not None else 1):
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        syn = sd.tl.generate(
                            train, method, eps=eps, groupby=label, random_state=None if eps is not None else 0
                        )
                        secs = time.perf_counter() - t0
                        res = sd.tl.evaluate(train, syn, holdout=hold, metrics=METRICS, groupby=label)
                    row = {
                        "data": name,
                        "method": method,
                        "eps": "none" if eps is None else eps,
                        "seed": seed,
                        "acc": _pick(res, "ml_efficacy", "accuracy"),
                        "bacc": _pick(res, "ml_efficacy", "balanced_accuracy"),
                        "overlap": _pick(res, "histogram_overlap", "bins=25"),
                        "de_tpr": _pick(res, "de_genes", "tpr"),
                        "de_fpr": _pick(res, "de_genes", "fpr"),
                        "coex_recall": _pick(res, "coexpression", r"r>0\.7:recall"),
                        "coex_precision": _pick(res, "coexpression", r"r>0\.7:precision"),
                        "seconds": secs,
                    }
                    rows.append(row)
                    print(
                        "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                        flush=True,
                    )
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    summary = df.drop(columns="seed").groupby(["data", "method", "eps"], sort=False).mean().round(3)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(summary.to_string())


if __name__ == "__main__":
    main()
