"""Bulk benchmark: methods x eps on bulk ALL, flu and GEUVADIS, with the metrics of the reference study.

Data: bulk ALL microarray (``sd.datasets.bioc_all()``, label ``lineage``), the flu challenge
(``sd.datasets.flu_challenge()``, label ``Condition``) and, as data the defaults were not tuned on, GEUVADIS RNA-seq
(``sd.datasets.geuvadis_sex()``, label ``sex``, counts turned into log2(CPM + 1) first, so all three are log
expression); stratified 80/20 split (seed 0); the ``--genes`` highest-variance genes, variance computed on the
training split only (no holdout information). Each method is run with its defaults
(``tl.generate(train, method, eps=eps, groupby=label)``, fresh OS entropy for private fits, seed 0 otherwise) and
evaluated with ``tl.evaluate(train, syn, holdout=holdout)``.

Two reference rows per data set: ``real holdout`` (the ``reference`` column of ``tl.evaluate``: the real holdout
scored like a synthetic set) and ``per-class Gaussian`` (non-private: each class's exact mean and covariance, as many
rows as the training split; the issue's yardstick for the deep models). With ``--smartnoise-python PATH`` (or the
``SMARTNOISE_PYTHON`` variable) smartnoise-synth's MST runs on the same split in that interpreter's environment
(``benchmarks/_smartnoise_mst.py``; it pins opacus 0.14, so it cannot share ours) and its rows are printed beside
ours as ``smartnoise_mst``.

Prints one row per (data, method, eps, seed): accuracy and balanced accuracy (logistic regression trained on synthetic,
tested on the real holdout), histogram overlap (25 bins), DE-gene TPR/FPR, co-expression recall (with its chance
level: as many edges on random pairs) and precision for ``r > 0.7``, and fit+sample seconds; then the means over
seeds.

Usage::

    python benchmarks/bench_bulk.py                                  # full grid, one seed (about 30 min on 2 cores)
    python benchmarks/bench_bulk.py --methods dp_vae mst --eps 10 none --seeds 1 --data ALL
    python benchmarks/bench_bulk.py --methods dp_vae --eps none --n-syn 1000   # overlap without small-sample noise
    python benchmarks/bench_bulk.py --methods mst mst:dependence=factor --eps 100 none   # options after a colon
    python benchmarks/bench_bulk.py --methods dp_vae dp_vae:standardize=quantile --eps 10 100 none --seeds 3
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

import numpy as np
import pandas as pd

import scdpsynth as sd

DATA = {"ALL": ("bioc_all", "lineage"), "flu": ("flu_challenge", "Condition"), "geuvadis": ("geuvadis_sex", "sex")}
EPS = ["1", "5", "10", "20", "50", "100", "none"]
METHODS = (
    "dp_vae",
    "dp_vae:standardize=quantile",
    "dp_gan",
    "mst",
    "mst:dependence=factor",
    "private_pgm",
    "privsyn",
    "ron_gauss",
)


def _method_spec(spec: str) -> tuple[str, dict]:
    """``"mst:dependence=factor,n_bins=8"`` -> ``("mst", {"dependence": "factor", "n_bins": 8})``; ``True``,
    ``False`` and ``None`` are Python's."""
    base, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if value in ("True", "False", "None"):
            options[key] = {"True": True, "False": False, "None": None}[value]
            continue
        try:
            options[key] = int(value)
        except ValueError:
            try:
                options[key] = float(value)
            except ValueError:
                options[key] = value
    return base, options


METRICS = ["ml_efficacy", "histogram_overlap", "de_genes", "coexpression"]


def _split(name: str, n_genes: int):
    loader, label = DATA[name]
    adata = getattr(sd.datasets, loader)()
    if name == "geuvadis":  # raw counts -> log2(CPM + 1), dense float: log expression like the other two
        import anndata as ad
        import scipy.sparse as sp

        X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        X = np.log2(X / X.sum(1, keepdims=True) * 1e6 + 1.0)
        adata = ad.AnnData(X.astype(np.float64), obs=adata.obs.copy(), var=adata.var.copy())
    train, hold = sd.pp.train_holdout_split(adata, holdout_size=0.2, stratify=label, random_state=0)
    var = np.asarray(train.X).var(axis=0)  # training split only
    genes = train.var_names[np.argsort(-var)[:n_genes]]
    return train[:, genes].copy(), hold[:, genes].copy(), label


def _per_class_gaussian(train, label: str, seed: int = 0, n_rows: int | None = None):
    """Non-private yardstick: each class's exact mean and covariance, as many rows per class as in ``train`` (or
    ``n_rows`` in all, split in the training class proportions)."""
    rng = np.random.default_rng(seed)
    X = np.asarray(train.X, dtype=float)
    y = train.obs[label].to_numpy()
    parts, labels = [], []
    for c in train.obs[label].cat.categories:
        Xc = X[y == c]
        if len(Xc) == 0:
            continue
        size = len(Xc) if n_rows is None else max(1, round(n_rows * len(Xc) / len(X)))
        cov = np.cov(Xc.T) if len(Xc) > 1 else np.zeros((X.shape[1], X.shape[1]))
        parts.append(rng.multivariate_normal(Xc.mean(0), cov, size=size, method="eigh"))
        labels += [c] * size
    return _synthetic(np.vstack(parts), labels, train, label)


