"""The CAMDA Health Privacy Challenge single-cell metrics, as the challenge kit defines them (AnnData-free).

Definitions follow the kit (PMBio/Health-Privacy-Challenge, ``src/evaluation/utils/sc_metrics.py``); every metric
first runs the kit's preprocessing (:func:`scdpsynth.metrics._camda_prep.prepare_pair`: cell/gene filters, shared
genes, ``normalize_total(1e4)`` + ``log1p``, 5,000 seurat HVGs chosen on real and synthetic combined):

===========================  ======================================================================================
``camda_scc``                Spearman correlation of the per-gene mean vectors (real vs synthetic); higher better
``camda_pcc``                Pearson correlation of the same vectors; higher better
``camda_mmd``                biased RBF-kernel MMD (gamma 1) on 50 PCs of the combined cells (<= 20,000 per side);
                             lower better
``camda_ilisi``              scib's scaled graph iLISI, batch = source, PCA 100 + UMAP kNN graph (k=10); in [0, 1],
                             higher better
``camda_ari``                ARI of Leiden clusters of the combined kNN graph: real vs synthetic (paired cells) and
                             cell type vs cluster; higher better
``camda_emd``                mean over HVGs of the 1-D Wasserstein distance; lower better
``camda_corr_of_corr``       Pearson between the upper triangles of the gene-gene Spearman matrices; higher better
``camda_discriminator_auc``  ROC-AUC of a random forest (1,000 trees, depth 5) telling real from synthetic on a
                             75/25 split after ComBat (batch = source); 0.5 ideal
===========================  ======================================================================================

Which cells are compared
    ``value``: the real training cells (``real``) against the synthetic cells; ``reference``: the same real cells
    against the real holdout (cells the generator never saw) in place of the synthetic ones; NaN without a holdout.
    Both comparisons use the same number of cells: ``n = min(n_syn, n_holdout)`` (``n_syn`` without a holdout), and
    ``real`` is subsampled to ``min(n_real, n)`` so the two sources are balanced as in the kit (whose real test set
    and synthetic set have the same size); the larger sets are subsampled uniformly without replacement, once per
    call, with the same real subsample for value and reference. Subsampling by ``max_cells`` (default none) and the
    MMD's own 20,000-cell cap are recorded in the ``n_cells`` column (cells per side actually used).

Deviations from the kit, all deliberate and small: HVG selection, ComBat, PCA and the kNN graph are our own
array code (checked against scanpy / scib in the tests); PCA uses sklearn's randomized solver; kNN is exact
(sklearn) up to 50,000 cells, pynndescent beyond; Leiden stands in for Louvain; MMD defaults to the log-normalised
HVGs (the issue's definition; the kit's code projects raw HVG counts: ``on="counts"``); the real-vs-synthetic ARI
pairs cells of the same cell type (the kit pairs row ``i`` of the test set with row ``i`` of synthetic data
generated for that row's cell type); the kit's ``ilisi_graph`` uses ``k0=90`` graph neighbours, here capped at
``n - 1`` for small inputs.

Results are cached per (inputs, settings) for the last few calls, so the eight metrics of one ``tl.evaluate``
call share the preprocessing, PCA and graph; :func:`clear_cache` empties it.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict

import numpy as np
from scipy import sparse, stats

from ._base import EvalData, tidy
from ._camda_prep import CamdaPair, combat, is_counts, prepare_pair

logger = logging.getLogger("scdpsynth")

__all__ = [
    "CAMDA_METRICS",
    "camda_ari",
    "camda_corr_of_corr",
    "camda_discriminator_auc",
    "camda_emd",
    "camda_ilisi",
    "camda_mmd",
    "camda_pcc",
    "camda_scc",
    "clear_cache",
    "graph_lisi",
    "mmd_rbf",
    "umap_connectivities",
]

CAMDA_METRICS = [
    "camda_scc",
    "camda_pcc",
    "camda_mmd",
    "camda_ilisi",
    "camda_ari",
    "camda_emd",
    "camda_corr_of_corr",
    "camda_discriminator_auc",
]

# --------------------------------------------------------------------------------------------------------------------
# graph pieces: UMAP connectivities (scanpy's method="umap") and scib's graph LISI


def umap_connectivities(knn_dist: np.ndarray, knn_idx: np.ndarray) -> sparse.csr_matrix:
    """UMAP fuzzy-simplicial-set connectivities of a kNN graph (what ``sc.pp.neighbors(method="umap")`` stores).

    ``knn_dist`` / ``knn_idx`` are (n, k) with each point itself in column 0. Per point: ``rho`` = distance to the
    nearest other point, ``sigma`` by bisection so that ``sum_j exp(-max(d_j - rho, 0) / sigma) = log2(k)`` over
    the non-self neighbours (floored at 1e-3 of the mean neighbour distance); edge weights
    ``exp(-(d - rho) / sigma)`` (1 for ``d <= rho``); symmetrised by the fuzzy union ``W + W^T - W * W^T``.
    """
    d = np.asarray(knn_dist, dtype=np.float64)
    idx = np.asarray(knn_idx, dtype=np.int64)
    n, k = d.shape
    target = np.log2(k)
    pos = np.where(d > 0, d, np.inf)
    rho = pos.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    others = d[:, 1:]
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(64):
        a = np.flatnonzero(active)
        if a.size == 0:
            break
        gap = others[a] - rho[a, None]
        psum = np.where(gap > 0, np.exp(-gap / mid[a, None]), 1.0).sum(axis=1)
        done = np.abs(psum - target) < 1e-5
        high = psum > target
        hi[a] = np.where(high & ~done, mid[a], hi[a])
        lo[a] = np.where(~high & ~done, mid[a], lo[a])
        new = np.where(high, (lo[a] + hi[a]) / 2, np.where(np.isinf(hi[a]), mid[a] * 2, (lo[a] + hi[a]) / 2))
        mid[a] = np.where(done, mid[a], new)
        active[a[done]] = False
    floor = 1e-3 * np.where(rho > 0, d.mean(axis=1), d.mean())
    sigma = np.maximum(mid, floor)
    gap = d - rho[:, None]
    with np.errstate(divide="ignore", over="ignore"):
        w = np.where((gap <= 0) | (sigma[:, None] == 0), 1.0, np.exp(-gap / sigma[:, None]))
    w[idx == np.arange(n)[:, None]] = 0.0
    W = sparse.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    Wt = W.T.tocsr()
    G = (W + Wt - W.multiply(Wt)).tocsr()
    G.eliminate_zeros()
    return G


def _maybe_njit(fn):
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba comes with scanpy
        return fn
    return njit(cache=True)(fn)


def _k_shortest_py(indptr, indices, weights, k, out_idx, out_dist):  # pragma: no cover - compiled by numba
    n = indptr.size - 1
    best = np.full(n, np.inf)
    done = np.zeros(n, dtype=np.bool_)
    touched = np.empty(n, dtype=np.int64)
    for s in range(n):
        nt = 0
        heap = [(0.0, s)]
        best[s] = 0.0
        touched[nt] = s
        nt += 1
        found = 0
        while len(heap) > 0 and found < k:
            du, u = heapq.heappop(heap)
            if done[u] or du > best[u]:
                continue
            done[u] = True
            if u != s:
                out_idx[s, found] = u
                out_dist[s, found] = du
                found += 1
            for p in range(indptr[u], indptr[u + 1]):
                v = indices[p]
                nd = du + weights[p]
                if nd < best[v]:
                    if best[v] == np.inf:
                        touched[nt] = v
                        nt += 1
                    best[v] = nd
                    heapq.heappush(heap, (nd, v))
        for t in range(nt):
            best[touched[t]] = np.inf
            done[touched[t]] = False


_k_shortest = _maybe_njit(_k_shortest_py)


def graph_k_shortest(G: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest nodes of every node by shortest-path length (edge length = edge weight), self excluded.

    As scib's ``knn_graph`` helper for ``lisi_graph`` (which takes the connectivities themselves as lengths).
    Returns ``(idx, dist)`` of shape (n, k); nodes with fewer than ``k`` reachable nodes are padded with -1 / NaN.
    """
    G = sparse.csr_matrix(G)
    n = G.shape[0]
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_dist = np.full((n, k), np.nan)
    _k_shortest(G.indptr.astype(np.int64), G.indices.astype(np.int64), G.data.astype(np.float64), int(k),
                out_idx, out_dist)  # fmt: skip
    return out_idx, out_dist


