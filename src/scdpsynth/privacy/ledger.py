"""The privacy ledger: every noisy release of a fit, recorded where its noise is drawn, composed by dp-accounting.

One :class:`Ledger` per fit. A release is recorded by the call that draws its noise (:meth:`Ledger.gaussian`,
:meth:`Ledger.laplace`), with the sensitivity and the noise scale actually passed to the random draw, so the eps the
ledger reports is that of the noise in the output, not of a plan. DP-SGD, whose noise opacus draws, is recorded
with :meth:`Ledger.add_dpsgd` by the training loop that configured opacus with those very parameters.

Composition (Google's ``dp-accounting``, the same ``DpEvent`` model the releases are serialised from):

* Gaussian releases only (every generator but the DP-SGD ones): a Gaussian mechanism with L2 sensitivity ``D`` and
  noise ``sigma`` is exactly ``mu``-GDP with ``mu = D / sigma`` (Dong, Roth & Su 2022), and GDP composes exactly:
  ``mu = sqrt(sum_i mu_i^2)``. The reported eps is the exact (eps, delta) curve of one Gaussian with that ``mu``
  (:func:`eps_from_mu`, Balle & Wang 2018, Theorem 8), which is what the privacy loss distribution (PLD) gives for
  these events without its discretisation error.
* Anything else (Laplace, Poisson-subsampled Gaussian DP-SGD steps): ``dp_accounting``'s PLD accountant on the
  composed event (pessimistic discretisation, so the reported eps is an upper bound).

Parallel composition: releases on disjoint parts of the data (``partition=(group, k)``: part ``k`` of ``group``, e.g.
the classes of a per-class model under add/remove-one neighbouring, where a record touches one class only) are
charged once per group, as the worst part: ``mu_group^2 = max_k sum_{i in part k} mu_i^2``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy import optimize

from .mechanisms import _check_positive, analytic_gaussian_delta

__all__ = ["Ledger", "eps_from_mu", "mu_from_eps"]

#: neighbouring relations a ledger can be stated for
NEIGHBOURING = ("add_remove", "replace")


def eps_from_mu(mu: float, delta: float) -> float:
    """Smallest eps with ``mu``-GDP implying (eps, delta)-DP: the exact curve of one Gaussian mechanism.

    Solves ``Phi(mu/2 - eps/mu) - exp(eps) Phi(-mu/2 - eps/mu) = delta`` for eps (the delta of the curve decreases in
    eps); the result is rounded up so that the stated guarantee always holds.
    """
    if mu == 0:
        return 0.0
    mu = _check_positive("mu", mu)
    delta = _check_positive("delta", delta)
    sigma = 1.0 / mu

    def f(eps: float) -> float:
        return analytic_gaussian_delta(sigma, eps, 1.0) - delta

    if f(0.0) <= 0:
        return 0.0
    hi = max(1.0, mu * mu)
    while f(hi) > 0:
        hi *= 2.0
    eps = optimize.brentq(f, 0.0, hi, xtol=1e-13, rtol=1e-13, maxiter=500)
    while f(eps) > 0:
        eps = eps * (1.0 + 1e-12) + 1e-15
    return float(eps)


def mu_from_eps(eps: float, delta: float) -> float:
    """Largest ``mu`` whose mu-GDP implies (eps, delta)-DP (inverse of :func:`eps_from_mu`), a hair below the root.

    Gaussian releases calibrated so that ``sum (D_i / sigma_i)^2 <= mu^2`` compose to exactly (eps, delta)-DP.
    """
    from .mechanisms import analytic_gaussian_sigma

    mu = 1.0 / analytic_gaussian_sigma(eps, delta, 1.0)
    return mu * (1.0 - 1e-9)  # margin against floating-point round trips (mu -> sigma -> mu, sums of shares)


class Ledger:
    """Every noisy release of one fit: name, mechanism, sensitivity and noise as drawn; composed to (eps, delta).

    Parameters
    ----------
    neighbouring
        The neighbouring relation the recorded sensitivities are stated for: ``"add_remove"`` (one privacy unit
        added or removed; the default of every generator) or ``"replace"`` (one unit's data replaced). Recorded in
        :meth:`to_dict`; the audit uses it.
    keep_values
        Keep the exact (pre-noise) value and the noisy value of every release on the Python object (``values``,
        ``released``; None for noise drawn elsewhere), never serialised. For tests that check the stated
        sensitivities against neighbouring data sets and the noise actually drawn.
    """

    def __init__(self, *, neighbouring: str = "add_remove", keep_values: bool = False):
        if neighbouring not in NEIGHBOURING:
            raise ValueError(f"neighbouring must be one of {NEIGHBOURING}, got {neighbouring!r}.")
        self.neighbouring = neighbouring
        self.keep_values = bool(keep_values)
        self.entries: list[dict] = []
        self._eps_cache: dict = {}
        self.values: list[np.ndarray | None] = []
        self.released: list[np.ndarray | None] = []

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ releases (draw the noise and record it)
    def gaussian(
        self,
        values,
        *,
        sensitivity: float,
        sigma: float,
        rng: np.random.Generator,
        name: str,
        symmetric: bool = False,
        partition: tuple[str, int] | None = None,
    ) -> np.ndarray:
        """Gaussian mechanism: ``values + N(0, sigma^2)`` on every entry, recorded with its L2 ``sensitivity``.

        With ``symmetric=True`` the last two axes hold symmetric matrices: noise is drawn for the upper triangle
        (diagonal included) and mirrored, so the release is the upper triangle (whose L2 change the sensitivity must
        bound). ``partition=(group, k)`` marks a release on part ``k`` of a partition of the data (parallel
        composition within ``group``).
        """
        values = np.array(values, dtype=np.float64)
        self._record("gaussian", name, sensitivity=sensitivity, noise=sigma, partition=partition, values=values)
        noise = rng.normal(0.0, float(sigma), size=values.shape)
        if symmetric:
            noise = np.triu(noise) + np.swapaxes(np.triu(noise, 1), -1, -2)
        return self._keep(values + noise)

    def laplace(
        self,
        values,
        *,
        sensitivity: float,
        scale: float,
        rng: np.random.Generator,
        name: str,
        partition: tuple[str, int] | None = None,
    ) -> np.ndarray:
        """Laplace mechanism: ``values + Laplace(0, scale)`` on every entry, with L1 ``sensitivity``."""
        values = np.array(values, dtype=np.float64)
        self._record("laplace", name, sensitivity=sensitivity, noise=scale, partition=partition, values=values)
        return self._keep(values + rng.laplace(0.0, float(scale), size=values.shape))

    def add_gaussian(self, *, name: str, sensitivity: float, sigma: float, count: int = 1) -> None:
        """Record ``count`` Gaussian releases whose noise was drawn elsewhere with exactly this ``sigma``."""
        self._record("gaussian", name, sensitivity=sensitivity, noise=sigma, count=count)

    def add_dpsgd(self, *, name: str, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        """Record ``steps`` DP-SGD steps: Poisson subsampling at ``sample_rate``, Gaussian noise ``z * C`` on the sum
        of per-example gradients clipped to L2 norm ``C`` (sensitivity ``C``, add/remove one example).
        """
        if not (0 < float(sample_rate) <= 1):
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}.")
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps!r}.")
        last = self.entries[-1] if self.entries else None
        if (
            last is not None
            and last["mechanism"] == "dpsgd"
            and last["name"] == name
            and last["noise"] == float(noise_multiplier)
            and last["sample_rate"] == float(sample_rate)
        ):
            last["count"] += int(steps)  # runs of identical steps are one self-composed event
            return
        self._record("dpsgd", name, sensitivity=1.0, noise=noise_multiplier, count=steps, sample_rate=sample_rate)

    def _keep(self, noisy: np.ndarray) -> np.ndarray:
        if self.keep_values:
            self.released[-1] = noisy.copy()
        return noisy

    def _record(self, mechanism, name, *, sensitivity, noise, count=1, partition=None, sample_rate=1.0, values=None):
        entry = {
            "name": str(name),
            "mechanism": mechanism,
            "sensitivity": _check_positive("sensitivity", sensitivity),
            "noise": _check_positive("noise scale", noise),
            "count": int(count),
            "sample_rate": float(sample_rate),
            "partition": None if partition is None else (str(partition[0]), int(partition[1])),
        }
        if entry["count"] < 1:
            raise ValueError(f"count must be >= 1, got {count!r}.")
        self.entries.append(entry)
        if self.keep_values:
            self.values.append(None if values is None else np.array(values, copy=True))
            self.released.append(None)

    # ------------------------------------------------------------------ composition
    def _gaussian_only(self) -> bool:
        return all(e["mechanism"] == "gaussian" for e in self.entries)

    def _mu_squared(self, entries) -> float:
        """Composed mu^2 of Gaussian entries, with parallel composition inside each partition group."""
        total = 0.0
        parts: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for e in entries:
            mu2 = e["count"] * (e["sensitivity"] / e["noise"]) ** 2
            if e["partition"] is None:
                total += mu2
            else:
                parts[e["partition"][0]][e["partition"][1]] += mu2
        return total + sum(max(p.values()) for p in parts.values())

    @property
    def mu(self) -> float:
        """GDP parameter of the Gaussian releases (all of them, if no other mechanism is recorded)."""
        return math.sqrt(self._mu_squared([e for e in self.entries if e["mechanism"] == "gaussian"]))

    def dp_event(self):
        """The composed ``dp_accounting.DpEvent`` of everything recorded (Gaussian groups merged by their mu)."""
        import dp_accounting as dpa

        events = []
        gauss = [e for e in self.entries if e["mechanism"] == "gaussian"]
        if gauss:
            events.append(dpa.GaussianDpEvent(1.0 / math.sqrt(self._mu_squared(gauss))))
        for e in self.entries:
            if e["mechanism"] == "gaussian":
                continue
            if e["partition"] is not None:
                raise NotImplementedError("parallel composition is implemented for Gaussian releases only.")
            if e["mechanism"] == "laplace":
                ev = dpa.LaplaceDpEvent(e["noise"] / e["sensitivity"])
            else:  # dpsgd
                ev = dpa.PoissonSampledDpEvent(e["sample_rate"], dpa.GaussianDpEvent(e["noise"]))
            events.append(dpa.SelfComposedDpEvent(ev, e["count"]) if e["count"] > 1 else ev)
        return dpa.ComposedDpEvent(events)

    def get_epsilon(self, delta: float, *, extra=None, discretization: float = 1e-4) -> float:
        """(eps, delta)-DP of everything recorded (plus the ``dp_accounting`` event ``extra``, if given).

        Exact for Gaussian releases (:func:`eps_from_mu`); PLD (``dp_accounting``) otherwise.
        """
        delta = _check_positive("delta", delta)
        if not self.entries and extra is None:
            return 0.0
        if extra is None and self._gaussian_only():
            return eps_from_mu(self.mu, delta)
        key = (delta, discretization, tuple(tuple(sorted(e.items())) for e in self.entries))
        if extra is None and key in self._eps_cache:  # PLD is the slow path: the same ledger is asked repeatedly
            return self._eps_cache[key]
        from dp_accounting import ComposedDpEvent
        from dp_accounting.pld import pld_privacy_accountant

        event = self.dp_event() if extra is None else ComposedDpEvent([self.dp_event(), extra])
        acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=discretization)
        acc.compose(event)
        eps = max(float(acc.get_epsilon(delta)), 0.0)
        if extra is None:
            self._eps_cache[key] = eps
        return eps

    @property
    def accountant(self) -> str:
        return "gdp (exact, Gaussian releases)" if self._gaussian_only() else "pld (dp-accounting)"

    def to_dict(self, delta: float | None = None) -> dict:
        """h5ad-serialisable ledger: one row per release (name, mechanism, sensitivity, noise, count, ...)."""
        out = {
            "accountant": self.accountant,
            "neighbouring": self.neighbouring,
            "release": [e["name"] for e in self.entries],
            "mechanism": [e["mechanism"] for e in self.entries],
            "sensitivity": np.array([e["sensitivity"] for e in self.entries], dtype=float),
            "noise": np.array([e["noise"] for e in self.entries], dtype=float),
            "count": np.array([e["count"] for e in self.entries], dtype=np.int64),
            "sample_rate": np.array([e["sample_rate"] for e in self.entries], dtype=float),
            "partition": [
                ("" if e["partition"] is None else f"{e['partition'][0]}[{e['partition'][1]}]") for e in self.entries
            ],
        }
        if self._gaussian_only() and self.entries:
            mu2 = np.array([e["count"] * (e["sensitivity"] / e["noise"]) ** 2 for e in self.entries])
            out["mu"] = self.mu
            # share of the composed mu^2 each release accounts for (a release on one part of a partition: its share
            # within the worst part, so the shares of different parts add up to more than 1)
            out["share"] = mu2 / max(self.mu**2, 1e-300)
        if delta is not None:
            out["eps_spent"] = self.get_epsilon(delta)
        return out
