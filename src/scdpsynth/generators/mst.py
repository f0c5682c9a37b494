"""MST-style marginals: a label-conditioned tree of gene-gene 2-way marginals (after McKenna, Miklau & Sheldon 2021).

The marginal methods :mod:`~scdpsynth.generators.private_pgm` and :mod:`~scdpsynth.generators.privsyn` measure only
gene x label marginals, so synthetic genes are independent given the label and gene-gene structure is lost. This
generator adds MST's idea: choose a maximum spanning tree of gene-gene dependencies with part of the budget, measure
the marginals along its edges, and sample from the tree-structured model.

Model
-----
Genes are discretised into ``n_bins`` quantile bins (DP histogram by default, as in the other marginal methods). Given
the label ``y``, each gene's bin follows its class-conditional distribution ``p(x_g | y)`` (from the gene x label
marginals), and the genes are coupled along a directed tree by a Gaussian copula: latent normals ``z_c = r_c z_a +
sqrt(1 - r_c^2) e_c`` for each edge ``a -> c`` (roots standard normal), mapped to bins through the class-conditional
CDFs. ``r_c`` is the latent correlation that reproduces the edge's within-class cross-product of centred bin scores
through the class-conditional bins (Mehler's expansion, four Hermite terms:
:func:`~scdpsynth.generators._latent.hermite_scales`, :func:`~scdpsynth.generators._latent.latent_correlation`). It
replaced a rank-to-Gaussian map ``2 sin(pi r / 6)`` of the score correlation, which ignored that within a class a gene
occupies only some of the bins; the synthetic edge correlations now match the real ones (median difference -0.02 to 0.00
on 500 genes of flu, ALL and GEUVADIS, non-private) and non-private co-expression recall rose from 0.17 / 0.52 / 0.33 to
0.28 / 0.57 / 0.62 (precision 0.96 / 0.76 / 0.87; ``benchmarks/bench_bulk.py``). Sampling is ancestral, ``O(n d)``; no
iterative estimation is needed, so 500-5,000 genes fit in seconds to minutes (the selection's eigendecomposition is
``O(d^3)``). With ``within_bin="sample"`` each value is drawn inside its bin at the latent quantile's position in the
bin (not an independent uniform), so the draws keep the copula's dependence: on bulk ALL (500 genes) non-private
co-expression recall (``r > 0.7``) went from 0.44 to 0.52, on flu from 0.09 to 0.17; the marginals are unchanged.

Privacy (add/remove one record; every release is Gaussian, recorded in ``self.ledger``)
-------------------------------------------------------------------------------------
After discretisation (``discretization_share``), the budget left (zCDP ``rho``) is split ``selection_share`` (default
1/3, as in MST) for choosing the tree and the rest for measuring, itself split ``marginal_share : 1 -
marginal_share`` between the marginals and the edge statistics:

1. **Selection**: each record's centred bin scores ``s_g = (2 b_g - (B - 1)) / (B - 1)`` in ``[-1, 1]`` are scaled to
   unit norm, ``v = s / ||s||``, and the strict upper triangle of ``S = sum_i v_i v_i^T`` is released at once
   (:func:`selection_scores`). One record changes it by the upper triangle of ``v v^T``, whose L2 norm is
   ``sqrt((1 - sum_g v_g^4) / 2) <= 1 / sqrt(2)``: the stated sensitivity. The noisy matrix is denoised by keeping its
   eigen-components above the noise edge ``2 sigma sqrt(d)`` (post-processing), and the tree is the maximum spanning
   tree of ``|S|`` (Kruskal, scipy).
2. **Marginals**: the label's 1-way and the ``d`` gene x label 2-way count marginals; one record changes one cell of
   each by one: L2 sensitivity ``sqrt(d + 1)``, ``sigma = sqrt((d + 1) / (2 rho_marg))`` on every cell (recorded as
   two releases at that noise level: the label's, sensitivity 1, and the genes', sensitivity ``sqrt(d)``).
3. **Edge statistics**: ``sum_i s_ia s_ic`` for each of the ``m`` tree edges (:func:`edge_cross_products`); one
   record changes each by ``s_ia s_ic`` in ``[-1, 1]``: L2 sensitivity ``sqrt(m)``.

The class sizes :attr:`class_counts_` are the inverse-variance weighted mean of the label's 1-way marginal and the
label projections of the gene x label marginals; the conditionals are the noisy marginals made non-negative (plus a
pseudo-count ``smoothing`` per cell) and normalised; the within-class correlations subtract the class means implied
by them (all post-processing). With ``eps=None`` everything is exact.

Limits: the selection's signal per pair scales like ``n sqrt(rho) / d``; with ~100 records and 500 genes (bulk ALL)
the DP tree is close to random even at eps=100 (co-expression recall 0.09; see ``benchmarks/bench_bulk.py``). A tree
also holds only ``d - 1`` direct dependencies, so dense co-expression modules (flu) keep only path products of their
correlations, even without noise.

Factor dependence (``dependence="factor"``)
-------------------------------------------
Instead of a tree, a latent factor copula (:mod:`~scdpsynth.generators._factor`): ``z = L f + sqrt(1 - h) e`` with
``k`` standard normal factors ``f``, mapped to bins through the same class-conditional CDFs. Its one dependence
release replaces the selection and the edge statistics (and gets both their shares): the strict upper triangle of
``sum_i v_i v_i^T`` with rows ``||v|| <= 1``, so the same sensitivity ``1 / sqrt(2)`` as the selection statistic.
``gram_scores="binary"`` (the default under DP): ``v`` are the signs of each gene's median split of the bins divided
by ``sqrt(d)``, norm exactly 1, nothing clipped (:func:`~scdpsynth.generators._factor.binary_scores`).
``gram_scores="bins"`` (the default without privacy): ``v = s / max(||s||, c)``, the centred bin scores scaled by a
public radius ``c = 1.25 sqrt(d (B + 1) / (3 (B - 1)))`` (:func:`~scdpsynth.generators._factor.score_clip`).
Post-processing: subtract the class means implied by the marginals, correct the discretisation's attenuation
(:func:`~scdpsynth.generators._latent.latent_scales`, on the two halves for binary scores), keep the eigen-components
above the noise edge and fit the loadings by iterated principal axes. Every pair of genes is coupled through the
factors, so co-expression modules survive where a tree keeps only its edges.

Co-expression recall (``r > 0.7``) / precision on 500 genes (``benchmarks/bench_bulk.py``, 3 seeds), tree against
factor: non-private, flu 0.28 / 0.96 against 0.67 / 0.94, ALL 0.57 / 0.76 against 0.47 / 0.72, GEUVADIS 0.62 / 0.87
against 0.62 / 0.95. At eps=100 the tree gives flu 0.29 / 0.88, ALL 0.09 / 0.30, GEUVADIS (68 samples) 0.27 / 0.52;
the factor model with binary scores 0.55 / 0.83, 0.17 / 0.12, 0.29 / 0.45, and with bin scores (same run)
0.46 / 0.87, 0.13 / 0.21, 0.08 / 0.28. Binary scores gain most where records are few (GEUVADIS) and cost precision
on ALL; their gain is the exact radius (the bin scores' median norm is 0.71-0.76 of their public radius). Under DP
a factor needs its signal above the noise edge ``2 sigma c^2 sqrt(d)``: it pays off where modules are large (flu),
less where the structure is spread over many small modules (ALL: 680 strong pairs over 247 genes, median degree 3;
even without noise the factor model reaches 0.47 there). The first Hermite term only is used here: on real data the
higher terms' correction made the truncated fit's underestimate of strong correlations worse.
"""

