"""PrivSyn: noisy marginals, consistency post-processing and GUM synthesis (Zhang et al., USENIX Security 2021).

As in the reference benchmark the attributes are the quantile-binned genes and the label; the marginals are all
1-way marginals and the gene x label 2-way marginals (optionally only those chosen by PrivSyn's DP selection).
"""

from __future__ import annotations

import math

import numpy as np

from ._marginals import (
    MarginalGenerator,
    count_marginals,
    estimate_total,
    gaussian_measure,
    make_consistent,
    round_counts,
    systematic_sample,
)

__all__ = ["PrivSyn", "gum_synthesize", "independence_difference", "select_marginals"]


def independence_difference(one_way: np.ndarray, label: np.ndarray, two_way: np.ndarray, total: float) -> np.ndarray:
    """PrivSyn's InDif of each gene with the label: ``sum_{b,k} |M(b, k) - M(b) M(k) / n|``, shape ``(d,)``.

    Sensitivity under add/remove-one neighbouring: the 2-way term changes by one in one cell per gene. With the 1-way
    marginals and ``total`` taken from earlier (noisy, already released) measurements, as :class:`PrivSyn` does,
    that is all, so each InDif changes by at most 1 and the vector of ``d`` InDifs by at most ``sqrt(d)`` in L2.
    """
    expected = one_way[:, :, None] * label[None, None, :] / total
    return np.abs(two_way - expected).sum(axis=(1, 2))


def select_marginals(indif: np.ndarray, *, rho_two: float, n_cells: int) -> np.ndarray:
    """PrivSyn's greedy selection: the genes whose 2-way marginal with the label is worth measuring.

    Selecting the ``m`` genes of largest (noisy) InDif, with the 2-way budget ``rho_two`` split evenly among them,
    has expected L1 error ``sum_{unselected} InDif + m * n_cells * sigma(m) * sqrt(2 / pi)`` with
    ``sigma(m) = sqrt(m / (2 rho_two))`` (Gaussian noise on ``n_cells`` cells per marginal, sensitivity ``sqrt(m)``);
    the ``m`` minimising it (0 allowed) is chosen. Pure post-processing of ``indif``. Returns a boolean mask.
    """
    indif = np.asarray(indif, dtype=float)
    order = np.argsort(-indif, kind="stable")
    sorted_ = indif[order]
    m = np.arange(indif.size + 1)
    unselected = np.concatenate([[sorted_.sum()], sorted_.sum() - np.cumsum(sorted_)])
    noise = m * n_cells * np.sqrt(m / (2.0 * rho_two)) * math.sqrt(2.0 / math.pi)
    best = int(np.argmin(unselected + noise))
    mask = np.zeros(indif.size, dtype=bool)
    mask[order[:best]] = True
    return mask