def _simpson(dist: np.ndarray, nb_codes: np.ndarray, n_codes: int, perplexity: float, tol: float = 1e-5):
    """Simpson index per row of scib's ``compute_simpson_index_graph`` (vectorised over rows).

    Gaussian weights ``exp(-beta * d)``; ``beta`` starts at 1 and is doubled / halved / bisected (at most 50 steps)
    until the entropy is within ``tol`` of ``log(perplexity)``. Rows whose weights underflow (entropy 0) get NaN
    (scib writes -1 there).
    """
    n = dist.shape[0]
    log_u = np.log(perplexity)

    def hbeta(D, beta):
        P = np.exp(-D * beta[:, None])
        sP = P.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            H = np.where(sP > 0, np.log(sP) + beta * (D * P).sum(axis=1) / sP, 0.0)
            P = np.where(sP[:, None] > 0, P / sP[:, None], 0.0)
        return H, P

    beta = np.ones(n)
    bmin, bmax = np.full(n, -np.inf), np.full(n, np.inf)
    H, P = hbeta(dist, beta)
    active = np.abs(H - log_u) > tol
    for _ in range(50):
        a = np.flatnonzero(active)
        if a.size == 0:
            break
        up = H[a] - log_u > 0
        bmin[a] = np.where(up, beta[a], bmin[a])
        bmax[a] = np.where(up, bmax[a], beta[a])
        beta[a] = np.where(
            up,
            np.where(np.isinf(bmax[a]), beta[a] * 2, (beta[a] + bmax[a]) / 2),
            np.where(np.isinf(bmin[a]), beta[a] / 2, (beta[a] + bmin[a]) / 2),
        )
        H[a], P[a] = hbeta(dist[a], beta[a])
        active[a] = np.abs(H[a] - log_u) > tol
    simpson = np.zeros(n)
    for b in range(n_codes):
        simpson += (P * (nb_codes == b)).sum(axis=1) ** 2
    simpson[H == 0] = np.nan
    return simpson


