"""Small shared helpers: random state handling."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

__all__ = ["KnownSeedWarning", "NotLearnedWarning", "check_random_state", "child_seed", "fit_random_state"]

#: the seed of non-private fits, metrics and attacks when none is given (deterministic by default)
DEFAULT_SEED = 0


class KnownSeedWarning(UserWarning):
    """A private fit was given a known seed: its noise is reproducible by anyone who knows the seed."""


class NotLearnedWarning(UserWarning):
    """A generator's fit did not learn: it reconstructs no better than per-class means, or its classes collapsed."""


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``random_state`` (int, Generator or None) into a :class:`numpy.random.Generator`.

    Never touches numpy's global random state. ``None`` gives fresh OS entropy (not reproducible).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        if isinstance(random_state, bool):
            raise TypeError("random_state must be an int, a numpy Generator or None, got a bool.")
        if random_state is not None and int(random_state) < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}.")
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be an int, a numpy Generator or None, got {type(random_state).__name__}.")


def fit_random_state(random_state, *, private: bool, stacklevel: int = 3) -> np.random.Generator:
    """The random generator of a fit.

    A private fit (``private=True``) with ``random_state=None`` draws fresh OS entropy: its noise must be secret.
    An integer seed with a private fit still works (tests, reproducible research) but warns with
    :class:`KnownSeedWarning`, since anyone who knows the seed can reproduce and subtract the noise. A non-private fit
    with ``None`` is deterministic (seed :data:`DEFAULT_SEED`).
    """
    if random_state is None:
        return np.random.default_rng(None if private else DEFAULT_SEED)
    if private and isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        warnings.warn(
            f"random_state={int(random_state)} with eps set: a known seed makes the DP noise reproducible, so "
            "whoever knows it can remove the noise and the privacy guarantee is void. Use random_state=None (fresh "
            "OS entropy, the default) for data that leave your hands; keep integer seeds for tests.",
            KnownSeedWarning,
            stacklevel=stacklevel,
        )
    return check_random_state(random_state)


def child_seed(rng: np.random.Generator) -> int:
    """Draw an integer seed (for torch, jax or another library) from ``rng``."""
    return int(rng.integers(0, 2**31 - 1))
