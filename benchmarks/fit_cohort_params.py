"""Fit the parameters of ``sd.datasets.simulate_cohort`` to the Kang PBMC data (run once; the result ships).

Non-private, on ``sd.datasets.kang_pbmc()`` (12,261 control PBMCs, 8 donors, 8 cell types, 1,287 genes). Writes
``src/scdpsynth/datasets/data/cohort_params.npz`` with

- ``genes`` (1,287 names), ``cell_types`` (8 names);
- ``type_share`` (8,): pooled cell-type shares; ``concentration``: Dirichlet concentration of the donors'
  cell-type compositions around ``type_share`` (method of moments over the 8 donors);
- ``profile`` (8 x G): per-type share of a cell's counts going to each gene (pooled over donors);
- ``dispersion`` (8 x G): NB size per type and gene (method of moments on depth-normalised counts, net of the
  library-size variance; large = Poisson);
- ``lib_mu``, ``lib_sd`` (8,): mean and sd of log library size per type;
- ``donor_sd`` (G,): between-donor sd of a gene's log expression (pooled over types, net of sampling noise).

Usage::

    python benchmarks/fit_cohort_params.py [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import sparse

import scdpsynth as sd

OUT = Path(__file__).resolve().parents[1] / "src" / "scdpsynth" / "datasets" / "data" / "cohort_params.npz"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    a = sd.datasets.kang_pbmc(args.data_dir)
    X = sparse.csr_matrix(a.X).astype(np.float64)
    types = a.obs["cell_type"].astype("category")
    donors = a.obs["donor_id"].astype(str).astype("category")
    t, d = types.cat.codes.to_numpy(), donors.cat.codes.to_numpy()
    T, D, G = len(types.cat.categories), len(donors.cat.categories), X.shape[1]
    lib = np.asarray(X.sum(axis=1)).ravel()

    # cell-type composition: pooled shares and a Dirichlet concentration from the donors' spread
    comp = np.zeros((D, T))
    np.add.at(comp, (d, t), 1.0)
    n_d = comp.sum(axis=1)
    comp /= n_d[:, None]
    share = np.bincount(t, minlength=T) / len(t)
    # Var(p_k) = p_k (1 - p_k) / (alpha + 1), less the multinomial noise p_k (1 - p_k) / n_d
    excess = comp.var(axis=0, ddof=1) - share * (1 - share) * np.mean(1.0 / n_d)
    ratio = np.clip(excess / np.maximum(share * (1 - share), 1e-12), 1e-4, None)
    concentration = float(np.median(1.0 / ratio - 1.0))

    profile = np.zeros((T, G))
    dispersion = np.zeros((T, G))
    lib_mu, lib_sd = np.zeros(T), np.zeros(T)
    for k in range(T):
        rows = t == k
        Xk = X[rows]
        lk = lib[rows]
        lib_mu[k], lib_sd[k] = np.log(lk).mean(), np.log(lk).std(ddof=1)
        profile[k] = np.asarray(Xk.sum(axis=0)).ravel() / lk.sum()
        # NB moments of counts given the cell's depth: E[x] = s q, Var[x] = s q + (s q)^2 / r
        s = lk
        m = profile[k][None, :]
        e2 = np.asarray(Xk.multiply(Xk).sum(axis=0)).ravel()
        ex = np.asarray(Xk.sum(axis=0)).ravel()
        sum_s2 = (s**2).sum()
        # sum_c (x^2 - x) = sum_c (s q)^2 (1 + 1/r)  =>  1/r = sum (x^2 - x) / (q^2 sum s^2) - 1
        inv_r = (e2 - ex) / np.maximum(m.ravel() ** 2 * sum_s2, 1e-300) - 1.0
        dispersion[k] = np.where(inv_r > 1e-3, 1.0 / np.maximum(inv_r, 1e-3), 1e3)
    profile = np.maximum(profile, 1e-9)
    profile /= profile.sum(axis=1, keepdims=True)

    # between-donor sd of log expression: per (type, donor) pseudobulk log shares, variance over donors net of the
    # Poisson noise of the pseudobulk, pooled over types with enough cells
    logs, noise = [], []
    for k in range(T):
        for j in range(D):
            rows = (t == k) & (d == j)
            if rows.sum() < 30:
                continue
            tot = np.asarray(X[rows].sum(axis=0)).ravel()
            N = lib[rows].sum()
            logs.append((k, np.log((tot + 0.5) / N) - np.log(profile[k])))
            noise.append((k, 1.0 / (tot + 0.5)))
    dev = np.array([v for _, v in logs])
    var_noise = np.array([v for _, v in noise])
    donor_var = np.maximum(np.mean(dev**2, axis=0) - np.mean(var_noise, axis=0), 0.0)
    donor_sd = np.sqrt(donor_var)
    np.savez_compressed(
        OUT,
        genes=np.asarray(a.var_names, dtype=str),
        cell_types=np.asarray(types.cat.categories, dtype=str),
        type_share=share,
        concentration=concentration,
        profile=profile.astype(np.float32),
        dispersion=dispersion.astype(np.float32),
        lib_mu=lib_mu,
        lib_sd=lib_sd,
        donor_sd=donor_sd.astype(np.float32),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB): {T} types, {G} genes, {D} donors; concentration "
          f"{concentration:.1f}, median donor sd {np.median(donor_sd):.3f}, lib_mu {np.round(lib_mu, 2)}")  # fmt: skip


if __name__ == "__main__":
    main()
