"""A simulated multi-donor single-cell cohort for scale and donor-level studies (not evidence of realism)."""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["simulate_cohort"]


@cache
def _params() -> dict:
    with files("scdpsynth.datasets").joinpath("data/cohort_params.npz").open("rb") as fh:
        z = np.load(fh)
        return {k: z[k] for k in z.files}


def _gene_rows(n_genes: int, n_real: int, rng) -> tuple[np.ndarray, bool]:
    """Indices of the parameter rows used for ``n_genes`` genes (real genes first; extra genes resample them)."""
    if n_genes <= n_real:
        return np.arange(n_genes), False
    return np.r_[np.arange(n_real), rng.integers(0, n_real, size=n_genes - n_real)], True


def simulate_cohort(
    n_donors: int = 100,
    cells_per_donor: int = 1300,
    n_genes: int = 1287,
    *,
    random_state: int = 0,
    path: str | os.PathLike | None = None,
):
    """Simulate a multi-donor PBMC cohort of raw counts, with donor effects of the size seen in Kang 2018.

    **Simulated data.** Use it for scale and donor-level studies (how long a fit or an evaluation takes, how donor-level
    privacy behaves with hundreds of donors), never as evidence that synthetic data look real: the generating model
    is a per-cell-type negative binomial with independent genes, which every count generator in this package can fit
    exactly.

    The model's parameters were fitted once, non-privately, to the 12,261 control PBMCs of Kang et al. 2018
    (:func:`kang_pbmc`: 8 donors, 8 cell types, 1,287 genes; ``benchmarks/fit_cohort_params.py``) and ship with the
    package. For each donor ``d``:

    - cell-type shares ``p_d ~ Dirichlet(alpha * p)`` (``p`` the pooled Kang shares, ``alpha`` fitted to the spread
      of Kang's 8 donors' compositions), cells per type ``~ Multinomial(cells_per_donor, p_d)``;
    - a donor shift of every gene's log expression ``delta_dg ~ N(0, sd_g^2)`` (``sd_g`` the between-donor sd of
      that gene in Kang, net of sampling noise; median 0.11), shared by the donor's cell types;
    - per cell of type ``t``: library size ``L ~ LogNormal(mu_t, sd_t)`` and counts
      ``x_g ~ NB(mean = L q_tg exp(delta_dg) / Z, size = r_tg)`` (``q_t`` the type's gene profile, ``Z`` renormalises
      the shifted profile, ``r`` the fitted NB size).

    What is preserved: per-type mean profiles, per-gene dispersion, library-size distributions, cell-type
    composition and its between-donor variation, and between-donor expression shifts. What is not: gene-gene
    correlation beyond the shared library size, conditions (all cells are unstimulated), rare-cell structure.
    With ``n_genes`` above 1,287 the extra genes (``sim-gene-<i>``) reuse the parameters of randomly drawn real
    genes (independently shifted per donor); below it the first ``n_genes`` Kang genes are used.

    Parameters
    ----------
    n_donors, cells_per_donor
        Cohort size: ``n_donors * cells_per_donor`` cells.
    n_genes
        Number of genes.
    random_state
        Seed (the data are public simulations: a fixed default is fine).
    path
        If given, also write the cohort to this ``.h5ad`` file (for ``sc.read_h5ad(path, backed="r")``).

    Returns
    -------
    AnnData with integer CSR counts (``int32``), ``obs``: ``cell_type``, ``donor_id`` (categorical), ``var``: gene
    names, ``uns["simulated"]`` describing the model.
    """
    import anndata as ad

    for name, v in (("n_donors", n_donors), ("cells_per_donor", cells_per_donor), ("n_genes", n_genes)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    P = _params()
    rng = np.random.default_rng(random_state)
    n_real = P["genes"].size
    rows, extra = _gene_rows(int(n_genes), n_real, rng)
    genes = list(P["genes"][rows[: min(n_genes, n_real)]]) + [f"sim-gene-{i}" for i in range(max(0, n_genes - n_real))]
    profile = P["profile"][:, rows].astype(np.float64)
    profile /= profile.sum(axis=1, keepdims=True)
    size = P["dispersion"][:, rows].astype(np.float64)
    donor_sd = P["donor_sd"][rows].astype(np.float64)
    share, alpha = P["type_share"], float(P["concentration"])
    lib_mu, lib_sd = P["lib_mu"], P["lib_sd"]

    blocks, type_codes, donor_codes = [], [], []
    for d in range(int(n_donors)):
        p_d = rng.dirichlet(alpha * share)
        n_t = rng.multinomial(int(cells_per_donor), p_d)
        shift = np.exp(rng.normal(0.0, donor_sd))
        for k in np.flatnonzero(n_t):
            q = profile[k] * shift
            q /= q.sum()
            lib = np.exp(rng.normal(lib_mu[k], lib_sd[k], size=n_t[k]))
            mean = lib[:, None] * q[None, :]
            r = size[k][None, :]
            lam = rng.gamma(r, mean / r)  # gamma-Poisson = NB(mean, size r)
            counts = rng.poisson(lam).astype(np.int32)
            blocks.append(sparse.csr_matrix(counts))
            type_codes.append(np.full(n_t[k], k, dtype=np.int16))
            donor_codes.append(np.full(n_t[k], d, dtype=np.int32))
    X = sparse.vstack(blocks, format="csr", dtype=np.int32)
    width = len(str(int(n_donors) - 1))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(np.concatenate(type_codes), categories=list(P["cell_types"])),
            "donor_id": pd.Categorical.from_codes(
                np.concatenate(donor_codes), categories=[f"D{i:0{width}d}" for i in range(int(n_donors))]
            ),
        },
        index=pd.Index([f"cell-{i}" for i in range(X.shape[0])]),
    )
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    adata.uns["simulated"] = {
        "model": "per-cell-type NB, independent genes, donor composition and expression shifts",
        "fitted_to": "Kang 2018 control PBMCs (kang_pbmc), non-privately",
        "n_donors": int(n_donors),
        "cells_per_donor": int(cells_per_donor),
        "extra_genes_resampled": bool(extra),
        "random_state": int(random_state),
    }
    if path is not None:
        adata.write_h5ad(path)
    return adata