def graph_lisi(G: sparse.csr_matrix, labels: np.ndarray, *, k0: int = 90, perplexity: float | None = None):
    """Per-cell LISI on a graph, as scib's ``lisi_graph_py``: inverse Simpson index of ``labels`` among neighbours.

    Neighbours are the ``k0`` nearest cells by shortest path on ``G`` (:func:`graph_k_shortest`; ``k0`` capped at
    ``n - 1``), weighted by :func:`_simpson`'s perplexity-calibrated Gaussian kernel (perplexity
    ``floor(k0 / 3)`` by default). Cells with fewer than ``k0`` reachable cells get LISI 1 (as scib).
    """
    labels = np.asarray(labels)
    n = labels.size
    k0 = int(min(k0, n - 1))
    if k0 < 1:
        raise ValueError("graph_lisi needs at least 2 cells.")
    if perplexity is None or perplexity >= k0:
        perplexity = max(np.floor(k0 / 3), 1.0)
    codes, uniq = _factorize(labels)
    idx, dist = graph_k_shortest(G, k0)
    short = (idx < 0).any(axis=1)
    simpson = np.ones(n)
    ok = ~short
    if ok.any():
        simpson[ok] = _simpson(dist[ok], codes[idx[ok]], uniq.size, float(perplexity))
    return 1.0 / simpson


def _factorize(labels):
    uniq, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return codes.astype(np.int64), uniq


def scaled_ilisi(lisi: np.ndarray, n_batches: int) -> float:
    """Scib's scaling of the median iLISI: ``(median - 1) / (n_batches - 1)`` (1 = perfect mixing, 0 = none)."""
    return float((np.nanmedian(lisi) - 1.0) / (n_batches - 1.0))


# --------------------------------------------------------------------------------------------------------------------
# other building blocks


def mmd_rbf(X: np.ndarray, Y: np.ndarray, *, gamma: float = 1.0, chunk: int = 2048) -> float:
    """Biased MMD^2 with an RBF kernel: ``mean K(X,X) + mean K(Y,Y) - 2 mean K(X,Y)``, in row chunks."""
    from sklearn.metrics.pairwise import rbf_kernel

    def kmean(A, B):
        tot = 0.0
        for s in range(0, A.shape[0], chunk):
            tot += rbf_kernel(A[s : s + chunk], B, gamma=gamma).sum()
        return tot / (A.shape[0] * B.shape[0])

    return float(kmean(X, X) + kmean(Y, Y) - 2.0 * kmean(X, Y))


def _median_gamma(P: np.ndarray, rng: np.random.Generator, max_points: int = 2000) -> float:
    """``1 / median`` of the squared pairwise distances between (at most ``max_points``) rows of ``P``."""
    from scipy.spatial.distance import pdist

    sub = P if P.shape[0] <= max_points else P[rng.choice(P.shape[0], max_points, replace=False)]
    med = float(np.median(pdist(sub, "sqeuclidean")))
    return 1.0 / med if med > 0 else 1.0