def _gum_step(block: np.ndarray, target: np.ndarray, alpha: float, rng: np.random.Generator) -> int:
    """One GUM update of every column of ``block`` (``m x c`` codes, in place) towards integer ``target`` (``c x B``).

    In each column, ``alpha`` of the surplus of every over-full cell (randomly rounded; all of it for ``alpha = 1``)
    is moved: that many records of the cell, chosen uniformly at random, get new values that fill the under-full
    cells in proportion to their deficits (randomised rounding never overfills a cell, since the number moved is at
    most the total deficit). Columns are independent attributes here, so all are updated at once. Returns the number
    of values changed.
    """
    m, c = block.shape
    B = target.shape[1]
    cols = np.arange(c)
    current = np.zeros((c, B), dtype=np.int64)
    np.add.at(current, (np.broadcast_to(cols, (m, c)), block), 1)
    surplus = np.clip(current - target, 0, None)
    deficit = np.clip(target - current, 0, None)
    n_move = surplus if alpha >= 1 else np.floor(alpha * surplus + rng.random(surplus.shape)).astype(np.int64)
    total = n_move.sum(axis=1)  # (c,)
    if total.sum() == 0:
        return 0
    # rank each record among the records of its cell in a random order; move the first n_move[col, cell]
    order = np.argsort(block + rng.random(block.shape), axis=0)
    starts = np.concatenate([np.zeros((c, 1), dtype=np.int64), np.cumsum(current, axis=1)[:, :-1]], axis=1)
    sorted_codes = np.take_along_axis(block, order, axis=0).astype(np.intp)
    rank = np.arange(m)[:, None] - starts[cols[None, :], sorted_codes]
    move_sorted = rank < n_move[cols[None, :], sorted_codes]
    moved = np.zeros_like(move_sorted)
    np.put_along_axis(moved, order, move_sorted, axis=0)
    # new values: the deficit cells, rounded counts summing to the number moved, dealt out in random record order
    fill = round_counts(deficit.astype(float), total, rng)  # (c, B)
    bounds_ = np.cumsum(fill, axis=1)
    key = np.where(moved, rng.random(block.shape), 2.0)
    deal = np.argsort(key, axis=0)  # moved records first, in random order
    slot = np.empty_like(deal)
    np.put_along_axis(slot, deal, np.broadcast_to(np.arange(m)[:, None], (m, c)), axis=0)
    new_value = np.zeros(block.shape, dtype=np.int64)
    for b in range(B - 1):
        new_value += slot >= bounds_[None, :, b]
    block[moved] = new_value[moved].astype(block.dtype)
    return int(total.sum())


def gum_synthesize(
    init_codes: np.ndarray,
    labels: np.ndarray,
    targets: list[tuple[int, np.ndarray]],
    *,
    n_classes: int,
    rng: np.random.Generator,
    iters: int = 10,
    alpha: float = 1.0,
) -> np.ndarray:
    """GUM (Gradually Update Method, PrivSyn Sec. 5) for records whose label is fixed.

    ``targets`` holds ``(g, M)`` pairs: ``M`` a non-negative ``(B,)`` 1-way target of gene ``g`` or a ``(B, K)``
    gene x label 2-way target, at most one per gene. Each round visits every target marginal; for a 2-way target the
    records of class ``k`` are matched to ``M[:, k]`` scaled to their number, for a 1-way target all records are
    matched to ``M`` (integer targets by randomised rounding, fixed once): a share ``alpha`` of the records in
    over-full cells get the value of an under-full cell (only the visited gene changes; labels never change). Stops
    when a round changes nothing or after ``iters`` rounds. Marginals contained in another marginal are left out, as
    in PrivSyn (after consistency they carry no extra information), so with the star marginal set no two targets
    share a gene and ``alpha = 1`` matches every target in one round: the result is the initial dataset with the
    fewest values changed to match all targets exactly.

    Returns
    -------
    The updated ``(n, d)`` codes (a copy).
    """
    codes = np.array(init_codes, copy=True)
    genes = [g for g, _ in targets]
    if len(set(genes)) != len(genes):
        raise ValueError("gum_synthesize takes at most one target marginal per gene.")
    one_g = np.array([g for g, M in targets if M.ndim == 1], dtype=np.intp)
    two_g = np.array([g for g, M in targets if M.ndim == 2], dtype=np.intp)
    n = codes.shape[0]
    jobs = []  # (row index, gene columns, integer targets (c, B))
    if one_g.size:
        M1 = np.stack([M for _, M in targets if M.ndim == 1])
        jobs.append((np.arange(n), one_g, round_counts(M1, n, rng)))
    if two_g.size:
        M2 = np.stack([M for _, M in targets if M.ndim == 2])  # (c, B, K)
        for k in range(n_classes):
            idx = np.flatnonzero(labels == k)
            if idx.size:
                jobs.append((idx, two_g, round_counts(M2[:, :, k], idx.size, rng)))
    for _ in range(iters):
        moved = 0
        for rows, cols, target in jobs:
            block = codes[np.ix_(rows, cols)]
            moved += _gum_step(block, target, alpha, rng)
            codes[np.ix_(rows, cols)] = block
        if moved == 0:
            break
    return codes


