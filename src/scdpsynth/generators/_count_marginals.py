"""Per-gene count marginals (Poisson, negative binomial, zero-inflated NB) from moments, with sampling and CDF tables.

Parameters are obtained by the method of moments from three per-gene statistics -- the mean ``m1 = E[X]``, the
second raw moment ``m2 = E[X^2]`` and the zero fraction ``p0 = P(X = 0)`` -- which the count generators release
with differential privacy; everything here is post-processing.

Family choice per gene (scDesign2 picks among the same three families):

* Poisson if the variance ``v = m2 - m1^2`` is at most ``m1 * (1 + overdispersion_tol)``;
* otherwise NB with size ``r = m1^2 / (v - m1)`` (mean ``m1``, variance ``m1 + m1^2 / r``);
* ZINB if the observed zero fraction exceeds the NB zero probability ``(r / (r + m1))^r`` by more than ``zero_tol``
  and the three moment equations ``E[X] = (1 - pi) mu``, ``E[X^2] = (1 - pi)(mu + mu^2 (1 + 1/r))``,
  ``P(X = 0) = pi + (1 - pi)(r / (r + mu))^r`` have a solution with ``0 < pi < 1`` (found by bisection on ``pi``).

With ``dispersion="zeros"`` (default) the NB size of non-ZINB genes is instead solved from the mean and the zero
fraction, ``(r / (r + m1))^r = p0`` (Poisson when ``p0 <= exp(-m1) + zero_tol``): under DP the clipped second
moment is by far the noisiest statistic, while the zero fraction has a small sensitivity, and matching it keeps
the sparsity of the synthetic cells right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse, special

__all__ = [
    "CountMarginals",
    "FAMILIES",
    "LIB_EDGES",
    "TableSampler",
    "library_onehot",
    "marginals_from_moments",
    "size_factor_levels",
]

FAMILIES = ("poisson", "nb", "zinb")
POISSON, NB, ZINB = 0, 1, 2
_MIN_MEAN = 1e-8
_MAX_SIZE = 1e8
LIB_EDGES = np.linspace(1.0, 5.5, 46)  # public log10 library-size bins: 10 .. ~316k UMIs


def library_onehot(lib: np.ndarray) -> sparse.csr_matrix:
    """One-hot ``(n, len(LIB_EDGES) - 1)`` rows of each cell's ``log10`` library-size bin (clipped to the end bins).

    Each row has L2 norm 1, so per-type sums of these rows have add/remove sensitivity 1 per cell.
    """
    lib = np.asarray(lib, dtype=np.float64)
    b = np.clip(np.digitize(np.log10(np.maximum(lib, 1.0)), LIB_EDGES) - 1, 0, len(LIB_EDGES) - 2)
    return sparse.csr_matrix((np.ones(b.size), (np.arange(b.size), b)), shape=(b.size, len(LIB_EDGES) - 1))


def size_factor_levels(hist: np.ndarray, n_levels: int) -> np.ndarray:
    """``(K, n_levels)`` equally weighted size-factor levels (mean 1 per row) from per-type library histograms.

    ``hist`` (``K x (len(LIB_EDGES) - 1)``, possibly noisy) is read as piecewise uniform in ``log10`` library size
    within the public bins; level ``l`` is its quantile ``(l + 1/2) / n_levels``; levels are divided by their mean.
    Post-processing only.
    """
    p = np.maximum(np.asarray(hist, dtype=np.float64), 0.0) + 1e-9
    cdf = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)], axis=1)
    q = (np.arange(n_levels) + 0.5) / n_levels
    lv = np.array([10.0 ** np.interp(q, c, LIB_EDGES) for c in cdf])
    return lv / lv.mean(axis=1, keepdims=True)


@dataclass
class CountMarginals:
    """Arrays (any common shape) of family codes (0 Poisson, 1 NB, 2 ZINB), means ``mu`` of the count component,
    NB sizes ``r`` (inf for Poisson) and zero-inflation probabilities ``pi``.
    """

    family: np.ndarray
    mu: np.ndarray
    size: np.ndarray
    pi: np.ndarray

    def __getitem__(self, idx) -> CountMarginals:
        return CountMarginals(self.family[idx], self.mu[idx], self.size[idx], self.pi[idx])

    @property
    def mean(self) -> np.ndarray:
        return (1.0 - self.pi) * self.mu

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, *shape)`` int64 draws, independent across genes (Gamma-Poisson for NB/ZINB)."""
        shape = (n, *self.mu.shape)
        rate = np.broadcast_to(self.mu, shape)
        nb = self.family != POISSON
        if nb.any():
            size = np.where(nb, self.size, 1.0)
            gam = rng.gamma(np.broadcast_to(size, shape), 1.0, size=shape) * (self.mu / size)
            rate = np.where(nb, gam, rate)
        x = rng.poisson(rate)
        if (self.pi > 0).any():
            x[rng.random(shape) < self.pi] = 0
        return x

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """``P(X <= x)`` elementwise for integer ``x`` broadcasting against the parameters (0 for ``x < 0``)."""
        x = np.asarray(x, dtype=np.float64)
        xc = np.maximum(x, 0.0)
        pois = special.pdtr(xc, self.mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            fin = np.isfinite(self.size)
            r = np.where(fin, self.size, 1.0)
            nbp = special.betainc(r, xc + 1.0, r / (r + self.mu))
        cdf = np.where((self.family == POISSON) | ~fin, pois, nbp)
        cdf = self.pi + (1.0 - self.pi) * np.clip(cdf, 0.0, 1.0)
        return np.where(x < 0, 0.0, cdf)

    def cdf_table(self, max_count: int) -> np.ndarray:
        """``(*shape, max_count + 1)`` table of ``P(X <= x)`` for ``x = 0..max_count`` (last column set to 1)."""
        k = np.arange(max_count, dtype=np.float64)  # the pmf recurrence's steps x -> x + 1
        mu = np.maximum(self.mu[..., None], 1e-300)
        nb = np.isfinite(self.size)[..., None] & (self.family != POISSON)[..., None]
        r = np.where(nb, self.size[..., None], 1.0)
        # log pmf by its recurrence (exact up to rounding; ~50x cheaper than the incomplete beta at each x):
        #   Poisson: log p(0) = -mu; log p(x+1) - log p(x) = log(mu / (x + 1))
        #   NB(mu, r): log p(0) = r log(r / (r + mu)); log p(x+1) - log p(x) = log((x + r) / (x + 1) * mu / (r + mu))
        with np.errstate(divide="ignore", invalid="ignore"):
            log0 = np.where(nb, r * (np.log(r) - np.log(r + mu)), -mu)
            q = np.where(nb, np.log(mu) - np.log(r + mu), np.log(mu))
            steps = np.where(nb, np.log(k + r) - np.log(k + 1.0), -np.log(k + 1.0)) + q
        logp = np.concatenate([log0, log0 + np.cumsum(steps, axis=-1)], axis=-1)
        cdf = np.cumsum(np.exp(logp), axis=-1)
        cdf = np.where(self.mu[..., None] > 0, cdf, 1.0)
        cdf = self.pi[..., None] + (1.0 - self.pi[..., None]) * cdf
        cdf = np.maximum.accumulate(np.clip(cdf, 0.0, 1.0), axis=-1)
        cdf[..., -1] = 1.0
        return cdf


class TableSampler:
    """Fast sparse inverse-CDF sampler for a 1-d :class:`CountMarginals` (one entry per gene).

    Each gene's CDF is tabulated up to a support bound ``L_j`` (mean + 20 standard deviations, extended until the
    tail mass is below 1e-9, at most ``max_count``: the remaining tail mass is put on ``max_count``); the tables are
    concatenated with gene ``j`` shifted by ``2 j`` so one :func:`numpy.searchsorted` inverts all genes at once, and
    only entries with ``u > F_j(0)`` (non-zeros) are inverted. Counts are exact draws from the marginal with its
    tail beyond ``L_j`` collapsed onto ``L_j``.
    """

    def __init__(self, marg: CountMarginals, max_count: int = 4096):
        if marg.mu.ndim != 1:
            raise ValueError("TableSampler needs 1-d marginals (one entry per gene).")
        var = marg.mu + np.where(
            np.isfinite(marg.size), marg.mu**2 / np.where(np.isfinite(marg.size), marg.size, 1.0), 0
        )
        bound = np.clip(np.ceil(marg.mu + 20.0 * np.sqrt(var)) + 10, 16, max_count)
        # genes are tabulated in buckets of power-of-two support lengths (one vectorised CDF call per bucket)
        length = np.minimum(2 ** np.ceil(np.log2(bound)).astype(np.int64), max_count)
        tables: list = [None] * marg.mu.size
        todo = np.arange(marg.mu.size)
        while todo.size:
            retry = []
            for L in np.unique(length[todo]):
                genes = todo[length[todo] == L]
                t = marg[genes].cdf_table(int(L))
                short = (t[:, -2] < 1.0 - 1e-9) & (L < max_count)
                for i, j in enumerate(genes):
                    tables[j] = t[i]
                retry.extend(genes[short].tolist())
            todo = np.asarray(retry, dtype=np.int64)
            length[todo] = np.minimum(2 * length[todo], max_count)
        self.n_genes = marg.mu.size
        self.p0 = np.array([t[0] for t in tables])
        self.start = np.concatenate([[0], np.cumsum([t.size for t in tables])[:-1]])
        self.flat = np.concatenate([t + 2.0 * j for j, t in enumerate(tables)])

    def ppf(self, U: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Inverse CDF of gene ``cols[i]`` at ``U[..., i]`` (smallest x with F(x) >= u)."""
        return np.searchsorted(self.flat, U + 2.0 * cols, side="left") - self.start[cols]

    def sample(self, rng: np.random.Generator, n: int, *, fixed_cols=None, fixed_u=None) -> sparse.csr_matrix:
        """``(n, n_genes)`` CSR int32 draws; ``fixed_u[:, i]`` replaces the uniforms of gene ``fixed_cols[i]``."""
        U = rng.random((n, self.n_genes))
        if fixed_cols is not None:
            U[:, fixed_cols] = fixed_u
        rows, cols = np.nonzero(U > self.p0)
        vals = self.ppf(U[rows, cols], cols)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        # int32 values (at most max_count) and indices: half the memory of int64 for large outputs
        return sparse.csr_matrix((vals.astype(np.int32), cols.astype(np.int32), indptr), shape=(n, self.n_genes))


def marginals_from_moments(
    m1,
    m2,
    p0,
    *,
    families: tuple[str, ...] = FAMILIES,
    overdispersion_tol: float = 0.05,
    zero_tol: float = 0.02,
    dispersion: str = "zeros",
    size_factors=None,
) -> CountMarginals:
    """Method-of-moments marginals per gene; see the module docstring for the family rule.

    Inputs may be noisy (DP) estimates: they are first made consistent (``m1 >= 0``, ``m2 >= m1 + m1^2`` is *not*
    forced -- underdispersion just gives Poisson --, ``0 <= p0 <= 1``).

    ``size_factors``: optional array of equally weighted per-cell size-factor levels ``s_l`` (mean 1), shape
    ``(*prefix, L)`` broadcasting against ``m1[..., None]`` (e.g. ``(K, 1, L)`` for ``K x d`` moments). The returned
    marginals are then those of a cell with ``s = 1``: a cell with factor ``s`` draws from the same family with mean
    ``s * mu`` (scDesign2's sequencing depth). Dispersion is estimated net of the size-factor variance: with
    ``X | s ~ NB(s mu, r)``, ``Var X = mu + E[s^2] mu^2 / r + (E[s^2] - 1) mu^2`` and
    ``P(X = 0) = E_s[(r / (r + s mu))^r]``. ZINB genes keep the factor-free solution (their zeros are modelled by
    ``pi``).
    """
    if dispersion not in ("zeros", "moments"):
        raise ValueError(f"dispersion must be 'zeros' or 'moments', got {dispersion!r}.")
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families!r}.")
    m1 = np.maximum(np.asarray(m1, dtype=np.float64), _MIN_MEAN)
    m2 = np.maximum(np.asarray(m2, dtype=np.float64), m1)
    p0 = np.clip(np.asarray(p0, dtype=np.float64), 0.0, 1.0)
    var = m2 - m1**2
    if size_factors is not None:
        sf = np.asarray(size_factors, dtype=np.float64)
        es2 = np.broadcast_to(np.mean(sf**2, axis=-1), m1.shape)
        sf_var = (es2 - 1.0) * m1**2  # between-cell variance the size factors explain
    else:
        sf, es2, sf_var = None, np.ones_like(m1), np.zeros_like(m1)
    shape = m1.shape
    family = np.full(shape, POISSON, dtype=np.int64)
    size = np.full(shape, np.inf)
    pi = np.zeros(shape)
    mu = m1.copy()

    over = var - sf_var > m1 * (1.0 + overdispersion_tol)
    if "poisson" not in families:
        over = np.ones(shape, dtype=bool)
    if "nb" in families or "zinb" in families:
        excess = np.maximum(var - m1 - sf_var, m1 * overdispersion_tol)
        r_nb = np.clip(es2 * m1**2 / excess, 1e-3, _MAX_SIZE)
        family[over] = NB
        size[over] = r_nb[over]
        if "zinb" in families:
            p0_nb = _nb_zero_prob(r_nb, m1, sf)
            cand = over & (p0 > p0_nb + zero_tol)
            if "nb" not in families:
                cand = over
            if cand.any():
                ok, pi_c, mu_c, r_c = _solve_zinb(m1[cand], m2[cand], p0[cand])
                idx = np.flatnonzero(cand.ravel())[ok]
                family.flat[idx] = ZINB
                pi.flat[idx] = pi_c[ok]
                mu.flat[idx] = mu_c[ok]
                size.flat[idx] = r_c[ok]
        if dispersion == "zeros" and "nb" in families:
            # NB size from (mean, zero fraction) for every gene not fitted as ZINB
            excess_zeros = p0 > _nb_zero_prob(np.full(shape, np.inf), m1, sf) + zero_tol
            nb = (family != ZINB) & (excess_zeros if "poisson" in families else True)
            family[(family != ZINB) & ~nb] = POISSON
            size[family == POISSON] = np.inf
            family[nb] = NB
            sf_nb = None if sf is None else np.broadcast_to(sf, (*shape, sf.shape[-1]))[nb]
            size[nb] = _size_from_zeros(m1[nb], p0[nb], sf_nb)
            mu[nb] = m1[nb]
        if "nb" not in families:
            # ZINB-only request: genes without a ZINB solution keep the NB fit with pi = 0 (a ZINB with pi = 0)
            family[family == NB] = ZINB
    return CountMarginals(family, mu, size, pi)


def _nb_zero_prob(r, m1, sf=None):
    """``P(X = 0)`` of ``NB(mean m1, size r)`` (Poisson where ``r`` is inf), averaged over size-factor levels ``sf``."""
    r = np.asarray(r, dtype=np.float64)
    if sf is None:
        fin = np.isfinite(r)
        rr = np.where(fin, r, 1.0)
        return np.where(fin, np.exp(rr * (np.log(rr) - np.log(rr + m1))), np.exp(-m1))
    mu = m1[..., None] * sf
    fin = np.isfinite(r)[..., None]
    rr = np.where(fin, r[..., None], 1.0)
    return np.mean(np.where(fin, np.exp(rr * (np.log(rr) - np.log(rr + mu))), np.exp(-mu)), axis=-1)


def _size_from_zeros(m1, p0, sf=None, n_iter: int = 60):
    """NB size ``r`` with ``(r / (r + m1))^r = p0`` (bisection on ``log r``; ``r log(r / (r + m1))`` decreases from 0
    to ``-m1``, so ``p0`` outside ``(exp(-m1), 1)`` gives the nearest end of ``[1e-3, 1e8]``). With size-factor levels
    ``sf`` (``(n, L)``, one row per entry of ``m1``) the zero probability is averaged over them (still decreasing in
    ``r``).
    """
    target = np.log(np.clip(p0, 1e-300, 1.0))
    lo, hi = np.full(m1.shape, np.log(1e-3)), np.full(m1.shape, np.log(_MAX_SIZE))
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        r = np.exp(mid)
        if sf is None:
            too_many_zeros = r * (np.log(r) - np.log(r + m1)) > target  # p0(r) > p0: r must grow
        else:
            too_many_zeros = np.log(np.maximum(_nb_zero_prob(r, m1, sf), 1e-300)) > target
        lo = np.where(too_many_zeros, mid, lo)
        hi = np.where(too_many_zeros, hi, mid)
    return np.exp(0.5 * (lo + hi))


def _solve_zinb(m1, m2, p0, n_iter: int = 60):
    """Bisection on ``pi`` for the ZINB moment equations. Returns ``(ok, pi, mu, r)``."""
    # r stays positive while (m2 - m1)(1 - pi) > m1^2, i.e. pi < pi_max
    pi_max = np.clip(1.0 - m1**2 / np.maximum(m2 - m1, 1e-300), 0.0, 1.0 - 1e-9)

    def f(pi):
        mu = m1 / (1.0 - pi)
        denom = np.maximum((m2 - m1) / (1.0 - pi) - mu**2, 1e-300)
        r = np.clip(mu**2 / denom, 1e-3, _MAX_SIZE)
        return pi + (1.0 - pi) * np.exp(r * (np.log(r) - np.log(r + mu))) - p0, mu, r

    lo = np.zeros_like(m1)
    hi = pi_max * (1.0 - 1e-9)
    ok = (f(lo)[0] < 0) & (f(hi)[0] > 0) & (pi_max > 0)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        neg = f(mid)[0] < 0
        lo = np.where(neg, mid, lo)
        hi = np.where(neg, hi, mid)
    pi = 0.5 * (lo + hi)
    _, mu, r = f(pi)
    return ok, pi, mu, r
