"""tl.benchmark before and after the per-split cache: same grid, one run of this script.

Usage: python benchmarks/bench_benchmark.py [--baseline 4c6a9f9] [--groupby BT] [--genes 0]

Grid: methods ron_gauss and privsyn, eps 1 and 10, on the ALL microarray data (the 115 samples of the six BT
subtypes with >= 10 samples x 12,625 probes, or the ``--genes`` most variable ones), 4 runs per method and eps.
The baseline (the code at ``--baseline``, extracted with ``git archive`` and run in a subprocess) has one seed for
split and generation, so it runs seeds 0-3; the current code runs 2 split seeds x 2 generation seeds
(``seeds=[0, 1], generation_seeds=[0, 1]``). Both evaluate all metrics. Prints wall-clock seconds of each, their
ratio, and the current summary (mean and sd over the 4 runs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SCDPSYNTH_DATA_DIR", ROOT.parent / "shared" / "data"))

PREP = """
import time, warnings, numpy as np, scdpsynth as sd
a = sd.datasets.bioc_all()
# classes of the ALL subtype with at least 10 samples (B1-B4, T2, T3: 115 samples); smaller ones cannot be split
sizes = a.obs["BT"].value_counts()
a = a[a.obs["BT"].isin(sizes.index[sizes >= 10])].copy()
a.obs["BT"] = a.obs["BT"].cat.remove_unused_categories()
genes = {genes}
if genes:
    a = a[:, np.sort(np.argsort(-np.asarray(a.X).var(axis=0))[:genes])].copy()
"""

RUN = (
    PREP
    + """
kw = dict(methods=["ron_gauss", "privsyn"], eps_grid=[1.0, 10.0], groupby={groupby!r}, holdout_size=0.2)
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = sd.tl.benchmark(a, {seed_kw}, **kw)
print("SECONDS", time.perf_counter() - t0)
"""
)


def _time(src: Path, seed_kw: str, args) -> tuple[float, str]:
    code = RUN.format(genes=args.genes, groupby=args.groupby, seed_kw=seed_kw)
    env = {**os.environ, "PYTHONPATH": str(src), "SCDPSYNTH_DATA_DIR": str(DATA)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return float(out.split("SECONDS")[-1]), out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--baseline", default="4c6a9f9")
    p.add_argument("--groupby", default="BT")
    p.add_argument("--genes", type=int, default=0, help="keep the N most variable probes (0: all)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src"], capture_output=True,
                                 check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        before, _ = _time(Path(tmp) / "src", "seeds=[0, 1, 2, 3]", args)
    after, _ = _time(ROOT / "src", "seeds=[0, 1], generation_seeds=[0, 1]", args)
    print(f"ALL ({args.genes or 'all'} probes, groupby={args.groupby}), ron_gauss+privsyn x eps 1, 10 x 4 runs:")
    print(f"  before ({args.baseline}, seeds 0-3): {before:.1f} s")
    print(f"  after  (2 split x 2 generation seeds): {after:.1f} s  ({after / before:.0%} of before)")

    sys.path.insert(0, str(ROOT / "src"))
    scope: dict = {}
    exec(PREP.format(genes=args.genes), scope)
    a, sd = scope["a"], scope["sd"]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = sd.tl.benchmark(
            a, methods=["ron_gauss", "privsyn"], eps_grid=[1.0, 10.0], groupby=args.groupby, seeds=[0, 1],
            generation_seeds=[0, 1], summarize=True,
        )  # fmt: skip
    print(f"  (summary run: {time.perf_counter() - t0:.1f} s)")
    pd.set_option("display.width", 220)
    pd.set_option("display.max_rows", 100)
    show = summary[
        (summary["group"] == "all") & summary["metric"].isin(["ml_efficacy", "histogram_overlap", "de_genes"])
    ]
    cols = ["method", "eps", "metric", "variant", "value_mean", "value_sd", "reference_mean", "reference_sd", "chance",
            "privacy_dcr_auroc_mean", "n_runs"]  # fmt: skip
    print(show[cols].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
