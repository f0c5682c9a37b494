"""Single-cell realism of the count generators on the Kang PBMC split: CAMDA iLISI, SCC and discriminator AUC.

Kang data (12,261 cells x 1,287 genes, 8 cell types), 80/20 split stratified by cell type
(``sd.pp.train_holdout_split(..., holdout_size=0.2, stratify="cell_type", random_state=0)``). Each method is fitted
with ``sd.tl.generate`` on the training cells (``groupby="cell_type"``, cell-level privacy, default
hyper-parameters), as many synthetic cells as the fit's class counts give, and scored with ``sd.tl.evaluate``
against the training cells (holdout given, so both sides use as many cells as the holdout has). The ``real
holdout`` row is the ``reference`` column: the holdout scored as if it were synthetic (the ceiling). Methods:
``copula``, ``vine_nmf`` and the challenge's reference floor ``nb_baseline`` (non-private only).

Columns: ``ilisi`` (scaled, higher better), ``scc`` (higher better), ``auc_no_combat`` / ``auc_combat``
(random-forest discriminator without / with ComBat; 0.5 ideal; with ComBat ~1.0 even for real data), ``fit_s``
(seconds to fit and sample). ``--n-train`` subsamples the training cells for quick runs. Each split seed is a
fresh 80/20 split and a fresh generation; the last table gives the median and range over seeds. ``dp_vae`` runs
with ``likelihood="nb"``.

Usage::

    python benchmarks/bench_sc_realism.py [--eps 1 10 100 none] [--methods copula vine_nmf dp_vae nb_baseline]
        [--n-estimators 1000] [--n-train 0] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import scdpsynth as sd

METRICS = ["camda_ilisi", "camda_scc", "camda_discriminator_auc"]
METHOD_KW = {"dp_vae": {"likelihood": "nb"}}


def _row(df: pd.DataFrame, col: str) -> dict:
    out = {}
    for _, r in df.iterrows():
        name = r["metric"].replace("camda_", "")
        if name == "discriminator_auc":
            name = f"auc_{r['variant']}"
        out[name] = r[col]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--methods", nargs="+", default=["copula", "vine_nmf", "dp_vae", "nb_baseline"])
    ap.add_argument("--eps", nargs="+", default=["1", "10", "100", "none"])
    ap.add_argument("--n-estimators", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=0, help="subsample the training cells (0: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="split seeds; each seed is a fresh 80/20 split and a fresh generation")  # fmt: skip
    args = ap.parse_args()

    adata = sd.datasets.kang_pbmc(args.data_dir)
    kw = {"metric_kwargs": {"camda_discriminator_auc": {"n_estimators": args.n_estimators}}}
    rows = []
    methods = set(sd.tl.list_methods()["name"])
    for seed in args.seeds:
        train, hold = sd.pp.train_holdout_split(adata, holdout_size=0.2, stratify="cell_type", random_state=seed)
        if args.n_train and args.n_train < train.n_obs:
            rng = np.random.default_rng(seed)
            train = train[np.sort(rng.choice(train.n_obs, args.n_train, replace=False))].copy()
        print(f"seed {seed}: train {train.n_obs} x {train.n_vars}, holdout {hold.n_obs}", flush=True)
        reference = None
        for method in args.methods:
            if method not in methods:
                print(f"skipping {method}: not registered")
                continue
            for e in args.eps:
                eps = None if e.lower() == "none" else float(e)
                if method == "nb_baseline" and eps is not None:
                    continue
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # integer seed with eps: reproducible benchmark noise, on purpose
                    syn = sd.tl.generate(train, method, eps=eps, groupby="cell_type", random_state=seed,
                                         **METHOD_KW.get(method, {}))  # fmt: skip
                fit_s = time.perf_counter() - t0
                res = sd.tl.evaluate(train, syn, holdout=hold, metrics=METRICS, groupby="cell_type", **kw)
                rows.append({"method": method, "eps": e, "seed": seed, **_row(res, "value"), "fit_s": fit_s})
                print(rows[-1], flush=True)
                if reference is None:
                    reference = {"method": "real holdout", "eps": "-", "seed": seed, **_row(res, "reference"),
                                 "fit_s": np.nan}  # fmt: skip
                    rows.append(reference)
                    print(reference, flush=True)
    table = pd.DataFrame(rows)
    cols = [c for c in table.columns if c not in ("method", "eps", "seed")]
    g = table.groupby(["method", "eps"], sort=False)[cols]
    med, lo, hi = g.median(), g.min(), g.max()
    out = med.copy()
    for c in cols:
        trio = zip(med[c], lo[c], hi[c], strict=True)
        out[c] = [f"{m:.3f} [{a:.3f}, {b:.3f}]" if np.isfinite(m) else "-" for m, a, b in trio]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(f"\nmedian [min, max] over split seeds {args.seeds}:")
        print(out.reset_index().to_string(index=False))


if __name__ == "__main__":
    main()
