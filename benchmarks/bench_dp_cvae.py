"""The reference study's DP-CVAE settings against dp_vae's defaults, over eps, on the bulk data (a grid benchmark).

Chen et al. (PETS; code PRO-GENE-GEN) train a conditional VAE with latent 64, beta 0.001, Adam 1e-3, batch 64,
10,000 iterations and per-sample clipping 0.01 (the CAMDA bulk track uses 0.1), with RDP accounting. Here the same
settings run in :class:`~scdpsynth.generators.dp_vae.DPVAE` (its architecture: one hidden width, here 256, and the
class offset on the decoder; accounting on the ledger by PLD), beside dp_vae's defaults (hidden 8, latent 2, beta 1,
lr 1e-2, 100 epochs of full batches, clip 1). The iterations are converted to epochs on each training split
(``10,000 x 64 / n``).

Data and evaluation as in ``bench_bulk.py`` (stratified 80/20 split, seed 0, 500 highest-variance training genes;
logistic regression trained on synthetic, tested on the real holdout; histogram overlap at 25 bins). Prints one row
per (data, config, eps, seed) with accuracy, balanced accuracy, overlap and fit+sample seconds, then the means over
seeds; ``--grid`` adds the study's grid around its setting at one eps: latent {2, 16, 64} x beta {0.001, 1} x clip
{0.01, 0.1, 1}.

Usage::

    python benchmarks/bench_dp_cvae.py                        # study vs defaults, eps 1 .. 100 and none
    python benchmarks/bench_dp_cvae.py --grid --grid-eps 10   # adds the 18-setting grid at eps=10
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
import warnings

import pandas as pd
from bench_bulk import EPS, _print, _row, _split

import scdpsynth as sd

METRICS = ["ml_efficacy", "histogram_overlap"]


def study_settings(n_train: int, *, latent_dim=64, beta=1e-3, max_grad_norm=0.01) -> dict:
    """dp_vae keyword arguments of the study's DP-CVAE on ``n_train`` rows (10,000 iterations of batch 64)."""
    return {
        "latent_dim": latent_dim,
        "hidden_dim": 256,
        "beta": beta,
        "lr": 1e-3,
        "batch_size": 64,
        "epochs": max(1, math.ceil(10_000 * 64 / n_train)),
        "max_grad_norm": max_grad_norm,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["ALL", "flu"])
    ap.add_argument("--eps", nargs="+", default=EPS)
    ap.add_argument("--seeds", type=int, default=1, help="generation seeds per private cell")
    ap.add_argument("--grid", action="store_true", help="also the 18-setting grid at --grid-eps")
    ap.add_argument("--grid-eps", type=float, default=10.0)
    ap.add_argument("--out", default=None, help="CSV file for the rows")
    args = ap.parse_args()
    sd.settings.progress = False
    eps_grid = [None if e.lower() == "none" else float(e) for e in args.eps]
    rows = []

    def run(train, hold, label, name, config, eps, kwargs):
        for seed in range(args.seeds if eps is not None else 1):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                syn = sd.tl.generate(
                    train, "dp_vae", eps=eps, groupby=label, random_state=None if eps is not None else 0, **kwargs
                )
                secs = time.perf_counter() - t0
                res = sd.tl.evaluate(train, syn, holdout=hold, metrics=METRICS, groupby=label)
            row = _row(res, name, config, eps, seed, secs)
            for key in ("de_tpr", "de_fpr", "coex_recall", "coex_precision"):
                row.pop(key)
            rows.append(row)
            _print(row)

    for name in args.data:
        train, hold, label = _split(name, 500)
        print(f"{name}: train {train.shape}, holdout {hold.shape}, label {label}", flush=True)
        study = study_settings(train.n_obs)
        print(f"  study settings on this split: {study}", flush=True)
        for eps in eps_grid:
            run(train, hold, label, name, "defaults", eps, {})
            run(train, hold, label, name, "study", eps, study)
        if args.grid:
            for latent, beta, clip in itertools.product((2, 16, 64), (1e-3, 1.0), (0.01, 0.1, 1.0)):
                kw = study_settings(train.n_obs, latent_dim=latent, beta=beta, max_grad_norm=clip)
                run(train, hold, label, name, f"latent={latent} beta={beta:g} clip={clip:g}", args.grid_eps, kw)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        summary = df.drop(columns="seed").groupby(["data", "method", "eps"], sort=False).mean()
        print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