class PrivSyn(MarginalGenerator):
    """PrivSyn on quantile-binned genes: noisy 1- and 2-way marginals, consistency, GUM synthesis.

    **Mechanism.** After discretisation, the zCDP budget ``rho`` (what is left after DP discretisation) is split
    ``1 : 8`` between the 1-way marginals (``d`` genes and the label, ``d + 1`` marginals) and the gene x label 2-way
    marginals, or ``1 : 1 : 8`` when ``select=True`` spends a share on DP marginal selection. Each group is released
    with the Gaussian mechanism; under add/remove-one neighbouring every count marginal has L2 sensitivity 1 (one
    cell changes by one), so ``m`` marginals together have ``sqrt(m)`` and ``sigma = sqrt(m / (2 rho_group))``. The
    number of records is estimated from the released marginals. Selection releases each gene's InDif with Gaussian
    noise (sensitivity ``sqrt(d)``, see :func:`independence_difference`) and keeps the genes chosen by
    :func:`select_marginals`; an unselected gene is synthesised independently of the label from its 1-way marginal.

    **Post-processing.** :func:`~scdpsynth.generators._marginals.make_consistent` (inverse-variance weighted
    agreement of the label and of each gene across marginals, alternating with Norm-Sub), then :func:`gum_synthesize`
    from an initial dataset drawn attribute by attribute from the consistent 1-way marginals, with labels fixed to
    ``class_counts``.

    **Discretisation and back-mapping** as in :class:`~scdpsynth.generators.private_pgm.PrivatePGM`:
    ``discretization="dp"`` (default) derives edges and per-bin values from one noisy histogram charged to the
    budget; ``discretization="public"`` (opt-in) uses exact per-gene quantile edges and per-bin means, listed in
    ``scope``.

    With ``eps=None`` all marginals are exact (no noise, no selection) and there is no privacy.

    Parameters
    ----------
    eps, delta, random_state, unit
        See :class:`~scdpsynth.generators.BaseGenerator`.
    n_bins, discretization, bounds, grid_size, discretization_share, within_bin
        See :class:`~scdpsynth.generators.private_pgm.PrivatePGM`.
    select
        Spend a share of the budget on DP selection of the gene x label marginals (PrivSyn's DenseMarg step).
    consistency_rounds
        Rounds of consistency + Norm-Sub.
    gum_iters, gum_alpha
        Maximum GUM rounds and update rate.
    """

    name = "privsyn"

    def __init__(
        self,
        *,
        select: bool = False,
        consistency_rounds: int = 10,
        gum_iters: int = 10,
        gum_alpha: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(select, bool | np.bool_):
            raise TypeError(f"select must be True or False, got {select!r}.")
        for name, value in (("consistency_rounds", consistency_rounds), ("gum_iters", gum_iters)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not (0.0 < float(gum_alpha) <= 1.0):
            raise ValueError(f"gum_alpha must be in (0, 1], got {gum_alpha!r}.")
        self.select = bool(select)
        self.consistency_rounds = int(consistency_rounds)
        self.gum_iters = int(gum_iters)
        self.gum_alpha = float(gum_alpha)

    def fit(self, X, y, *, n_classes: int, donors=None):
        X, y = self._check_input(X, y, n_classes)
        codes, rho = self._discretize(X)
        n, d = X.shape
        B, K = self.n_bins, int(n_classes)
        one, lab, two = count_marginals(codes, y, B, K)
        self.n_classes_ = K
        selected = np.ones(d, dtype=bool)
        if not self.private:
            var1 = var_y = var2 = 0.0
            self.sigma_one_ = self.sigma_two_ = 0.0
            total = float(n)
        else:
            parts = (1.0, 1.0, 8.0) if self.select else (1.0, 0.0, 8.0)
            rho1, rho_sel, rho2 = (rho * p / sum(parts) for p in parts)
            # same noise level on all d + 1 one-way marginals: rho1 split by number of marginals
            one, s1 = gaussian_measure(
                one, rho=rho1 * d / (d + 1), rng=self.rng, ledger=self.ledger, name="one_way_marginals"
            )
            lab_n, _ = gaussian_measure(
                lab[None], rho=rho1 / (d + 1), rng=self.rng, ledger=self.ledger, name="label_marginal"
            )
            lab = lab_n[0]
            total = estimate_total((one, s1), (lab_n, s1))  # n is private: estimated from the released 1-ways
            if self.select:
                indif = independence_difference(np.clip(one, 0, None), np.clip(lab, 0, None), two, total)
                # the 1-way marginals and the total inside InDif are already released (fixed): only the 2-way term
                # depends on the data, so each InDif moves by at most 1 (sensitivity sqrt(d) in L2)
                sens = math.sqrt(d)
                noisy_indif = self.ledger.gaussian(indif, sensitivity=sens, sigma=sens / math.sqrt(2.0 * rho_sel),
                                                   rng=self.rng, name="indif_selection")  # fmt: skip
                selected = select_marginals(noisy_indif, rho_two=rho2, n_cells=B * K)
            m = int(selected.sum())
            if m:
                two_sel, s2 = gaussian_measure(
                    two[selected], rho=rho2, rng=self.rng, ledger=self.ledger, name="gene_label_marginals"
                )
                two = two.copy()
                two[selected] = two_sel
            else:
                s2 = math.inf
            # the released (noisy) measurements: DP outputs, kept for diagnostics
            self.measurements_ = {
                "one_way": one.copy(),
                "label": lab.copy(),
                "two_way_selected": two[selected].copy() if m else np.zeros((0, B, K)),
                "sigma_one": float(s1),
                "sigma_two": float(s2),
            }
            var1 = var_y = s1**2
            var2 = s2**2
            self.sigma_one_, self.sigma_two_ = float(s1), float(s2)
        one_c, lab_c, two_c = make_consistent(
            one,
            var1,
            lab,
            var_y,
            two,
            var2 if np.isfinite(var2) else 1.0,
            total=total,
            selected=selected,
            n_rounds=self.consistency_rounds if self.private else 1,
        )
        # unselected genes were not measured jointly with the label: drop their exact 2-way counts and keep the
        # independence model implied by the released 1-way marginals (post-processing only)
        two_c[~selected] = one_c[~selected][:, :, None] * lab_c[None, None, :] / max(lab_c.sum(), 1e-300)
        self.one_way_, self.label_, self.two_way_ = one_c, lab_c, two_c
        # class sizes: the label after consistency with all selected 2-way marginals (post-processing of the releases)
        self.class_counts_ = lab_c
        self.selected_ = selected
        self.fitted_ = True
        return self

    def sample(self, class_counts) -> np.ndarray:
        counts = self._check_class_counts(class_counts)
        n = int(counts.sum())
        labels = np.repeat(np.arange(self.n_classes_), counts)
        probs = self.one_way_ / np.maximum(self.one_way_.sum(axis=1, keepdims=True), 1e-300)
        init = systematic_sample(probs, n, self.rng)
        targets = [(g, self.two_way_[g] if self.selected_[g] else self.one_way_[g]) for g in range(probs.shape[0])]
        codes = gum_synthesize(
            init, labels, targets, n_classes=self.n_classes_, rng=self.rng, iters=self.gum_iters, alpha=self.gum_alpha
        )
        return self._back_map(codes)

    def params(self) -> dict:
        return {
            **super().params(),
            "select": self.select,
            "consistency_rounds": self.consistency_rounds,
            "gum_iters": self.gum_iters,
            "gum_alpha": self.gum_alpha,
            "n_selected": int(self.selected_.sum()) if self.fitted_ else -1,
        }
