"""Benchmark the DP count generators (copula, vine_nmf) on the full Kang PBMC data (12,261 cells x 1,287 genes).

Prints, per method / privacy unit / eps: fit time, time to sample as many cells as the data (12,261), their sum,
the time to sample 100,000 synthetic cells, and checks that the output is an integer CSR matrix. With ``--metrics``
also prints single-cell fidelity/utility (SCC, LISI mixing, RF ROC-AUC on an 80/20 stratified real holdout).

Usage::

    python benchmarks/bench_count_generators.py [--metrics] [--n-large 100000] [--methods copula vine_nmf]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import sparse

import scdpsynth as sd
from scdpsynth.generators import registry
from scdpsynth.metrics._base import EvalData
from scdpsynth.metrics.single_cell import celltype_rf_auc, lisi, scc


def _arrays(adata):
    y = adata.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)
    donors = adata.obs["donor_id"].cat.codes.to_numpy().astype(np.int64)
    return sparse.csr_matrix(adata.X), y, donors, len(adata.obs["cell_type"].cat.categories)


def _large_counts(y: np.ndarray, K: int, n: int) -> np.ndarray:
    share = np.bincount(y, minlength=K) / y.size * n
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(-(share - counts))[: n - counts.sum()]] += 1
    return counts


def timing(adata, methods, eps_list, n_large: int) -> pd.DataFrame:
    X, y, donors, K = _arrays(adata)
    rows = []
    for method in methods:
        cls = registry.get(method)
        for unit in ("sample", "donor"):
            for eps in eps_list:
                gen = cls(eps=eps, unit=unit, random_state=0)
                t0 = time.perf_counter()
                gen.fit(X, y, n_classes=K, donors=donors if unit == "donor" else None)
                t1 = time.perf_counter()
                S = gen.sample(np.bincount(y, minlength=K))
                t2 = time.perf_counter()
                L = gen.sample(_large_counts(y, K, n_large))
                t3 = time.perf_counter()
                ok = sparse.isspmatrix_csr(S) and np.issubdtype(S.dtype, np.integer) and S.data.min() >= 0
                rows.append(
                    {
                        "method": method,
                        "unit": unit,
                        "eps": eps,
                        "fit_s": t1 - t0,
                        "sample_12k_s": t2 - t1,
                        "fit+sample_12k_s": t2 - t0,
                        f"sample_{n_large // 1000}k_s": t3 - t2,
                        "int_csr": ok and sparse.isspmatrix_csr(L) and np.issubdtype(L.dtype, np.integer),
                        "density_syn/real": S.nnz / S.shape[0] / (X.nnz / X.shape[0]),
                        "eps_spent": gen.privacy_report()["eps_spent"],
                    }
                )
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.3f"))
    print("\n" + pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))
    # end to end through the AnnData layer
    for method in methods:
        t0 = time.perf_counter()
        sd.tl.generate(adata, method, eps=1.0, groupby="cell_type", donor_key="donor_id", random_state=0)
        print(f"tl.generate({method!r}, eps=1, unit='donor') end to end: {time.perf_counter() - t0:.2f} s")
    return pd.DataFrame(rows)


def _eval(X, y, classes):
    X = sparse.csr_matrix(X, dtype=np.float64)
    lib = np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1.0)
    X = sparse.diags(1e4 / lib) @ X
    X.data = np.log1p(X.data)
    return EvalData(X=X.toarray(), y=y, classes=classes)


def metrics(adata, methods, settings) -> pd.DataFrame:
    train, hold = sd.pp.train_holdout_split(adata, stratify="cell_type", random_state=0)
    X, y, donors, K = _arrays(train)
    classes = [str(c) for c in adata.obs["cell_type"].cat.categories]
    R = _eval(X, y, classes)
    H = _eval(hold.X, hold.obs["cell_type"].cat.codes.to_numpy(), classes)
    # real holdout as "synthetic" data: the ceiling for SCC / LISI (its celltype_rf_auc would train and test on the
    # holdout, so it is blanked; celltype_rf_auc_real, train-real-test-real, is the reference for every row)
    rows = [{"method": "real holdout", "unit": "-", "eps": np.nan, **_scores(R, H, H), "celltype_rf_auc": np.nan}]
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))
    for method in methods:
        for unit, eps in settings:
            gen = registry.get(method)(eps=eps, unit=unit, random_state=0)
            gen.fit(X, y, n_classes=K, donors=donors if unit == "donor" else None)
            counts = np.bincount(y, minlength=K)
            S = _eval(gen.sample(counts), np.repeat(np.arange(K), counts), classes)
            rows.append({"method": method, "unit": unit, "eps": eps, **_scores(R, S, H)})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=False, float_format="%.3f"))
    return pd.DataFrame(rows)


def _scores(R, S, H) -> dict:
    a = scc(R, S)
    a = a[a.group == "all"].set_index("variant")["value"]
    b = lisi(R, S)
    c = celltype_rf_auc(R, S, holdout=H)
    c = c[c.group == "all"].iloc[0]
    return {
        "scc_mean": a["mean"],
        "scc_corr": a["correlation"],
        "lisi": b.loc[b.group == "all", "value"].item(),
        "celltype_rf_auc": c["value"],
        "celltype_rf_auc_real": c["reference"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["copula", "vine_nmf"])
    p.add_argument("--eps", nargs="+", type=float, default=[1.0, 10.0])
    p.add_argument("--n-large", type=int, default=100_000)
    p.add_argument("--metrics", action="store_true", help="also print SCC / LISI / RF ROC-AUC (slow: minutes)")
    args = p.parse_args()
    adata = sd.datasets.kang_pbmc()
    print(f"data: {adata.n_obs} cells x {adata.n_vars} genes, {adata.obs['donor_id'].nunique()} donors")
    timing(adata, args.methods, args.eps, args.n_large)
    if args.metrics:
        settings = [("sample", None), ("sample", 10.0), ("sample", 1.0), ("donor", 10.0), ("donor", 100.0)]
        print("\nfidelity / utility (train 80% -> synthetic; real 20% holdout):")
        table = metrics(adata, args.methods, settings)
        print("\n" + table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
