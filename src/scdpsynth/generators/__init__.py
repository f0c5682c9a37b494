"""Synthetic-data generators (AnnData-free). Register new ones in :data:`registry`."""

from .._registry import Registry
from ._base import BaseGenerator

registry = Registry("method")
registry.register(
    "ron_gauss",
    "scdpsynth.generators.ron_gauss:RONGauss",
    "RON-Gauss: random orthonormal projection + DP Gaussian per class (Chanyaswad et al. 2019)",
    data="continuous",
    units="sample",
)

__all__ = ["BaseGenerator", "registry"]