def mean_wasserstein(X: np.ndarray, Y: np.ndarray, block: int = 256) -> float:
    """Mean over columns of scipy's 1-D ``wasserstein_distance`` between ``X[:, j]`` and ``Y[:, j]``.

    Equal row counts use the exact closed form ``mean |sort(x) - sort(y)|``, vectorised; otherwise scipy per column.
    """
    if X.shape[0] == Y.shape[0]:
        per_gene = []
        for j in range(0, X.shape[1], block):  # column blocks: sorted copies of a few hundred genes at a time
            sx = np.sort(X[:, j : j + block], axis=0).astype(np.float64)
            per_gene.append(np.abs(sx - np.sort(Y[:, j : j + block], axis=0)).mean(axis=0))
        return float(np.concatenate(per_gene).mean())
    return float(np.mean([stats.wasserstein_distance(X[:, j], Y[:, j]) for j in range(X.shape[1])]))


def _spearman_matrix(X: np.ndarray, block: int = 1024) -> np.ndarray:
    """Gene x gene Spearman matrix of the columns of ``X`` (NaN where a column is constant).

    Ranks are standardised column by column into one float32 copy of ``X`` and multiplied in float64 column blocks,
    so memory stays near one float32 copy plus one float64 block (``np.corrcoef`` of float64 ranks needed two float64
    copies: 4 GB for 50,000 cells x 5,000 genes).
    """
    n, g = X.shape
    Z = np.empty((n, g), dtype=np.float32)
    sd = np.empty(g)
    for j in range(g):
        r = stats.rankdata(X[:, j])
        r -= r.mean()
        sd[j] = np.sqrt(r @ r)
        Z[:, j] = r / sd[j] if sd[j] > 0 else 0.0
    C = np.empty((g, g))
    for a in range(0, g, block):
        Za = Z[:, a : a + block].astype(np.float64)
        for b in range(a, g, block):
            C[a : a + block, b : b + block] = Za.T @ Z[:, b : b + block].astype(np.float64)
            C[b : b + block, a : a + block] = C[a : a + block, b : b + block].T
    const = sd == 0
    C[const, :] = np.nan
    C[:, const] = np.nan
    return C


def corr_of_corr(X: np.ndarray, Y: np.ndarray) -> float:
    """Pearson correlation between the upper triangles of the gene-gene Spearman matrices of ``X`` and ``Y``.

    Gene pairs undefined in either matrix (a gene constant in one set) are left out (the kit would return NaN).
    """
    cx, cy = _spearman_matrix(X), _spearman_matrix(Y)
    iu = np.triu_indices(cx.shape[0], k=1)
    a, b = cx[iu], cy[iu]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _pca(X: np.ndarray, n_comps: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n_comps = int(min(n_comps, X.shape[0] - 1, X.shape[1] - 1))
    if n_comps < 1:
        raise ValueError(f"Too little data for PCA: {X.shape}.")
    # callers pass a pooled copy made for the purpose: centred in place (copy=False) to save one copy of the data
    return PCA(n_components=n_comps, svd_solver="randomized", random_state=seed, copy=False).fit_transform(X)


def _knn(P: np.ndarray, k: int, seed: int, pynndescent_above: int = 50_000):
    """K nearest neighbours (self included, first) by Euclidean distance: exact (sklearn) or pynndescent."""
    k = int(min(k, P.shape[0]))
    if P.shape[0] > pynndescent_above:
        try:
            from pynndescent import NNDescent

            idx, dist = NNDescent(P, n_neighbors=k, random_state=seed).neighbor_graph
            return dist, idx
        except ImportError:
            pass
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k).fit(P).kneighbors(P)
    return dist, idx


def _leiden(G: sparse.csr_matrix, seed: int, resolution: float = 1.0) -> np.ndarray:
    import igraph as ig
    import leidenalg

    U = sparse.triu(G, k=1).tocoo()
    g = ig.Graph(n=G.shape[0], edges=np.column_stack([U.row, U.col]).tolist())
    g.es["weight"] = U.data.tolist()
    part = leidenalg.find_partition(
        g, leidenalg.RBConfigurationVertexPartition, weights="weight", resolution_parameter=resolution,
        seed=int(seed), n_iterations=-1,
    )  # fmt: skip
    return np.asarray(part.membership, dtype=np.int64)


