"""Small shared helpers: random state handling."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_random_state", "child_seed"]


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``random_state`` (int, Generator or None) into a :class:`numpy.random.Generator`.

    Never touches numpy's global random state. ``None`` gives fresh OS entropy (not reproducible).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        if random_state is not None and int(random_state) < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}.")
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be an int, a numpy Generator or None, got {type(random_state).__name__}.")


def child_seed(rng: np.random.Generator) -> int:
    """Draw an integer seed (for torch, jax or another library) from ``rng``."""
    return int(rng.integers(0, 2**31 - 1))