def _synthetic(X, labels, train, label: str):
    """An AnnData of synthetic rows ``X`` with the training data's genes and label categories."""
    import anndata as ad

    obs = pd.DataFrame({label: pd.Categorical(labels, categories=train.obs[label].cat.categories)})
    obs.index = obs.index.astype(str)
    return ad.AnnData(X, obs=obs, var=train.var.copy())


def _smartnoise_rows(python: str, train, label: str, eps_grid, seeds: int):
    """smartnoise-synth MST in another interpreter (``_smartnoise_mst.py``); returns synthetic AnnDatas or a reason."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "train.npz"
        np.savez(src, X=np.asarray(train.X, dtype=float), y=train.obs[label].cat.codes.to_numpy())
        for eps in eps_grid:
            if eps is None:
                continue
            for seed in range(seeds):
                dst = Path(tmp) / f"syn_{eps}_{seed}.npz"
                cmd = [python, str(Path(__file__).with_name("_smartnoise_mst.py")), str(src), str(dst), str(eps)]
                t0 = time.perf_counter()
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                except OSError as err:
                    return f"smartnoise MST not run: {err}"
                secs = time.perf_counter() - t0
                if proc.returncode != 0:
                    return f"smartnoise MST failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
                res = np.load(dst)
                labels = train.obs[label].cat.categories[res["y"]]
                out[(eps, seed)] = (_synthetic(res["X"], labels, train, label), secs)
    return out


def _row(res, name, method, eps, seed, secs, column="value"):
    def pick(metric, pattern, column=column):
        rows = res[(res["metric"] == metric) & res["variant"].astype(str).str.fullmatch(pattern)]
        return float(rows[column].mean()) if len(rows) and column in rows else float("nan")

    return {
        "data": name,
        "method": method,
        "eps": "none" if eps is None else eps,
        "seed": seed,
        "acc": pick("ml_efficacy", "accuracy"),
        "bacc": pick("ml_efficacy", "balanced_accuracy"),
        "overlap": pick("histogram_overlap", "bins=25"),
        "de_tpr": pick("de_genes", "tpr"),
        "de_fpr": pick("de_genes", "fpr"),
        "coex_recall": pick("coexpression", r"r>0\.7:recall"),
        # what as many edges on random gene pairs would recall (the synthetic set's; not given for the holdout row)
        "coex_recall_chance": pick("coexpression", r"r>0\.7:recall", column="chance")
        if column == "value"
        else float("nan"),
        "coex_precision": pick("coexpression", r"r>0\.7:precision"),
        "seconds": secs,
    }


def _print(row):
    print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--eps", nargs="+", default=EPS)
    ap.add_argument("--seeds", type=int, default=1, help="generation seeds per private cell")
    ap.add_argument("--genes", type=int, default=500)
    ap.add_argument("--out", default=None, help="CSV file for the per-run rows")
    ap.add_argument("--n-syn", type=int, default=None,
                    help="synthetic rows per fit (default: the DP class counts, about the training size)")  # fmt: skip
    ap.add_argument(
        "--smartnoise-python",
        default=os.environ.get("SMARTNOISE_PYTHON"),
        help="python of an environment with smartnoise-synth (runs its MST beside ours)",
    )
    args = ap.parse_args()
    sd.settings.progress = False
    eps_grid = [None if e.lower() == "none" else float(e) for e in args.eps]
    print(f"data={args.data} methods={args.methods} eps={args.eps} seeds={args.seeds} genes={args.genes} "
          f"n_syn={args.n_syn or 'DP class counts'}")  # fmt: skip
    print(f"python {sys.version.split()[0]}, scdpsynth {sd.__version__}")
    rows = []

    def evaluate(train, syn, hold, label):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sd.tl.evaluate(train, syn, holdout=hold, metrics=METRICS, groupby=label)

    for name in args.data:
        train, hold, label = _split(name, args.genes)
        print(f"{name}: train {train.shape}, holdout {hold.shape}, label {label}", flush=True)
        t0 = time.perf_counter()
        res = evaluate(train, _per_class_gaussian(train, label, n_rows=args.n_syn), hold, label)
        rows.append(_row(res, name, "per-class Gaussian", None, 0, time.perf_counter() - t0))
        _print(rows[-1])
        rows.append(_row(res, name, "real holdout", None, 0, float("nan"), column="reference"))
        _print(rows[-1])
        for method in args.methods:
            for eps in eps_grid:
                for seed in range(args.seeds if eps is not None else 1):
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        base, options = _method_spec(method)
                        syn = sd.tl.generate(
                            train,
                            base,
                            eps=eps,
                            **options,
                            groupby=label,
                            random_state=None if eps is not None else 0,
                            n_obs=args.n_syn,
                        )
                    secs = time.perf_counter() - t0
                    rows.append(_row(evaluate(train, syn, hold, label), name, method, eps, seed, secs))
                    _print(rows[-1])
        if args.smartnoise_python:
            sn = _smartnoise_rows(args.smartnoise_python, train, label, eps_grid, args.seeds)
            if isinstance(sn, str):
                print(sn, flush=True)
            else:
                for (eps, seed), (syn, secs) in sn.items():
                    rows.append(_row(evaluate(train, syn, hold, label), name, "smartnoise_mst", eps, seed, secs))
                    _print(rows[-1])
        else:
            print("smartnoise_mst: not run (no --smartnoise-python / SMARTNOISE_PYTHON given)", flush=True)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    summary = df.drop(columns="seed").groupby(["data", "method", "eps"], sort=False).mean().round(3)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(summary.to_string())


if __name__ == "__main__":
    main()