def _paired_ari(cr: np.ndarray, co: np.ndarray, yr: np.ndarray | None, yo: np.ndarray | None) -> float:
    from sklearn.metrics import adjusted_rand_score

    if yr is None or yo is None:
        m = min(cr.size, co.size)
        return float(adjusted_rand_score(cr[:m], co[:m]))
    a, b = [], []
    for lab in np.intersect1d(yr, yo):
        ir, io = np.flatnonzero(yr == lab), np.flatnonzero(yo == lab)
        m = min(ir.size, io.size)
        a.append(cr[ir[:m]])
        b.append(co[io[:m]])
    if not a:
        return float("nan")
    return float(adjusted_rand_score(np.concatenate(a), np.concatenate(b)))


def discriminator_auc(
    Xr: np.ndarray, Xo: np.ndarray, *, n_estimators: int = 1000, max_depth: int = 5, test_size: float = 0.25,
    use_combat: bool = True, seed: int = 0, n_jobs: int = -1,
) -> float:  # fmt: skip
    """ROC-AUC of a random forest telling ``Xo`` (label 1) from ``Xr`` (label 0) on a held-out split.

    Both sets are ComBat-corrected with the source as batch first (``use_combat``), as the kit does, then split
    ``1 - test_size`` / ``test_size`` at random (not stratified, as the kit).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    n_r = Xr.shape[0]
    y_all = np.concatenate([np.zeros(n_r, int), np.ones(Xo.shape[0], int)])
    # the split of sklearn's train_test_split(X, y, ...); the pooled matrix is laid out train rows first, so the two
    # parts are views of one float32 array (sklearn's trees work in float32) and ComBat, blind to row order, runs on
    # it in place: one copy of the data in all
    tr, te = train_test_split(np.arange(y_all.size), test_size=test_size, random_state=seed)
    order = np.concatenate([tr, te])
    X = np.empty((order.size, Xr.shape[1]), dtype=np.float32)
    for s in range(0, order.size, 8192):
        rows = order[s : s + 8192]
        from_r = rows < n_r
        X[s : s + 8192][from_r] = Xr[rows[from_r]]
        X[s : s + 8192][~from_r] = Xo[rows[~from_r] - n_r]
    y = y_all[order]
    if use_combat:
        combat(X, y, inplace=True)  # float64 arithmetic in row blocks
    else:  # log-normalised expression is mostly zeros: sklearn's trees split sparse input ~2-3x faster
        X = sparse.csr_matrix(X)
    Xtr, Xte, ytr, yte = X[: tr.size], X[tr.size :], y[: tr.size], y[tr.size :]
    if np.unique(yte).size < 2 or np.unique(ytr).size < 2:
        return float("nan")
    rf = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=n_jobs)
    rf.fit(Xtr.tocsc() if sparse.issparse(Xtr) else Xtr, ytr)
    return float(roc_auc_score(yte, rf.predict_proba(Xte)[:, 1]))


# --------------------------------------------------------------------------------------------------------------------
# the pairs (real vs synthetic, real vs holdout) and the cache

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 4


def clear_cache() -> None:
    """Forget the cached preprocessing / graphs of earlier CAMDA metric calls."""
    _CACHE.clear()


def _cached(key, refs, fn):
    hit = _CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], refs, strict=True)):
        _CACHE.move_to_end(key)
        return hit[1]
    value = fn()
    _CACHE[key] = (refs, value)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _matrix(data: EvalData):
    return data.counts if data.counts is not None else data.X


def _seed(random_state) -> int:
    from .._utils import check_random_state

    if isinstance(random_state, int | np.integer):
        return int(random_state)
    return int(check_random_state(random_state).integers(2**31 - 1))


def _subsets(real: EvalData, syn: EvalData, holdout: EvalData | None, max_cells: int | None, seed: int):
    """Row indices: (real, syn, holdout-or-None), size-matched as the module docstring says."""
    rng = np.random.default_rng(seed)
    n_r, n_s = _matrix(real).shape[0], _matrix(syn).shape[0]
    n = n_s if holdout is None else min(n_s, _matrix(holdout).shape[0])
    if max_cells is not None:
        n = min(n, int(max_cells))
    n_real = min(n_r, n)

    def pick(total, m):
        return np.arange(total) if m >= total else np.sort(rng.choice(total, m, replace=False))

    ir, is_ = pick(n_r, n_real), pick(n_s, n)
    ih = None if holdout is None else pick(_matrix(holdout).shape[0], n)
    return ir, is_, ih


def _rows(M, idx):
    M = M.tocsr() if sparse.issparse(M) else np.asarray(M)
    return M[idx]


class _Pair:
    """One prepared comparison (real subsample vs other subsample) with lazily computed PCA / graph / clusters."""

    def __init__(self, prep: CamdaPair, yr, yo, seed: int):
        self.prep, self.seed = prep, seed
        self.yr = None if yr is None else np.asarray(yr)[prep.real_rows]
        self.yo = None if yo is None else np.asarray(yo)[prep.other_rows]
        self._graph = {}
        self._clusters = {}

    @property
    def source(self):
        return np.concatenate([np.zeros(self.prep.real.shape[0], int), np.ones(self.prep.other.shape[0], int)])

    def graph(self, n_pcs: int, k: int):
        key = (n_pcs, k)
        if key not in self._graph:
            P = _pca(np.vstack([self.prep.real, self.prep.other]), n_pcs, self.seed)
            dist, idx = _knn(P, k, self.seed)
            self._graph[key] = umap_connectivities(dist, idx)
        return self._graph[key]

    def clusters(self, n_pcs: int, k: int, resolution: float):
        key = (n_pcs, k, resolution)
        if key not in self._clusters:
            self._clusters[key] = _leiden(self.graph(n_pcs, k), self.seed, resolution)
        return self._clusters[key]


def _pairs(real, syn, holdout, *, n_hvgs, min_counts, min_cells, max_cells, random_state):
    """``[("value", pair, n), ("reference", pair_or_None, n)]`` for the metric functions (cached)."""
    seed = _seed(random_state)
    key = ("pairs", id(real), id(syn), id(holdout), n_hvgs, min_counts, min_cells, max_cells, seed)

    def build():
        ir, is_, ih = _subsets(real, syn, holdout, max_cells, seed)
        R = _rows(_matrix(real), ir)
        counts = is_counts(R) and is_counts(_matrix(syn))
        yr = None if real.y is None else np.asarray(real.y)[ir]
        out = []
        for role, other, io in (("value", syn, is_), ("reference", holdout, ih)):
            if other is None:
                out.append((role, None))
                continue
            Xo = _rows(_matrix(other), io)
            prep = prepare_pair(R, Xo, n_hvgs=n_hvgs, min_counts=min_counts, min_cells=min_cells, counts=counts)
            yo = None if other.y is None else np.asarray(other.y)[io]
            out.append((role, _Pair(prep, yr, yo, seed)))
        return out

    return _cached(key, (real, syn, holdout), build)


def _run(name, real, syn, holdout, compute, *, n_hvgs=5000, min_counts=10, min_cells=3, max_cells=None,
         random_state=0):  # fmt: skip
    """Evaluate ``compute(pair) -> {variant: value}`` on (real, syn) and (real, holdout); tidy rows."""
    pairs = _pairs(real, syn, holdout, n_hvgs=n_hvgs, min_counts=min_counts, min_cells=min_cells,
                   max_cells=max_cells, random_state=random_state)  # fmt: skip
    results = {role: (None if p is None else compute(p)) for role, p in pairs}
    val, ref = results["value"], results["reference"]
    rows = []
    for variant, (v, n_used) in val.items():
        r = np.nan if ref is None or variant not in ref else ref[variant][0]
        rows.append({"metric": name, "variant": variant, "group": "all", "value": v, "reference": r,
                     "n_cells": float(n_used)})  # fmt: skip
    return tidy(rows)


def _n(pair: _Pair) -> int:
    return int(min(pair.prep.real.shape[0], pair.prep.other.shape[0]))


# --------------------------------------------------------------------------------------------------------------------
# the registered metrics

_COMMON = """
    ``reference`` is the same score with the real holdout in place of the synthetic cells (see the module docstring
    for the size matching); ``n_cells`` is the smaller of the two sides' cell counts after filtering. Preprocessing
    parameters: ``n_hvgs`` (5,000), ``min_counts`` (10), ``min_cells`` (3); ``max_cells`` caps both sides
    (default: no cap)."""


def _doc(fn):
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + _COMMON
    return fn


def _means(pair: _Pair):
    return pair.prep.real.mean(axis=0, dtype=np.float64), pair.prep.other.mean(axis=0, dtype=np.float64)


@_doc
def camda_scc(real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, random_state=0, **kwargs):
    """CAMDA SCC: Spearman correlation between the real and synthetic per-gene mean (log-normalised HVGs).

    Higher is better (1 = same ranking of gene means).
    """

    def compute(p):
        a, b = _means(p)
        return {"": (float(stats.spearmanr(a, b)[0]), _n(p))}

    return _run("camda_scc", real, syn, holdout, compute, random_state=random_state, **kwargs)


@_doc
def camda_pcc(real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, random_state=0, **kwargs):
    """CAMDA PCC: Pearson correlation between the real and synthetic per-gene mean (log-normalised HVGs).

    Higher is better.
    """

    def compute(p):
        a, b = _means(p)
        return {"": (float(stats.pearsonr(a, b)[0]), _n(p))}

    return _run("camda_pcc", real, syn, holdout, compute, random_state=random_state, **kwargs)


@_doc
def camda_mmd(
    real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, sample_size: int = 20_000, n_pcs: int = 50,
    gamma: float = 1.0, on: str = "lognorm", median_gamma: bool = True, random_state=0,
    **kwargs,
):  # fmt: skip
    """CAMDA MMD: biased RBF-kernel MMD^2 (``gamma``) between real and synthetic cells on ``n_pcs`` PCs.

    Each side is subsampled to at most ``sample_size`` cells (the kit's 20,000; ``n_cells`` records the number
    used), the PCA is fitted on the pooled subsample. ``on="lognorm"`` (default) projects the log-normalised HVGs;
    ``on="counts"`` the raw HVG counts, as the kit's code does (there, distances are so large that the kernel is
    nearly the identity and the MMD nearly ``1/n_real + 1/n_syn``). Lower is better (0 = same distribution); the
    variant names the input, gamma and the sample size. With gamma 1 the kernel is close to the identity on
    single-cell PCs (squared distances between cells are mostly >> 1), so the kit's MMD is nearly
    ``1/n_real + 1/n_syn`` whatever the data; ``median_gamma=True`` adds a variant ``gamma=median`` with
    ``gamma = 1 / median squared distance`` of the pooled cells (median heuristic, from at most 2,000 cells),
    which does respond to the data.
    """
    if on not in ("lognorm", "counts"):
        raise ValueError(f"on must be 'lognorm' or 'counts', got {on!r}.")
    seed = _seed(random_state)

    def compute(p):
        rng = np.random.default_rng(seed)
        used = "counts" if on == "counts" and p.prep.real_counts is not None else "lognorm"  # log input: no counts
        A, B = (p.prep.real_counts, p.prep.other_counts) if used == "counts" else (p.prep.real, p.prep.other)
        ia = rng.choice(A.shape[0], min(sample_size, A.shape[0]), replace=False)
        ib = rng.choice(B.shape[0], min(sample_size, B.shape[0]), replace=False)
        A, B = A[ia], B[ib]
        A = A.toarray() if sparse.issparse(A) else A
        B = B.toarray() if sparse.issparse(B) else B
        P = _pca(np.vstack([A, B]).astype(np.float32, copy=False), n_pcs, seed).astype(np.float64)
        Pa, Pb = P[: len(ia)], P[len(ia) :]
        n_used = min(ia.size, ib.size)
        out = {f"{used},gamma={gamma:g},sample={sample_size}": (mmd_rbf(Pa, Pb, gamma=gamma), n_used)}
        if median_gamma:
            out[f"{used},gamma=median,sample={sample_size}"] = (mmd_rbf(Pa, Pb, gamma=_median_gamma(P, rng)), n_used)
        return out

    return _run("camda_mmd", real, syn, holdout, compute, random_state=seed, **kwargs)


@_doc
def camda_ilisi(
    real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, n_pcs: int = 100, n_neighbors: int = 10,
    k0: int = 90, random_state=0, **kwargs,
):  # fmt: skip
    """CAMDA iLISI: scib's scaled graph iLISI of real vs synthetic cells (``ilisi_graph(type_="knn")``).

    PCA (``n_pcs``) of the pooled log-normalised HVGs, UMAP kNN graph (``n_neighbors``, :func:`umap_connectivities`),
    per-cell LISI of the source label over the ``k0`` nearest cells by graph shortest path (:func:`graph_lisi`),
    median, scaled ``(median - 1) / (2 - 1)``. In [0, 1]; higher is better (1 = perfectly mixed, 0 = separated).
    """

    def compute(p):
        lis = graph_lisi(p.graph(n_pcs, n_neighbors), p.source, k0=k0)
        return {"": (scaled_ilisi(lis, 2), _n(p))}

    return _run("camda_ilisi", real, syn, holdout, compute, random_state=random_state, **kwargs)


@_doc
def camda_ari(
    real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, n_pcs: int = 100, n_neighbors: int = 10,
    resolution: float = 1.0, random_state=0, **kwargs,
):  # fmt: skip
    """CAMDA ARI of Leiden clusters of the pooled cells (PCA ``n_pcs``, UMAP kNN graph ``n_neighbors``).

    Variant ``"real_vs_synthetic"``: ARI between the cluster labels of paired real and synthetic cells (pairs
    within each cell type when both carry labels, else by row order; the kit pairs row ``i`` of each set).
    Variant ``"celltype_vs_cluster"`` (needs labels on both sides): ARI of cell type vs cluster over all pooled
    cells. Higher is better.
    """

    def compute(p):
        cl = p.clusters(n_pcs, n_neighbors, resolution)
        nr = p.prep.real.shape[0]
        out = {"real_vs_synthetic": (_paired_ari(cl[:nr], cl[nr:], p.yr, p.yo), _n(p))}
        if p.yr is not None and p.yo is not None:
            from sklearn.metrics import adjusted_rand_score

            lab = np.concatenate([p.yr, p.yo])
            out["celltype_vs_cluster"] = (float(adjusted_rand_score(lab, cl)), _n(p))
        return out

    return _run("camda_ari", real, syn, holdout, compute, random_state=random_state, **kwargs)


@_doc
def camda_emd(real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, random_state=0, **kwargs):
    """CAMDA EMD: mean over HVGs of the 1-D Wasserstein distance of log-normalised expression. Lower is better."""

    def compute(p):
        return {"": (mean_wasserstein(p.prep.real, p.prep.other), _n(p))}

    return _run("camda_emd", real, syn, holdout, compute, random_state=random_state, **kwargs)


@_doc
def camda_corr_of_corr(real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, random_state=0, **kwargs):
    """CAMDA correlation of correlations: Pearson between the upper triangles of the gene-gene Spearman matrices.

    Computed on the log-normalised HVGs of each side (:func:`corr_of_corr`). Higher is better (1 = same structure).
    """

    def compute(p):
        return {"": (corr_of_corr(p.prep.real, p.prep.other), _n(p))}

    return _run("camda_corr_of_corr", real, syn, holdout, compute, random_state=random_state, **kwargs)


@_doc
def camda_discriminator_auc(
    real: EvalData, syn: EvalData, *, holdout: EvalData | None = None, n_estimators: int = 1000, max_depth: int = 5,
    test_size: float = 0.25, n_jobs: int = -1, without_combat: bool = True, random_state=0,
    **kwargs,
):  # fmt: skip
    """CAMDA discriminator: ROC-AUC of a random forest telling real from synthetic cells (:func:`discriminator_auc`).

    ComBat (batch = source) on the pooled log-normalised HVGs, ``n_estimators`` trees of depth ``max_depth``
    (``n_jobs`` workers), ``1 - test_size`` / ``test_size`` split: variant ``"combat"`` (the kit's definition).
    0.5 is ideal (indistinguishable), 1 means fully separable; values below 0.5 are chance fluctuations.

    ComBat shifts each gene of each batch by its own affine map, so the zeros of sparse data land on a
    batch-specific constant per gene; a depth-5 tree splits on that and tells even two halves of the same real data
    apart (AUC ~1; the ``reference`` shows it, and scanpy's ``pp.combat`` behaves the same). ``without_combat=True``
    therefore adds variant ``"no_combat"``: the same forest on the uncorrected log-normalised HVGs.
    """
    seed = _seed(random_state)

    def compute(p):
        kw = {"n_estimators": n_estimators, "max_depth": max_depth, "test_size": test_size, "seed": seed,
              "n_jobs": n_jobs}  # fmt: skip
        out = {"combat": (discriminator_auc(p.prep.real, p.prep.other, use_combat=True, **kw), _n(p))}
        if without_combat:
            out["no_combat"] = (discriminator_auc(p.prep.real, p.prep.other, use_combat=False, **kw), _n(p))
        return out

    return _run("camda_discriminator_auc", real, syn, holdout, compute, random_state=seed, **kwargs)
