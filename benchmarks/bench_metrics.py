"""Timings of the reference-study metrics and of tl.evaluate at 10k cells x 2k genes.

Run: ``python benchmarks/bench_metrics.py [--n 10000] [--d 2000] [--real]``.

Default case: simulated negative-binomial counts (8 classes, class-specific up-regulated genes and two co-expressed
gene programmes) of ``n`` real training cells, ``n`` synthetic cells (a fresh draw, i.e. an ideal generator) and
``n / 4`` holdout cells, ``d`` genes. ``--real`` also times the Kang et al. 2018 PBMCs (12,261 cells x 1,287 genes,
8 cell types; ``../shared/data``), split 80/20, with RON-Gauss synthetic data.
"""

from __future__ import annotations

import argparse
import os
import time

import anndata as ad
import numpy as np
import pandas as pd

import scdpsynth as sd
from scdpsynth.metrics import registry
from scdpsynth.metrics._base import EvalData
from scdpsynth.tl._evaluate import _log_normalise

OURS = ["ml_efficacy", "histogram_overlap", "knn_distance", "de_genes", "coexpression"]


class Simulator:
    """NB counts with class-specific up-regulated genes (5% per class, 3x) and two co-expressed gene programmes."""

    def __init__(self, d: int, n_classes: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n_classes = n_classes
        self.base = rng.lognormal(mean=-1.0, sigma=1.2, size=d)
        self.fc = np.ones((n_classes, d))
        for k in range(n_classes):
            self.fc[k, rng.choice(d, d // 20, replace=False)] = 3.0
        self.programme = np.zeros(d, dtype=np.int64)
        self.programme[rng.choice(d, 100, replace=False)] = 1
        self.programme[rng.choice(np.flatnonzero(self.programme == 0), 100, replace=False)] = 2
        self.genes = [f"g{j}" for j in range(d)]

    def sample(self, n: int, seed: int) -> ad.AnnData:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, self.n_classes, n)
        activity = rng.lognormal(0.0, 0.7, size=(n, 3))
        activity[:, 0] = 1.0
        mu = self.base * self.fc[y] * activity[:, self.programme] * rng.lognormal(0, 0.3, size=(n, 1))
        counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
        obs = pd.DataFrame({"cell_type": pd.Categorical([f"type{k}" for k in y])}, index=[f"c{i}" for i in range(n)])
        return ad.AnnData(X=counts.astype(np.float32), obs=obs, var=pd.DataFrame(index=self.genes))


def eval_data(a: ad.AnnData, classes: list[str]) -> EvalData:
    y = pd.Index(classes).get_indexer(a.obs["cell_type"].astype(str))
    return EvalData(X=_log_normalise(a.X), y=y, classes=classes)


def time_case(name: str, train, syn, hold) -> None:
    classes = [str(c) for c in train.obs["cell_type"].cat.categories]
    t0, c0 = time.perf_counter(), time.process_time()
    real, s, h = (eval_data(a, classes) for a in (train, syn, hold))
    print(f"\n== {name}: train {train.shape}, synthetic {syn.shape}, holdout {hold.shape}, {len(classes)} classes")
    print(f"{'step':<28s} {'wall':>8s} {'cpu':>8s}   (cpu = process time, all threads; wall depends on machine load)")
    print(f"{'log1p-normalise (3 inputs)':<28s} {time.perf_counter() - t0:7.2f}s {time.process_time() - c0:7.2f}s")
    total = [0.0, 0.0]
    for m in OURS:
        t0, c0 = time.perf_counter(), time.process_time()
        df = registry.get(m)(real, s, holdout=h)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        total[0] += dt
        total[1] += dc
        summary = df[df["group"] == "all"].head(4)
        brief = ", ".join(f"{v}={x:.3g} (ref {r:.3g})" for v, x, r in summary[["variant", "value", "reference"]].values)
        print(f"{m:<28s} {dt:7.2f}s {dc:7.2f}s   {brief}")
    print(f"{'sum of metrics':<28s} {total[0]:7.2f}s {total[1]:7.2f}s")
    t0, c0 = time.perf_counter(), time.process_time()
    sd.tl.evaluate(train, syn, holdout=hold, metrics=OURS, groupby="cell_type")
    print(f"{'tl.evaluate (end to end)':<28s} {time.perf_counter() - t0:7.2f}s {time.process_time() - c0:7.2f}s")
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=2_000)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--real", action="store_true", help="also time the real Kang PBMC data with RON-Gauss")
    args = ap.parse_args()
    sim = Simulator(args.d, args.classes, seed=0)
    train, syn, hold = sim.sample(args.n, seed=1), sim.sample(args.n, seed=2), sim.sample(args.n // 4, seed=3)
    time_case("simulated NB counts, ideal generator", train, syn, hold)
    if args.real:
        kang = sd.datasets.kang_pbmc()
        tr, ho = sd.pp.train_holdout_split(kang, holdout_size=0.2, stratify="cell_type", random_state=0)
        syn = sd.tl.generate(tr, "ron_gauss", eps=1.0, groupby="cell_type", random_state=0)
        time_case("Kang PBMC (real), RON-Gauss eps=1", tr, syn, ho)


if __name__ == "__main__":
    main()
