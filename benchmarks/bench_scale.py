"""Cohort scale: copula or vine_nmf fit+sample (donor- or cell-level DP) read backed from h5ad, evaluation, peak RSS.

Cohorts from ``sd.datasets.simulate_cohort`` (1,300 cells per donor, so 640k cells = 490 donors, the CAMDA 2026 Track
II training split's size), written once to ``--workdir`` as h5ad. Each measurement runs in a fresh child process
that reads the file with ``anndata.read_h5ad(path, backed="r")``; the child reports its own wall time and peak RSS
(``resource.getrusage``), so cases do not share memory; the cohort is simulated in a child as well, since a
forked child's peak RSS starts at its parent's. Steps:

- ``fit``: ``sd.tl.generate(backed, "copula", eps=10, unit="donor", donor_key="donor_id", groupby="cell_type",
  n_obs=<cells>)`` -- fit (each donor capped at 256 cells) and sample as many synthetic cells as real ones
  (``--n-syn``: another number); ``--unit sample`` fits at the cell level instead (every cell used; the fit
  streams the backed file in row blocks); ``--method vine_nmf`` fits vine_nmf instead of the copula;
- ``evaluate`` (``--evaluate``): ``sd.tl.evaluate(real, syn, metrics=<--metrics>, max_cells=<--max-cells>)`` on
  the backed real file and the synthetic file the ``fit`` step wrote (``--metrics camda``: the whole CAMDA preset;
  ``max_cells="auto"`` evaluates at most 50,000 cells per side, and the row's ``subsampled`` says so). The row also
  gives seconds per metric and the running peak RSS after each metric. ``--reuse`` skips the fit where the
  synthetic file exists.

The simulation step's own time is printed too. Baseline for ratios: the smallest case of the same run.

Usage::

    python benchmarks/bench_scale.py [--cells 50000 200000 640000] [--genes 2000 5000] [--eps 10]
        [--method copula|vine_nmf] [--unit donor|sample] [--n-syn N] [--evaluate] [--metrics camda]
        [--max-cells auto] [--reuse] [--workdir /tmp/scdpsynth_scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CELLS_PER_DONOR = 1300


def _child(args) -> None:
    import resource
    import warnings

    import anndata as ad

    import scdpsynth as sd

    sd.settings.progress = False
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if args.step == "simulate":
        adata = sd.datasets.simulate_cohort(
            args.donors, CELLS_PER_DONOR, args.genes_one, random_state=0, path=args.path
        )
        print("RESULT " + json.dumps({"simulate_s": time.perf_counter() - t0, "nnz": int(adata.X.nnz)}), flush=True)
        return
    real = ad.read_h5ad(args.path, backed="r")
    out = {}
    if args.step == "fit":
        eps = None if args.eps == "none" else float(args.eps)
        unit = {"unit": "donor", "donor_key": "donor_id"} if args.unit == "donor" else {"unit": "sample"}
        n_syn = real.n_obs if args.n_syn is None else args.n_syn
        syn = sd.tl.generate(real, args.method, eps=eps, groupby="cell_type", n_obs=n_syn, **unit)
        out["fit_sample_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        syn.write_h5ad(args.syn_path)
        out["write_s"] = time.perf_counter() - t1
        out["n_syn"] = int(syn.n_obs)
    else:
        import logging

        class _Times(logging.Handler):  # tl.evaluate logs "Metric <name>: <rows> rows in <s> s" per metric
            def emit(self, record):
                name, _, secs = record.args
                out.setdefault("metric_s", {})[name] = round(float(secs), 1)
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # running peak after this metric
                out.setdefault("peak_gb_after", {})[name] = round(peak, 2)

        log = logging.getLogger("scdpsynth")
        log.setLevel(logging.INFO)
        log.addHandler(_Times(level=logging.INFO))
        log.handlers[-1].addFilter(lambda r: r.getMessage().startswith("Metric "))
        syn = ad.read_h5ad(args.syn_path, backed="r")
        metrics = args.metrics[0] if len(args.metrics) == 1 else args.metrics  # "camda": the whole preset
        max_cells = None if args.max_cells == "none" else ("auto" if args.max_cells == "auto" else int(args.max_cells))
        res = sd.tl.evaluate(real, syn, metrics=metrics, groupby="cell_type", max_cells=max_cells)
        out["subsampled"] = str(res["subsampled"].iloc[0])
        out["evaluate_s"] = time.perf_counter() - t0
        out["values"] = {f"{m} {v}".strip(): float(x) for m, v, x in res[["metric", "variant", "value"]].values}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print("RESULT " + json.dumps(out), flush=True)


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[50_000, 200_000, 640_000])
    ap.add_argument("--genes", type=int, nargs="+", default=[2000, 5000])
    ap.add_argument("--eps", default="10")
    ap.add_argument("--method", choices=["copula", "vine_nmf"], default="copula")
    ap.add_argument("--unit", choices=["donor", "sample"], default="donor", help="privacy unit of the fit")
    ap.add_argument("--n-syn", type=int, default=None, help="synthetic cells to draw (default: as many as real)")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--metrics", nargs="+", default=["camda"])
    ap.add_argument("--max-cells", default="auto", help="tl.evaluate's max_cells: auto, none or an integer")
    ap.add_argument("--reuse", action="store_true", help="skip the fit where the synthetic file already exists")
    ap.add_argument("--workdir", default="/tmp/scdpsynth_scale")
    ap.add_argument("--child", choices=["simulate", "fit", "evaluate"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--donors", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--genes-one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--syn-path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.step = args.child
        _child(args)
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for genes in args.genes:
        for cells in args.cells:
            donors = max(1, round(cells / CELLS_PER_DONOR))
            path = work / f"cohort_{donors}x{CELLS_PER_DONOR}_{genes}.h5ad"
            sim_s = nnz = float("nan")
            if not path.exists():  # in a child too: on Linux a forked child's peak RSS starts at the parent's RSS
                sim = _run([sys.executable, __file__, "--child", "simulate", "--path", str(path),
                            "--donors", str(donors), "--genes-one", str(genes)])  # fmt: skip
                sim_s, nnz = sim.get("simulate_s", sim_s), sim.get("nnz", nnz)
            tag = ("" if args.method == "copula" else f"_{args.method}") + ("" if args.unit == "donor" else "_sample")
            syn_path = work / f"syn_{donors}x{CELLS_PER_DONOR}_{genes}_eps{args.eps}{tag}.h5ad"
            base = [sys.executable, __file__, "--path", str(path), "--syn-path", str(syn_path), "--eps", args.eps,
                    "--unit", args.unit, "--method", args.method]  # fmt: skip
            base += [] if args.n_syn is None else ["--n-syn", str(args.n_syn)]
            fit = {} if args.reuse and syn_path.exists() else _run([*base, "--child", "fit"])
            row = {"cells": donors * CELLS_PER_DONOR, "donors": donors, "genes": genes, "nnz": nnz,
                   "simulate_s": sim_s, "fit_sample_s": fit.get("fit_sample_s"),
                   "fit_peak_gb": fit.get("peak_rss_gb"), "fit_error": fit.get("error")}  # fmt: skip
            if args.evaluate and "error" not in fit:
                ev = _run([*base, "--child", "evaluate", "--max-cells", args.max_cells, "--metrics", *args.metrics])
                row.update({"evaluate_s": ev.get("evaluate_s"), "evaluate_peak_gb": ev.get("peak_rss_gb"),
                            "evaluate_error": ev.get("error"), "subsampled": ev.get("subsampled"),
                            "metric_s": ev.get("metric_s"), "peak_gb_after": ev.get("peak_gb_after"),
                            **ev.get("values", {})})  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)

    import pandas as pd

    table = pd.DataFrame(rows)
    for _, part in table.groupby("genes"):
        base = part.iloc[0]
        for col in ("fit_sample_s", "fit_peak_gb", "evaluate_s", "evaluate_peak_gb"):
            if col in part and base.get(col):
                table.loc[part.index, col.rsplit("_", 1)[0] + "_x"] = part[col] / base[col]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
