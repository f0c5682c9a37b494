"""Do the attacks see an exact copy of the training data, and stay at chance on fresh real data?

Usage: python benchmarks/bench_attack_calibration.py [--datasets kang all flu geuvadis]

For each data set the records are split (seed 0) into members (1/2), non-member targets (1/4), the attacker's
reference (1/8) and a fresh real sample (1/8). Every registered attack runs through ``tl.attack`` (with
``reference=``) twice: against an exact copy of the members ("copy", should be ~1) and against the fresh sample
("fresh", should be ~0.5). Prints AUROC with its 95% bootstrap interval and the time per run.
"""

from __future__ import annotations

import argparse
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd

import scdpsynth as sd
from scdpsynth._transforms import log_normalise
from scdpsynth.attacks import registry
from scdpsynth.attacks.distance import min_distance

LOADERS = {
    "kang": sd.datasets.kang_example,
    "all": sd.datasets.bioc_all,
    "flu": sd.datasets.flu_challenge,
    "geuvadis": sd.datasets.geuvadis_sex,
}


class _FittedOn:
    def __init__(self, X):
        self.X = X

    def per_sample_loss(self, X, y):
        return min_distance(self.X, X) ** 2


def _shadow(pool):
    def shadow(X, donor_codes, n_out, rng):
        src = X if pool is None else pool
        return src[rng.integers(0, src.shape[0], n_out)]

    return shadow


def _dense(X):
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=float)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", nargs="+", default=list(LOADERS))
    args = p.parse_args()
    pd.set_option("display.width", 200)
    rows = []
    for name in args.datasets:
        a = LOADERS[name]()
        a = ad.AnnData(a.X, var=pd.DataFrame(index=a.var_names.astype(str)))
        a.obs_names = [f"r{i}" for i in range(a.n_obs)]
        n = a.n_obs
        idx = np.random.default_rng(0).permutation(n)
        cuts = [0, n // 2, n // 2 + n // 4, n // 2 + n // 4 + n // 8, n]
        train, hold, ref, fresh = (a[np.sort(idx[cuts[i] : cuts[i + 1]])].copy() for i in range(4))
        counts = sd._validation.is_counts(a.X)
        print(f"{name}: {n} x {a.n_vars} ({'counts' if counts else 'log values'}); members {train.n_obs}, "
              f"non-members {hold.n_obs}, reference {ref.n_obs}, fresh {fresh.n_obs}", flush=True)  # fmt: skip
        for attack in registry.names():
            for kind, syn in (("copy", train), ("fresh", fresh)):
                Xs = _dense(syn.X)
                kw = {}
                if attack == "whitebox_vae":
                    kw["generator"] = _FittedOn(np.log1p(Xs) if counts else Xs)
                if attack == "pseudobulk_rf":
                    pool = None if kind == "copy" else (_dense(log_normalise(fresh.X)) if counts else _dense(fresh.X))
                    kw["shadow"] = _shadow(pool)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    r = sd.tl.attack(train, hold, syn.copy(), method=attack, reference=ref, random_state=0, **kw)
                row = r["results"].iloc[0]
                rows.append(
                    {
                        "data": name,
                        "attack": attack,
                        "syn": kind,
                        "auroc": round(row["auroc"], 3),
                        "ci": f"[{row['auroc_ci_low']:.3f}, {row['auroc_ci_high']:.3f}]",
                        "tpr@1%": round(row["tpr_at_1pct_fpr"], 3),
                        "seconds": round(time.perf_counter() - t0, 2),
                    }
                )
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.pivot_table(index="attack", columns=["data", "syn"], values="auroc").round(3).to_string())


if __name__ == "__main__":
    main()
