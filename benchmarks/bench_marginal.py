"""Fit + sample time of the marginal-based generators (Private-PGM, PrivSyn) at the reference study's data sizes.

Data (real, from the project's shared data):

* ``ALL 128x958``: Bioconductor ALL (Chiaretti et al. 2004), 128 samples, the 958 highest-variance probes, labels BT;
* ``ALL 1181x958``: the same 128 samples resampled with replacement (stratified by BT) to 1,181 rows;
* ``Kang 1181x958``: 1,181 cells of the embedded Kang et al. 2018 PBMCs, the 958 highest-variance genes of log1p
  counts, labels cell_type (a similar-sized real data set).

Usage::

    python benchmarks/bench_marginal.py [--repeats 3] [--eps 1.0]

Prints the median wall time (seconds) of ``fit`` and of ``sample`` (as many rows as the data, in the real class
proportions) over the repeats, for the private fit and the non-private (eps=None) variant.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd

import scdpsynth as sd
from scdpsynth.generators.private_pgm import PrivatePGM
from scdpsynth.generators.privsyn import PrivSyn

N_GENES = 958
N_LARGE = 1181


def _top_var(X: np.ndarray, d: int) -> np.ndarray:
    return X[:, np.sort(np.argsort(-X.var(axis=0), kind="stable")[:d])]


def datasets(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    a = sd.datasets.bioc_all()
    X = _top_var(np.asarray(a.X, dtype=float), N_GENES)
    cat = pd.Categorical(a.obs["BT"])
    y = cat.codes.astype(np.int64)
    K = len(cat.categories)
    out = {"ALL 128x958": (X, y, K)}
    # stratified resample to 1,181 rows: class sizes in the original proportions
    share = np.bincount(y, minlength=K) / len(y) * N_LARGE
    sizes = np.floor(share).astype(int)
    sizes[np.argsort(-(share - sizes))[: N_LARGE - sizes.sum()]] += 1
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), s, replace=True) for k, s in enumerate(sizes)])
    out[f"ALL {N_LARGE}x958 (resampled)"] = (X[idx], y[idx], K)
    k = sd.datasets.kang_example()
    cells = np.sort(rng.choice(k.n_obs, N_LARGE, replace=False))
    Xk = np.log1p(k.X[cells].toarray().astype(float))
    kcat = pd.Categorical(k.obs["cell_type"].iloc[cells])
    out[f"Kang {N_LARGE}x958"] = (_top_var(Xk, N_GENES), kcat.codes.astype(np.int64), len(kcat.categories))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eps", type=float, default=1.0)
    args = parser.parse_args()
    methods = {
        "private_pgm": (PrivatePGM, {}),
        "privsyn": (PrivSyn, {}),
        "privsyn(select)": (PrivSyn, {"select": True}),
        "private_pgm(dp bins)": (PrivatePGM, {"discretization": "dp"}),
    }
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}; median of {args.repeats} runs")
    print(f"{'data':28s} {'method':22s} {'eps':>6s} {'fit_s':>8s} {'sample_s':>9s} {'total_s':>8s}")
    for dname, (X, y, K) in datasets().items():
        counts = np.bincount(y, minlength=K)
        for mname, (cls, kw) in methods.items():
            for eps in (args.eps, None):
                if eps is None and "dp bins" in mname:
                    continue
                fits, samples = [], []
                for r in range(args.repeats):
                    t0 = time.perf_counter()
                    gen = cls(eps=eps, random_state=r, **kw).fit(X, y, n_classes=K)
                    t1 = time.perf_counter()
                    Xs = gen.sample(counts)
                    t2 = time.perf_counter()
                    assert Xs.shape == X.shape
                    fits.append(t1 - t0)
                    samples.append(t2 - t1)
                f, s = float(np.median(fits)), float(np.median(samples))
                print(f"{dname:28s} {mname:22s} {eps!s:>6s} {f:8.3f} {s:9.3f} {f + s:8.3f}", flush=True)


if __name__ == "__main__":
    main()