from __future__ import annotations

import math

import numpy as np

from ..privacy import Ledger
from ._factor import (
    GRAM_SCORES,
    collapse_to_halves,
    factor_loadings,
    score_clip,
    score_gram,
    within_cross_products,
)
from ._latent import hermite_scales, latent_correlation, latent_scales
from ._marginals import MarginalGenerator, count_marginals, gaussian_measure

__all__ = ["MSTGenerator", "bin_scores", "edge_cross_products", "selection_scores", "spanning_tree"]

#: L2 sensitivity of the selection statistic (strict upper triangle of a unit vector's outer product)
SELECTION_SENSITIVITY = 1.0 / math.sqrt(2.0)


def bin_scores(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Centred bin scores ``(2 b - (B - 1)) / (B - 1)`` in ``[-1, 1]``, scaled to unit norm per row."""
    s = (2.0 * np.asarray(codes, dtype=float) - (n_bins - 1)) / (n_bins - 1)
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    return s / np.where(norm > 0, norm, 1.0)


def selection_scores(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """The released selection statistic: strict upper triangle of ``sum_i v_i v_i^T`` (``v``: :func:`bin_scores`)."""
    v = bin_scores(codes, n_bins)
    return np.triu(v.T @ v, 1)


def edge_cross_products(codes: np.ndarray, n_bins: int, parent: np.ndarray, children: np.ndarray) -> np.ndarray:
    """The released edge statistics: ``sum_i s_ia s_ic`` for each edge ``(a = parent[c], c)``, centred scores ``s``."""
    score = (2.0 * np.arange(n_bins) - (n_bins - 1)) / (n_bins - 1)
    s = score[np.asarray(codes, dtype=np.intp)]
    return (s[:, parent[children]] * s[:, children]).sum(0)


def selection_sensitivity(v: np.ndarray) -> np.ndarray:
    """Exact L2 norm of each row's contribution to the strict upper triangle of ``sum_i v_i v_i^T`` (rows unit norm).

    ``||triu(v v^T, 1)||_F = sqrt(((sum v^2)^2 - sum v^4) / 2) <= 1 / sqrt(2)``; for tests of the stated bound.
    """
    sq = (v**2).sum(1)
    return np.sqrt(np.maximum(sq**2 - (v**4).sum(1), 0.0) / 2.0)


def spanning_tree(weights: np.ndarray) -> np.ndarray:
    """Maximum spanning tree (forest if disconnected) of a symmetric non-negative weight matrix; ``(m, 2)`` edges."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    w = np.abs(np.asarray(weights, dtype=float))
    d = w.shape[0]
    if d < 2:
        return np.zeros((0, 2), dtype=np.intp)
    # minimum spanning tree of (2 max + 1 - w) >= max + 1: every pair stays an edge (csgraph drops zero and tiny
    # entries of a dense input), and all spanning trees have d - 1 edges, so the order of tree weights is reversed
    cost = np.triu(2.0 * w.max() + 1.0 - w, 1)
    tree = minimum_spanning_tree(cost).tocoo()
    return np.column_stack([tree.row, tree.col]).astype(np.intp)


def _denoise(S: np.ndarray, sigma: float) -> np.ndarray:
    """Keep the eigen-components of the symmetric noisy ``S`` whose eigenvalue exceeds the noise edge."""
    if sigma <= 0:
        return S
    d = S.shape[0]
    vals, vecs = np.linalg.eigh(S)
    keep = vals > 2.0 * sigma * math.sqrt(d)
    if not keep.any():
        return S  # nothing above the noise: use the noisy scores as they are
    return (vecs[:, keep] * vals[keep]) @ vecs[:, keep].T


def _orient(edges: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Orient a forest away from roots (the lowest index of each component); BFS order, parents, roots."""
    adj: list[list[int]] = [[] for _ in range(d)]
    for a, b in edges:
        adj[a].append(int(b))
        adj[b].append(int(a))
    parent = np.full(d, -1, dtype=np.intp)
    seen = np.zeros(d, dtype=bool)
    order: list[int] = []
    roots: list[int] = []
    for r in range(d):
        if seen[r]:
            continue
        roots.append(r)
        seen[r] = True
        queue = [r]
        while queue:
            u = queue.pop(0)
            order.append(u)
            for w in adj[u]:
                if not seen[w]:
                    seen[w] = True
                    parent[w] = u
                    queue.append(w)
    return np.asarray(order, dtype=np.intp), parent, roots


class MSTGenerator(MarginalGenerator):
    """MST-style marginal method: a DP maximum spanning tree of gene-gene dependencies, conditioned on the label.

    See the module docstring for the model and the privacy analysis.

    Parameters
    ----------
    eps, delta, random_state, unit
        See :class:`~scdpsynth.generators.BaseGenerator`.
    n_bins, discretization, bounds, grid_size, discretization_share, within_bin
        See :class:`~scdpsynth.generators.private_pgm.PrivatePGM` (DP quantile bins and ``within_bin="sample"`` by
        default: values drawn within their bin keep gene-gene correlations closer to the real ones than one value per
        bin).
    dependence
        ``"tree"`` (MST's spanning tree of gene pairs) or ``"factor"`` (a latent factor copula from one release of
        the bin-score Gram, which keeps dense co-expression modules; see the module docstring).
    max_factors
        Most factors the ``"factor"`` model keeps (those above the noise edge, fewer where the noise hides them).
    gram_scores
        Record scores behind the ``"factor"`` model's Gram: ``"bins"`` (centred bin scores, clipped to a public
        radius), ``"binary"`` (signs of each gene's median split, norm exactly 1, nothing clipped) or ``"auto"``
        (default): ``"binary"`` for a private fit, ``"bins"`` without privacy, where the finer scores lose nothing
        to noise. See the module docstring for the numbers.
    selection_share
        Share of the budget after discretisation spent on choosing the tree (MST: 1/3). With
        ``dependence="factor"`` the Gram release gets this share plus the edge statistics' share.
    marginal_share
        Share of the measurement budget (after selection) spent on the gene x label marginals.
    smoothing
        Pseudo-count added to every cell of the (non-negative) noisy tables before normalising.
    """

    name = "mst"

    def __init__(
        self,
        *,
        dependence: str = "tree",
        selection_share: float = 1.0 / 3.0,
        marginal_share: float = 0.5,
        smoothing: float = 0.5,
        n_bins: int = 8,
        within_bin: str = "sample",
        max_factors: int = 50,
        gram_scores: str = "auto",
        **kwargs,
    ):
        super().__init__(n_bins=n_bins, within_bin=within_bin, **kwargs)
        if not 0.0 < float(selection_share) < 1.0:
            raise ValueError(f"selection_share must be in (0, 1), got {selection_share!r}.")
        if not (isinstance(smoothing, int | float) and smoothing >= 0):
            raise ValueError(f"smoothing must be a number >= 0, got {smoothing!r}.")
        if not 0.0 < float(marginal_share) < 1.0:
            raise ValueError(f"marginal_share must be in (0, 1), got {marginal_share!r}.")
        if dependence not in ("tree", "factor"):
            raise ValueError(f"dependence must be 'tree' or 'factor', got {dependence!r}.")
        self.dependence = dependence
        if isinstance(max_factors, bool) or not isinstance(max_factors, int | np.integer) or max_factors < 1:
            raise ValueError(f"max_factors must be a positive integer, got {max_factors!r}.")
        self.max_factors = int(max_factors)
        if gram_scores not in ("auto", *GRAM_SCORES):
            raise ValueError(f"gram_scores must be 'auto', 'bins' or 'binary', got {gram_scores!r}.")
        self.gram_scores = gram_scores
        self.selection_share = float(selection_share)
        self.marginal_share = float(marginal_share)
        self.smoothing = float(smoothing)

    # -- selection ---------------------------------------------------------------------------------------------------
    def _select(self, codes: np.ndarray, rho_sel: float) -> np.ndarray:
        S = selection_scores(codes, self.n_bins)  # strict upper triangle; the diagonal is not released
        sigma = 0.0
        if self.private:
            sens = SELECTION_SENSITIVITY
            sigma = sens / math.sqrt(2.0 * rho_sel)
            S = self.ledger.gaussian(S, sensitivity=sens, sigma=sigma, rng=self.rng, name="gene-gene scores")
        S = np.triu(S, 1)
        S = S + S.T
        self.selection_sigma_ = sigma
        return spanning_tree(_denoise(S, sigma))

    # -- fit / sample ------------------------------------------------------------------------------------------------
    def fit(self, X, y, *, n_classes: int, donors=None):
        X, y = self._check_input(X, y, n_classes)
        if len(self.ledger):
            self.ledger = Ledger(neighbouring=self.ledger.neighbouring, keep_values=self.ledger.keep_values)
        self.scope = []
        codes, rho = self._discretize(X)
        d, B, K = X.shape[1], self.n_bins, int(n_classes)
        self.n_classes_ = K
        rho_sel = self.selection_share * rho if self.private else math.inf
        rho_meas = rho - rho_sel if self.private else math.inf
        rho_marg = rho_meas * self.marginal_share if self.private else math.inf
        codes = codes.astype(np.intp)
        if self.dependence == "factor":
            self.gram_scores_ = self._resolve_gram_scores()
            gram = self._release_gram(codes, rho - rho_marg)
            parent = np.full(d, -1, dtype=np.intp)
            self.edges_, self.order_, self.parent_ = np.zeros((0, 2), dtype=np.intp), np.arange(d), parent
        else:
            edges = self._select(codes, rho_sel)
            order, parent, _ = _orient(edges, d)
            self.edges_, self.order_, self.parent_ = edges, order, parent
        children = np.flatnonzero(parent >= 0)

        _, label, two = count_marginals(codes, y, B, K)  # two: (d, B, K) gene x label
        score = (2.0 * np.arange(B) - (B - 1)) / (B - 1)  # centred bin scores in [-1, 1]
        cross = edge_cross_products(codes, B, parent, children)  # (n_edges,) sum_i s_ia s_ic
        if self.private:
            m = d + 1  # label 1-way + d gene x label 2-ways, sensitivity sqrt(m)
            label, _ = gaussian_measure(
                label[None], rho=rho_marg / m, rng=self.rng, ledger=self.ledger, name="label_marginal"
            )
            label = label[0]
            two, s_two = gaussian_measure(
                two, rho=rho_marg * d / m, rng=self.rng, ledger=self.ledger, name="gene_label_marginals"
            )
            if len(children):
                sens = math.sqrt(len(children))  # each sum changes by s_ia s_ic in [-1, 1]
                cross = self.ledger.gaussian(
                    cross,
                    sensitivity=sens,
                    sigma=sens / math.sqrt(2.0 * (rho_meas - rho_marg)),
                    rng=self.rng,
                    name="edge score cross-products",
                )
            self.sigma_ = s_two
            # class sizes: inverse-variance weighted label projections (a projection of B cells: variance B sigma^2)
            self.class_counts_ = (label + two.sum(1).sum(0) / B) / (1.0 + d / B)
        else:
            self.sigma_ = 0.0
            self.class_counts_ = label
        a = self.smoothing if self.private else 0.0
        p = np.maximum(two, 0.0) + a  # (d, B, K)
        tot = p.sum(1, keepdims=True)
        p = np.where(tot > 0, p / np.where(tot > 0, tot, 1.0), 1.0 / B)
        self.cond_ = p  # p(x_g = b | y = k)
        # within-class moments of the scores implied by the conditionals (post-processing of the releases)
        n_k = np.maximum(self.class_counts_, 0.0)
        mean = (p * score[None, :, None]).sum(1)  # (d, K)
        self.rho_edges_ = np.zeros(d)
        if self.dependence == "factor":
            clip = self._gram_clip(d)
            q, q_mean = p, mean  # the conditionals of the bins the Gram's scores were read from
            if self.gram_scores_ == "binary":  # signs of the median split: the two halves' conditionals
                q = collapse_to_halves(p, B)
                q_mean = q[:, 1] - q[:, 0]
            M = within_cross_products(gram, clip, q_mean, n_k)
            # first Hermite term only: on real data the higher terms' correction made the truncated fit's
            # underestimate of strong correlations worse (flu, 0.7 < r < 0.9: median synthetic - real -0.05 -> -0.07)
            A = latent_scales(q, n_k)
            self.loadings_ = factor_loadings(
                M, A, noise_sd=clip**2 * self.gram_sigma_, n=float(n_k.sum()), max_factors=self.max_factors
            )
            self.n_factors_ = self.loadings_.shape[1]
        else:
            pa, ch = parent[children], children
            cov = cross - (n_k[None, :] * mean[pa] * mean[ch]).sum(1)
            # latent correlation r shows as sum_j r^j (H_j[a] . H_j[c]) in the cross-products
            H = hermite_scales(p, n_k)
            r = latent_correlation(np.nan_to_num(cov), (H[:, pa, :] * H[:, ch, :]).sum(-1))
            self.rho_edges_[ch] = np.clip(r, -0.99, 0.99)
        self.fitted_ = True
        return self

    def _resolve_gram_scores(self) -> str:
        """``"auto"``: binary scores for a private fit, bin scores without privacy (a public choice)."""
        if self.gram_scores != "auto":
            return self.gram_scores
        return "binary" if self.private else "bins"

    def _release_gram(self, codes: np.ndarray, rho_gram: float) -> np.ndarray:
        """The factor model's one release: the upper triangle of the score Gram (rows of norm <= 1, sensitivity
        1/sqrt(2)).
        """
        gram = score_gram(codes, self.n_bins, self._gram_clip(codes.shape[1]), scores=self.gram_scores_)
        self.gram_sigma_ = 0.0
        if self.private:
            sens = SELECTION_SENSITIVITY
            self.gram_sigma_ = sens / math.sqrt(2.0 * rho_gram)
            gram = self.ledger.gaussian(
                gram, sensitivity=sens, sigma=self.gram_sigma_, rng=self.rng, name="gene-gene score Gram"
            )
        return np.triu(gram, 1)

    def _gram_clip(self, d: int) -> float:
        """Radius of the score vectors: public :func:`score_clip` for private bin scores, else ``sqrt(d)`` (no clip
        without privacy; binary scores have that norm exactly).
        """
        return score_clip(d, self.n_bins) if self.private and self.gram_scores_ == "bins" else math.sqrt(d)

    def _latent(self, n: int) -> np.ndarray:
        """Latent standard normals ``(n, d)`` with the fitted dependence (tree: ancestral; factor: ``L f + u e``)."""
        d = len(self.parent_)
        if self.dependence == "factor":
            L = self.loadings_
            f = self.rng.standard_normal((n, L.shape[1]))
            e = self.rng.standard_normal((n, d))
            return f @ L.T + e * np.sqrt(np.maximum(1.0 - (L**2).sum(1), 0.0))
        z = np.zeros((n, d))
        e = self.rng.standard_normal((n, d))
        for g in self.order_:
            pa = self.parent_[g]
            r = self.rho_edges_[g]
            z[:, g] = e[:, g] if pa < 0 else r * z[:, pa] + math.sqrt(1.0 - r * r) * e[:, g]
        return z

    def sample(self, class_counts) -> np.ndarray:
        """Sample ``class_counts[k]`` rows of class ``k`` (stacked in class order).

        Latent Gaussians with the fitted dependence (along the tree, ``z_c = r z_a + sqrt(1 - r^2) e`` with roots
        standard normal; or from the factor model) are mapped to bins through each gene's class-conditional bin
        distribution (a Gaussian copula), then back to values.
        """
        from scipy.special import ndtr

        counts = self._check_class_counts(class_counts)
        d = len(self.parent_)
        labels = np.repeat(np.arange(self.n_classes_), counts)
        n = len(labels)
        z = self._latent(n)
        codes = np.zeros((n, d), dtype=np.intp)
        within = np.zeros((n, d))  # where the latent quantile lies inside its bin: Uniform(0, 1) given the bin
        rows = np.arange(n)
        for g in range(d):
            cdf = np.cumsum(self.cond_[g][:, labels].T, axis=1)  # (n, B)
            u = ndtr(z[:, g])
            b = np.minimum((u[:, None] >= cdf).sum(1), self.n_bins - 1)
            lo = np.where(b > 0, cdf[rows, np.maximum(b - 1, 0)], 0.0)
            width = cdf[rows, b] - lo
            codes[:, g] = b
            within[:, g] = np.where(width > 0, (u - lo) / np.where(width > 0, width, 1.0), 0.5)
        if self.within_bin == "sample":  # within-bin draws follow the latent quantile: correlations survive the bins
            return self.disc_.inverse_transform(codes, self.rng, positions=within)
        return self._back_map(codes)

    def params(self) -> dict:
        return {
            **super().params(),
            "dependence": self.dependence,
            "max_factors": self.max_factors,
            "gram_scores": getattr(self, "gram_scores_", self.gram_scores),
            "selection_share": self.selection_share,
            "marginal_share": self.marginal_share,
            "smoothing": self.smoothing,
            "noise_sigma": float(getattr(self, "sigma_", math.nan)),
        }
